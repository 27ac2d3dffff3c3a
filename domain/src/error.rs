//! What a use case can fail with. The HTTP layer maps each variant to one status
//! code in one place; adapters map their driver errors into [`crate::ports::PortError`].

use crate::ports::PortError;

/// A use case's failure.
///
/// Invariant: each variant has one HTTP status, decided in `app/src/http/error.rs`; only
/// [`CartError::Unavailable`] is an outage worth retrying (503 with `Retry-After`), and after it
/// nothing is left half-done that a retry or the sweeper does not repair. Proved by
/// `app/tests/api.rs` (one test per error code) and the `outages` tests of
/// `adapters/tests/service.rs`.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    /// The session is unknown, expired or checked out (deliberately one answer,
    /// so that ids cannot be probed).
    #[error("cart session not found")]
    SessionNotFound,
    /// Not enough units are free for the requested quantity; nothing changed.
    #[error("insufficient stock: {available} available")]
    InsufficientStock {
        /// Units free when the hold was refused.
        available: i64,
    },
    /// The inventory item does not exist.
    #[error("inventory item not found")]
    UnknownItem,
    /// A line asked for more than the configured per-line limit.
    #[error("quantity must be at most {max}")]
    QuantityOverLimit {
        /// The configured limit.
        max: u32,
    },
    /// A new line would exceed the configured number of lines.
    #[error("a cart holds at most {max} lines")]
    TooManyLines {
        /// The configured limit.
        max: u16,
    },
    /// Checkout of a cart without lines.
    #[error("cart is empty")]
    CartEmpty,
    /// A cart merged into itself.
    #[error("a cart cannot be merged into itself")]
    MergeIntoItself,
    /// An idempotency key sent again with a different request.
    #[error("this idempotency key was used with a different request")]
    IdempotencyKeyReused,
    /// An idempotency key whose first request is still running.
    #[error("a request with this idempotency key is still running")]
    IdempotencyKeyInUse,
    /// A backing store could not be reached; retrying later may succeed.
    #[error("backing store unavailable")]
    Unavailable(#[source] PortError),
}

/// `err: cause: cause...` on one line: an error and its whole `source()` chain,
/// for logs and messages (adapters keep the driver's error as the source).
#[must_use]
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

impl From<PortError> for CartError {
    fn from(e: PortError) -> Self {
        CartError::Unavailable(e)
    }
}
