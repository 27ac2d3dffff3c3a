//! Redis Cluster: the cluster client with every timeout set, and the
//! cluster's topology as `CLUSTER SHARDS` tells it.
//!
//! The `redis` crate's cluster client (`cluster-async`) keeps one multiplexed
//! connection per node behind one cloneable handle, follows `MOVED` and `ASK`,
//! and refreshes its slot map when a node answers `MOVED`. Its defaults are
//! made for batch jobs: no response timeout at all, and at least 1.28 s
//! between retries. cartd answers shoppers, so a request is given the same
//! time on a cluster as on one server (`op_timeout`, retries included) and
//! gets a 503 with `Retry-After` when a failover takes longer.
//!
//! The topology is read straight from the nodes (seeds first, then the nodes
//! learnt), each with a connection of its own, not through the cluster
//! client: its `CLUSTER SHARDS` goes to a random node, which during a
//! failover may be the dead one. The expiry listener needs it to subscribe to
//! every node (expired events are node-local), and readiness needs to know
//! whether the cluster serves every slot; a walk of the keys (`SCAN`,
//! node-local too) needs it to reach every primary.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, Value};
use tokio::time::timeout;

use super::{Error, redacted};

/// Slots in a Redis Cluster.
pub(super) const SLOTS: u32 = 16384;

/// Attempts the cluster client makes for one request (redirections and
/// reconnections included), all within the overall response timeout.
const RETRIES: u32 = 6;
/// Shortest pause (ms) before a retry after `TRYAGAIN`, `CLUSTERDOWN` or a
/// lost connection (the crate's default is 1,280 ms).
const MIN_RETRY_WAIT_MS: u64 = 20;
/// Longest pause (ms) between two retries.
const MAX_RETRY_WAIT_MS: u64 = 200;
/// Keys a `SCAN` page looks at (its `COUNT`).
pub(super) const SCAN_COUNT: u32 = 1000;

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeAddr {
    /// The host the node announces (an IP address unless configured).
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Whether a node serves its shard's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves writes for its shard's slots.
    Primary,
    /// Copies a primary; promoted when it fails.
    Replica,
}

/// One node as `CLUSTER SHARDS` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Where it listens.
    pub addr: NodeAddr,
    /// Its role.
    pub role: Role,
    /// `online`, `fail` (Redis 7.0 and 7.2 write that; the documentation
    /// says `failed`) or `loading`.
    pub health: String,
}

impl Node {
    /// Whether the cluster marks the node as failed: down, or a primary that
    /// lost its slots to its promoted replica and has not come back.
    #[must_use]
    pub fn is_failed(&self) -> bool {
        matches!(self.health.as_str(), "fail" | "failed")
    }
}

/// What one node says the cluster looks like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Every node of every shard, primaries and replicas.
    pub nodes: Vec<Node>,
    /// Slots assigned to a shard that has a primary.
    pub slots_assigned: u32,
}

impl Topology {
    /// Whether every slot belongs to a shard with a primary: the cluster is
    /// formed and a request for any key has a node to go to (a primary that
    /// just failed is still listed until its replica takes over; requests for
    /// its slots get 503 in that window, the others carry on).
    #[must_use]
    pub fn is_usable(&self) -> bool {
        self.slots_assigned == SLOTS
    }

    /// The primaries' addresses.
    #[must_use]
    pub fn primaries(&self) -> Vec<NodeAddr> {
        self.nodes.iter().filter(|n| n.role == Role::Primary).map(|n| n.addr.clone()).collect()
    }
}

/// The seed nodes' connection details, parsed once.
#[derive(Clone)]
pub(super) struct Seeds {
    infos: Vec<redis::ConnectionInfo>,
}

impl fmt::Debug for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.infos.iter().map(|i| i.addr().to_string())).finish()
    }
}

