//! How long carts live and how large they may grow.

use std::time::Duration;

use crate::quantity::{Quantity, QuantityError};
use crate::time::Timestamp;

/// Why a policy value was rejected.
///
/// Returned for exactly the out-of-range values: `ttl_and_limits_are_range_checked`
/// (`domain/src/policy.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A session TTL outside 1 s ..= 30 days.
    #[error("session ttl must be between 1 second and 30 days")]
    TtlOutOfRange,
    /// A per-line quantity limit that is not a valid quantity.
    #[error("max quantity per line {0}")]
    MaxQuantity(#[source] QuantityError),
    /// A line limit of zero or above the hard ceiling.
    #[error("max lines per cart must be between 1 and {}", Limits::MAX_LINES_CEILING)]
    MaxLines,
}

/// How long a session lives after its deadline is set.
///
/// Invariant: 1 s ..= 30 days, checked on construction. Proved by
/// `ttl_and_limits_are_range_checked` (`domain/src/policy.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTtl(Duration);

impl SessionTtl {
    /// Validates `d` (1 s ..= 30 days).
    ///
    /// # Errors
    /// [`PolicyError::TtlOutOfRange`].
    pub fn new(d: Duration) -> Result<Self, PolicyError> {
        if d < Duration::from_secs(1) || d > Duration::from_secs(30 * 24 * 3600) {
            return Err(PolicyError::TtlOutOfRange);
        }
        Ok(Self(d))
    }

    /// The duration.
    #[must_use]
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Whether changing a cart pushes its deadline out.
///
/// Proved by `fixed_mode_keeps_the_deadline_and_sliding_moves_it` (`domain/src/policy.rs`),
/// `fixed_mode_keeps_the_deadline_and_sliding_mode_moves_it` (`adapters/tests/service.rs`) and,
/// over HTTP, `sliding_expiry_pushes_the_deadline_on_every_change` and
/// `fixed_expiry_keeps_the_deadline` (`app/tests/api.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExpiryMode {
    /// The deadline is fixed when the cart is created (the tutorial's behaviour).
    #[default]
    Fixed,
    /// Every change to the cart moves the deadline to `now + ttl`.
    Sliding,
}

/// The expiry policy: a TTL and a mode.
///
/// Invariant: a deadline is `now + ttl` and never moves back (the stores keep the later of two
/// deadlines). Proved by `fixed_mode_keeps_the_deadline_and_sliding_moves_it`
/// (`domain/src/policy.rs`), `deadline_never_moves_back_when_changes_arrive_out_of_order` and
/// `an_earlier_new_deadline_does_not_shorten_the_cart` (`test-support/src/contract/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// The session TTL.
    pub ttl: SessionTtl,
    /// Fixed or sliding.
    pub mode: ExpiryMode,
}

impl ExpiryPolicy {
    /// The deadline of a cart created at `now`.
    #[must_use]
    pub fn initial_deadline(&self, now: Timestamp) -> Timestamp {
        now.plus(self.ttl.get())
    }

    /// The deadline to set when a cart is changed at `now`: `None` keeps the
    /// current one (fixed mode), `Some` replaces it (sliding mode).
    #[must_use]
    pub fn deadline_on_change(&self, now: Timestamp) -> Option<Timestamp> {
        match self.mode {
            ExpiryMode::Fixed => None,
            ExpiryMode::Sliding => Some(now.plus(self.ttl.get())),
        }
    }
}

/// Size limits on carts.
///
/// Invariant: 1 ..= [`Quantity::MAX`] units a line and 1 ..= [`Limits::MAX_LINES_CEILING`] lines,
/// checked on construction. Proved by `ttl_and_limits_are_range_checked` (`domain/src/policy.rs`),
/// `quantity_over_the_limit_is_refused_and_changes_nothing` (`adapters/tests/service.rs`) and
/// `too_many_lines_is_refused_but_existing_lines_may_change`
/// (`test-support/src/contract/inventory.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    max_quantity: Quantity,
    max_lines: u16,
}

impl Limits {
    /// Hard ceiling for the number of lines in a cart.
    pub const MAX_LINES_CEILING: u16 = 1_000;

    /// Validates the limits.
    ///
    /// # Errors
    /// [`PolicyError::MaxQuantity`] or [`PolicyError::MaxLines`].
    pub fn new(max_quantity: u32, max_lines: u16) -> Result<Self, PolicyError> {
        let max_quantity = Quantity::new(max_quantity).map_err(PolicyError::MaxQuantity)?;
        if max_lines == 0 || max_lines > Self::MAX_LINES_CEILING {
            return Err(PolicyError::MaxLines);
        }
        Ok(Self { max_quantity, max_lines })
    }

    /// Largest quantity on one line.
    #[must_use]
    pub fn max_quantity(&self) -> u32 {
        self.max_quantity.get()
    }

    /// Most lines in one cart.
    #[must_use]
    pub fn max_lines(&self) -> u16 {
        self.max_lines
    }
}

impl Default for Limits {
    /// 1..=100 units a line, 50 lines a cart.
    fn default() -> Self {
        Self { max_quantity: Quantity::new(100).expect("100 is a valid quantity"), max_lines: 50 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_mode_keeps_the_deadline_and_sliding_moves_it() {
        let ttl = SessionTtl::new(Duration::from_secs(900)).unwrap();
        let now = Timestamp::from_millis(10_000);
        let fixed = ExpiryPolicy { ttl, mode: ExpiryMode::Fixed };
        let sliding = ExpiryPolicy { ttl, mode: ExpiryMode::Sliding };
        assert_eq!(fixed.initial_deadline(now), Timestamp::from_millis(910_000));
        assert_eq!(fixed.deadline_on_change(now), None);
        assert_eq!(sliding.deadline_on_change(now), Some(Timestamp::from_millis(910_000)));
    }

    #[test]
    fn ttl_and_limits_are_range_checked() {
        assert_eq!(SessionTtl::new(Duration::from_millis(999)), Err(PolicyError::TtlOutOfRange));
        assert_eq!(SessionTtl::new(Duration::from_secs(31 * 24 * 3600)), Err(PolicyError::TtlOutOfRange));
        assert!(Limits::new(0, 5).is_err());
        assert_eq!(Limits::new(5, 0), Err(PolicyError::MaxLines));
        assert_eq!(Limits::new(5, 1001), Err(PolicyError::MaxLines));
        let l = Limits::default();
        assert_eq!((l.max_quantity(), l.max_lines()), (100, 50));
    }
}
