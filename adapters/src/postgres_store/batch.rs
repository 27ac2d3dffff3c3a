//! Group commit for holds: `set_hold` requests that arrive while a batch is
//! running wait for the next one, and each batch is one transaction and one
//! commit. By default ([`Mode::Planned`]) a batch takes two round trips: lock
//! and read what its calls touch, replay the calls in memory
//! ([`super::plan`]), write the net changes with one statement per table and
//! commit. [`Mode::Reference`] runs `cartd_set_hold_batch` instead, a PL/pgSQL
//! loop of several statements per hold; the planned path is tested against it
//! and falls back to it for the rare batch that meets a cart past its deadline.
//!
//! Under light load a batch holds one request, so latency is what a single
//! call costs. Under heavy load the batch grows with the queue, which is what
//! lets many shoppers hold stock of one hot item without queueing on its row
//! lock one transaction at a time (a flash sale), and spreads one commit over
//! many holds elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::plan::{CartState, Held, Plan, Snapshot, Writes, plan};
use super::{HoldBatchStats, PgError, retrying};

/// One `cartd_set_hold` call, as its arguments.
#[derive(Debug)]
pub(super) struct HoldCall {
    pub cart: Uuid,
    pub product: String,
    pub item: Option<String>,
    pub quantity: Option<i32>,
    pub deadline: Option<i64>,
    pub max_lines: i32,
    pub now: i64,
}

/// One row `cartd_set_hold` returned.
#[derive(Debug)]
pub(super) struct HoldRow {
    pub status: String,
    pub version: i64,
    pub deadline: i64,
    pub available: i64,
    pub taken: i32,
    pub released: i32,
}

type Reply = oneshot::Sender<Result<HoldRow, Arc<PgError>>>;

/// What the batches have done so far, for metrics: running totals.
#[derive(Debug, Default)]
pub(super) struct Counters {
    batches: AtomicU64,
    holds: AtomicU64,
    busy_micros: AtomicU64,
    failed: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> HoldBatchStats {
        #[allow(clippy::cast_precision_loss)] // microseconds as f64 seconds: exact up to 285 years
        let busy_seconds = self.busy_micros.load(Ordering::Relaxed) as f64 / 1e6;
        HoldBatchStats {
            batches: self.batches.load(Ordering::Relaxed),
            holds: self.holds.load(Ordering::Relaxed),
            busy_seconds,
            failed: self.failed.load(Ordering::Relaxed),
            reference_fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }
}

/// The queue in front of the batches.
#[derive(Debug)]
pub(super) struct Batcher {
    queue: mpsc::Sender<(HoldCall, Reply)>,
}

/// The reference path: `cartd_set_hold` once per call, in one SQL function.
const REFERENCE_SQL: &str = "select o_status, o_version, o_deadline_ms, o_available, o_taken, o_released \
                             from cartd_set_hold_batch($1, $2, $3, $4, $5, $6, $7)";

/// How a batch runs.
///
/// Invariant: both modes answer and write the same for the same batch. Proved by
/// `planned_batches_answer_and_write_exactly_what_the_reference_loop_does`
/// (`adapters/tests/postgres_batch.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Lock and read, plan in memory, write the net changes: a few
    /// statements per batch (`postgres_store/plan.rs`). The default.
    Planned,
    /// `cartd_set_hold_batch`, a PL/pgSQL loop of `cartd_set_hold` calls:
    /// several statements per hold. Kept as the reference the planned path
    /// is tested against, and as its fallback for carts past their deadline.
    Reference,
}

impl Batcher {
    /// Starts the batching task on the current Tokio runtime. It stops when
    /// the last handle is dropped.
    pub(crate) fn start(
        pool: Pool,
        op_timeout: Duration,
        max_batch: usize,
        in_flight: usize,
        mode: Mode,
        counters: Arc<Counters>,
    ) -> Self {
        let (queue, rx) = mpsc::channel(max_batch * in_flight.max(1) * 4);
        tokio::spawn(run(pool, rx, op_timeout, max_batch.max(1), in_flight.max(1), mode, counters));
        Self { queue }
    }