impl Seeds {
    /// Parses the seed URLs.
    pub(super) fn parse(urls: &[String]) -> Result<Self, Error> {
        if urls.is_empty() {
            return Err(Error::Settings("a cluster needs at least one seed node"));
        }
        let infos = urls
            .iter()
            .map(|url| {
                let info =
                    url.as_str().into_connection_info().map_err(|source| Error::Url { url: redacted(url), source })?;
                if info.redis_settings().db() != 0 {
                    return Err(Error::Settings("a cluster has only database 0: remove the /N from the seed URLs"));
                }
                match info.addr() {
                    ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. } => Ok(info),
                    _ => Err(Error::Settings("cluster seed nodes must be TCP addresses")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { infos })
    }

    /// The seeds' addresses.
    pub(super) fn addrs(&self) -> Vec<NodeAddr> {
        self.infos
            .iter()
            .filter_map(|info| match info.addr() {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                    Some(NodeAddr { host: host.clone(), port: *port })
                }
                _ => None,
            })
            .collect()
    }

    /// A client for `node`, with the seeds' credentials and TLS settings.
    pub(super) fn client_for(&self, node: &NodeAddr) -> Result<Client, Error> {
        let first = self.infos.first().expect("parse refuses an empty list");
        let addr = match first.addr() {
            ConnectionAddr::TcpTls { insecure, tls_params, .. } => ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(node.host.clone(), node.port),
        };
        let info = first.clone().set_addr(addr);
        Client::open(info).map_err(|source| Error::Url { url: node.to_string(), source })
    }

    /// The cluster client, every timeout set: `connect_timeout` per
    /// connection attempt, `op_timeout` per reply and for the whole request
    /// (retries, redirections and reconnections included).
    pub(super) fn cluster_client(
        &self,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<ClusterClient, Error> {
        ClusterClientBuilder::new(self.infos.clone())
            .connection_timeout(connect_timeout)
            .response_timeout(op_timeout)
            .overall_response_timeout(Some(op_timeout))
            .retries(RETRIES)
            .min_retry_wait(MIN_RETRY_WAIT_MS)
            .max_retry_wait(MAX_RETRY_WAIT_MS)
            .build()
            .map_err(Error::Connect)
    }
}

/// Connects to the cluster through the seeds.
pub(super) async fn connect(
    seeds: &Seeds,
    connect_timeout: Duration,
    op_timeout: Duration,
) -> Result<ClusterConnection, Error> {
    let client = seeds.cluster_client(connect_timeout, op_timeout)?;
    // The client tries the seeds one after the other, each within the
    // connection timeout, then reads the slot map.
    let bound = connect_timeout * u32::try_from(seeds.infos.len().max(1)).unwrap_or(u32::MAX) + op_timeout;
    timeout(bound, client.get_async_connection())
        .await
        .map_err(|_| Error::ConnectTimeout(bound))?
        .map_err(Error::Connect)
}

/// The topology as the first node of `candidates` that answers with a usable
/// one tells it; failing that, the best answer any gave (fewest slots
/// missing), or the last error.
pub(super) async fn read_topology(
    seeds: &Seeds,
    candidates: &[NodeAddr],
    connect_timeout: Duration,
    op_timeout: Duration,
) -> Result<Topology, Error> {
    let mut best: Option<Topology> = None;
    let mut last_error = Error::Settings("no node to ask for the cluster topology");
    let mut seen = BTreeSet::new();
    for node in candidates {
        if !seen.insert(node) {
            continue;
        }
        let answer = async {
            let mut conn = node_connection(seeds, node, connect_timeout, op_timeout).await?;
            let reply: Value = timeout(op_timeout, redis::cmd("CLUSTER").arg("SHARDS").query_async(&mut conn))
                .await
                .map_err(|_| Error::Timeout { op: "cluster shards", after: op_timeout })?
                .map_err(|source| Error::Command { op: "cluster shards", source })?;
            parse_shards(&reply)
        }
        .await;
        match answer {
            Ok(topology) if topology.is_usable() => return Ok(topology),
            Ok(topology) => {
                if best.as_ref().is_none_or(|b| topology.slots_assigned > b.slots_assigned) {
                    best = Some(topology);
                }
            }
            Err(e) => last_error = e,
        }
    }
    best.ok_or(last_error)
}

/// A connection of its own to `node` (not through the cluster client, which
/// only reaches the nodes of its slot map), every reply bounded by
/// `op_timeout`.
async fn node_connection(
    seeds: &Seeds,
    node: &NodeAddr,
    connect_timeout: Duration,
    op_timeout: Duration,
) -> Result<MultiplexedConnection, Error> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(op_timeout));
    let client = seeds.client_for(node)?;
    timeout(connect_timeout, client.get_multiplexed_async_connection_with_config(&config))
        .await
        .map_err(|_| Error::ConnectTimeout(connect_timeout))?
        .map_err(Error::Connect)
}

