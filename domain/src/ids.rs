//! Identifiers that validate on construction.
//!
//! Product and inventory ids arrive from clients and end up inside Redis hashes
//! and PostgreSQL rows, so they are restricted to a short, printable alphabet.
//! Cart (session) ids are UUID v4 drawn from the operating system's random source:
//! they are bearer secrets, so they must not be guessable.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Longest product or inventory id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why an id was rejected.
///
/// Proved to be returned for exactly the invalid inputs by
/// `text_ids_reject_empty_long_and_odd_characters` and
/// `text_id_accepts_exactly_the_documented_alphabet` (`domain/src/ids.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id was the empty string.
    #[error("must not be empty")]
    Empty,
    /// The id was longer than [`MAX_ID_LEN`].
    #[error("must be at most {MAX_ID_LEN} characters")]
    TooLong,
    /// The id contained a character outside `[A-Za-z0-9._:-]`.
    #[error("may contain only letters, digits and . _ : -")]
    BadCharacter,
    /// A session id that is not a UUID v4 in its usual hyphenated form.
    #[error("must be a UUID v4")]
    NotUuidV4,
}

fn check_text_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    let ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok { Ok(()) } else { Err(IdError::BadCharacter) }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` (1 to 64 characters of `[A-Za-z0-9._:-]`).
            ///
            /// # Errors
            /// [`IdError::Empty`], [`IdError::TooLong`] or [`IdError::BadCharacter`].
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_text_id(s)?;
                Ok(Self(s.to_owned()))
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// A product in the shop's catalogue; one cart line per product.
    ///
    /// Invariant: 1 ..= [`MAX_ID_LEN`] characters of `[A-Za-z0-9._:-]`, checked on construction.
    /// Proved by `text_ids_reject_empty_long_and_odd_characters`,
    /// `text_id_accepts_exactly_the_documented_alphabet` and `valid_text_ids_round_trip`
    /// (`domain/src/ids.rs`).
    ProductId
);
text_id!(
    /// A stock-keeping unit whose units are held, sold and released.
    ///
    /// Invariant: 1 ..= [`MAX_ID_LEN`] characters of `[A-Za-z0-9._:-]`, checked on construction.
    /// Proved by `text_ids_reject_empty_long_and_odd_characters`,
    /// `text_id_accepts_exactly_the_documented_alphabet` and `valid_text_ids_round_trip`
    /// (`domain/src/ids.rs`).
    InventoryId
);

/// A cart, which is also its session: a random UUID v4.
///
/// Invariant: always a UUID v4 (a bearer secret drawn from the OS's random source);
/// [`CartId::parse`] accepts only its hyphenated form and never panics. Proved by
/// `random_cart_ids_differ` and `cart_id_parse_never_panics` (`domain/src/ids.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CartId(Uuid);

impl CartId {
    /// A fresh id from the operating system's random source.
    #[must_use]
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the hyphenated form a client sends back in `cart-session-id`.
    ///
    /// # Errors
    /// [`IdError::NotUuidV4`] for anything but a hyphenated UUID of version 4.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() != 36 {
            return Err(IdError::NotUuidV4);
        }
        let u = Uuid::try_parse(s).map_err(|_| IdError::NotUuidV4)?;
        if u.get_version_num() == 4 { Ok(Self(u)) } else { Err(IdError::NotUuidV4) }
    }

    /// The UUID itself, for adapters that store it natively.
    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Rebuilds an id that an adapter stored earlier.
    ///
    /// # Errors
    /// [`IdError::NotUuidV4`] when the stored value is not a UUID v4.
    pub fn from_uuid(u: Uuid) -> Result<Self, IdError> {
        if u.get_version_num() == 4 { Ok(Self(u)) } else { Err(IdError::NotUuidV4) }
    }
}

impl fmt::Display for CartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The id of an order made by checking a cart out.
///
/// Invariant: random, so orders from different carts never share an id; a retried checkout hands
/// back the id of the first one (`checkout_retry_returns_the_same_order`,
/// `test-support/src/contract/inventory.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh random order id.
    #[must_use]
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a stored order id.
    #[must_use]
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }

    /// The UUID itself.
    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_ids_reject_empty_long_and_odd_characters() {
        assert_eq!(ProductId::parse(""), Err(IdError::Empty));
        assert_eq!(ProductId::parse(&"a".repeat(65)), Err(IdError::TooLong));
        assert!(ProductId::parse(&"a".repeat(64)).is_ok());
        for bad in ["a b", "a/b", "é", "a\u{0}", "{x}", "a*"] {
            assert_eq!(InventoryId::parse(bad), Err(IdError::BadCharacter), "{bad:?}");
        }
        assert_eq!(InventoryId::parse("sku-1.A_b:2").unwrap().as_str(), "sku-1.A_b:2");
    }

    #[test]
    fn cart_ids_must_be_hyphenated_uuid_v4() {
        let id = CartId::random();
        assert_eq!(CartId::parse(&id.to_string()), Ok(id));
        assert_eq!(CartId::parse("not-a-uuid"), Err(IdError::NotUuidV4));
        // A version 1 UUID and the simple (unhyphenated) form are refused.
        assert_eq!(CartId::parse("c232ab00-9414-11ec-b3c8-9e6bdeced846"), Err(IdError::NotUuidV4));
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(CartId::parse(&simple), Err(IdError::NotUuidV4));
    }

    #[test]
    fn random_cart_ids_differ() {
        assert_ne!(CartId::random(), CartId::random());
    }

    proptest! {
        #[test]
        fn text_id_accepts_exactly_the_documented_alphabet(s in "\\PC{0,80}") {
            let expected = !s.is_empty()
                && s.len() <= MAX_ID_LEN
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
            prop_assert_eq!(ProductId::parse(&s).is_ok(), expected);
        }

        #[test]
        fn valid_text_ids_round_trip(s in "[A-Za-z0-9._:-]{1,64}") {
            let id = ProductId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn cart_id_parse_never_panics(s in "\\PC{0,40}") {
            let _ = CartId::parse(&s);
        }
    }
}
