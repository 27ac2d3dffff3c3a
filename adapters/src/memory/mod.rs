//! In-memory adapters: one process, no persistence, the same contracts as the
//! real stores. Each keeps its state behind one mutex, so every operation is
//! atomic the way a Redis script or a PostgreSQL transaction is; no lock is held
//! across an `.await`.

mod inventory;
mod quotas;
mod sessions;

pub use inventory::MemoryInventory;
pub use quotas::MemoryQuotas;
pub use sessions::MemorySessions;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, ignoring poisoning: no code path panics while holding these locks,
/// and the state stays consistent after each completed operation.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
