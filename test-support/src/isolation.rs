//! A place of its own in the real servers for each test.

use crate::servers::{postgres_url, redis_url};

/// A Redis key prefix nobody else uses (`test-<uuid>:`).
#[must_use]
pub fn fresh_key_prefix() -> String {
    format!("test-{}:", uuid::Uuid::new_v4().simple())
}

/// A PostgreSQL schema name nobody else uses (`test_<uuid>`).
#[must_use]
pub fn fresh_schema() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// An isolated place in the real servers: a Redis key prefix and a PostgreSQL
/// schema nobody else uses. Instances started with the same `Isolation` share
/// them, like several replicas of one deployment.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The Redis key prefix, `test-<tag>:`.
    pub prefix: String,
    /// The PostgreSQL schema, `test_<tag>`.
    pub schema: String,
}

impl Default for Isolation {
    fn default() -> Self {
        Self::new()
    }
}

impl Isolation {
    /// A fresh prefix and schema sharing one tag.
    #[must_use]
    pub fn new() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Self { prefix: format!("test-{tag}:"), schema: format!("test_{tag}") }
    }

    /// Deletes every key under the prefix: what a Redis restart without
    /// persistence (or a FLUSHALL) does to this deployment's sessions.
    ///
    /// # Panics
    ///
    /// When Redis cannot be reached.
    pub async fn flush_redis(&self) -> usize {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let mut con = client.get_multiplexed_async_connection().await.expect("redis reachable");
        let keys: Vec<Vec<u8>> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query_async(&mut con).await.expect("KEYS");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut con).await.expect("DEL");
        }
        keys.len()
    }

    /// Removes what the tests left: keys under the prefix and the schema.
    ///
    /// # Panics
    ///
    /// When Redis or PostgreSQL cannot be reached.
    pub async fn cleanup(&self) {
        self.flush_redis().await;
        let (client, connection) =
            tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await.expect("postgres reachable");
        tokio::spawn(connection);
        client.batch_execute(&format!("drop schema if exists {} cascade", self.schema)).await.expect("drop schema");
    }
}
