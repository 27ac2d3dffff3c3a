//! The adapter's settings, with their defaults.

use std::time::Duration;

use super::HoldBatchMode;

/// Connection settings of the PostgreSQL adapter.
///
/// Invariant: its timeouts bound every call, so an unreachable server gives a `PortError`
/// quickly instead of a hang. Proved by `an_unreachable_server_fails_fast_with_a_port_error`
/// (`adapters/tests/postgres_store.rs`).
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// A schema to create (if needed) and use instead of `public`; tests use a
    /// fresh one each.
    pub schema: Option<String>,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Longest time one operation (including waiting for a connection) may take.
    pub op_timeout: Duration,
    /// Longest time to open a connection.
    pub connect_timeout: Duration,
    /// Most holds grouped into one transaction.
    pub hold_batch_max: usize,
    /// Batches of holds running at once. More than one uses more of the
    /// server's cores, at the risk of batches deadlocking on shared items
    /// (they are then retried).
    pub hold_batches_in_flight: usize,
    /// How a batch of holds runs; [`HoldBatchMode::Planned`] unless a test
    /// wants the reference path.
    pub hold_batch_mode: HoldBatchMode,
}

impl PgSettings {
    /// Settings with defaults for everything but the URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            pool_size: 16,
            op_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            hold_batch_max: 256,
            hold_batches_in_flight: 1,
            hold_batch_mode: HoldBatchMode::Planned,
        }
    }
}
