//! Holds in PostgreSQL: the group-commit queue that turns concurrent
//! `set_hold` calls into batches ([`queue`]), the two ways a batch runs
//! ([`planned`], the default, which replays the calls through the domain's
//! hold rule in memory ([`plan`]); [`reference`], the SQL function), and the
//! typed answer each call gets ([`HoldOutcome`]).

mod plan;
mod planned;
mod queue;
mod reference;

use domain::hold::Refusal;
use domain::ports::HoldReceipt;
use domain::{CartError, Timestamp};
pub(super) use queue::{Batcher, Counters, run_batch};
use uuid::Uuid;

use super::error::PgError;

/// How a batch runs.
///
/// Invariant: both modes answer and write the same for the same batch. Proved by
/// `planned_batches_answer_and_write_exactly_what_the_reference_loop_does`
/// (`adapters/tests/postgres_batch.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Lock and read, plan in memory, write the net changes: a few
    /// statements per batch (`postgres_store/holds/planned.rs`). The default.
    Planned,
    /// `cartd_set_hold_batch`, a PL/pgSQL loop of `cartd_set_hold` calls:
    /// several statements per hold. Kept as the reference the planned path
    /// is tested against, and as its fallback for carts past their deadline.
    Reference,
}

/// One `set_hold` call, as the batch takes it (the SQL function's arguments).
#[derive(Debug)]
pub(super) struct HoldCall {
    pub cart: Uuid,
    pub product: String,
    /// The line wanted: item and units; `None` removes the line.
    pub line: Option<(String, i32)>,
    pub deadline: Option<i64>,
    pub max_lines: i32,
    pub now: i64,
}

impl HoldCall {
    /// The item the call wants, if any: batches run their calls in this order.
    fn item(&self) -> Option<&str> {
        self.line.as_ref().map(|(item, _)| item.as_str())
    }
}

/// What one call came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HoldOutcome {
    /// Granted: the cart's version and deadline after it, the units moved.
    Granted(HoldReceipt),
    /// The cart is not open in the ledger (or was past its deadline and is
    /// now released).
    NoCart,
    /// Refused; the call took `version` all the same.
    Refused { version: u64, refusal: Refusal },
}

impl HoldOutcome {
    /// The port's answer. `max_lines` is the limit the call was given.
    pub(super) fn receipt(self, max_lines: u16) -> Result<HoldReceipt, CartError> {
        match self {
            Self::Granted(receipt) => Ok(receipt),
            Self::NoCart => Err(CartError::SessionNotFound),
            Self::Refused { refusal: Refusal::UnknownItem, .. } => Err(CartError::UnknownItem),
            Self::Refused { refusal: Refusal::TooManyLines, .. } => Err(CartError::TooManyLines { max: max_lines }),
            Self::Refused { refusal: Refusal::InsufficientStock { available }, .. } => {
                Err(CartError::InsufficientStock { available })
            }
        }
    }

    /// Reads a row of `cartd_set_hold`: its status names the outcome.
    fn from_sql(
        status: &str,
        version: i64,
        deadline: i64,
        available: i64,
        taken: i32,
        released: i32,
    ) -> Result<Self, PgError> {
        let version = u64::try_from(version).unwrap_or(0);
        let refused = |refusal| Ok(Self::Refused { version, refusal });
        match status {
            "ok" => Ok(Self::Granted(HoldReceipt {
                version,
                expires_at: Timestamp::from_millis(deadline),
                taken: u32::try_from(taken).unwrap_or(0),
                released: u32::try_from(released).unwrap_or(0),
            })),
            "session_not_found" => Ok(Self::NoCart),
            "unknown_item" => refused(Refusal::UnknownItem),
            "too_many_lines" => refused(Refusal::TooManyLines),
            "insufficient_stock" => refused(Refusal::InsufficientStock { available }),
            other => Err(PgError::Protocol(format!("cartd_set_hold status {other:?}"))),
        }
    }
}
