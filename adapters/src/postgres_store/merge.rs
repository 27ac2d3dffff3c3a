//! Merging one cart into another: one transaction that locks both carts (by
//! id) and the items they hold (by id), reads their lines, applies the
//! domain's merge rule ([`domain::merge`]) and writes the result.

use std::collections::BTreeMap;

use domain::merge::{self, MergeCall, Shortage, Shortfall};
use domain::ports::MergeReceipt;
use domain::{CartError, InventoryId, ProductId, Timestamp};
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::PgInventory;
use super::error::{PgError, retrying};
use super::inventory::lines_of;
use super::notice::{NOTIFY_STOCK, notice_payload};

const LOCK_CARTS: &str =
    "select cart_id, deadline_ms, version from carts where cart_id = any ($1::uuid[]) order by cart_id for update";
const READ_LINES: &str = "select cart_id, product_id, inventory_id, quantity from holds \
                          where cart_id = any ($1::uuid[]) order by product_id";
const LOCK_ITEMS: &str = "select inventory_id, available from items where inventory_id = any ($1::text[]) \
                          order by inventory_id for update";
const READ_MERGE: &str =
    "select into_cart, products, requested, granted, reasons from cart_merges where from_cart = $1";
const RELEASE: &str = "select cartd_release_locked(array[$1::uuid])";
const WRITE_ITEMS: &str = "update items i set available = i.available - d.units, reserved = i.reserved + d.units \
                           from unnest($1::text[], $2::bigint[]) as d(inventory_id, units) \
                           where i.inventory_id = d.inventory_id";
const DROP_SOURCE: &str = "with h as (delete from holds where cart_id = $1) delete from carts where cart_id = $1";
const WRITE_LINES: &str = "insert into holds (cart_id, product_id, inventory_id, quantity) \
                           select $1, * from unnest($2::text[], $3::text[], $4::integer[]) \
                           on conflict (cart_id, product_id) \
                           do update set inventory_id = excluded.inventory_id, quantity = excluded.quantity";
const WRITE_TARGET: &str = "update carts set version = $2, deadline_ms = $3, lines = $4 where cart_id = $1";
const RECORD: &str = "insert into cart_merges (from_cart, into_cart, products, requested, granted, reasons) \
                      values ($1, $2, $3, $4, $5, $6)";

/// A cart's lines as read, column by column: products, items, quantities.
type Columns = (Vec<String>, Vec<String>, Vec<i32>);

/// A cart row, as locked.
struct Locked {
    deadline: i64,
    version: i64,
}

impl PgInventory {
    /// [`Inventory::merge`](domain::ports::Inventory::merge) for PostgreSQL.
    pub(super) async fn merge_carts(&self, call: &MergeCall) -> Result<MergeReceipt, CartError> {
        retrying(self.op_timeout, || async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let answer = merge_in(&tx, call).await?;
            tx.commit().await?;
            Ok(answer)
        })
        .await?
    }
}

