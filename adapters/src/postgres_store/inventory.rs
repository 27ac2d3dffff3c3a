//! [`Inventory`] for [`PgInventory`]: each port method is one round trip
//! (a call of one of the baseline migration's SQL functions, or a statement),
//! except `set_hold`, which joins the group-commit queue ([`super::holds`]).

use domain::merge::MergeCall;
use domain::ports::{HoldReceipt, Inventory, LineChange, MergeReceipt, PortError, Released};
use domain::{
    CartError, CartId, InventoryId, Line, Order, OrderId, ProductId, Quantity, StockCount, StockLevel, Timestamp,
};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use super::error::PgError;
use super::holds::{Batcher, HoldCall, run_batch};
use super::{HoldBatchMode, PgInventory};

/// Column `i` of `row`, as a [`PgError`] when it does not read as `T`.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, PgError> {
    Ok(row.try_get(i)?)
}

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) fn lines_of(products: Vec<String>, items: Vec<String>, quantities: Vec<i32>) -> Result<Vec<Line>, PgError> {
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
            let id: &str = col(row, 0)?;
            let id = InventoryId::parse(id)
                .map_err(|_| PgError::Protocol(format!("stored item has an invalid inventory id {id:?}")))?;
            Ok((id, StockLevel { available: col(row, 1)?, reserved: col(row, 2)?, sold: col(row, 3)? }))
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
    HoldCall {
        cart: cart.as_uuid(),
        product: change.product_id.to_string(),
        line: change.line.as_ref().map(|(item, q)| (item.to_string(), i32::try_from(q.get()).unwrap_or(i32::MAX))),
        deadline: new_deadline.map(ms),
        max_lines: i32::from(max_lines),
        now: ms(now),
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
        let outcomes = run_batch(&self.pool, calls, self.op_timeout, mode, &self.batch_counters).await?;
        Ok(outcomes.into_iter().zip(holds).map(|(outcome, h)| outcome.receipt(h.max_lines)).collect())
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
        let outcome = batcher.submit(call).await.map_err(|e| CartError::Unavailable(PortError::new("postgres", e)))?;
        outcome.receipt(max_lines)
    }

    async fn merge(&self, call: &MergeCall) -> Result<MergeReceipt, CartError> {
        self.merge_carts(call).await
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
        Ok(match col::<Option<i64>>(&row, 1)? {
            None => Released::default(),
            Some(d) => Released { carts: 1, units: u64_of(col(&row, 0)?), deadlines: vec![Timestamp::from_millis(d)] },
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
        match col::<&str>(&row, 0)? {
            "ok" => {
                let id: uuid::Uuid = col(&row, 1)?;
                let created: bool = col(&row, 2)?;
                let products: Option<Vec<String>> = col(&row, 3)?;
                let items: Option<Vec<String>> = col(&row, 4)?;
                let quantities: Option<Vec<i32>> = col(&row, 5)?;
                let lines =
                    lines_of(products.unwrap_or_default(), items.unwrap_or_default(), quantities.unwrap_or_default())?;
                Ok((Order { id: OrderId::from_uuid(id), cart_id: cart, lines }, created))
            }
            "session_not_found" => Err(CartError::SessionNotFound),
            "cart_empty" => Err(CartError::CartEmpty),
            other => Err(PgError::Protocol(format!("cartd_checkout status {other:?}")).into()),
        }
    }

    async fn merged_into(&self, cart: CartId) -> Result<Option<CartId>, PortError> {
        let rows = self.query("select into_cart from cart_merges where from_cart = $1", &[&cart.as_uuid()]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let id: uuid::Uuid = col(row, 0)?;
        Ok(Some(CartId::from_uuid(id).map_err(|_| PgError::Protocol(format!("stored merge target {id}")))?))
    }

    async fn order_of(&self, cart: CartId) -> Result<Option<Order>, PortError> {
        let row = self
            .query_one(
                "select max(o.order_id::text), array_agg(l.product_id order by l.product_id), \
                 array_agg(l.inventory_id order by l.product_id), array_agg(l.quantity order by l.product_id) \
                 from orders o join order_lines l using (cart_id) where o.cart_id = $1",
                &[&cart.as_uuid()],
            )
            .await?;
        let Some(id) = col::<Option<String>>(&row, 0)? else { return Ok(None) };
        let id = uuid::Uuid::parse_str(&id).map_err(|_| PgError::Protocol(format!("stored order id {id:?}")))?;
        let lines = lines_of(col(&row, 1)?, col(&row, 2)?, col(&row, 3)?)?;
        Ok(Some(Order { id: OrderId::from_uuid(id), cart_id: cart, lines }))
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
        let deadlines: Option<Vec<i64>> = col(&row, 2)?;
        Ok(Released {
            carts: u64_of(col(&row, 0)?),
            units: u64_of(col(&row, 1)?),
            deadlines: deadlines.unwrap_or_default().into_iter().map(Timestamp::from_millis).collect(),
        })
    }

    async fn reserved_total(&self) -> Result<i64, PortError> {
        let row = self.query_one("select coalesce(sum(reserved), 0)::bigint from items", &[]).await?;
        Ok(col(&row, 0)?)
    }

    async fn stock(&self, item: &InventoryId) -> Result<Option<StockLevel>, PortError> {
        // An aggregate always returns one row, so a missing item is a NULL.
        let row = self
            .query_one(
                "select max(available), max(reserved), max(sold) from items where inventory_id = $1",
                &[&item.as_str()],
            )
            .await?;
        Ok(match col::<Option<i64>>(&row, 0)? {
            None => None,
            Some(available) => Some(StockLevel {
                available,
                reserved: col::<Option<i64>>(&row, 1)?.unwrap_or(0),
                sold: col::<Option<i64>>(&row, 2)?.unwrap_or(0),
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
        Ok(StockLevel { available: col(&row, 0)?, reserved: col(&row, 1)?, sold: col(&row, 2)? })
    }
}
