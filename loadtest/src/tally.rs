//! The units the service confirmed as sold (`201` checkouts, by inventory id),
//! added up across users, so the conservation check can compare them with
//! each item's `sold` count: a sale confirmed but not counted, or counted but
//! never confirmed, shows as a difference.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use goose::prelude::TransactionError;
use serde_json::Value;

static SOLD: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Adds the lines of an order (the body of a `201` checkout).
///
/// # Errors
/// When the order has no `lines` array of `{inventory_id, quantity}`.
pub fn record_order(order: &Value) -> Result<(), Box<TransactionError>> {
    let bad = || Box::new(TransactionError::Custom(format!("checkout: not an order with lines: {order}")));
    let lines = order.get("lines").and_then(Value::as_array).ok_or_else(bad)?;
    let mut parsed = Vec::with_capacity(lines.len());
    for line in lines {
        let item = line.get("inventory_id").and_then(Value::as_str).ok_or_else(bad)?;
        let quantity = line.get("quantity").and_then(Value::as_u64).ok_or_else(bad)?;
        parsed.push((item.to_owned(), quantity));
    }
    let mut sold = SOLD.lock().unwrap_or_else(PoisonError::into_inner);
    for (item, quantity) in parsed {
        *sold.entry(item).or_default() += quantity;
    }
    Ok(())
}

/// Units confirmed sold so far, by inventory id.
pub fn sold() -> BTreeMap<String, u64> {
    SOLD.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Carts that answered `404 session_not_found` to a request sent clearly
/// before the deadline the server had stated for them: how many, and the
/// first few as text.
static EARLY_GONE: Mutex<(u64, Vec<String>)> = Mutex::new((0, Vec::new()));

/// Records a cart that vanished before its deadline.
pub fn record_early_gone(request: &str, sent_at: SystemTime, deadline: SystemTime) {
    let early = deadline.duration_since(sent_at).unwrap_or_default();
    let mut seen = EARLY_GONE.lock().unwrap_or_else(PoisonError::into_inner);
    seen.0 += 1;
    if seen.1.len() < 10 {
        seen.1.push(format!("{request}: 404 for a request sent {} ms before the deadline", early.as_millis()));
    }
}

/// The carts that vanished before their deadline: how many, and the first few.
pub fn early_gone() -> (u64, Vec<String>) {
    EARLY_GONE.lock().unwrap_or_else(PoisonError::into_inner).clone()
}
