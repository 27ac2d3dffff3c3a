//! The reference path of a batch: `cartd_set_hold_batch`, the PL/pgSQL loop
//! of `cartd_set_hold` calls in the baseline migration. The planned path
//! falls back to it for a batch that meets a cart past its deadline, and is
//! tested against it.

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{HoldCall, HoldOutcome};
use crate::postgres_store::error::PgError;

/// `cartd_set_hold` once per call, in one SQL function.
pub(super) const REFERENCE_SQL: &str = "select o_status, o_version, o_deadline_ms, o_available, o_taken, o_released \
                                        from cartd_set_hold_batch($1, $2, $3, $4, $5, $6, $7)";

/// The SQL function's arguments, column by column.
pub(super) struct ReferenceParams<'a> {
    carts: Vec<Uuid>,
    products: Vec<&'a str>,
    items: Vec<Option<&'a str>>,
    quantities: Vec<Option<i32>>,
    deadlines: Vec<Option<i64>>,
    max_lines: Vec<i32>,
    nows: Vec<i64>,
}

impl<'a> ReferenceParams<'a> {
    pub(super) fn of(calls: &'a [HoldCall]) -> Self {
        Self {
            carts: calls.iter().map(|c| c.cart).collect(),
            products: calls.iter().map(|c| c.product.as_str()).collect(),
            items: calls.iter().map(HoldCall::item).collect(),
            quantities: calls.iter().map(|c| c.line.as_ref().map(|(_, q)| *q)).collect(),
            deadlines: calls.iter().map(|c| c.deadline).collect(),
            max_lines: calls.iter().map(|c| c.max_lines).collect(),
            nows: calls.iter().map(|c| c.now).collect(),
        }
    }

    pub(super) fn as_params(&self) -> [&(dyn ToSql + Sync); 7] {
        [&self.carts, &self.products, &self.items, &self.quantities, &self.deadlines, &self.max_lines, &self.nows]
    }
}

/// The function's rows as outcomes: its status strings are read here, once.
pub(super) fn read_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<HoldOutcome>, PgError> {
    rows.iter()
        .map(|r| {
            HoldOutcome::from_sql(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            )
        })
        .collect()
}
