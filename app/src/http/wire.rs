//! Wire types: the JSON the HTTP API reads and writes. They are separate from the
//! domain types and convert into them, so a change of representation on either
//! side is a visible, local change.

use std::time::{Duration, UNIX_EPOCH};

use domain::{Cart, Line, Order, StockLevel, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /add-to-cart` body (the tutorial's shape).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddToCartRequest {
    /// The product; one line per product.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", example = "prod-1")]
    pub product_id: String,
    /// The inventory item the units are held from.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", example = "inv-1")]
    pub inventory_id: String,
    /// The line's new quantity (0 removes the line).
    #[schema(minimum = 0, example = 2)]
    pub quantity: u32,
}

/// `POST /add-to-cart` response (the tutorial's shape).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddToCartResponse {
    /// Always `Product added to cart successfully`.
    pub message: String,
    /// The cart's session id (also in the `cart-session-id` header).
    #[serde(rename = "cartSessionId")]
    pub cart_session_id: String,
}

/// `GET /get-cart` response (the tutorial's shape). `message` is absent on the
/// 400 answer to a request without a session header.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GetCartResponse {
    /// `Cart retrieved successfully` or `Cart is empty`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The cart's lines.
    pub data: Vec<LineBody>,
}

/// One cart line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineBody {
    /// The product.
    pub product_id: String,
    /// The inventory item the units are held from.
    pub inventory_id: String,
    /// Units held.
    pub quantity: u32,
}

impl From<&Line> for LineBody {
    fn from(l: &Line) -> Self {
        Self {
            product_id: l.product_id.to_string(),
            inventory_id: l.inventory_id.to_string(),
            quantity: l.quantity.get(),
        }
    }
}

/// A cart.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CartBody {
    /// The cart's session id.
    #[schema(min_length = 36, max_length = 36)]
    pub cart_session_id: String,
    /// When the cart expires and its holds are released (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The lines, ordered by product id.
    pub lines: Vec<LineBody>,
}

impl From<&Cart> for CartBody {
    fn from(c: &Cart) -> Self {
        Self {
            cart_session_id: c.id.to_string(),
            expires_at: rfc3339(c.expires_at),
            lines: c.lines.iter().map(LineBody::from).collect(),
        }
    }
}

/// `PUT /v1/cart/items/{product_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLineRequest {
    /// The inventory item to hold units from.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$", example = "inv-1")]
    pub inventory_id: String,
    /// The line's new quantity; 0 removes the line.
    #[schema(minimum = 0, example = 2)]
    pub quantity: u32,
}

/// An order made by checkout.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderBody {
    /// The order's id.
    #[schema(min_length = 36, max_length = 36)]
    pub order_id: String,
    /// The cart it was made from.
    #[schema(min_length = 36, max_length = 36)]
    pub cart_session_id: String,
    /// The lines sold.
    pub lines: Vec<LineBody>,
}

impl From<&Order> for OrderBody {
    fn from(o: &Order) -> Self {
        Self {
            order_id: o.id.to_string(),
            cart_session_id: o.cart_id.to_string(),
            lines: o.lines.iter().map(LineBody::from).collect(),
        }
    }
}

/// An inventory item's counts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockBody {
    /// The item.
    pub inventory_id: String,
    /// Units free to be held.
    pub available: i64,
    /// Units held by open carts.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
}

impl StockBody {
    /// The counts of `item`.
    #[must_use]
    pub fn new(item: &domain::InventoryId, s: StockLevel) -> Self {
        Self { inventory_id: item.to_string(), available: s.available, reserved: s.reserved, sold: s.sold }
    }
}

/// `PUT /v1/inventory/{inventory_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockRequest {
    /// The new available count.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 100)]
    pub available: u32,
}

/// Every error answer of the versioned API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `insufficient_stock`.
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
    /// With `insufficient_stock`: units free at the time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}

/// `/healthz` and `/readyz` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusBody {
    /// `ok`, `ready` or `unavailable`.
    pub status: String,
}

/// RFC 3339 in UTC with milliseconds.
#[must_use]
pub fn rfc3339(t: Timestamp) -> String {
    let ms = u64::try_from(t.as_millis()).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
