//! A fresh PostgreSQL schema per test, migrated, on the server the test command
//! starts (`CARTD_TEST_POSTGRES_URL`, default the local `cartd` database).
#![allow(dead_code)]

use cartd_adapters::postgres_store::{HoldBatchMode, PgInventory, PgSettings};
use domain::CartId;

pub fn url() -> String {
    std::env::var("CARTD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://cartd:cartd@127.0.0.1:5432/cartd".into())
}

/// A migrated inventory in a schema of its own.
pub async fn fresh_inventory() -> PgInventory {
    fresh_inventory_with_schema().await.0
}

/// A migrated inventory in a schema of its own, and that schema's name.
pub async fn fresh_inventory_with_schema() -> (PgInventory, String) {
    fresh_inventory_in_mode(HoldBatchMode::Planned).await
}

/// As [`fresh_inventory_with_schema`], running batches of holds in `mode`.
pub async fn fresh_inventory_in_mode(mode: HoldBatchMode) -> (PgInventory, String) {
    let schema = format!("test_{}", CartId::random().as_uuid().simple());
    let mut settings = PgSettings::new(url());
    settings.schema = Some(schema.clone());
    settings.pool_size = 8;
    settings.hold_batch_mode = mode;
    let inv = PgInventory::connect(&settings).expect("valid settings");
    if let Err(e) = inv.migrate(Some(&schema)).await {
        panic!(
            "PostgreSQL at {} is not usable ({}); run scripts/services.sh first",
            url(),
            std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string())
        );
    }
    (inv, schema)
}
