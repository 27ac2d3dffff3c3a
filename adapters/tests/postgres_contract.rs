//! The inventory contract (see `cartd_test_support::contract`) against real
//! PostgreSQL, a fresh schema per test: once with batches of holds planned in
//! memory (the default), once with the reference PL/pgSQL loop.

use cartd_adapters::SystemClock;
use cartd_adapters::postgres_store::{HoldBatchMode, PgInventory};
use cartd_test_support::stores;

async fn pg_inventory() -> (PgInventory, SystemClock) {
    (stores::pg_inventory().await, SystemClock)
}

async fn pg_inventory_reference() -> (PgInventory, SystemClock) {
    (stores::pg_inventory_in_mode(HoldBatchMode::Reference).await.0, SystemClock)
}

mod inventory {
    cartd_test_support::inventory_contract!(super::pg_inventory);
}

mod inventory_reference_batches {
    cartd_test_support::inventory_contract!(super::pg_inventory_reference);
}
