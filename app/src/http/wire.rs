//! Wire types: the JSON the HTTP API reads and writes. They are separate from the
//! domain types and convert into them, so a change of representation on either
//! side is a visible, local change.

use std::time::{Duration, UNIX_EPOCH};

use domain::{Cart, Line, Order, StockLevel, Timestamp};
use serde::de::{self, Deserializer, Unexpected, Visitor};
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
    /// The line's new quantity (0 removes the line), at most `limits.max_quantity`
    /// (100 unless configured otherwise).
    #[schema(minimum = 0, maximum = 100, example = 2)]
    #[serde(deserialize_with = "integer_u32")]
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
    /// The line's new quantity; 0 removes the line. At most `limits.max_quantity`
    /// (100 unless configured otherwise).
    #[schema(minimum = 0, maximum = 100, example = 2)]
    #[serde(deserialize_with = "integer_u32")]
    pub quantity: u32,
}

/// How quantities of a product in both carts combine in a merge.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MergeStrategyBody {
    /// The two quantities added. The default.
    #[default]
    Sum,
    /// The larger of the two.
    Max,
}

impl From<MergeStrategyBody> for domain::merge::MergeStrategy {
    fn from(s: MergeStrategyBody) -> Self {
        match s {
            MergeStrategyBody::Sum => Self::Sum,
            MergeStrategyBody::Max => Self::Max,
        }
    }
}

/// `POST /v1/cart/merge` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The cart to merge into the one named by the `cart-session-id` header
    /// (a bearer secret like the header: never logged).
    #[schema(
        min_length = 36,
        max_length = 36,
        pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
        example = "0f6b3b84-5d1c-4e0f-9a7b-2c3d4e5f6a7c"
    )]
    pub from_cart_session_id: String,
    /// `sum` (the default) or `max`.
    #[serde(default)]
    pub strategy: MergeStrategyBody,
}

/// A line of a merge that got less than the strategy asked for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShortfallBody {
    /// The product.
    pub product_id: String,
    /// The quantity the strategy asked for.
    pub requested: u32,
    /// The quantity the merged cart holds (0: the line was not added).
    pub granted: u32,
    /// `insufficient_stock`, `quantity_over_limit` or `too_many_lines`.
    #[schema(example = "insufficient_stock")]
    pub reason: String,
}

/// The merged cart and what it could not take.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MergeBody {
    /// The merged cart's session id (the target's).
    #[schema(min_length = 36, max_length = 36)]
    pub cart_session_id: String,
    /// When the cart expires and its holds are released (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The lines, ordered by product id.
    pub lines: Vec<LineBody>,
    /// Lines that got less than asked, ordered by product id.
    pub shortfalls: Vec<ShortfallBody>,
    /// `true` when this answers a retry of a merge made earlier (nothing moved now).
    pub replayed: bool,
}

impl From<&domain::MergeResult> for MergeBody {
    fn from(m: &domain::MergeResult) -> Self {
        Self {
            cart_session_id: m.cart.id.to_string(),
            expires_at: rfc3339(m.cart.expires_at),
            lines: m.cart.lines.iter().map(LineBody::from).collect(),
            shortfalls: m
                .shortfalls
                .iter()
                .map(|s| ShortfallBody {
                    product_id: s.product_id.to_string(),
                    requested: s.requested,
                    granted: s.granted,
                    reason: s.reason.as_str().to_owned(),
                })
                .collect(),
            replayed: m.replayed,
        }
    }
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

/// `GET /v1/inventory` answer: one page of items.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockPage {
    /// The items, in `inventory_id` byte order.
    pub items: Vec<StockBody>,
    /// Pass as `cursor` to get the next page; absent on the last page (and
    /// with `ids`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/inventory` query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockQuery {
    /// Page size.
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Comma-separated ids.
    pub ids: Option<String>,
}

/// `GET /v1/admin/limits` query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsQuery {
    /// The item whose top holders to list.
    pub inventory_id: Option<String>,
    /// How many top holders (1-100, default 10).
    pub top: Option<String>,
}

