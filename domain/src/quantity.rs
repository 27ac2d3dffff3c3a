//! Counts of units: a cart line's quantity and an item's stock.

use std::fmt;

/// Why a count was rejected.
///
/// Returned for exactly the counts outside the documented ranges:
/// `zero_and_huge_quantities_are_refused` and `quantity_accepts_exactly_one_to_max`
/// (`domain/src/quantity.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Zero where at least one unit is required.
    #[error("must be at least 1")]
    Zero,
    /// More than the hard ceiling (or the configured limit).
    #[error("must be at most {max}")]
    TooLarge {
        /// The largest value accepted.
        max: u32,
    },
}

/// The number of units on one cart line: at least 1.
///
/// The hard ceiling is [`Quantity::MAX`]; the service applies the (smaller)
/// configured per-line limit on top, see [`crate::Limits`].
///
/// Invariant: 1 ..= [`Quantity::MAX`], checked on construction. Proved by
/// `zero_and_huge_quantities_are_refused` and `quantity_accepts_exactly_one_to_max`
/// (`domain/src/quantity.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    /// Hard ceiling for any single line, whatever the configuration says.
    pub const MAX: u32 = 1_000_000;

    /// Validates `n` (1..=[`Quantity::MAX`]).
    ///
    /// # Errors
    /// [`QuantityError::Zero`] or [`QuantityError::TooLarge`].
    pub fn new(n: u32) -> Result<Self, QuantityError> {
        match n {
            0 => Err(QuantityError::Zero),
            n if n > Self::MAX => Err(QuantityError::TooLarge { max: Self::MAX }),
            n => Ok(Self(n)),
        }
    }

    /// The count.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An operator-set count of available units: 0..=[`StockCount::MAX`].
///
/// Invariant: 0 ..= [`StockCount::MAX`], checked on construction. Proved by
/// `zero_and_huge_quantities_are_refused` (`domain/src/quantity.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StockCount(u32);

impl StockCount {
    /// Largest stock an operator may set for one item.
    pub const MAX: u32 = 1_000_000_000;

    /// Validates `n`.
    ///
    /// # Errors
    /// [`QuantityError::TooLarge`] above [`StockCount::MAX`].
    pub fn new(n: u32) -> Result<Self, QuantityError> {
        if n > Self::MAX { Err(QuantityError::TooLarge { max: Self::MAX }) } else { Ok(Self(n)) }
    }

    /// The count.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_and_huge_quantities_are_refused() {
        assert_eq!(Quantity::new(0), Err(QuantityError::Zero));
        assert_eq!(Quantity::new(Quantity::MAX + 1), Err(QuantityError::TooLarge { max: Quantity::MAX }));
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(StockCount::new(StockCount::MAX + 1), Err(QuantityError::TooLarge { max: StockCount::MAX }));
        assert_eq!(StockCount::new(0).unwrap().get(), 0);
    }

    proptest! {
        #[test]
        // Half the cases near the accepted range (0, 1..=MAX and just past
        // it), half anywhere in u32: any::<u32>() alone almost never lands in
        // 1..=MAX and so would hardly test the accepting side.
        fn quantity_accepts_exactly_one_to_max(n in prop_oneof![0u32..=Quantity::MAX + 2, any::<u32>()]) {
            prop_assert_eq!(Quantity::new(n).is_ok(), (1..=Quantity::MAX).contains(&n));
        }
    }
}