/// The keys matching `pattern` on `node` alone (`SCAN` is node-local in a
/// cluster), each once, every page bounded by `op_timeout`.
pub(super) async fn scan_node(
    seeds: &Seeds,
    node: &NodeAddr,
    pattern: &str,
    connect_timeout: Duration,
    op_timeout: Duration,
) -> Result<BTreeSet<String>, Error> {
    let mut conn = node_connection(seeds, node, connect_timeout, op_timeout).await?;
    let mut keys = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
        let (next, page): (u64, Vec<String>) = timeout(op_timeout, scan.query_async(&mut conn))
            .await
            .map_err(|_| Error::Timeout { op: "scan", after: op_timeout })?
            .map_err(|source| Error::Command { op: "scan", source })?;
        keys.extend(page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// `CLUSTER SHARDS`'s reply (RESP2 arrays of alternating names and values, or
/// RESP3 maps) as a [`Topology`].
pub(super) fn parse_shards(reply: &Value) -> Result<Topology, Error> {
    let bad = |what: &str| Error::Protocol(format!("CLUSTER SHARDS: {what}"));
    let Value::Array(shards) = reply else { return Err(bad("not an array")) };
    let mut topology = Topology::default();
    for shard in shards {
        let fields = pairs(shard).ok_or_else(|| bad("a shard is not a map"))?;
        let mut slots = 0u32;
        let mut has_primary = false;
        for (name, value) in fields {
            match name.as_str() {
                "slots" => {
                    let Value::Array(bounds) = value else { return Err(bad("slots is not an array")) };
                    for range in bounds.chunks(2) {
                        let [start, end] = range else { return Err(bad("odd slot bounds")) };
                        let (Some(start), Some(end)) = (int(start), int(end)) else {
                            return Err(bad("a slot bound is not a number"));
                        };
                        let width =
                            u32::try_from(end - start + 1).map_err(|_| bad("slot range ends before it starts"))?;
                        slots += width;
                    }
                }
                "nodes" => {
                    let Value::Array(nodes) = value else { return Err(bad("nodes is not an array")) };
                    for node in nodes {
                        // A node that knows no address of its own (alone,
                        // never met another node) cannot be reached: skipped.
                        let Some(node) = parse_node(node).map_err(|()| bad("unreadable node"))? else { continue };
                        has_primary |= node.role == Role::Primary;
                        topology.nodes.push(node);
                    }
                }
                _ => {}
            }
        }
        if has_primary {
            topology.slots_assigned += slots;
        }
    }
    Ok(topology)
}

/// A node, `Ok(None)` when it announces no address.
fn parse_node(node: &Value) -> Result<Option<Node>, ()> {
    let mut ip = None;
    let mut endpoint = None;
    let mut port = None;
    let mut role = None;
    let mut health = String::new();
    for (name, value) in pairs(node).ok_or(())? {
        match name.as_str() {
            "ip" => ip = text(value),
            "endpoint" => endpoint = text(value),
            "port" => port = int(value).and_then(|p| u16::try_from(p).ok()),
            "role" => {
                role = match text(value).ok_or(())?.as_str() {
                    "master" | "primary" => Some(Role::Primary),
                    _ => Some(Role::Replica),
                };
            }
            "health" => health = text(value).unwrap_or_default(),
            _ => {}
        }
    }
    // `endpoint` is what clients are told to use (an IP unless the node
    // announces a hostname); `?` means unknown.
    let (Some(port), Some(role)) = (port, role) else { return Err(()) };
    let Some(host) = endpoint.filter(|e| !e.is_empty() && e != "?").or(ip.filter(|ip| !ip.is_empty())) else {
        return Ok(None);
    };
    Ok(Some(Node { addr: NodeAddr { host, port }, role, health }))
}

/// A map's entries, from a RESP3 map or a RESP2 array of names and values.
fn pairs(v: &Value) -> Option<Vec<(String, &Value)>> {
    match v {
        Value::Map(entries) => entries.iter().map(|(k, v)| Some((text(k)?, v))).collect(),
        Value::Array(items) if items.len() % 2 == 0 => {
            items.chunks(2).map(|kv| Some((text(&kv[0])?, &kv[1]))).collect()
        }
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("replication-offset"),
            Value::Int(42),
            bulk("health"),
            bulk(health),
        ])
    }

    fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(slots.iter().map(|s| Value::Int(*s)).collect()),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn a_three_shard_reply_lists_every_node_and_covers_every_slot() {
        let reply = Value::Array(vec![
            shard(&[0, 5460], vec![node(7000, "master", "online"), node(7005, "replica", "online")]),
            shard(&[5461, 10922], vec![node(7001, "master", "online"), node(7003, "replica", "online")]),
            shard(&[10923, 16000, 16001, 16383], vec![node(7002, "master", "failed")]),
        ]);
        let t = parse_shards(&reply).unwrap();
        assert_eq!(t.nodes.len(), 5);
        assert!(t.is_usable(), "{t:?}");
        assert_eq!(t.primaries().iter().map(|a| a.port).collect::<Vec<_>>(), vec![7000, 7001, 7002]);
        assert_eq!(
            t.nodes[1],
            Node {
                addr: NodeAddr { host: "127.0.0.1".into(), port: 7005 },
                role: Role::Replica,
                health: "online".into()
            }
        );
    }

    #[test]
    fn a_primary_replaced_by_its_replica_is_listed_as_failed() {
        // What Redis 7.0 answers after a failover while the old primary is
        // down: still a primary, with no slots, health `fail`.
        let reply = Value::Array(vec![
            shard(&[], vec![node(7002, "master", "fail")]),
            shard(&[0, 16383], vec![node(7003, "master", "online"), node(7004, "replica", "loading")]),
        ]);
        let t = parse_shards(&reply).unwrap();
        assert!(t.is_usable());
        let failed: Vec<u16> = t.nodes.iter().filter(|n| n.is_failed()).map(|n| n.addr.port).collect();
        assert_eq!(failed, [7002]);
    }

    #[test]
    fn slots_of_a_shard_without_a_primary_do_not_count() {
        let reply = Value::Array(vec![
            shard(&[0, 8191], vec![node(7000, "master", "online")]),
            shard(&[8192, 16383], vec![node(7003, "replica", "online")]),
        ]);
        let t = parse_shards(&reply).unwrap();
        assert_eq!(t.slots_assigned, 8192);
        assert!(!t.is_usable());
    }

    #[test]
    fn a_node_alone_with_no_slots_is_not_usable() {
        let t = parse_shards(&Value::Array(vec![shard(&[], vec![node(7000, "master", "online")])])).unwrap();
        assert!(!t.is_usable());
        assert_eq!(t.nodes.len(), 1);
    }

    #[test]
    fn a_node_without_an_address_is_skipped() {
        // What a cluster-enabled node that never met another one answers.
        let lonely = Value::Array(vec![
            bulk("port"),
            Value::Int(7399),
            bulk("ip"),
            bulk(""),
            bulk("endpoint"),
            bulk(""),
            bulk("role"),
            bulk("master"),
            bulk("health"),
            bulk("online"),
        ]);
        let t = parse_shards(&Value::Array(vec![shard(&[], vec![lonely])])).unwrap();
        assert!(t.nodes.is_empty());
        assert!(!t.is_usable());
    }

    #[test]
    fn unreadable_replies_are_errors_not_panics() {
        for reply in [
            Value::Nil,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![shard(&[10, 5], vec![])]),
            Value::Array(vec![shard(&[1], vec![])]),
            Value::Array(vec![shard(&[], vec![Value::Array(vec![bulk("port")])])]),
        ] {
            assert!(parse_shards(&reply).is_err(), "{reply:?}");
        }
    }

    #[test]
    fn seeds_refuse_a_database_number_and_an_empty_list() {
        assert!(Seeds::parse(&[]).is_err());
        assert!(Seeds::parse(&["redis://127.0.0.1:7000/1".to_owned()]).is_err());
        let seeds =
            Seeds::parse(&["redis://u:p@127.0.0.1:7000".to_owned(), "redis://127.0.0.1:7001".to_owned()]).unwrap();
        assert_eq!(seeds.addrs().len(), 2);
        let client = seeds.client_for(&NodeAddr { host: "127.0.0.2".into(), port: 7009 }).unwrap();
        let info = client.get_connection_info();
        assert_eq!(info.addr().to_string(), "127.0.0.2:7009");
        assert_eq!(info.redis_settings().password(), Some("p"), "the seeds' credentials reach every node");
    }
}
