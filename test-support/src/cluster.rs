//! The local Redis Cluster seen node by node (`scripts/redis-cluster.sh`):
//! which node owns a key, the primaries, the pid of a node, and the keys of a
//! prefix on every primary. Commands that are node-local in a cluster
//! (`KEYS`, `CLIENT KILL`, `CONFIG`, `DEBUG`) go to each node directly.

use redis::aio::MultiplexedConnection;

use crate::servers::redis_cluster_nodes;

/// A node as [`nodes`] lists it: `host:port`, whether it is a primary, and
/// the slot ranges it serves.
pub type NodeInfo = (String, bool, Vec<(u16, u16)>);

/// A connection to the node at `host:port`.
///
/// # Panics
///
/// When the node cannot be reached.
pub async fn node(addr: &str) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{addr}")).expect("node url");
    client.get_multiplexed_async_connection().await.unwrap_or_else(|e| panic!("node {addr} reachable: {e}"))
}

/// The cluster's nodes as `CLUSTER NODES` on the first seed that answers
/// lists them: `(host:port, is_primary, slots)`, skipping failed nodes.
///
/// # Panics
///
/// When no seed answers.
pub async fn nodes() -> Vec<NodeInfo> {
    for seed in redis_cluster_nodes() {
        let Ok(client) = redis::Client::open(seed.as_str()) else { continue };
        let Ok(mut con) = client.get_multiplexed_async_connection().await else { continue };
        let Ok(text) = redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut con).await else { continue };
        let mut out = Vec::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() < 8 || parts[2].contains("fail") || parts[2].contains("noaddr") {
                continue;
            }
            let addr = parts[1].split('@').next().unwrap_or_default().to_owned();
            let primary = parts[2].contains("master");
            let slots = parts[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            out.push((addr, primary, slots));
        }
        return out;
    }
    panic!("no Redis Cluster node answers; run scripts/redis-cluster.sh start")
}

/// The primaries serving slots, as `host:port`.
pub async fn primaries() -> Vec<String> {
    nodes().await.into_iter().filter(|(_, p, slots)| *p && !slots.is_empty()).map(|(a, ..)| a).collect()
}

/// The slot of `key` (`CLUSTER KEYSLOT`).
pub async fn keyslot(key: &str) -> u16 {
    let mut con = node(&primaries().await[0]).await;
    redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut con).await.expect("CLUSTER KEYSLOT")
}

/// The primary serving `slot`, in `nodes` (from [`nodes`]).
#[must_use]
pub fn owner(nodes: &[NodeInfo], slot: u16) -> Option<String> {
    nodes
        .iter()
        .find(|(_, primary, slots)| *primary && slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .map(|(addr, ..)| addr.clone())
}

/// Keys under `prefix`, summed over the primaries.
pub async fn count_keys(prefix: &str) -> usize {
    let mut n = 0;
    for addr in primaries().await {
        let mut con = node(&addr).await;
        let keys: Vec<Vec<u8>> =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut con).await.expect("KEYS");
        n += keys.len();
    }
    n
}

/// Deletes every key under `prefix` on every primary (one `DEL` per key: the
/// keys of one node may lie in different slots).
pub async fn flush_prefix(prefix: &str) -> usize {
    let mut n = 0;
    for addr in primaries().await {
        let mut con = node(&addr).await;
        let keys: Vec<Vec<u8>> =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut con).await.expect("KEYS");
        for key in keys {
            let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut con).await.expect("DEL");
            n += 1;
        }
    }
    n
}
