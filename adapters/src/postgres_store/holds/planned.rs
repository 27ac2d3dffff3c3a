//! The planned path of a batch: one transaction of two round trips. Lock and
//! read what the calls touch (pipelined behind `begin`), replay the calls in
//! memory ([`super::plan`]), then write the net changes with one statement per
//! table (pipelined in front of `commit`).

use std::collections::BTreeSet;

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::plan::{CartState, Held, LineRow, Plan, Snapshot, Writes, plan};
use super::queue::Counters;
use super::reference::{REFERENCE_SQL, ReferenceParams, read_rows};
use super::{HoldCall, HoldOutcome};
use crate::postgres_store::error::PgError;
use crate::postgres_store::notice::{ALL_ITEMS, NOTIFY_STOCK, notice_payload};

/// Starts the planned path's transaction. Every statement in it looks rows up
/// by key, and the plans PostgreSQL caches for them must stay index lookups
/// even when they were made on stale statistics (a fresh deployment, a table
/// growing by thousands of rows a second): with sequential scans and hash and
/// merge joins priced out, they do (where no index exists it still scans).
const BEGIN: &str = "begin; set local enable_seqscan = off; set local enable_hashjoin = off; \
                     set local enable_mergejoin = off; set local plan_cache_mode = force_generic_plan";

// The statements. Locks are taken in the usual order: the carts by id, then
// the items by id; the reads that follow see what the transactions that held
// those locks committed.
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

/// Runs `calls` as one planned transaction; see the module docs.
pub(super) async fn run(
    client: &deadpool_postgres::Object,
    calls: &[HoldCall],
    counters: &Counters,
) -> Result<Vec<HoldOutcome>, PgError> {
    let carts: Vec<Uuid> = calls.iter().map(|c| c.cart).collect();
    let products: Vec<&str> = calls.iter().map(|c| c.product.as_str()).collect();
    let items: Vec<&str> = calls.iter().filter_map(HoldCall::item).collect();
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
            counters.fell_back();
            let (statement, notify) =
                tokio::try_join!(client.prepare_cached(REFERENCE_SQL), client.prepare_cached(NOTIFY_STOCK))?;
            let params = ReferenceParams::of(calls);
            let params = params.as_params();
            let (rows, _, ()) = tokio::try_join!(
                client.query(&statement, &params),
                client.execute(&notify, &[&ALL_ITEMS]),
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
    let changed: BTreeSet<&str> = ready.writes.reserve.keys().chain(&released_short).map(String::as_str).collect();
    write(client, &ready.writes, &notice_payload(changed)).await?;
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
        client.prepare_cached(NOTIFY_STOCK),
    )?;
    let item_ids: Vec<&str> = w.reserve.keys().map(String::as_str).collect();
    let item_units: Vec<i64> = w.reserve.values().copied().collect();
    let inserts = LineColumns::of(&w.insert);
    let updates = LineColumns::of(&w.update);
    let delete_carts: Vec<Uuid> = w.delete.iter().map(|d| d.cart).collect();
    let delete_products: Vec<&str> = w.delete.iter().map(|d| d.product.as_str()).collect();
    let cart_ids: Vec<Uuid> = w.carts.iter().map(|c| c.cart).collect();
    let cart_versions: Vec<i64> = w.carts.iter().map(|c| c.version).collect();
    let cart_deadlines: Vec<i64> = w.carts.iter().map(|c| c.deadline).collect();
    let cart_lines: Vec<i32> = w.carts.iter().map(|c| c.lines).collect();

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
    fn of(lines: &'a [LineRow]) -> Self {
        Self {
            carts: lines.iter().map(|l| l.cart).collect(),
            products: lines.iter().map(|l| l.product.as_str()).collect(),
            items: lines.iter().map(|l| l.item.as_str()).collect(),
            quantities: lines.iter().map(|l| l.quantity).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.carts, &self.products, &self.items, &self.quantities]
    }
}
