//! Where the real servers are. `scripts/services.sh` (run by the test command)
//! starts both on loopback with these defaults.

/// Redis, from `CARTD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
#[must_use]
pub fn redis_url() -> String {
    std::env::var("CARTD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The local Redis Cluster's seed URLs (`scripts/redis-cluster.sh start`),
/// from `CARTD_TEST_REDIS_CLUSTER` (comma-separated; default the six nodes
/// on `127.0.0.1:7000..=7005`).
#[must_use]
pub fn redis_cluster_nodes() -> Vec<String> {
    let list = std::env::var("CARTD_TEST_REDIS_CLUSTER")
        .unwrap_or_else(|_| (7000..=7005).map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(","));
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// PostgreSQL, from `CARTD_TEST_POSTGRES_URL` (default the local `cartd`
/// database).
#[must_use]
pub fn postgres_url() -> String {
    std::env::var("CARTD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://cartd:cartd@127.0.0.1:5432/cartd".to_owned())
}

/// Panics with what to do when a server cannot be used.
///
/// # Panics
///
/// Always: it is the message of a test that cannot run.
pub fn unreachable(server: &str, url: &str, cause: &dyn std::fmt::Display) -> ! {
    panic!(
        "{server} at {url} is not usable ({cause}); run scripts/services.sh (scripts/redis-cluster.sh start for the cluster) or set CARTD_TEST_*"
    )
}
