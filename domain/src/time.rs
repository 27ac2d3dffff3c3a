//! Wall-clock instants as the domain sees them: milliseconds since the Unix epoch.
//!
//! A plain integer keeps deadlines cheap to compare, to store in PostgreSQL and to
//! hand to Redis (`PEXPIREAT`); formatting for humans happens at the edges.

use std::time::Duration;

/// An instant, in whole milliseconds since 1970-01-01T00:00:00Z.
///
/// Invariant: arithmetic saturates instead of wrapping. Proved by
/// `plus_saturates_instead_of_wrapping` and `since_is_zero_for_an_earlier_instant`
/// (`domain/src/time.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `ms` milliseconds after the Unix epoch.
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant plus `d`, saturating instead of overflowing.
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this instant is (zero if it is not after it).
    #[must_use]
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_saturates_instead_of_wrapping() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(t.plus(Duration::from_secs(10)), Timestamp::from_millis(i64::MAX));
    }

    #[test]
    fn since_is_zero_for_an_earlier_instant() {
        let a = Timestamp::from_millis(1_000);
        let b = Timestamp::from_millis(4_500);
        assert_eq!(b.since(a), Duration::from_millis(3_500));
        assert_eq!(a.since(b), Duration::ZERO);
    }
}
