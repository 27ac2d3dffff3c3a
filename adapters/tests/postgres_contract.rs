//! The inventory contract (see `contract/mod.rs`) against real PostgreSQL, a
//! fresh schema per test: once with batches of holds planned in memory (the
//! default), once with the reference PL/pgSQL loop.

#[allow(dead_code, unused_macros, unused_imports)]
mod contract;
mod pg_support;

use cartd_adapters::SystemClock;
use cartd_adapters::postgres_store::{HoldBatchMode, PgInventory};

async fn pg_inventory() -> (PgInventory, SystemClock) {
    (pg_support::fresh_inventory().await, SystemClock)
}

async fn pg_inventory_reference() -> (PgInventory, SystemClock) {
    (pg_support::fresh_inventory_in_mode(HoldBatchMode::Reference).await.0, SystemClock)
}

mod inventory {
    crate::contract::inventory_contract!(super::pg_inventory);
}

mod inventory_reference_batches {
    crate::contract::inventory_contract!(super::pg_inventory_reference);
}
