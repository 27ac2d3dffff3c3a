//! Which adapters back the service: the in-memory ones (the embedded
//! default) or Redis for sessions and PostgreSQL for stock, holds and orders.
//! Each is a [`Backend`]; the adapters' own settings are made here from the
//! service's.

use std::sync::OnceLock;

use adapters::Backoff;
use adapters::postgres_store::{HoldBatchStats, PgInventory, PgSettings};
use adapters::redis_store::{ListenerSettings, ListenerStatus, RedisSessions, RedisSettings as StoreSettings};
use adapters::{MemoryInventory, MemorySessions};
use domain::{CartService, InventoryId};

use crate::clock::TokioClock;
use crate::metrics::{HoldBatchTotals, PoolUse};
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::state::Backend;

/// The in-memory adapters: the embedded default.
#[derive(Debug, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    type Sessions = MemorySessions;
    type Inventory = MemoryInventory;
    type Clock = TokioClock;

    async fn ready(&self, _service: &CartService<MemorySessions, MemoryInventory, TokioClock>) -> bool {
        true
    }

    fn take_stock_changes(
        &self,
        service: &CartService<MemorySessions, MemoryInventory, TokioClock>,
    ) -> Vec<InventoryId> {
        service.inventory().take_changed()
    }
}

/// Redis for sessions, PostgreSQL for stock, holds and orders.
#[derive(Debug)]
pub struct RedisBackend {
    /// `redis.pool_size` (bb8 does not report its maximum).
    redis_pool_max: u32,
    /// Whether the expiry listener is meant to run.
    listener_enabled: bool,
    /// The listener's status, once it has been started.
    listener: OnceLock<ListenerStatus>,
}

impl RedisBackend {
    /// A backend whose listener is not started yet.
    pub(super) fn new(settings: &Settings) -> Self {
        Self {
            redis_pool_max: settings.redis.pool_size,
            listener_enabled: settings.listener.enabled,
            listener: OnceLock::new(),
        }
    }

    /// Records the started listener's status, for metrics.
    pub(super) fn listener_started(&self, status: ListenerStatus) {
        let _ = self.listener.set(status);
    }
}

impl Backend for RedisBackend {
    type Sessions = RedisSessions;
    type Inventory = PgInventory;
    type Clock = TokioClock;

    async fn ready(&self, service: &CartService<RedisSessions, PgInventory, TokioClock>) -> bool {
        let (redis, postgres) = tokio::join!(service.sessions().ping(), service.inventory().ready());
        redis && postgres
    }

    fn pools(&self, service: &CartService<RedisSessions, PgInventory, TokioClock>) -> Vec<PoolUse> {
        let (open, idle) = service.sessions().pool_connections();
        let redis = PoolUse {
            store: "redis",
            idle: u64::from(idle),
            in_use: u64::from(open.saturating_sub(idle)),
            max: u64::from(self.redis_pool_max),
        };
        let (open, idle, max) = service.inventory().pool_connections();
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let postgres = PoolUse {
            store: "postgres",
            idle: as_u64(idle),
            in_use: as_u64(open.saturating_sub(idle)),
            max: as_u64(max),
        };
        vec![redis, postgres]
    }

    fn listener_connected(&self) -> Option<bool> {
        // Enabled but not (yet) started counts as disconnected, so an
        // alert on 0 also catches a listener that failed to start.
        self.listener_enabled.then(|| self.listener.get().is_some_and(ListenerStatus::is_connected))
    }

    fn listener_nodes(&self) -> Option<(usize, usize)> {
        self.listener.get().and_then(ListenerStatus::nodes)
    }

    fn hold_batches(&self, service: &CartService<RedisSessions, PgInventory, TokioClock>) -> Option<HoldBatchTotals> {
        let HoldBatchStats { batches, holds, busy_seconds, failed, reference_fallbacks } =
            service.inventory().hold_batch_stats();
        Some(HoldBatchTotals { batches, holds, busy_seconds, failed, reference_fallbacks })
    }
}

/// The PostgreSQL adapter's settings.
#[must_use]
pub fn pg_settings(settings: &Settings) -> PgSettings {
    PgSettings {
        url: settings.postgres.url.expose().to_owned(),
        schema: settings.postgres.schema.clone(),
        pool_size: settings.postgres.pool_size,
        hold_batch_max: settings.postgres.hold_batch_max,
        hold_batches_in_flight: settings.postgres.hold_batches_in_flight,
        hold_batch_mode: settings.postgres.hold_batch_mode,
        op_timeout: settings.postgres.timeout,
        connect_timeout: settings.postgres.timeout,
    }
}

/// The Redis session store's settings.
pub(super) fn redis_settings(settings: &Settings) -> StoreSettings {
    StoreSettings {
        url: settings.redis.url.expose().to_owned(),
        key_prefix: settings.redis.key_prefix.clone(),
        pool_size: settings.redis.pool_size,
        op_timeout: settings.redis.timeout,
        connect_timeout: settings.redis.timeout.max(std::time::Duration::from_secs(1)),
        cluster_nodes: settings.redis.cluster_seeds(),
    }
}

/// The expiry listener's settings: the session store's server, prefix and
/// timeouts.
pub(super) fn listener_settings(settings: &Settings) -> ListenerSettings {
    ListenerSettings {
        configure_notifications: settings.redis.configure_notifications,
        ..ListenerSettings::for_store(&redis_settings(settings))
    }
}

/// Connects to Redis, waiting (with back-off) while it does not answer, so a
/// service started before its Redis comes up by itself. `None` when shutdown
/// is asked for first.
pub(super) async fn connect_redis(settings: &StoreSettings, mut shutdown: Shutdown) -> Option<RedisSessions> {
    super::retry::until_done("redis not reachable yet", Backoff::default(), &mut shutdown, || {
        RedisSessions::connect(settings)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::shutdown::shutdown_pair;

    #[tokio::test]
    async fn the_wait_for_redis_ends_when_shutdown_is_asked_for() {
        // A loopback port nobody listens on: every attempt is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = StoreSettings::new(format!("redis://127.0.0.1:{port}"));
        let (trigger, shutdown) = shutdown_pair();
        let wait = tokio::spawn(async move { connect_redis(&settings, shutdown).await.is_some() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!wait.is_finished(), "it keeps waiting for Redis while nobody asks it to stop");
        trigger.fire();
        let connected = tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the wait ends on shutdown");
        assert!(!connected.unwrap());
    }
}
