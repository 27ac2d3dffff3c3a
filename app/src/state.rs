//! What a running service shares with its handlers and background tasks: the
//! use cases, the backend they run on (as the [`Backend`] trait, so nothing
//! here names Redis or PostgreSQL), the admin token and the metrics.
//!
//! The HTTP layer and the tasks are generic over a [`Backend`], so the same
//! code serves the in-memory adapters and the Redis + PostgreSQL ones without
//! dynamic dispatch. The implementations live in [`crate::compose`] (and
//! [`crate::testing`]).

use std::future::Future;
use std::sync::Arc;

use domain::CartService;
use domain::ports::{Clock, Inventory, SessionStore};

use crate::metrics::{HoldBatchTotals, Metrics, PoolUse};
use crate::settings::Secret;

/// A set of adapters the service can run on.
pub trait Backend: Send + Sync + 'static {
    /// Where sessions live.
    type Sessions: SessionStore;
    /// Where stock, holds and orders live.
    type Inventory: Inventory;
    /// The clock.
    type Clock: Clock;

    /// Whether every backing store of `service` answers right now.
    fn ready(
        &self,
        service: &CartService<Self::Sessions, Self::Inventory, Self::Clock>,
    ) -> impl Future<Output = bool> + Send;

    /// The use of each connection pool of `service`, for metrics. None by
    /// default (in-memory stores have no pools).
    fn pools(&self, _service: &CartService<Self::Sessions, Self::Inventory, Self::Clock>) -> Vec<PoolUse> {
        Vec::new()
    }

    /// Whether the expiry listener is connected; `None` when there is none.
    fn listener_connected(&self) -> Option<bool> {
        None
    }

    /// On a Redis Cluster, the expiry listener's `(subscribed, known)`
    /// nodes; `None` otherwise.
    fn listener_nodes(&self) -> Option<(usize, usize)> {
        None
    }

    /// Items whose counts changed since the last call, when the inventory
    /// itself can say (in-memory); the Redis + PostgreSQL backend learns
    /// them from its stock listener instead.
    fn take_stock_changes(
        &self,
        _service: &CartService<Self::Sessions, Self::Inventory, Self::Clock>,
    ) -> Vec<domain::InventoryId> {
        Vec::new()
    }

    /// What the inventory's batches of holds have done, for metrics; `None`
    /// when holds are not batched (in-memory stores).
    fn hold_batches(
        &self,
        _service: &CartService<Self::Sessions, Self::Inventory, Self::Clock>,
    ) -> Option<HoldBatchTotals> {
        None
    }
}

/// What every handler and background task shares.
pub struct AppState<B: Backend> {
    /// The use cases.
    pub service: CartService<B::Sessions, B::Inventory, B::Clock>,
    /// Readiness probes of the backing stores.
    pub backend: B,
    /// The admin bearer token.
    pub admin_token: Secret,
    /// The metrics registry (also the service's [`StockEvents`](domain::ports::StockEvents)).
    pub metrics: Arc<Metrics>,
    /// The client quotas (issue 14).
    pub quotas: Arc<crate::quotas::ClientQuotas>,
}
