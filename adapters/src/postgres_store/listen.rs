//! The stock listener: one dedicated connection per instance that `LISTEN`s
//! on the deployment's stock channel, where every transaction that changes
//! counts (a batch of holds, a release, a checkout, a restock) sends one
//! notice naming the items it changed. A notice sent while the connection is
//! down is lost, so after every (re)connection the listener asks for a full
//! re-read ([`StockNotice::All`]); callers add a periodic re-read too.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use domain::InventoryId;
use domain::ports::PortError;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::PgSettings;
use super::error::PgError;
use super::notice::{ALL_ITEMS, stock_channel};
use crate::backoff::Backoff;

/// What a notice says changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StockNotice {
    /// These items' counts changed.
    Items(Vec<InventoryId>),
    /// Any item may have changed (a release, a reconnection): re-read all.
    All,
}

impl StockNotice {
    /// Reads a notice payload: comma-separated ids, or `*`. Anything it
    /// cannot read counts as `*`, so no change is missed.
    #[must_use]
    pub fn parse(payload: &str) -> Self {
        if payload == ALL_ITEMS {
            return Self::All;
        }
        payload.split(',').map(InventoryId::parse).collect::<Result<Vec<_>, _>>().map_or(Self::All, Self::Items)
    }
}

/// A running stock listener.
#[derive(Debug, Clone)]
pub struct StockListener {
    connected: Arc<AtomicBool>,
}

impl StockListener {
    /// Starts listening for the deployment `settings` describe (its schema
    /// names the channel) and calls `on_notice` for every notice, until
    /// `stop` completes. Reconnects by itself, with back-off.
    ///
    /// # Errors
    /// [`PortError`] when the URL is invalid.
    pub fn spawn(
        settings: &PgSettings,
        on_notice: impl Fn(StockNotice) + Send + Sync + 'static,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(Self, JoinHandle<()>), PortError> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(PgError::Url)?;
        config
            .connect_timeout(settings.connect_timeout)
            .application_name("cartd-stock-listener")
            // A silent network drop must end the session, or the listener
            // would wait for notices forever.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        let channel = stock_channel(settings.schema.as_deref());
        let connected = Arc::new(AtomicBool::new(false));
        let listener = Self { connected: connected.clone() };
        let task = tokio::spawn(run(config, channel, on_notice, connected, stop));
        Ok((listener, task))
    }

    /// Whether the listening connection is up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

async fn run(
    config: tokio_postgres::Config,
    channel: String,
    on_notice: impl Fn(StockNotice) + Send + Sync + 'static,
    connected: Arc<AtomicBool>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(stop);
    let mut backoff = Backoff::default();
    tracing::info!(%channel, "stock listener started");
    loop {
        let session = tokio::select! {
            ended = session(&config, &channel, &on_notice, &connected) => ended,
            () = &mut stop => break,
        };
        connected.store(false, Ordering::Relaxed);
        match session {
            // The session was up: start the back-off again.
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(error = %domain::error_chain(&e), retry_in = ?backoff.peek(), "stock listener disconnected")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_pause()) => {}
            () = &mut stop => break,
        }
    }
    connected.store(false, Ordering::Relaxed);
    tracing::info!("stock listener stopped");
}

/// One connection's life: connect, `LISTEN`, forward notices. Returns when
/// the connection ends (`Ok` if it had been listening).
async fn session(
    config: &tokio_postgres::Config,
    channel: &str,
    on_notice: &(impl Fn(StockNotice) + Send + Sync),
    connected: &AtomicBool,
) -> Result<(), PgError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // The connection must be polled for the LISTEN to complete, and its
    // notices come only through `poll_message`.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("listen {channel}");
    let listen = client.batch_execute(&sql);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done?;
                listening = true;
                connected.store(true, Ordering::Relaxed);
                tracing::info!(%channel, "stock listener connected");
                // Whatever was announced while we were away is lost.
                on_notice(StockNotice::All);
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => on_notice(StockNotice::parse(n.payload())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return if listening { Ok(()) } else { Err(PgError::Protocol("connection closed before LISTEN".into())) },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_items_or_ask_for_everything() {
        let ids = |v: &[&str]| StockNotice::Items(v.iter().map(|s| InventoryId::parse(s).unwrap()).collect());
        assert_eq!(StockNotice::parse("inv-1"), ids(&["inv-1"]));
        assert_eq!(StockNotice::parse("inv-1,inv-2"), ids(&["inv-1", "inv-2"]));
        assert_eq!(StockNotice::parse("*"), StockNotice::All);
        assert_eq!(StockNotice::parse(""), StockNotice::All, "unreadable means everything");
        assert_eq!(StockNotice::parse("inv-1,bad id"), StockNotice::All);
    }
}
