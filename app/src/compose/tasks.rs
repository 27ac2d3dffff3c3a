//! The background tasks: the sweeper that gives back the stock of carts past
//! their deadline, whether or not any expiry event was seen, the expiry
//! listener that does it sooner when the session store announces an ended
//! session, and the migrations applied at start. Every loop here watches the
//! shutdown signal and logs when it stops.

use std::sync::Arc;
use std::time::Duration;

use adapters::Backoff;
use adapters::postgres_store::PgInventory;
use domain::ports::ExpiryEvents;
use domain::{CartError, error_chain};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::shutdown::Shutdown;
use crate::state::{AppState, Backend};

/// Every `interval`, releases carts past their deadline in batches of `batch`
/// until none are left, then waits again.
///
/// `concurrency` batches run at once: the inventory hands each a different set
/// of carts (`SKIP LOCKED`), so a storm of carts expiring together is spread
/// over the database's cores.
pub async fn sweeper<B: Backend>(
    state: Arc<AppState<B>>,
    interval: Duration,
    batch: u32,
    concurrency: usize,
    mut shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(?interval, batch, concurrency, "sweeper started");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => break,
        }
        let mut drains = JoinSet::new();
        for _ in 0..concurrency.max(1) {
            drains.spawn(drain(state.clone(), batch, shutdown.clone()));
        }
        while drains.join_next().await.is_some() {}
    }
    tracing::info!("sweeper stopped");
}

/// Releases batches of expired carts until a batch comes back short, or
/// shutdown is asked for: a storm's backlog is left, between two batches
/// (each one transaction), to the next sweep of any instance.
async fn drain<B: Backend>(state: Arc<AppState<B>>, batch: u32, shutdown: Shutdown) {
    while !shutdown.is_requested() {
        match state.service.release_expired(batch).await {
            Ok(released) => {
                if released.carts > 0 {
                    tracing::debug!(carts = released.carts, units = released.units, "sweeper released expired carts");
                }
                if released.carts < u64::from(batch) {
                    break;
                }
            }
            Err(e) => {
                count_store_error(&state, &e);
                tracing::warn!(error = %error_chain(&e), "sweeper could not release expired carts; will retry");
                break;
            }
        }
    }
}

/// Releases in flight at once from expiry events: enough to keep up with a
/// burst of expiries without taking every database connection.
const LISTENER_CONCURRENCY: usize = 16;

/// Releases the holds of each cart `events` announces as ended. A release that
/// fails is left to the sweeper, which finds the cart by its deadline.
pub async fn expiry_listener<B: Backend, E: ExpiryEvents>(
    state: Arc<AppState<B>>,
    mut events: E,
    mut shutdown: Shutdown,
) {
    tracing::info!("expiry listener started");
    let slots = Arc::new(Semaphore::new(LISTENER_CONCURRENCY));
    let mut releases = JoinSet::new();
    loop {
        let id = tokio::select! {
            id = events.next_expired() => id,
            () = shutdown.wait() => break,
        };
        while releases.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.wait() => break,
        };
        let state = state.clone();
        releases.spawn(async move {
            match state.service.release_cart(id).await {
                Ok(released) => {
                    tracing::debug!(cart = %id, units = released.units, "released an expired cart on its expiry event");
                    // Its quota ends at its deadline anyway; this frees it
                    // for a deadline another instance may have moved.
                    state.quotas.forget(id, domain::ports::Clock::now(state.service.clock())).await;
                }
                Err(e) => {
                    count_store_error(&state, &e);
                    tracing::warn!(cart = %id, error = %error_chain(&e), "release on expiry event failed; the sweeper will release it");
                }
            }
            drop(permit);
        });
    }
    // Let releases already started finish: each is one short transaction.
    while releases.join_next().await.is_some() {}
    tracing::info!("expiry listener stopped");
}

fn count_store_error<B: Backend>(state: &AppState<B>, e: &CartError) {
    if let CartError::Unavailable(cause) = e {
        state.metrics.store_error(cause.store());
    }
}

/// Applies migrations, retrying while PostgreSQL is unreachable. Until it
/// succeeds `/readyz` answers 503 and stock requests get 503.
pub async fn migrate_until_done(inventory: PgInventory, schema: Option<String>, mut shutdown: Shutdown) {
    let applied = super::retry::until_done("migrations not applied yet", Backoff::default(), &mut shutdown, || {
        inventory.migrate(schema.as_deref())
    })
    .await;
    match applied {
        Some(applied) if applied.is_empty() => tracing::info!("database schema is up to date"),
        Some(applied) => tracing::info!(?applied, "applied database migrations"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use adapters::{MemoryInventory, MemorySessions};
    use domain::service::Target;
    use domain::{CartService, ExpiryMode, ExpiryPolicy, InventoryId, Limits, ProductId, SessionTtl, StockCount};

    use super::*;
    use crate::clock::TokioClock;
    use crate::compose::MemoryBackend;
    use crate::metrics::Metrics;
    use crate::settings::Secret;
    use crate::shutdown::shutdown_pair;

    /// The in-memory service with `carts` carts of one unit each, all past
    /// their deadline (the clock is tokio's, paused).
    async fn expired_carts(carts: u32) -> Arc<AppState<MemoryBackend>> {
        let ttl = SessionTtl::new(Duration::from_secs(1)).unwrap();
        let metrics = Arc::new(Metrics::new());
        let service = CartService::new(
            MemorySessions::new(),
            MemoryInventory::new(),
            TokioClock::new(),
            ExpiryPolicy { ttl, mode: ExpiryMode::Fixed },
            Limits::default(),
        )
        .with_events(metrics.clone());
        let quotas = Arc::new(crate::quotas::ClientQuotas::new(
            &crate::settings::QuotaSettings::default(),
            Arc::new(adapters::MemoryQuotas::new()),
            metrics.clone(),
        ));
        let state = Arc::new(AppState {
            service,
            backend: MemoryBackend,
            admin_token: Secret::new("t".repeat(16)),
            metrics,
            quotas,
        });
        let item = InventoryId::parse("inv-1").unwrap();
        state.service.set_stock(&item, StockCount::new(carts).unwrap()).await.unwrap();
        for _ in 0..carts {
            let product = ProductId::parse("p-1").unwrap();
            state.service.add_line(Target::New, product, item.clone(), 1).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        state
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_releases_every_expired_cart_batch_after_batch() {
        let state = expired_carts(5).await;
        let (_trigger, shutdown) = shutdown_pair();
        drain(state.clone(), 2, shutdown).await;
        assert_eq!(state.service.reserved_total().await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_stops_between_batches_once_shutdown_is_asked_for() {
        let state = expired_carts(5).await;
        let (trigger, shutdown) = shutdown_pair();
        trigger.fire();
        drain(state.clone(), 2, shutdown).await;
        assert_eq!(state.service.reserved_total().await.unwrap(), 5, "left for the next sweep");
    }
}
