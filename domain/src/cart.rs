//! Carts, their lines, orders and stock levels: plain data the ports exchange.

use crate::ids::{CartId, InventoryId, OrderId, ProductId};
use crate::quantity::Quantity;
use crate::time::Timestamp;

/// One line of a cart: `quantity` units of `product_id`, taken from `inventory_id`.
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
