//! The real adapters, connected in a place of their own (see [`crate::isolation`]).

use adapters::postgres_store::{HoldBatchMode, PgInventory, PgSettings};
use adapters::redis_store::{RedisSessions, RedisSettings};

use crate::isolation::{fresh_key_prefix, fresh_schema};
use crate::servers::{postgres_url, redis_cluster_nodes, redis_url, unreachable};

/// A migrated inventory in a schema of its own.
pub async fn pg_inventory() -> PgInventory {
    pg_inventory_with_schema().await.0
}

/// A migrated inventory in a schema of its own, and that schema's name.
pub async fn pg_inventory_with_schema() -> (PgInventory, String) {
    pg_inventory_in_mode(HoldBatchMode::Planned).await
}

/// As [`pg_inventory_with_schema`], running batches of holds in `mode`.
///
/// # Panics
///
/// When PostgreSQL cannot be reached or migrated.
pub async fn pg_inventory_in_mode(mode: HoldBatchMode) -> (PgInventory, String) {
    let schema = fresh_schema();
    let mut settings = PgSettings::new(postgres_url());
    settings.schema = Some(schema.clone());
    settings.pool_size = 8;
    settings.hold_batch_mode = mode;
    let inv = PgInventory::connect(&settings).expect("valid settings");
    if let Err(e) = inv.migrate(Some(&schema)).await {
        let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        unreachable("PostgreSQL", &postgres_url(), &cause);
    }
    (inv, schema)
}

/// A session store under a fresh key prefix.
pub async fn redis_sessions() -> RedisSessions {
    redis_sessions_with_prefix(&fresh_key_prefix()).await
}

/// A session store under `prefix`.
///
/// # Panics
///
/// When Redis cannot be reached.
pub async fn redis_sessions_with_prefix(prefix: &str) -> RedisSessions {
    let url = redis_url();
    let mut settings = RedisSettings::new(url.clone());
    prefix.clone_into(&mut settings.key_prefix);
    match RedisSessions::connect(&settings).await {
        Ok(store) => store,
        Err(e) => unreachable("Redis", &url, &domain::error_chain(&e)),
    }
}

/// A session store on the local Redis Cluster under `prefix`.
///
/// # Panics
///
/// When the cluster cannot be reached.
pub async fn redis_cluster_sessions_with_prefix(prefix: &str) -> RedisSessions {
    let nodes = redis_cluster_nodes();
    let mut settings = RedisSettings::cluster(nodes.clone());
    prefix.clone_into(&mut settings.key_prefix);
    match RedisSessions::connect(&settings).await {
        Ok(store) => store,
        Err(e) => unreachable("Redis Cluster", &nodes.join(","), &domain::error_chain(&e)),
    }
}

/// A session store on the local Redis Cluster under a fresh key prefix.
pub async fn redis_cluster_sessions() -> RedisSessions {
    redis_cluster_sessions_with_prefix(&fresh_key_prefix()).await
}
