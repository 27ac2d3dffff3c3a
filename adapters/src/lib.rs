//! Outbound adapters: implementations of the ports defined in `cartd-domain`.
//!
//! [`memory`] holds in-memory versions of every port. They serve the binary's
//! embedded default and other teams' tests, so they are products in their own
//! right: they keep the same contracts as the Redis and PostgreSQL adapters
//! (expiry, atomicity, idempotent release), checked by one shared contract
//! suite. [`faulty`] wraps any port to fail, delay or lose its calls on
//! demand, so a test can show how its caller copes with an outage; [`clock`]
//! has a [`ManualClock`] that moves only when told to.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod clock;
pub mod faulty;
pub mod memory;
pub mod postgres_store;
pub mod redis_store;

pub use backoff::Backoff;
pub use clock::{ManualClock, SystemClock};
pub use faulty::{Fault, Faults, Faulty, InjectedFault, Op, UnknownOp};
pub use memory::{MemoryInventory, MemoryQuotas, MemorySessions};
