//! PostgreSQL inventory: stock, the hold ledger (one deadline per cart) and
//! orders, implementing [`Inventory`](domain::ports::Inventory).
//!
//! Each port method is one round trip: a call of one of the SQL functions of
//! the baseline migration (`adapters/migrations/`), which runs as one
//! transaction and takes its locks in a fixed order (cart rows, then item rows
//! by id), or, for holds, a batch of calls in one transaction (`holds`).
//! Exactly-once release follows from the ledger: only the transaction that
//! deletes a cart row returns its stock. Deadlocks and serialization
//! failures, which the lock order makes rare, are retried a few times; driver
//! errors and timeouts become [`PortError`]s.
//!
//! One file per question: `settings` (what can be configured), `error`
//! (what can go wrong, and retries), `schema` (migrations and readiness),
//! `inventory` (the port), `holds` (how holds are batched, planned and
//! written), `notice` and `listen` (telling every instance what changed),
//! `reconcile` (finding counts that disagree with the ledger).

mod error;
mod holds;
mod inventory;
mod listen;
mod merge;
mod notice;
mod reconcile;
mod schema;
mod settings;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use domain::ports::PortError;
use error::{PgError, retrying};
pub use holds::Mode as HoldBatchMode;
use holds::{Batcher, Counters};
pub use inventory::BatchedHold;
pub use listen::{StockListener, StockNotice};
pub use notice::stock_channel;
pub use reconcile::Drift;
pub use settings::PgSettings;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// The PostgreSQL [`Inventory`](domain::ports::Inventory).
///
/// Invariant: the inventory contract under concurrency, across instances: proved by
/// `adapters/tests/postgres_contract.rs`, and by
/// `two_hundred_carts_racing_for_fifty_units_hold_exactly_fifty`,
/// `racing_releases_of_one_cart_return_its_units_once`,
/// `checkout_racing_release_has_exactly_one_winner` and
/// `three_sweepers_release_a_thousand_expired_carts_exactly_once`
/// (`adapters/tests/postgres_store.rs`).
#[derive(Clone)]
pub struct PgInventory {
    pool: Pool,
    op_timeout: Duration,
    batch_max: usize,
    batches_in_flight: usize,
    batch_mode: HoldBatchMode,
    /// Started on first use, so constructing the adapter needs no runtime.
    batcher: Arc<OnceLock<Batcher>>,
    batch_counters: Arc<Counters>,
}

/// What the batches of holds have done since the adapter started: running
/// totals, for metrics (average batch size, share of time PostgreSQL is busy
/// with holds).
///
/// Read by the metrics; the batches it counts are proved by `adapters/tests/postgres_batch.rs`
/// (`planned_batches_answer_and_write_exactly_what_the_reference_loop_does`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HoldBatchStats {
    /// Batches run (each one transaction, retries included).
    pub batches: u64,
    /// Holds in those batches.
    pub holds: u64,
    /// Time from a batch's start to its last row, summed.
    pub busy_seconds: f64,
    /// Batches that failed (their holds got 503s).
    pub failed: u64,
    /// Planned batches that met a cart past its deadline and ran the
    /// reference loop instead.
    pub reference_fallbacks: u64,
}

impl std::fmt::Debug for PgInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgInventory").field("pool", &self.pool.status()).finish_non_exhaustive()
    }
}

impl PgInventory {
    /// Builds the pool. No connection is opened until first use.
    ///
    /// # Errors
    /// [`PortError`] for an invalid URL or schema name.
    pub fn connect(settings: &PgSettings) -> Result<Self, PortError> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(PgError::Url)?;
        config.connect_timeout(settings.connect_timeout);
        config.application_name("cartd");
        if let Some(schema) = &settings.schema {
            if !is_identifier(schema) {
                return Err(PgError::Schema(schema.clone()).into());
            }
            config.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.op_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.op_timeout))
            .build()
            .map_err(PgError::from)?;
        Ok(Self {
            pool,
            op_timeout: settings.op_timeout,
            batch_max: settings.hold_batch_max,
            batches_in_flight: settings.hold_batches_in_flight,
            batch_mode: settings.hold_batch_mode,
            batcher: Arc::new(OnceLock::new()),
            batch_counters: Arc::new(Counters::default()),
        })
    }

    async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, PgError> {
        retrying(self.op_timeout, || async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query_one(&statement, params).await?)
        })
        .await
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, PgError> {
        retrying(self.op_timeout, || async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, params).await?)
        })
        .await
    }

    /// What the batches of holds have done so far.
    #[must_use]
    pub fn hold_batch_stats(&self) -> HoldBatchStats {
        self.batch_counters.read()
    }

    /// The pool's connections: `(open, idle, max)`; open but not idle ones
    /// are in use. For metrics.
    #[must_use]
    pub fn pool_connections(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (status.size, status.available, status.max_size)
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(is_identifier("cartd_test_1"));
        for bad in ["", "1abc", "a-b", "A", "a;drop", &"a".repeat(64)] {
            assert!(!is_identifier(bad), "{bad:?}");
        }
    }
}
