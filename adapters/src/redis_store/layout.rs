//! How a session is spelled in Redis: its key, its fields and their values (see
//! the parent module's table), and reading a hash back into a [`Cart`].
//!
//! Parsing never panics: a field that does not parse is skipped with a
//! warning, so one bad field (written by hand, or by a future version) cannot
//! make a cart unreadable.

use domain::idempotency::{IdempotencyKey, KeyRecord, KeyScope};
use domain::{Cart, CartId, InventoryId, Line, ProductId, Quantity, Timestamp};
use uuid::Uuid;

/// The field holding the session's deadline. `@` is outside the product-id
/// alphabet, so it cannot collide with a line.
pub(super) const DEADLINE_FIELD: &str = "@";

/// Marks a product id stored as the 16 bytes of a UUID.
const PACKED_UUID: u8 = b'#';

/// The session's hash: `{prefix}cart:{<uuid>}`.
pub(super) fn session_key(prefix: &str, id: CartId) -> String {
    format!("{prefix}cart:{{{id}}}")
}

/// The session id of `key`, if it is a session key of the store with `prefix`.
pub(super) fn session_of_key(prefix: &str, key: &[u8]) -> Option<CartId> {
    let key = std::str::from_utf8(key).ok()?;
    let tagged = key.strip_prefix(prefix)?.strip_prefix("cart:{")?.strip_suffix('}')?;
    CartId::parse(tagged).ok()
}

/// The key that keeps an idempotency key's record:
/// `{prefix}idem:<scope>:<the key in hex>` (hex, so that a `{` in a client's
/// key can never act as a Redis Cluster hash tag).
pub(super) fn idempotency_key(prefix: &str, scope: KeyScope, key: &IdempotencyKey) -> String {
    let hex: String = key.as_str().bytes().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}idem:{}:{hex}", scope.as_str())
}

/// A record as kept: `<until> <cart> <0|1> <fingerprint>` (until: when it
/// ends, ms since the epoch; 1: done).
pub(super) fn record_value(record: &KeyRecord, until: Timestamp) -> String {
    format!("{} {} {} {}", until.as_millis(), record.cart, u8::from(record.done), record.fingerprint)
}

/// A kept record read back.
pub(super) fn record_of(value: &str) -> Option<KeyRecord> {
    let mut parts = value.splitn(4, ' ');
    let _until = parts.next()?;
    let cart = CartId::parse(parts.next()?).ok()?;
    let done = match parts.next()? {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    Some(KeyRecord { cart, done, fingerprint: parts.next()?.to_owned() })
}

/// The field name of a product's line.
pub(super) fn product_field(product: &ProductId) -> Vec<u8> {
    let s = product.as_str();
    if let Ok(u) = Uuid::try_parse(s) {
        let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
        // Only the canonical spelling is packed, so unpacking gives back the
        // very same id.
        if u.hyphenated().encode_lower(&mut canonical).as_bytes() == s.as_bytes() {
            let mut field = Vec::with_capacity(17);
            field.push(PACKED_UUID);
            field.extend_from_slice(u.as_bytes());
            return field;
        }
    }
    s.as_bytes().to_vec()
}

/// The product a field names, or `None` if it names none.
fn product_of_field(field: &[u8]) -> Option<ProductId> {
    match field.split_first() {
        Some((&PACKED_UUID, bytes)) => {
            let u = Uuid::from_slice(bytes).ok()?;
            ProductId::parse(&u.hyphenated().to_string()).ok()
        }
        _ => ProductId::parse(std::str::from_utf8(field).ok()?).ok(),
    }
}

/// The value of a line's field: `"<version> <quantity> <inventory_id>"`, or
/// `"<version>"` for a removed line.
pub(super) fn line_value(version: u64, line: Option<&(InventoryId, Quantity)>) -> String {
    match line {
        Some((inv, q)) => format!("{version} {q} {inv}"),
        None => version.to_string(),
    }
}

/// A line's field value, parsed: `Some(line)` or `None` for a tombstone.
fn parse_line_value(value: &[u8]) -> Option<Option<(InventoryId, Quantity)>> {
    let value = std::str::from_utf8(value).ok()?;
    let mut parts = value.split(' ');
    parts.next()?.parse::<u64>().ok()?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some(None),
        (Some(q), Some(inv), None) => {
            let q = Quantity::new(q.parse().ok()?).ok()?;
            Some(Some((InventoryId::parse(inv).ok()?, q)))
        }
        _ => None,
    }
}

/// The cart in a session hash read at `now` (`fields` is `HGETALL`'s flat
/// list), or `None` when there is no hash, it has no readable deadline, or its
/// deadline is at or before `now`.
pub(super) fn cart_from_hash(id: CartId, fields: &[Vec<u8>], now: Option<Timestamp>) -> Option<Cart> {
    if fields.is_empty() {
        return None;
    }
    let mut expires_at = None;
    let mut lines = Vec::new();
    for pair in fields.chunks(2) {
        let [field, value] = pair else {
            tracing::warn!(cart = %id, "session hash reply has an odd number of items; last one skipped");
            continue;
        };
        if field.as_slice() == DEADLINE_FIELD.as_bytes() {
            expires_at =
                std::str::from_utf8(value).ok().and_then(|v| v.parse::<i64>().ok()).map(Timestamp::from_millis);
            if expires_at.is_none() {
                tracing::warn!(cart = %id, value = %String::from_utf8_lossy(value), "unparseable session deadline");
            }
            continue;
        }
        match (product_of_field(field), parse_line_value(value)) {
            (Some(product_id), Some(Some((inventory_id, quantity)))) => {
                lines.push(Line { product_id, inventory_id, quantity });
            }
            (Some(_), Some(None)) => {}
            _ => tracing::warn!(
                cart = %id,
                field = %String::from_utf8_lossy(field).escape_debug(),
                value = %String::from_utf8_lossy(value).escape_debug(),
                "skipping unparseable cart field"
            ),
        }
    }
    let Some(expires_at) = expires_at else {
        tracing::warn!(cart = %id, "session hash without a readable deadline; treated as absent");
        return None;
    };
    if now.is_some_and(|now| expires_at <= now) {
        return None;
    }
    lines.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    Some(Cart { id, expires_at, lines })
}
