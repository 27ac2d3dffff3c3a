//! PostgreSQL inventory: stock, the hold ledger (one deadline per cart) and
//! orders, implementing [`Inventory`].
//!
//! Each port method is one round trip: a call of one of the SQL functions in
//! `migrations/`, which runs as one transaction and takes its locks in a fixed
//! order (cart row, then item rows by id). Exactly-once release follows from
//! the ledger: only the transaction that deletes a cart row returns its stock.
//! Deadlocks and serialization failures, which the lock order makes rare, are
//! retried a few times; driver errors and timeouts become [`PortError`]s.

mod batch;
mod listen;
mod plan;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use batch::Mode as HoldBatchMode;
use batch::{Batcher, Counters, HoldCall, HoldRow};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use domain::ports::{HoldReceipt, Inventory, LineChange, PortError, Released};
use domain::{
    CartError, CartId, InventoryId, Line, Order, OrderId, ProductId, Quantity, StockCount, StockLevel, Timestamp,
};
pub use listen::{StockListener, StockNotice};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

mod embedded {
    refinery::embed_migrations!("migrations");
}

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

/// What can go wrong inside the adapter; all of it surfaces as [`PortError`].
#[derive(Debug, thiserror::Error)]
enum PgError {
    #[error("invalid postgres url")]
    Url(#[source] tokio_postgres::Error),
    #[error("invalid schema name {0:?}")]
    Schema(String),
    #[error("postgres pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres pool setup")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("postgres query")]
    Query(#[from] tokio_postgres::Error),
    #[error("migrations")]
    Migrate(#[from] refinery::Error),
    #[error("postgres operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer from postgres: {0}")]
    Protocol(String),
}

impl From<PgError> for PortError {
    fn from(e: PgError) -> Self {
        PortError::new("postgres", e)
    }
}

impl From<PgError> for CartError {
    fn from(e: PgError) -> Self {
        CartError::Unavailable(e.into())
    }
}

/// Tells every instance's stock listener which items changed: sent inside the
/// transaction that changes them, so it is delivered at commit and never for
/// a rollback. The channel is per schema (see [`stock_channel`]).
const NOTIFY_STOCK: &str = "select pg_notify('cartd_stock_' || current_schema(), $1::text)";

/// The notice payload for "re-read every item" (a release does not say which
/// items it touched).
const ALL_ITEMS: &str = "*";

/// A notice's payload must stay under PostgreSQL's 8000 bytes.
const MAX_NOTICE_BYTES: usize = 7000;

/// The payload naming `items`: comma-separated ids, or [`ALL_ITEMS`] when
/// they would not fit.
fn notice_payload<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for item in items {
        if out.len() + item.len() + 1 > MAX_NOTICE_BYTES {
            return ALL_ITEMS.to_owned();
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

/// The channel stock changes are announced on for `schema` (`None`: the
/// default `public`): each deployment (or test) sharing a database hears only
/// its own.
#[must_use]
pub fn stock_channel(schema: Option<&str>) -> String {
    format!("cartd_stock_{}", schema.unwrap_or("public"))
}

/// How often a transaction that lost a deadlock or serialization race is retried.
const RETRIES: usize = 3;

/// The PostgreSQL [`Inventory`].
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

    /// Creates the schema (when one is configured) and applies pending
    /// migrations, under an advisory lock so instances starting together do
    /// not race. Returns the names of the migrations applied.
    ///
    /// # Errors
    /// [`PortError`] when PostgreSQL cannot be reached or a migration fails.
    pub async fn migrate(&self, schema: Option<&str>) -> Result<Vec<String>, PortError> {
        let mut client = self.pool.get().await.map_err(PgError::from)?;
        let client: &mut tokio_postgres::Client = &mut client;
        // An arbitrary, fixed key for cartd's migration lock.
        client.execute("select pg_advisory_lock(7262633841)", &[]).await.map_err(PgError::from)?;
        let result = async {
            if let Some(schema) = schema {
                if !is_identifier(schema) {
                    return Err(PgError::Schema(schema.to_owned()));
                }
                client.batch_execute(&format!("create schema if not exists {schema}")).await?;
            }
            let report = embedded::migrations::runner().run_async(client).await?;
            Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
        }
        .await;
        let unlocked = client.execute("select pg_advisory_unlock(7262633841)", &[]).await;
        let applied = result?;
        unlocked.map_err(PgError::from)?;
        Ok(applied)
    }

    /// Whether PostgreSQL answers and the schema is in place.
    pub async fn ready(&self) -> bool {
        // Every migration this build knows must be applied, not just the first:
        // until then the functions the requests call may be missing or old.
        // Probes come often; the embedded list is read once.
        static LATEST: OnceLock<Option<i64>> = OnceLock::new();
        let latest = *LATEST.get_or_init(|| {
            embedded::migrations::runner().get_migrations().iter().map(|m| i64::from(m.version())).max()
        });
        match self.query_one("select max(version)::bigint from refinery_schema_history", &[]).await {
            Ok(row) => row.try_get::<_, Option<i64>>(0).ok().flatten() >= latest,
            Err(_) => false,
        }
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

    /// Compares each item's `reserved` with the sum of its holds in the
    /// ledger and returns every item where they differ, by `inventory_id`.
    /// With `fix`, also sets `reserved` to the ledger's sum and moves the
    /// difference to or from `available`, so `available + reserved + sold` is
    /// unchanged; only when `available` cannot give up enough units does it
    /// stop at 0 (see [`Drift::shortfall`]).
    ///
    /// One transaction, which first locks every item row (in the usual lock
    /// order), so no hold can change while the ledger is summed.
    ///
    /// # Errors
    /// [`PortError`] when PostgreSQL cannot be reached or the transaction
    /// fails (nothing is changed then).
    pub async fn reconcile(&self, fix: bool) -> Result<Vec<Drift>, PortError> {
        let mut client = self.pool.get().await.map_err(PgError::from)?;
        let tx = client.transaction().await.map_err(PgError::from)?;
        tx.execute("select 1 from items order by inventory_id for update", &[]).await.map_err(PgError::from)?;
        let rows = tx
            .query(
                "select i.inventory_id, i.available, i.reserved, coalesce(h.held, 0)::bigint \
                 from items i \
                 left join (select inventory_id, sum(quantity) as held from holds group by inventory_id) h \
                   using (inventory_id) \
                 where i.reserved <> coalesce(h.held, 0) \
                 order by i.inventory_id",
                &[],
            )
            .await
            .map_err(PgError::from)?;
        let drifts = rows
            .iter()
            .map(|row| {
                Ok(Drift {
                    inventory_id: row.try_get(0)?,
                    available: row.try_get(1)?,
                    reserved: row.try_get(2)?,
                    ledger: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(PgError::from)?;
        if fix && !drifts.is_empty() {
            tx.execute(
                "update items i \
                    set reserved = h.held, available = greatest(i.available + i.reserved - h.held, 0) \
                   from (select it.inventory_id, coalesce(sum(ho.quantity), 0)::bigint as held \
                           from items it left join holds ho using (inventory_id) \
                          group by it.inventory_id) h \
                  where i.inventory_id = h.inventory_id and i.reserved <> h.held",
                &[],
            )
            .await
            .map_err(PgError::from)?;
        }
        tx.commit().await.map_err(PgError::from)?;
        Ok(drifts)
    }
}

/// An item whose `reserved` disagrees with its holds in the ledger, as found
/// by [`PgInventory::reconcile`] (the counts before any fix).
///
/// Proved by `reconcile_reports_reserved_counts_that_disagree_with_the_ledger_and_fixes_them`
/// (`adapters/tests/postgres_store.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The item.
    pub inventory_id: String,
    /// Its `available` count.
    pub available: i64,
    /// Its `reserved` count.
    pub reserved: i64,
    /// The sum of its holds in the ledger: what `reserved` should be.
    pub ledger: i64,
}

impl Drift {
    /// `ledger - reserved`: units to move from `available` to `reserved`
    /// (negative: from `reserved` back to `available`).
    #[must_use]
    pub fn difference(&self) -> i64 {
        self.ledger - self.reserved
    }

    /// Units a fix cannot take from `available` because it has too few: the
    /// total `available + reserved + sold` grows by this much (0 almost
    /// always; more means the ledger holds units that were never in stock).
    #[must_use]
    pub fn shortfall(&self) -> i64 {
        (self.difference() - self.available).max(0)
    }
}

/// Runs `op`, one transaction, within `op_timeout`; again (up to [`RETRIES`]
/// times in all) when PostgreSQL aborted it for a deadlock or a serialization
/// failure.
async fn retrying<T, F>(op_timeout: Duration, mut op: impl FnMut() -> F) -> Result<T, PgError>
where
    F: Future<Output = Result<T, PgError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout(op_timeout, op()).await {
            Ok(result) => result,
            Err(_) => Err(PgError::Timeout(op_timeout)),
        };
        match result {
            Err(PgError::Query(e)) if attempt < RETRIES && is_retryable(&e) => {
                tracing::debug!(error = %e, attempt, "retrying postgres transaction");
            }
            other => return other,
        }
    }
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn u32_of(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn lines_of(products: Vec<String>, items: Vec<String>, quantities: Vec<i32>) -> Result<Vec<Line>, PgError> {
    products
        .into_iter()
        .zip(items)
        .zip(quantities)
        .map(|((p, i), q)| {
            let bad = |what: &str| PgError::Protocol(format!("stored order line has an invalid {what}"));
            Ok(Line {
                product_id: ProductId::parse(&p).map_err(|_| bad("product id"))?,
                inventory_id: InventoryId::parse(&i).map_err(|_| bad("inventory id"))?,
                quantity: u32::try_from(q).ok().and_then(|q| Quantity::new(q).ok()).ok_or_else(|| bad("quantity"))?,
            })
        })
        .collect()
}

/// `(inventory_id, available, reserved, sold)` rows as counts.
fn levels_of(rows: &[Row]) -> Result<Vec<(InventoryId, StockLevel)>, PgError> {
    rows.iter()
        .map(|row| {
            let id: &str = row.try_get(0)?;
            let id = InventoryId::parse(id)
                .map_err(|_| PgError::Protocol(format!("stored item has an invalid inventory id {id:?}")))?;
            Ok((id, StockLevel { available: row.try_get(1)?, reserved: row.try_get(2)?, sold: row.try_get(3)? }))
        })
        .collect()
}

fn hold_call(
    cart: CartId,
    change: &LineChange,
    new_deadline: Option<Timestamp>,
    max_lines: u16,
    now: Timestamp,
) -> HoldCall {
    let (item, quantity) = match &change.line {
        Some((item, q)) => (Some(item.to_string()), Some(i32::try_from(q.get()).unwrap_or(i32::MAX))),
        None => (None, None),
    };
    HoldCall {
        cart: cart.as_uuid(),
        product: change.product_id.to_string(),
        item,
        quantity,
        deadline: new_deadline.map(ms),
        max_lines: i32::from(max_lines),
        now: ms(now),
    }
}

fn receipt_of(row: &HoldRow, max_lines: u16) -> Result<HoldReceipt, CartError> {
    match row.status.as_str() {
        "ok" => Ok(HoldReceipt {
            version: u64_of(row.version),
            expires_at: Timestamp::from_millis(row.deadline),
            taken: u32_of(row.taken),
            released: u32_of(row.released),
        }),
        "session_not_found" => Err(CartError::SessionNotFound),
        "unknown_item" => Err(CartError::UnknownItem),
        "too_many_lines" => Err(CartError::TooManyLines { max: max_lines }),
        "insufficient_stock" => Err(CartError::InsufficientStock { available: row.available }),
        other => Err(PgError::Protocol(format!("cartd_set_hold status {other:?}")).into()),
    }
}

/// One `set_hold`, as [`PgInventory::set_holds_in_one_batch`] takes it.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct BatchedHold {
    pub cart: CartId,
    pub change: LineChange,
    pub new_deadline: Option<Timestamp>,
    pub max_lines: u16,
    pub now: Timestamp,
}

impl PgInventory {
    /// Runs `holds` as exactly one batch in `mode`, bypassing the queue that
    /// normally forms batches. For tests that compare the planned path with
    /// the reference one on identical batches.
    ///
    /// # Errors
    /// [`PortError`] when the batch's transaction fails.
    #[doc(hidden)]
    pub async fn set_holds_in_one_batch(
        &self,
        holds: &[BatchedHold],
        mode: HoldBatchMode,
    ) -> Result<Vec<Result<HoldReceipt, CartError>>, PortError> {
        let calls = holds.iter().map(|h| hold_call(h.cart, &h.change, h.new_deadline, h.max_lines, h.now)).collect();
        let rows = batch::run_batch(&self.pool, calls, self.op_timeout, mode, &self.batch_counters).await?;
        Ok(rows.iter().zip(holds).map(|(row, h)| receipt_of(row, h.max_lines)).collect())
    }
}

impl Inventory for PgInventory {
    async fn open_cart(&self, id: CartId, deadline: Timestamp) -> Result<(), PortError> {
        self.query_one(
            "with i as (insert into carts (cart_id, deadline_ms) values ($1, $2) on conflict do nothing returning 1) \
             select count(*) from i",
            &[&id.as_uuid(), &ms(deadline)],
        )
        .await?;
        Ok(())
    }

    async fn set_hold(
        &self,
        cart: CartId,
        change: &LineChange,
        new_deadline: Option<Timestamp>,
        max_lines: u16,
        now: Timestamp,
    ) -> Result<HoldReceipt, CartError> {
        let call = hold_call(cart, change, new_deadline, max_lines, now);
        let batcher = self.batcher.get_or_init(|| {
            Batcher::start(
                self.pool.clone(),
                self.op_timeout,
                self.batch_max,
                self.batches_in_flight,
                self.batch_mode,
                self.batch_counters.clone(),
            )
        });
        let row = batcher.submit(call).await.map_err(|e| CartError::Unavailable(PortError::new("postgres", e)))?;
        receipt_of(&row, max_lines)
    }

    async fn release(&self, cart: CartId) -> Result<Released, PortError> {
        // The notice is part of the same statement, hence of the release's
        // transaction, and is sent only when units went back. It names the
        // items the cart held when the statement began (the statement's
        // snapshot, before the release); a line changed by a transaction
        // that committed in between is caught by the listeners' resync.
        let row = self
            .query_one(
                "with held as (select coalesce(string_agg(distinct inventory_id, ','), '*') as ids \
                                 from holds where cart_id = $1) \
                 select r.o_units, r.o_deadline_ms, \
                 case when r.o_units > 0 then pg_notify('cartd_stock_' || current_schema(), \
                   case when length(held.ids) <= 7000 then held.ids else '*' end)::text end \
                 from cartd_release($1) r, held",
                &[&cart.as_uuid()],
            )
            .await?;
        let deadline: Option<i64> = row.try_get(1).map_err(PgError::from)?;
        Ok(match deadline {
            None => Released::default(),
            Some(d) => Released {
                carts: 1,
                units: u64_of(row.try_get(0).map_err(PgError::from)?),
                deadlines: vec![Timestamp::from_millis(d)],
            },
        })
    }

    async fn checkout(&self, cart: CartId, order_id: OrderId, now: Timestamp) -> Result<(Order, bool), CartError> {
        let row = self
            .query_one(
                "select o_status, o_order, o_created, o_products, o_items, o_quantities, \
                 case when o_status = 'ok' and o_created \
                   then pg_notify('cartd_stock_' || current_schema(), array_to_string(o_items, ','))::text end \
                 from cartd_checkout($1, $2, $3)",
                &[&cart.as_uuid(), &order_id.as_uuid(), &ms(now)],
            )
            .await?;
        let status: &str = row.try_get(0).map_err(PgError::from)?;
        match status {
            "ok" => {
                let id: uuid::Uuid = row.try_get(1).map_err(PgError::from)?;
                let created: bool = row.try_get(2).map_err(PgError::from)?;
                let products: Option<Vec<String>> = row.try_get(3).map_err(PgError::from)?;
                let items: Option<Vec<String>> = row.try_get(4).map_err(PgError::from)?;
                let quantities: Option<Vec<i32>> = row.try_get(5).map_err(PgError::from)?;
                let lines =
                    lines_of(products.unwrap_or_default(), items.unwrap_or_default(), quantities.unwrap_or_default())?;
                Ok((Order { id: OrderId::from_uuid(id), cart_id: cart, lines }, created))
            }
            "session_not_found" => Err(CartError::SessionNotFound),
            "cart_empty" => Err(CartError::CartEmpty),
            other => Err(PgError::Protocol(format!("cartd_checkout status {other:?}")).into()),
        }
    }

    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Released, PortError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let row = self
            .query_one(
                "select o_carts, o_units, o_deadlines, \
                 case when o_units > 0 then pg_notify('cartd_stock_' || current_schema(), '*')::text end \
                 from cartd_release_expired($1, $2)",
                &[&ms(now), &limit],
            )
            .await?;
        let deadlines: Option<Vec<i64>> = row.try_get(2).map_err(PgError::from)?;
        Ok(Released {
            carts: u64_of(row.try_get(0).map_err(PgError::from)?),
            units: u64_of(row.try_get(1).map_err(PgError::from)?),
            deadlines: deadlines.unwrap_or_default().into_iter().map(Timestamp::from_millis).collect(),
        })
    }

    async fn reserved_total(&self) -> Result<i64, PortError> {
        let row = self.query_one("select coalesce(sum(reserved), 0)::bigint from items", &[]).await?;
        Ok(row.try_get(0).map_err(PgError::from)?)
    }

    async fn stock(&self, item: &InventoryId) -> Result<Option<StockLevel>, PortError> {
        // An aggregate always returns one row, so a missing item is a NULL.
        let row = self
            .query_one(
                "select max(available), max(reserved), max(sold) from items where inventory_id = $1",
                &[&item.as_str()],
            )
            .await?;
        let available: Option<i64> = row.try_get(0).map_err(PgError::from)?;
        Ok(match available {
            None => None,
            Some(available) => Some(StockLevel {
                available,
                reserved: row.try_get::<_, Option<i64>>(1).map_err(PgError::from)?.unwrap_or(0),
                sold: row.try_get::<_, Option<i64>>(2).map_err(PgError::from)?.unwrap_or(0),
            }),
        })
    }

    async fn list_stock(
        &self,
        after: Option<&InventoryId>,
        limit: u32,
    ) -> Result<Vec<(InventoryId, StockLevel)>, PortError> {
        // `collate "C"` orders by bytes, as the in-memory adapter does, so a
        // cursor means the same on both. The catalogue is small: sorting it
        // outside the primary key's index is cheap.
        let limit = i64::from(limit);
        let rows = self
            .query(
                "select inventory_id, available, reserved, sold from items \
                 where $1::text is null or inventory_id collate \"C\" > $1 \
                 order by inventory_id collate \"C\" limit $2",
                &[&after.map(InventoryId::as_str), &limit],
            )
            .await?;
        Ok(levels_of(&rows)?)
    }

    async fn stock_of(&self, items: &[InventoryId]) -> Result<Vec<(InventoryId, StockLevel)>, PortError> {
        let ids: Vec<&str> = items.iter().map(InventoryId::as_str).collect();
        let rows = self
            .query(
                "select inventory_id, available, reserved, sold from items \
                 where inventory_id = any($1) order by inventory_id collate \"C\"",
                &[&ids],
            )
            .await?;
        Ok(levels_of(&rows)?)
    }

    async fn set_available(&self, item: &InventoryId, available: StockCount) -> Result<StockLevel, PortError> {
        let row = self
            .query_one(
                "with u as (insert into items (inventory_id, available) values ($1, $2) \
                 on conflict (inventory_id) do update set available = excluded.available \
                 returning available, reserved, sold) \
                 select available, reserved, sold, pg_notify('cartd_stock_' || current_schema(), $1)::text from u",
                &[&item.as_str(), &i64::from(available.get())],
            )
            .await?;
        Ok(StockLevel {
            available: row.try_get(0).map_err(PgError::from)?,
            reserved: row.try_get(1).map_err(PgError::from)?,
            sold: row.try_get(2).map_err(PgError::from)?,
        })
    }
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