/// The merge inside `tx`; the outer `Result` is the database's, the inner
/// the ledger's answer (committed either way: a refusal may have released
/// a cart past its deadline).
async fn merge_in(tx: &Transaction<'_>, call: &MergeCall) -> Result<Result<MergeReceipt, CartError>, PgError> {
    let MergeCall { from, into, strategy, limits, new_deadline, now } = *call;
    let (from_id, into_id) = (from.as_uuid(), into.as_uuid());
    let mut carts: BTreeMap<Uuid, Locked> = BTreeMap::new();
    for r in tx.query(LOCK_CARTS, &[&vec![from_id, into_id]]).await? {
        carts.insert(r.try_get(0)?, Locked { deadline: r.try_get(1)?, version: r.try_get(2)? });
    }
    let now_ms = now.as_millis();
    // The target must be open and live.
    match carts.get(&into_id) {
        None => return Ok(Err(CartError::SessionNotFound)),
        Some(c) if c.deadline <= now_ms => {
            tx.execute(RELEASE, &[&into_id]).await?;
            return Ok(Err(CartError::SessionNotFound));
        }
        Some(_) => {}
    }
    let rows = tx.query(READ_LINES, &[&vec![from_id, into_id]]).await?;
    let mut lines: BTreeMap<Uuid, Columns> = BTreeMap::new();
    for r in &rows {
        let entry = lines.entry(r.try_get(0)?).or_default();
        entry.0.push(r.try_get(1)?);
        entry.1.push(r.try_get(2)?);
        entry.2.push(r.try_get(3)?);
    }
    let mut lines_of_cart = |id: Uuid| {
        let (p, i, q) = lines.remove(&id).unwrap_or_default();
        lines_of(p, i, q)
    };
    let target_lines = lines_of_cart(into_id)?;
    let target = &carts[&into_id];
    match carts.get(&from_id) {
        None => {
            // Merged already? The same merge again answers the same.
            let Some(r) = tx.query_opt(READ_MERGE, &[&from_id]).await? else {
                return Ok(Err(CartError::SessionNotFound));
            };
            if r.try_get::<_, Uuid>(0)? != into_id {
                return Ok(Err(CartError::SessionNotFound));
            }
            let shortfalls = shortfalls_of(r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)?;
            return Ok(Ok(MergeReceipt {
                version: u64::try_from(target.version).unwrap_or(0),
                expires_at: Timestamp::from_millis(target.deadline),
                changed: target_lines.clone(),
                lines: target_lines,
                shortfalls,
                taken: 0,
                released: 0,
                replayed: true,
            }));
        }
        Some(c) if c.deadline <= now_ms => {
            tx.execute(RELEASE, &[&from_id]).await?;
            return Ok(Err(CartError::SessionNotFound));
        }
        Some(_) => {}
    }
    let source_lines = lines_of_cart(from_id)?;

    let items: Vec<&str> = target_lines.iter().chain(&source_lines).map(|l| l.inventory_id.as_str()).collect();
    let mut available: BTreeMap<String, i64> = BTreeMap::new();
    for r in tx.query(LOCK_ITEMS, &[&items]).await? {
        available.insert(r.try_get(0)?, r.try_get(1)?);
    }
    let plan = merge::plan_merge(&target_lines, &source_lines, strategy, limits, |item| {
        available.get(item.as_str()).copied().unwrap_or(0)
    });

    let version = target.version + 1;
    let deadline = new_deadline.map_or(target.deadline, |d| d.as_millis().max(target.deadline));
    let item_ids: Vec<&str> = plan.reserve.keys().map(InventoryId::as_str).collect();
    let item_units: Vec<i64> = plan.reserve.values().copied().collect();
    let products: Vec<&str> = plan.changed.iter().map(|l| l.product_id.as_str()).collect();
    let line_items: Vec<&str> = plan.changed.iter().map(|l| l.inventory_id.as_str()).collect();
    let quantities: Vec<i32> =
        plan.changed.iter().map(|l| i32::try_from(l.quantity.get()).unwrap_or(i32::MAX)).collect();
    let count = i32::try_from(plan.lines.len()).unwrap_or(i32::MAX);
    let short_products: Vec<&str> = plan.shortfalls.iter().map(|s| s.product_id.as_str()).collect();
    let requested: Vec<i32> = plan.shortfalls.iter().map(|s| i32::try_from(s.requested).unwrap_or(i32::MAX)).collect();
    let granted: Vec<i32> = plan.shortfalls.iter().map(|s| i32::try_from(s.granted).unwrap_or(i32::MAX)).collect();
    let reasons: Vec<&str> = plan.shortfalls.iter().map(|s| s.reason.as_str()).collect();
    let notice = notice_payload(item_ids.iter().copied());

    if !item_ids.is_empty() {
        tx.execute(WRITE_ITEMS, &[&item_ids, &item_units]).await?;
    }
    tx.execute(DROP_SOURCE, &[&from_id]).await?;
    if !products.is_empty() {
        tx.execute(WRITE_LINES, &[&into_id, &products, &line_items, &quantities]).await?;
    }
    tx.execute(WRITE_TARGET, &[&into_id, &version, &deadline, &count]).await?;
    tx.execute(RECORD, &[&from_id, &into_id, &short_products, &requested, &granted, &reasons]).await?;
    if !notice.is_empty() {
        tx.execute(NOTIFY_STOCK, &[&notice]).await?;
    }
    Ok(Ok(MergeReceipt::made(plan, u64::try_from(version).unwrap_or(0), Timestamp::from_millis(deadline))))
}

/// The shortfalls a merge recorded, read back.
fn shortfalls_of(
    products: Vec<String>,
    requested: Vec<i32>,
    granted: Vec<i32>,
    reasons: Vec<String>,
) -> Result<Vec<Shortfall>, PgError> {
    let bad = |what: &str| PgError::Protocol(format!("stored merge has an invalid {what}"));
    products
        .into_iter()
        .zip(requested)
        .zip(granted)
        .zip(reasons)
        .map(|(((p, r), g), reason)| {
            Ok(Shortfall {
                product_id: ProductId::parse(&p).map_err(|_| bad("product id"))?,
                requested: u32::try_from(r).map_err(|_| bad("quantity"))?,
                granted: u32::try_from(g).map_err(|_| bad("quantity"))?,
                reason: match reason.as_str() {
                    "insufficient_stock" => Shortage::InsufficientStock,
                    "quantity_over_limit" => Shortage::QuantityLimit,
                    "too_many_lines" => Shortage::TooManyLines,
                    other => return Err(bad(&format!("reason {other:?}"))),
                },
            })
        })
        .collect()
}
