//! Domain values from literals known to be valid, for tests to read like the
//! behaviour they check.

use std::time::Duration;

use domain::ports::{HoldReceipt, LineChange};
use domain::{InventoryId, Line, ProductId, Quantity, Timestamp};

/// 2023-11-14T22:13:20Z: where the manual clocks of the in-memory tests start
/// (any instant works, tests only use offsets from it).
pub const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// A product id from a literal known to be valid.
///
/// # Panics
///
/// When `s` is not a valid product id.
#[must_use]
pub fn product(s: &str) -> ProductId {
    ProductId::parse(s).expect("valid product id")
}

/// `product-<n>`: the n-th of many products (benchmarks, load).
#[must_use]
pub fn numbered_product(n: usize) -> ProductId {
    product(&format!("product-{n}"))
}

/// An inventory id from a literal known to be valid.
///
/// # Panics
///
/// When `s` is not a valid inventory id.
#[must_use]
pub fn item(s: &str) -> InventoryId {
    InventoryId::parse(s).expect("valid inventory id")
}

/// A quantity known to be valid.
///
/// # Panics
///
/// When `n` is not a valid quantity.
#[must_use]
pub fn qty(n: u32) -> Quantity {
    Quantity::new(n).expect("valid quantity")
}

/// Change: set `p`'s line to `n` units of `i`.
#[must_use]
pub fn set(p: &str, i: &str, n: u32) -> LineChange {
    LineChange { product_id: product(p), line: Some((item(i), qty(n))) }
}

/// Change: remove `p`'s line.
#[must_use]
pub fn remove(p: &str) -> LineChange {
    LineChange { product_id: product(p), line: None }
}

/// The cart line `n` x `i` for product `p`.
#[must_use]
pub fn line(p: &str, i: &str, n: u32) -> Line {
    Line { product_id: product(p), inventory_id: item(i), quantity: qty(n) }
}

/// A receipt as the ledger would hand it out, having moved no units.
#[must_use]
pub fn receipt(version: u64, expires_at: Timestamp) -> HoldReceipt {
    HoldReceipt { version, expires_at, taken: 0, released: 0 }
}

/// `t0` plus `s` seconds.
#[must_use]
pub fn secs(t0: Timestamp, s: u64) -> Timestamp {
    t0.plus(Duration::from_secs(s))
}

/// `t0` plus `ms` milliseconds.
#[must_use]
pub fn millis(t0: Timestamp, ms: u64) -> Timestamp {
    t0.plus(Duration::from_millis(ms))
}
