//! Stock notices: every transaction that changes counts tells every
//! instance's [`StockListener`](super::StockListener) which items changed, on
//! a channel per schema. The notice is sent inside the transaction, so it is
//! delivered at commit and never for a rollback.

/// Sends a notice on the current schema's stock channel (see [`stock_channel`]).
pub(super) const NOTIFY_STOCK: &str = "select pg_notify('cartd_stock_' || current_schema(), $1::text)";

/// The notice payload for "re-read every item" (a release does not say which
/// items it touched).
pub(super) const ALL_ITEMS: &str = "*";

/// A notice's payload must stay under PostgreSQL's 8000 bytes.
const MAX_NOTICE_BYTES: usize = 7000;

/// The payload naming `items`: comma-separated ids, or [`ALL_ITEMS`] when
/// they would not fit.
pub(super) fn notice_payload<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for item in items {
        if out.len() + item.len() + 1 > MAX_NOTICE_BYTES {
            return ALL_ITEMS.to_owned();
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

/// The channel stock changes are announced on for `schema` (`None`: the
/// default `public`): each deployment (or test) sharing a database hears only
/// its own.
#[must_use]
pub fn stock_channel(schema: Option<&str>) -> String {
    format!("cartd_stock_{}", schema.unwrap_or("public"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_become_everything() {
        let many: Vec<String> = (0..2000).map(|n| format!("item-{n}")).collect();
        assert_eq!(notice_payload(many.iter().map(String::as_str)), "*");
        assert_eq!(notice_payload(["a", "b"]), "a,b");
        assert_eq!(notice_payload([]), "");
    }
}
