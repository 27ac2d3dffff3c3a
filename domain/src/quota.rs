//! Client quotas: how much of the stock one client may tie up (issue 14,
//! "denial of inventory", OWASP OAT-021).
//!
//! A bot that opens many carts and fills them makes an item look sold out to
//! everyone until its holds expire. The size limits of a cart ([`crate::Limits`])
//! do not stop it, since it can open any number of carts; these quotas count
//! per *client* (an address, or an address block for IPv6, decided by the HTTP
//! layer) across all its carts: carts opened per minute, carts open at once,
//! and units of one item held at once (absolute, and as a share of the item's
//! stock). This module holds the values and the one rule that turns them into
//! a cap ([`QuotaPolicy::hold_cap`]); the [`Quotas`](crate::ports::Quotas) port
//! keeps the counts (in process, or in Redis across instances), and every
//! count carries the deadline of the cart it counts, so it ends with the cart
//! even when no event says so.

use std::fmt;

/// Who a quota counts: an opaque key the HTTP layer derives from the client's
/// address (e.g. `127.0.1.7`, or `2001:db8:1:2::/64`).
///
/// Invariant: 1-64 characters, printable ASCII without spaces or braces (it
/// goes into Redis keys and their hash tags). Proved by
/// `client_keys_reject_what_would_break_a_redis_key` (below).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(String);

/// A client key that is not 1-64 printable ASCII characters without braces.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a client key must be 1-64 printable ASCII characters without spaces or braces")]
pub struct ClientKeyError;

impl ClientKey {
    /// Longest key.
    pub const MAX_LEN: usize = 64;

    /// Validates `s`.
    ///
    /// # Errors
    /// [`ClientKeyError`].
    pub fn new(s: impl Into<String>) -> Result<Self, ClientKeyError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if ok { Ok(Self(s)) } else { Err(ClientKeyError) }
    }

    /// The key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which quota refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Carts opened per client per minute.
    CartsPerMinute,
    /// Carts open at once per client.
    OpenCarts,
    /// Units of one item held at once by one client.
    HeldUnits,
}

impl LimitKind {
    /// Every kind, for metrics and tests.
    pub const ALL: [LimitKind; 3] = [LimitKind::CartsPerMinute, LimitKind::OpenCarts, LimitKind::HeldUnits];

    /// The name used in configuration, metrics labels and the admin answer.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::CartsPerMinute => "carts_per_minute",
            LimitKind::OpenCarts => "open_carts",
            LimitKind::HeldUnits => "held_units",
        }
    }
}

/// The quotas an operator set; `None` turns one off.
///
/// Invariant: `held_share_percent` is 1 ..= 100 and every other value at least
/// 1 (checked on construction). Proved by `quota_values_are_range_checked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QuotaPolicy {
    carts_per_minute: Option<u32>,
    open_carts: Option<u32>,
    held_units: Option<u32>,
    held_share_percent: Option<u32>,
    held_share_floor: u32,
}

/// A quota value out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    /// A count of 0 (turn the quota off instead).
    #[error("{0} must be at least 1 (leave it out to turn it off)")]
    Zero(&'static str),
    /// A share above 100 %.
    #[error("held_share_percent must be between 1 and 100")]
    Share,
}

impl QuotaPolicy {
    /// No quota at all.
    pub const OFF: QuotaPolicy = QuotaPolicy {
        carts_per_minute: None,
        open_carts: None,
        held_units: None,
        held_share_percent: None,
        held_share_floor: 0,
    };

    /// Validates the values.
    ///
    /// # Errors
    /// [`QuotaError`].
    pub fn new(
        carts_per_minute: Option<u32>,
        open_carts: Option<u32>,
        held_units: Option<u32>,
        held_share_percent: Option<u32>,
    ) -> Result<Self, QuotaError> {
        for (name, v) in
            [("carts_per_minute", carts_per_minute), ("open_carts", open_carts), ("held_units", held_units)]
        {
            if v == Some(0) {
                return Err(QuotaError::Zero(name));
            }
        }
        if held_share_percent.is_some_and(|p| p == 0 || p > 100) {
            return Err(QuotaError::Share);
        }
        Ok(Self { carts_per_minute, open_carts, held_units, held_share_percent, held_share_floor: 0 })
    }

    /// The share quota never caps below `floor` units (what one shopper
    /// normally buys of an item, so that a share of a small item does not
    /// refuse them); the absolute `held_units` still applies.
    #[must_use]
    pub fn with_share_floor(mut self, floor: u32) -> Self {
        self.held_share_floor = floor;
        self
    }

    /// The floor of the share quota.
    #[must_use]
    pub fn held_share_floor(&self) -> u32 {
        self.held_share_floor
    }

    /// Carts a client may open per minute.
    #[must_use]
    pub fn carts_per_minute(&self) -> Option<u32> {
        self.carts_per_minute
    }

    /// Carts a client may have open at once.
    #[must_use]
    pub fn open_carts(&self) -> Option<u32> {
        self.open_carts
    }

    /// Units of one item a client may hold at once, absolute.
    #[must_use]
    pub fn held_units(&self) -> Option<u32> {
        self.held_units
    }

    /// Units of one item a client may hold at once, as a share of its stock.
    #[must_use]
    pub fn held_share_percent(&self) -> Option<u32> {
        self.held_share_percent
    }

    /// Whether any quota on carts (opened per minute, open at once) is on.
    #[must_use]
    pub fn limits_carts(&self) -> bool {
        self.carts_per_minute.is_some() || self.open_carts.is_some()
    }