/// The client quotas in force (`null`: off).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaPolicyBody {
    /// Carts one client may open per minute.
    pub carts_per_minute: Option<u32>,
    /// Carts one client may have open at once.
    pub open_carts: Option<u32>,
    /// Units of one item one client may hold, absolute.
    pub held_units: Option<u32>,
    /// The same, as a percentage of the item's stock.
    pub held_share_percent: Option<u32>,
    /// The share quota never caps below this many units.
    pub held_share_floor: u32,
}

/// A client refused by a quota within the last five minutes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefusedClientBody {
    /// The client (an address, or an IPv6 block).
    pub client: String,
    /// `carts_per_minute`, `open_carts` or `held_units`.
    pub limit: String,
}

/// One client's units of the item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HolderBody {
    /// The client.
    pub client: String,
    /// Units its live carts hold of the item.
    pub held: u64,
}

/// The top holders of one item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemHoldersBody {
    /// The item.
    pub inventory_id: String,
    /// Its stock: available + reserved + sold.
    pub stock: i64,
    /// The most one client may hold of it now (`null`: no hold quota).
    pub cap: Option<u32>,
    /// The clients holding most of it, most first.
    pub top_holders: Vec<HolderBody>,
}

/// `GET /v1/admin/limits`: what an operator watches during a sale.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitsBody {
    /// The quotas in force.
    pub policy: QuotaPolicyBody,
    /// Clients refused lately, most recent first.
    pub refused: Vec<RefusedClientBody>,
    /// With `inventory_id`: its top holders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemHoldersBody>,
}

/// `PUT /v1/inventory/{inventory_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockRequest {
    /// The new available count.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 100)]
    #[serde(deserialize_with = "integer_u32")]
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
    /// With `hold_limit_reached`: units of the item this cart may still hold
    /// (what the client's other carts leave of its quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_hold: Option<u32>,
}

/// `/healthz` and `/readyz` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusBody {
    /// `ok`, `ready` or `unavailable`.
    pub status: String,
}

/// Deserializes a `u32` from any JSON number with an integral value.
///
/// The OpenAPI document declares these fields `integer`, and JSON Schema counts
/// `2.0` (or `1e3`) as an integer, so a client validating against the document
/// may send one: it means the same as `2`. Fractions, negatives, values beyond
/// `u32` and non-numbers are still errors (400 `invalid_request`).
fn integer_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct IntegerU32;

    impl Visitor<'_> for IntegerU32 {
        type Value = u32;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative integer that fits in 32 bits")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
            if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                // Integral and in range, so the conversion is exact.
                Ok(v as u32)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    deserializer.deserialize_u32(IntegerU32)
}

/// The answers read most often, written straight from the domain's cart:
/// the same JSON as [`CartBody`] and [`GetCartResponse`] (which the OpenAPI
/// document describes, and `views_serialise_as_the_documented_bodies`
/// compares), without copying every id into a `String` first and without a
/// serializer: product and inventory ids are `[A-Za-z0-9._:-]` by their type's
/// invariant, so they need no JSON escaping, which was the largest single
/// cost of writing a cart with `serde_json` (6% of a get-cart's instructions).
pub mod view {
    use std::io::Write as _;

    use axum::response::{IntoResponse, Response};
    use domain::{Cart, Line};
    use http::{HeaderValue, header};