    /// Queues `call` and waits for its row.
    pub(crate) async fn submit(&self, call: HoldCall) -> Result<HoldRow, Arc<PgError>> {
        let (tx, rx) = oneshot::channel();
        let stopped = || Arc::new(PgError::Protocol("the hold batcher stopped".to_owned()));
        self.queue.send((call, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(
    pool: Pool,
    mut rx: mpsc::Receiver<(HoldCall, Reply)>,
    op_timeout: Duration,
    max_batch: usize,
    in_flight: usize,
    mode: Mode,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        // Everything that queued up while we waited for a slot joins this batch.
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            execute(&pool, jobs, op_timeout, mode, &counters).await;
            drop(permit);
        });
    }
}

async fn execute(pool: &Pool, jobs: Vec<(HoldCall, Reply)>, op_timeout: Duration, mode: Mode, counters: &Counters) {
    let (calls, replies): (Vec<HoldCall>, Vec<Reply>) = jobs.into_iter().unzip();
    let started = std::time::Instant::now();
    let n = calls.len();
    let result = run_batch(pool, calls, op_timeout, mode, counters).await;
    let elapsed = started.elapsed();
    tracing::debug!(holds = n, ?elapsed, ok = result.is_ok(), "hold batch");
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.holds.fetch_add(n as u64, Ordering::Relaxed);
    counters.busy_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    if result.is_err() {
        counters.failed.fetch_add(1, Ordering::Relaxed);
    }
    match result {
        Ok(rows) => {
            for (reply, row) in replies.into_iter().zip(rows) {
                let _ = reply.send(Ok(row));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs one batch, retried whole when PostgreSQL aborted it for a deadlock or
/// a serialization failure: one row per call, in the calls' order.
///
/// The calls run sorted by item, so that every batch takes item locks in one
/// order, as the SQL functions do, and batches of several instances do not
/// deadlock on shared items. The sort is stable: changes to one item keep
/// their arrival order.
pub(super) async fn run_batch(
    pool: &Pool,
    calls: Vec<HoldCall>,
    op_timeout: Duration,
    mode: Mode,
    counters: &Counters,
) -> Result<Vec<HoldRow>, PgError> {
    let mut indexed: Vec<(usize, HoldCall)> = calls.into_iter().enumerate().collect();
    indexed.sort_by(|a, b| a.1.item.cmp(&b.1.item));
    let (order, sorted): (Vec<usize>, Vec<HoldCall>) = indexed.into_iter().unzip();
    let rows = retrying(op_timeout, || once(pool, &sorted, mode, counters)).await?;
    if rows.len() != sorted.len() {
        return Err(PgError::Protocol(format!("{} rows for {} holds", rows.len(), sorted.len())));
    }
    let mut answered: Vec<(usize, HoldRow)> = order.into_iter().zip(rows).collect();
    answered.sort_by_key(|(i, _)| *i);
    Ok(answered.into_iter().map(|(_, row)| row).collect())
}

async fn once(pool: &Pool, calls: &[HoldCall], mode: Mode, counters: &Counters) -> Result<Vec<HoldRow>, PgError> {
    let client = Exclusive(Some(pool.get().await?));
    let rows = match mode {
        Mode::Planned => planned(client.get(), calls, counters).await?,
        Mode::Reference => {
            let statement = client.get().prepare_cached(REFERENCE_SQL).await?;
            let rows = read_rows(&client.get().query(&statement, &reference_params(calls).as_params()).await?)?;
            // The function commits on its own, so this notice comes just
            // after: a crash in between is covered by the listeners' resync.
            client.get().execute(super::NOTIFY_STOCK, &[&super::ALL_ITEMS]).await?;
            rows
        }
    };
    client.keep();
    Ok(rows)
}

/// A pooled connection that goes back to the pool only when [`Exclusive::keep`]
/// says so. Dropped otherwise (an error, or a timeout cancelling the future
/// halfway), it is closed instead, so a transaction left open can never reach
/// the next user of the connection; PostgreSQL rolls it back.
struct Exclusive(Option<deadpool_postgres::Object>);

impl Exclusive {
    fn get(&self) -> &deadpool_postgres::Object {
        self.0.as_ref().expect("present until keep or drop")
    }

    fn keep(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// The SQL function's arguments, column by column.
struct ReferenceParams<'a> {
    carts: Vec<Uuid>,
    products: Vec<&'a str>,
    items: Vec<Option<&'a str>>,
    quantities: Vec<Option<i32>>,
    deadlines: Vec<Option<i64>>,
    max_lines: Vec<i32>,
    nows: Vec<i64>,
}

impl ReferenceParams<'_> {
    fn as_params(&self) -> [&(dyn ToSql + Sync); 7] {
        [&self.carts, &self.products, &self.items, &self.quantities, &self.deadlines, &self.max_lines, &self.nows]
    }
}

fn reference_params(calls: &[HoldCall]) -> ReferenceParams<'_> {
    ReferenceParams {
        carts: calls.iter().map(|c| c.cart).collect(),
        products: calls.iter().map(|c| c.product.as_str()).collect(),
        items: calls.iter().map(|c| c.item.as_deref()).collect(),
        quantities: calls.iter().map(|c| c.quantity).collect(),
        deadlines: calls.iter().map(|c| c.deadline).collect(),
        max_lines: calls.iter().map(|c| c.max_lines).collect(),
        nows: calls.iter().map(|c| c.now).collect(),
    }
}

fn read_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<HoldRow>, PgError> {
    rows.iter()
        .map(|r| {
            Ok(HoldRow {
                status: r.try_get(0)?,
                version: r.try_get(1)?,
                deadline: r.try_get(2)?,
                available: r.try_get(3)?,
                taken: r.try_get(4)?,
                released: r.try_get(5)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(PgError::from)
}

/// Starts the planned path's transaction. Every statement in it looks rows up
/// by key, and the plans PostgreSQL caches for them must stay index lookups
/// even when they were made on stale statistics (a fresh deployment, a table
/// growing by thousands of rows a second): with sequential scans and hash and
/// merge joins priced out, they do (where no index exists it still scans).
const BEGIN: &str = "begin; set local enable_seqscan = off; set local enable_hashjoin = off; \
                     set local enable_mergejoin = off; set local plan_cache_mode = force_generic_plan";

// The planned path's statements. Locks are taken in the usual order: the
// carts by id, then the items by id; the reads that follow see what the
// transactions that held those locks committed.
const LOCK_CARTS: &str = "select cart_id, deadline_ms, version, lines from carts \
                          where cart_id = any ($1::uuid[]) order by cart_id for update";
const READ_LINES: &str = "select h.cart_id, h.product_id, h.inventory_id, h.quantity \
                          from holds h join unnest($1::uuid[], $2::text[]) as c(cart_id, product_id) \
                          on h.cart_id = c.cart_id and h.product_id = c.product_id";
const LOCK_ITEMS: &str = "select inventory_id, available from items \
                          where inventory_id in (select unnest($3::text[]) \
                                                 union \
                                                 select h.inventory_id from holds h \
                                                   join unnest($1::uuid[], $2::text[]) as c(cart_id, product_id) \
                                                     on h.cart_id = c.cart_id and h.product_id = c.product_id) \
                          order by inventory_id for update";
const READ_ITEMS: &str = "select inventory_id, available from items where inventory_id = any ($1::text[])";
const RELEASE_EXPIRED_HOLDERS: &str = "select cartd_release_expired_holders($1::text[], $2::uuid[], $3::bigint)";
const WRITE_ITEMS: &str = "update items i set available = i.available - d.units, reserved = i.reserved + d.units \
                           from unnest($1::text[], $2::bigint[]) as d(inventory_id, units) \
                           where i.inventory_id = d.inventory_id";
const INSERT_LINES: &str = "insert into holds (cart_id, product_id, inventory_id, quantity) \
                            select * from unnest($1::uuid[], $2::text[], $3::text[], $4::integer[])";
const UPDATE_LINES: &str = "update holds h set inventory_id = d.inventory_id, quantity = d.quantity \
                            from unnest($1::uuid[], $2::text[], $3::text[], $4::integer[]) \
                              as d(cart_id, product_id, inventory_id, quantity) \
                            where h.cart_id = d.cart_id and h.product_id = d.product_id";
const DELETE_LINES: &str = "delete from holds h using unnest($1::uuid[], $2::text[]) as d(cart_id, product_id) \
                            where h.cart_id = d.cart_id and h.product_id = d.product_id";
const WRITE_CARTS: &str = "update carts c set version = d.version, deadline_ms = d.deadline_ms, lines = d.lines \
                           from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::integer[]) \
                             as d(cart_id, version, deadline_ms, lines) \
                           where c.cart_id = d.cart_id";

/// One batch as one transaction of two round trips: lock and read (pipelined
/// behind `begin`), then plan in memory and write the net changes (pipelined
/// in front of `commit`). See [`super::plan`].
async fn planned(
    client: &deadpool_postgres::Object,
    calls: &[HoldCall],
    counters: &Counters,
) -> Result<Vec<HoldRow>, PgError> {
    let carts: Vec<Uuid> = calls.iter().map(|c| c.cart).collect();
    let products: Vec<&str> = calls.iter().map(|c| c.product.as_str()).collect();
    let items: Vec<&str> = calls.iter().filter_map(|c| c.item.as_deref()).collect();
    let (lock_carts, read_lines, lock_items) = tokio::try_join!(
        client.prepare_cached(LOCK_CARTS),
        client.prepare_cached(READ_LINES),
        client.prepare_cached(LOCK_ITEMS),
    )?;
    let by_cart: [&(dyn ToSql + Sync); 1] = [&carts];
    let by_line: [&(dyn ToSql + Sync); 2] = [&carts, &products];
    let by_call: [&(dyn ToSql + Sync); 3] = [&carts, &products, &items];
    let (_, cart_rows, line_rows, item_rows) = tokio::try_join!(
        client.batch_execute(BEGIN),
        client.query(&lock_carts, &by_cart),
        client.query(&read_lines, &by_line),
        client.query(&lock_items, &by_call),
    )?;
    let mut snapshot = Snapshot::default();
    for r in &cart_rows {
        snapshot
            .carts
            .insert(r.try_get(0)?, CartState { deadline: r.try_get(1)?, version: r.try_get(2)?, lines: r.try_get(3)? });
    }
    for r in &line_rows {
        let held = Held { item: r.try_get(2)?, quantity: r.try_get(3)? };
        snapshot.lines.entry(r.try_get(0)?).or_default().insert(r.try_get(1)?, held);
    }
    for r in &item_rows {
        snapshot.available.insert(r.try_get(0)?, r.try_get(1)?);
    }

    let mut ready = match plan(calls, &snapshot) {
        Plan::Ready(ready) => ready,
        Plan::Reference => {
            counters.fallbacks.fetch_add(1, Ordering::Relaxed);
            let (statement, notify) =
                tokio::try_join!(client.prepare_cached(REFERENCE_SQL), client.prepare_cached(super::NOTIFY_STOCK))?;
            let params = reference_params(calls);
            let params = params.as_params();
            let (rows, _, ()) = tokio::try_join!(
                client.query(&statement, &params),
                client.execute(&notify, &[&super::ALL_ITEMS]),
                client.batch_execute("commit")
            )?;
            return read_rows(&rows);
        }
    };
    let mut released_short: Vec<String> = Vec::new();
    if !ready.short.is_empty() {
        // Stock held by carts past their deadline never blocks a hold: give it
        // back, then plan again on the new counts (once: what is released now
        // stays released).
        let short: Vec<&str> = ready.short.iter().map(String::as_str).collect();
        let now = calls.iter().map(|c| c.now).min().unwrap_or(0);
        let statement = client.prepare_cached(RELEASE_EXPIRED_HOLDERS).await?;
        let units: i64 = client.query_one(&statement, &[&short, &carts, &now]).await?.try_get(0)?;
        if units > 0 {
            released_short = ready.short.iter().cloned().collect();
            let names: Vec<&str> = snapshot.available.keys().map(String::as_str).collect();
            let statement = client.prepare_cached(READ_ITEMS).await?;
            for r in client.query(&statement, &[&names]).await? {
                snapshot.available.insert(r.try_get(0)?, r.try_get(1)?);
            }
            ready = match plan(calls, &snapshot) {
                Plan::Ready(ready) => ready,
                Plan::Reference => return Err(PgError::Protocol("a batch's carts expired while it ran".into())),
            };
        }
    }
    let changed: std::collections::BTreeSet<&str> =
        ready.writes.reserve.keys().chain(&released_short).map(String::as_str).collect();
    write(client, &ready.writes, &super::notice_payload(changed)).await?;
    Ok(ready.rows)
}

/// The writes of a plan and `commit`, pipelined: one round trip.
/// `notice` names the items whose counts change (empty: none), for the
/// stock listeners of every instance; PostgreSQL delivers it at commit only.
async fn write(client: &deadpool_postgres::Object, w: &Writes, notice: &str) -> Result<(), PgError> {
    type Pending<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;
    // Prepared once per connection, so the notice adds no round trip.
    let (write_items, insert_lines, update_lines, delete_lines, write_carts, notify) = tokio::try_join!(
        client.prepare_cached(WRITE_ITEMS),
        client.prepare_cached(INSERT_LINES),
        client.prepare_cached(UPDATE_LINES),
        client.prepare_cached(DELETE_LINES),
        client.prepare_cached(WRITE_CARTS),
        client.prepare_cached(super::NOTIFY_STOCK),
    )?;
    let item_ids: Vec<&str> = w.reserve.keys().map(String::as_str).collect();
    let item_units: Vec<i64> = w.reserve.values().copied().collect();
    let inserts = LineColumns::of(&w.insert);
    let updates = LineColumns::of(&w.update);
    let delete_carts: Vec<Uuid> = w.delete.iter().map(|d| d.0).collect();
    let delete_products: Vec<&str> = w.delete.iter().map(|d| d.1.as_str()).collect();
    let cart_ids: Vec<Uuid> = w.carts.iter().map(|c| c.0).collect();
    let cart_versions: Vec<i64> = w.carts.iter().map(|c| c.1).collect();
    let cart_deadlines: Vec<i64> = w.carts.iter().map(|c| c.2).collect();
    let cart_lines: Vec<i32> = w.carts.iter().map(|c| c.3).collect();

    let item_params: [&(dyn ToSql + Sync); 2] = [&item_ids, &item_units];
    let delete_params: [&(dyn ToSql + Sync); 2] = [&delete_carts, &delete_products];
    let update_params = updates.params();
    let insert_params = inserts.params();
    let cart_params: [&(dyn ToSql + Sync); 4] = [&cart_ids, &cart_versions, &cart_deadlines, &cart_lines];
    let notice_params: [&(dyn ToSql + Sync); 1] = [&notice];

    let mut pending: Vec<Pending<'_>> = Vec::with_capacity(7);
    if !item_ids.is_empty() {
        pending.push(Box::pin(client.execute(&write_items, &item_params)));
    }
    // Deletes before inserts: a line removed and added again in one batch is
    // an update, never both, but keep the order safe anyway.
    if !delete_carts.is_empty() {
        pending.push(Box::pin(client.execute(&delete_lines, &delete_params)));
    }
    if !updates.carts.is_empty() {
        pending.push(Box::pin(client.execute(&update_lines, &update_params)));
    }
    if !inserts.carts.is_empty() {
        pending.push(Box::pin(client.execute(&insert_lines, &insert_params)));
    }
    if !cart_ids.is_empty() {
        pending.push(Box::pin(client.execute(&write_carts, &cart_params)));
    }
    if !notice.is_empty() {
        pending.push(Box::pin(client.execute(&notify, &notice_params)));
    }
    // A failed statement aborts the transaction, and `commit` then rolls it
    // back; the error is what `try_join_all` returns.
    pending.push(Box::pin(async { client.batch_execute("commit").await.map(|()| 0) }));
    futures_util::future::try_join_all(pending).await?;
    Ok(())
}

/// Lines to write, column by column, as the `unnest` statements take them.
struct LineColumns<'a> {
    carts: Vec<Uuid>,
    products: Vec<&'a str>,
    items: Vec<&'a str>,
    quantities: Vec<i32>,
}

impl<'a> LineColumns<'a> {
    fn of(lines: &'a [(Uuid, String, String, i32)]) -> Self {
        Self {
            carts: lines.iter().map(|l| l.0).collect(),
            products: lines.iter().map(|l| l.1.as_str()).collect(),
            items: lines.iter().map(|l| l.2.as_str()).collect(),
            quantities: lines.iter().map(|l| l.3).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.carts, &self.products, &self.items, &self.quantities]
    }
}