    /// Whether a quota on held units is on.
    #[must_use]
    pub fn limits_holds(&self) -> bool {
        self.held_units.is_some() || self.held_share_percent.is_some()
    }

    /// Whether the share quota needs the item's stock.
    #[must_use]
    pub fn needs_stock(&self) -> bool {
        self.held_share_percent.is_some()
    }

    /// **The hold rule of this module**: the most units of one item whose
    /// stock (`available + reserved + sold`) is `stock` one client may hold
    /// across its carts; `None` when no hold quota is on. The share is
    /// rounded up and never below the floor ([`QuotaPolicy::with_share_floor`])
    /// nor 1, so a share of a small item does not refuse an ordinary
    /// purchase, nor make the item unsellable.
    #[must_use]
    pub fn hold_cap(&self, stock: u64) -> Option<u32> {
        let share = self.held_share_percent.map(|p| {
            let units = (stock * u64::from(p)).div_ceil(100).max(u64::from(self.held_share_floor)).max(1);
            u32::try_from(units).unwrap_or(u32::MAX)
        });
        match (self.held_units, share) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What [`Quotas::admit_cart`](crate::ports::Quotas::admit_cart) decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartAdmission {
    /// The cart is counted.
    Admitted,
    /// Over `limit`; nothing was counted. A retry after `retry_after_secs` may pass.
    Refused {
        /// Which quota.
        limit: LimitKind,
        /// Seconds until a slot frees (at least 1).
        retry_after_secs: u32,
    },
}

/// What [`Quotas::admit_hold`](crate::ports::Quotas::admit_hold) decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldAdmission {
    /// The cart's units of the item are now counted as asked; `previous` is
    /// what was counted for it before (to restore when the hold then fails).
    Admitted {
        /// Units counted for this cart and item before.
        previous: u32,
    },
    /// The client's carts would hold more than the cap; nothing was counted.
    Refused {
        /// Units this cart may still hold of the item (what its other carts
        /// leave of the cap).
        may_hold: u32,
        /// Seconds until the earliest of its other carts ends (at least 1).
        retry_after_secs: u32,
        /// Units counted for this cart and item now (so the caller can tell
        /// whether the stock alone would refuse the change too).
        holding: u32,
    },
}

/// One client's count, for the admin view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCount {
    /// The client.
    pub client: ClientKey,
    /// Its count (carts open, or units of the item held).
    pub count: u64,
}

/// What an operator sees during a sale: who was refused lately and who holds
/// most of an item.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Standing {
    /// Clients refused by a quota within the last [`RECENT_REFUSALS_SECS`], with
    /// the quota, most recent first.
    pub refused: Vec<(ClientKey, LimitKind)>,
    /// The clients holding most units of the item asked about, most first.
    pub top_holders: Vec<ClientCount>,
}

/// How long a refusal keeps a client in [`Standing::refused`].
pub const RECENT_REFUSALS_SECS: u32 = 300;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_reject_what_would_break_a_redis_key() {
        assert!(ClientKey::new("127.0.0.1").is_ok());
        assert!(ClientKey::new("2001:db8::/64").is_ok());
        for bad in ["", "a b", "{x}", "a}", &"x".repeat(65), "é"] {
            assert_eq!(ClientKey::new(bad), Err(ClientKeyError), "{bad:?}");
        }
    }

    #[test]
    fn quota_values_are_range_checked() {
        assert_eq!(QuotaPolicy::new(Some(0), None, None, None), Err(QuotaError::Zero("carts_per_minute")));
        assert_eq!(QuotaPolicy::new(None, Some(0), None, None), Err(QuotaError::Zero("open_carts")));
        assert_eq!(QuotaPolicy::new(None, None, Some(0), None), Err(QuotaError::Zero("held_units")));
        assert_eq!(QuotaPolicy::new(None, None, None, Some(0)), Err(QuotaError::Share));
        assert_eq!(QuotaPolicy::new(None, None, None, Some(101)), Err(QuotaError::Share));
        assert!(QuotaPolicy::new(Some(1), Some(1), Some(1), Some(100)).is_ok());
    }

    #[test]
    fn the_cap_is_the_smaller_of_the_absolute_and_the_share_rounded_up() {
        let p = QuotaPolicy::new(None, None, Some(40), Some(5)).unwrap();
        assert_eq!(p.hold_cap(500), Some(25));
        assert_eq!(p.hold_cap(10_000), Some(40));
        assert_eq!(p.hold_cap(501), Some(26), "5 % of 501 is 25.05: rounded up");
        assert_eq!(p.hold_cap(3), Some(1), "a small item stays sellable");
        assert_eq!(p.hold_cap(0), Some(1));
        let share_only = QuotaPolicy::new(None, None, None, Some(5)).unwrap();
        assert_eq!(share_only.hold_cap(500), Some(25));
        let abs_only = QuotaPolicy::new(None, None, Some(7), None).unwrap();
        assert_eq!(abs_only.hold_cap(500), Some(7));
        assert_eq!(QuotaPolicy::OFF.hold_cap(500), None);
        let floored = QuotaPolicy::new(None, None, Some(40), Some(5)).unwrap().with_share_floor(10);
        assert_eq!(floored.hold_cap(500), Some(25), "above the floor: the share");
        assert_eq!(floored.hold_cap(5), Some(10), "a small item: the floor");
        assert_eq!(floored.with_share_floor(60).hold_cap(500), Some(40), "the absolute cap still applies");
        assert!(!QuotaPolicy::OFF.limits_holds() && !QuotaPolicy::OFF.limits_carts());
    }
}
