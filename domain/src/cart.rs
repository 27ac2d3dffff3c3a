//! Carts, their lines, orders and stock levels: plain data the ports exchange.

use crate::ids::{CartId, InventoryId, OrderId, ProductId};
use crate::quantity::Quantity;
use crate::time::Timestamp;

/// One line of a cart: `quantity` units of `product_id`, taken from `inventory_id`.
///
/// Invariant: `quantity` is at least 1 (a [`Quantity`]), and a cart or an order has at most one
/// line per product. Proved by `lines_are_one_per_product_in_product_order` and
/// `apply_replaces_a_line_rather_than_adding_to_it` (`test-support/src/contract/sessions.rs`, run for
/// every session store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The product; a cart has at most one line per product.
    pub product_id: ProductId,
    /// Where the held units come from.
    pub inventory_id: InventoryId,
    /// How many units are held.
    pub quantity: Quantity,
}

/// A shopper's cart as the session store keeps it.
///
/// Invariant: lines in product order, one per product, and after every successful change they equal
/// the ledger's holds for the cart (agreement). Proved by the session-store contract
/// (`test-support/src/contract/sessions.rs`, e.g. `apply_ignores_older_versions_of_a_line`) and by
/// `fixed_expiry_keeps_the_invariants` and `sliding_expiry_keeps_the_invariants`
/// (`adapters/tests/props.rs`), which check agreement after every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cart {
    /// The cart's (and session's) id.
    pub id: CartId,
    /// When the session ends and its holds go back to stock.
    pub expires_at: Timestamp,
    /// The lines, ordered by product id.
    pub lines: Vec<Line>,
}

/// The result of checking a cart out: its held units became sold.
///
/// Invariant: one order per cart; a retried checkout returns the same order and sells nothing more.
/// Proved by `checkout_retry_returns_the_same_order` (`test-support/src/contract/inventory.rs`),
/// `checkout_racing_release_has_exactly_one_winner` (`adapters/tests/postgres_store.rs`) and
/// `a_checkout_that_times_out_after_the_commit_is_not_sold_twice` (`adapters/tests/service.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The order's id.
    pub id: OrderId,
    /// The cart it was made from (one order per cart).
    pub cart_id: CartId,
    /// The lines sold, ordered by product id.
    pub lines: Vec<Line>,
}

/// The three counts of one inventory item. `available + reserved + sold` is the
/// stock the operator put in; holds move units between the first two, checkout
/// from the second to the third.
///
/// Invariant (conservation, no oversell): [`StockLevel::total`] stays the stock the operator set
/// and `available` never drops below 0. Proved by
/// `insufficient_stock_changes_nothing_and_reports_available` and
/// `release_returns_units_exactly_once` (`test-support/src/contract/inventory.rs`),
/// `two_hundred_carts_racing_for_fifty_units_hold_exactly_fifty`
/// (`adapters/tests/postgres_store.rs`) and the property tests of `adapters/tests/props.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StockLevel {
    /// Units free to be held.
    pub available: i64,
    /// Units held by open carts.
    pub reserved: i64,
    /// Units sold by checkout.
    pub sold: i64,
}

impl StockLevel {
    /// `available + reserved + sold`.
    #[must_use]
    pub fn total(&self) -> i64 {
        self.available + self.reserved + self.sold
    }
}