    /// A [`super::CartBody`], as a JSON answer.
    pub struct CartView<'a>(pub &'a Cart);

    /// A [`super::GetCartResponse`] with the cart's lines (the tutorial's
    /// `GET /get-cart` of a cart that has some), as a JSON answer.
    pub struct TutorialCartView<'a>(pub &'a Cart);

    impl CartView<'_> {
        /// The JSON text.
        #[must_use]
        pub fn to_vec(&self) -> Vec<u8> {
            let cart = self.0;
            let mut out = Vec::with_capacity(96 + 96 * cart.lines.len());
            let mut id = uuid::Uuid::encode_buffer();
            let _ = write!(
                out,
                r#"{{"cart_session_id":"{}","expires_at":"{}","lines":"#,
                cart.id.as_uuid().hyphenated().encode_lower(&mut id),
                super::rfc3339_display(cart.expires_at)
            );
            lines(&mut out, &cart.lines);
            out.push(b'}');
            out
        }
    }

    impl TutorialCartView<'_> {
        /// The JSON text.
        #[must_use]
        pub fn to_vec(&self) -> Vec<u8> {
            let mut out = Vec::with_capacity(64 + 96 * self.0.lines.len());
            out.extend_from_slice(br#"{"message":"Cart retrieved successfully","data":"#);
            lines(&mut out, &self.0.lines);
            out.push(b'}');
            out
        }
    }

    fn lines(out: &mut Vec<u8>, lines: &[Line]) {
        out.push(b'[');
        for (n, line) in lines.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let (product, item) = (line.product_id.as_str(), line.inventory_id.as_str());
            debug_assert!(!product.contains(['"', '\\']) && !item.contains(['"', '\\']));
            let _ = write!(
                out,
                r#"{{"product_id":"{product}","inventory_id":"{item}","quantity":{}}}"#,
                line.quantity.get()
            );
        }
        out.push(b']');
    }

    fn json(body: Vec<u8>) -> Response {
        let mut response = body.into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    impl IntoResponse for CartView<'_> {
        fn into_response(self) -> Response {
            json(self.to_vec())
        }
    }

    impl IntoResponse for TutorialCartView<'_> {
        fn into_response(self) -> Response {
            json(self.to_vec())
        }
    }
}

/// RFC 3339 in UTC with milliseconds, as something to write.
fn rfc3339_display(t: Timestamp) -> humantime::Rfc3339Timestamp {
    let ms = u64::try_from(t.as_millis()).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms))
}

/// RFC 3339 in UTC with milliseconds.
#[must_use]
pub fn rfc3339(t: Timestamp) -> String {
    rfc3339_display(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(json: &str) -> Result<u32, serde_json::Error> {
        serde_json::from_str::<SetStockRequest>(&format!(r#"{{"available": {json}}}"#)).map(|r| r.available)
    }

    #[test]
    fn integral_numbers_are_integers_whatever_their_spelling() {
        for (json, want) in [("0", 0), ("7", 7), ("7.0", 7), ("1e3", 1000), ("-0.0", 0), ("4294967295", u32::MAX)] {
            assert_eq!(available(json).unwrap(), want, "{json}");
        }
    }

    #[test]
    fn fractions_negatives_huge_numbers_and_non_numbers_are_refused() {
        for json in
            ["1.5", "-1", "-1.0", "4294967296", "4294967296.0", "1e30", "18446744073709551616", "\"1\"", "null", "true"]
        {
            assert!(available(json).is_err(), "{json} was accepted");
        }
    }

    #[test]
    fn views_serialise_as_the_documented_bodies() {
        use domain::{CartId, InventoryId, ProductId, Quantity};
        let line = |p: &str, i: &str, q: u32| Line {
            product_id: ProductId::parse(p).unwrap(),
            inventory_id: InventoryId::parse(i).unwrap(),
            quantity: Quantity::new(q).unwrap(),
        };
        let carts = [
            Cart { id: CartId::random(), expires_at: Timestamp::from_millis(0), lines: vec![] },
            Cart {
                id: CartId::random(),
                expires_at: Timestamp::from_millis(1_764_460_800_123),
                lines: vec![line("p1", "inv-1", 1), line("A.b_c:d-9", "x", 100)],
            },
            Cart {
                id: CartId::random(),
                expires_at: Timestamp::from_millis(253_402_300_799_999),
                lines: (0..50).map(|n| line(&format!("{n:0>64}"), &format!("inv-{n}"), n + 1)).collect(),
            },
        ];
        for cart in &carts {
            assert_eq!(
                String::from_utf8(view::CartView(cart).to_vec()).unwrap(),
                serde_json::to_string(&CartBody::from(cart)).unwrap()
            );
            let tutorial = GetCartResponse {
                message: Some("Cart retrieved successfully".to_owned()),
                data: cart.lines.iter().map(LineBody::from).collect(),
            };
            assert_eq!(
                String::from_utf8(view::TutorialCartView(cart).to_vec()).unwrap(),
                serde_json::to_string(&tutorial).unwrap()
            );
        }
    }
}
