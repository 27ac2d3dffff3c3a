//! The inventory contract (see `contract/mod.rs`) against real PostgreSQL, a
//! fresh schema per test.

#[allow(dead_code, unused_macros, unused_imports)]
mod contract;
mod pg_support;

use cartd_adapters::SystemClock;
use cartd_adapters::postgres_store::PgInventory;

async fn pg_inventory() -> (PgInventory, SystemClock) {
    (pg_support::fresh_inventory().await, SystemClock)
}

mod inventory {
    crate::contract::inventory_contract!(super::pg_inventory);
}
