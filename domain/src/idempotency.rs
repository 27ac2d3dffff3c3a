//! Idempotency keys for the requests that create a cart (issue 15, item 2).
//!
//! A client whose `POST /v1/carts` or first `POST /add-to-cart` timed out
//! cannot tell whether a cart was made; sent again with the same
//! `Idempotency-Key`, the request answers with the cart the first one made
//! instead of making a second one whose holds would linger. The session store
//! keeps each key (scoped by what it creates) with the cart it made and a
//! fingerprint of the request:
//! - while the first request runs, the key is *in flight* for at most
//!   [`IN_FLIGHT`], so a request that died half-way does not block its
//!   retries for long;
//! - once it succeeded, the key is *done* and kept until the cart's first
//!   deadline, never longer (a key never extends a session);
//! - when it failed, the key is dropped, and a retry runs afresh.

use std::time::Duration;

use crate::CartId;

/// How long a key stays claimed by a request still running.
pub const IN_FLIGHT: Duration = Duration::from_secs(30);

/// A client's idempotency key: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// The text is not a valid idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 255 visible ASCII characters")]
pub struct IdempotencyKeyError;

impl IdempotencyKey {
    /// Checks `s`.
    ///
    /// # Errors
    /// [`IdempotencyKeyError`] when `s` is empty, longer than 255 bytes, or
    /// holds anything but visible ASCII (`!` to `~`).
    pub fn parse(s: &str) -> Result<Self, IdempotencyKeyError> {
        let ok = !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
        if ok { Ok(Self(s.to_owned())) } else { Err(IdempotencyKeyError) }
    }

    /// The key as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a key makes: keys of different scopes never meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// `POST /v1/carts`.
    CreateCart,
    /// `POST /add-to-cart` without a session.
    AddToCart,
}

impl KeyScope {
    /// A short name, for the stores' key layout.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyScope::CreateCart => "create",
            KeyScope::AddToCart => "add",
        }
    }
}

/// What the session store keeps for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The cart the request made (or is making).
    pub cart: CartId,
    /// What the request asked for, so a reuse with another request is told
    /// apart from a retry.
    pub fingerprint: String,
    /// Whether the request succeeded (`false`: still in flight).
    pub done: bool,
}

/// The answer to claiming a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key was free: it is now claimed for the caller's cart.
    Claimed,
    /// Another request has it.
    Taken(KeyRecord),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_1_to_255_bytes() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse("order-42/retry:1").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in ["", " ", "with space", "tab\t", "é", &"k".repeat(256)] {
            assert_eq!(IdempotencyKey::parse(bad), Err(IdempotencyKeyError), "{bad:?}");
        }
    }
}
