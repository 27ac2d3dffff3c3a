//! The Redis session store and expiry listener on a real Redis Cluster (3
//! primaries, 3 replicas: `scripts/redis-cluster.sh start`, which the test
//! command runs; `CARTD_TEST_REDIS_CLUSTER` moves it): the session-store and
//! quotas contracts, sessions spread over every primary with each one's expiry heard
//! from the node that owns it, scripts a node forgot, and the settings a
//! cluster refuses.
//!
//! Tests that change node-wide state (`SCRIPT FLUSH`, `CONFIG SET`, `CLIENT
//! KILL`) hold [`CLUSTER`] and restore what they changed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cartd_adapters::SystemClock;
use cartd_adapters::redis_store::{
    ListenerSettings, Notifications, RedisExpiryListener, RedisQuotas, RedisSessions, RedisSettings,
};
use cartd_test_support::cluster;
use cartd_test_support::fixtures::{line, receipt, secs, set};
use cartd_test_support::isolation::fresh_key_prefix;
use cartd_test_support::servers::redis_cluster_nodes;
use cartd_test_support::stores::{redis_cluster_sessions, redis_cluster_sessions_with_prefix};
use domain::ports::{Clock, ExpiryEvents, SessionStore};
use domain::{CartId, Timestamp};

static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster_sessions() -> (RedisSessions, SystemClock) {
    (redis_cluster_sessions().await, SystemClock)
}

mod session_store {
    cartd_test_support::session_store_contract!(super::cluster_sessions);
}

async fn cluster_quotas() -> (RedisQuotas, SystemClock) {
    (RedisQuotas::new(redis_cluster_sessions().await), SystemClock)
}

mod quotas {
    cartd_test_support::quotas_contract!(super::cluster_quotas);
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn listener_settings(prefix: &str) -> ListenerSettings {
    ListenerSettings {
        cluster_nodes: redis_cluster_nodes(),
        topology_interval: Duration::from_millis(500),
        ..ListenerSettings::new(String::new(), prefix)
    }
}

async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + within;
    while !ok() {
        assert!(tokio::time::Instant::now() < until, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sessions whose slots fall on every primary: `per_primary` on each.
async fn sessions_on_every_primary(per_primary: usize, store: &RedisSessions) -> BTreeMap<String, Vec<CartId>> {
    let nodes = cluster::nodes().await;
    let primaries = cluster::primaries().await;
    assert_eq!(primaries.len(), 3, "three primaries serve slots: {nodes:?}");
    let mut by_primary: BTreeMap<String, Vec<CartId>> = BTreeMap::new();
    for _ in 0..1000 {
        if by_primary.len() == 3 && by_primary.values().all(|ids| ids.len() >= per_primary) {
            break;
        }
        let id = CartId::random();
        let slot = cluster::keyslot(&store.key_of(id)).await;
        let owner = cluster::owner(&nodes, slot).expect("every slot has a primary");
        let ids = by_primary.entry(owner).or_default();
        if ids.len() < per_primary {
            ids.push(id);
        }
    }
    assert_eq!(by_primary.len(), 3);
    by_primary
}

#[tokio::test]
async fn sessions_spread_over_every_primary_and_each_expiry_is_heard_from_its_node_within_a_second() {
    let _cluster = CLUSTER.lock().await;
    let prefix = fresh_key_prefix();
    let store = redis_cluster_sessions_with_prefix(&prefix).await;
    let mut listener = RedisExpiryListener::spawn(&listener_settings(&prefix)).unwrap();
    let status = listener.status();
    assert!(tokio::time::timeout(Duration::from_secs(5), status.wait_connected()).await.unwrap_or(false));
    assert_eq!(status.nodes(), Some((6, 6)), "one subscription per node, replicas included");
    assert_eq!(status.topology_usable(), Some(true));
    wait_until("notifications checked on every node", Duration::from_secs(5), || {
        status.notifications() == Notifications::On
    })
    .await;

    let by_primary = sessions_on_every_primary(4, &store).await;
    let t0 = now();
    let deadline = t0.plus(Duration::from_millis(700));
    let mut pending: BTreeSet<CartId> = BTreeSet::new();
    for ids in by_primary.values() {
        for id in ids {
            store.create(*id, deadline, t0).await.unwrap();
            pending.insert(*id);
        }
    }
    assert_eq!(cluster::count_keys(&prefix).await, 12);
    // Every session is heard within a second of its deadline, from whichever
    // primary holds it, with nobody reading the keys.
    let until = tokio::time::Instant::now() + Duration::from_millis(700) + Duration::from_secs(1);
    while !pending.is_empty() {
        let id = tokio::time::timeout_at(until, listener.next_expired())
            .await
            .unwrap_or_else(|_| panic!("expiries not heard within 1 s of the deadline: {pending:?}"));
        pending.remove(&id);
    }
    assert_eq!(status.notices(), 12, "each expiry heard once: replicas publish none");
}

#[tokio::test]
async fn scripts_a_node_forgot_run_again_even_while_another_node_is_unreachable() {
    let _cluster = CLUSTER.lock().await;
    let store = redis_cluster_sessions().await;
    let t0 = now();
    let by_primary = sessions_on_every_primary(1, &store).await;
    let ids: Vec<CartId> = by_primary.values().flatten().copied().collect();
    for id in &ids {
        store.create(*id, secs(t0, 60), t0).await.unwrap();
    }
    for addr in cluster::nodes().await.iter().map(|(a, ..)| a) {
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut cluster::node(addr).await).await.unwrap();
    }
    // A replica that does not answer (paused) would make a `SCRIPT LOAD`
    // sent to every node fail; the store reloads on the key's node only.
    let replica = cluster::nodes().await.into_iter().find(|(_, primary, _)| !primary).expect("a replica").0;
    let mut paused = cluster::node(&replica).await;
    let paused_at = tokio::time::Instant::now();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL").query_async(&mut paused).await.unwrap();
    for id in &ids {
        let cart = store.apply(*id, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap();
        assert_eq!(cart.expect("live").lines, vec![line("p1", "sku-a", 2)]);
    }
    assert!(paused_at.elapsed() < Duration::from_millis(1500), "the replica was paused all along");
    // The pause ends by itself (a paused node answers no UNPAUSE either).
    tokio::time::sleep_until(paused_at + Duration::from_millis(1600)).await;
    for id in &ids {
        assert!(store.close(*id, t0).await.unwrap());
    }
}

#[tokio::test]
async fn the_listener_resubscribes_a_node_whose_connection_was_killed_and_reads_notifications_without_config_set() {
    let _cluster = CLUSTER.lock().await;
    let prefix = fresh_key_prefix();
    let store = redis_cluster_sessions_with_prefix(&prefix).await;
    let settings = ListenerSettings { configure_notifications: false, ..listener_settings(&prefix) };
    let mut listener = RedisExpiryListener::spawn(&settings).unwrap();
    let status = listener.status();
    assert!(tokio::time::timeout(Duration::from_secs(5), status.wait_connected()).await.unwrap_or(false));
    wait_until("notifications read on every node", Duration::from_secs(5), || {
        status.notifications() == Notifications::On
    })
    .await;

    let by_primary = sessions_on_every_primary(1, &store).await;
    let (victim, ids) = by_primary.iter().next().unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut cluster::node(victim).await)
        .await
        .unwrap();
    assert_eq!(killed, 1, "one listener connection on {victim}");
    wait_until("resubscribed", Duration::from_secs(5), || status.reconnects() >= 1 && status.is_connected()).await;

    let t0 = now();
    store.create(ids[0], t0.plus(Duration::from_millis(300)), t0).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(3), listener.next_expired()).await.expect("heard");
    assert_eq!(heard, ids[0]);
}

#[tokio::test]
async fn cluster_settings_that_would_break_the_layout_are_refused() {
    let mut braces = RedisSettings::cluster(redis_cluster_nodes());
    braces.key_prefix = "{shop}:".to_owned();
    assert!(RedisSessions::connect(&braces).await.is_err(), "a prefix with a hash tag puts every cart on one slot");
    assert!(RedisExpiryListener::spawn(&listener_settings("{shop}:")).is_err());
    let db = RedisSettings::cluster(["redis://127.0.0.1:7000/2"]);
    let e = RedisSessions::connect(&db).await.unwrap_err();
    assert!(domain::error_chain(&e).contains("database 0"), "{}", domain::error_chain(&e));
}

#[tokio::test]
async fn the_store_reads_a_usable_topology_and_the_readiness_ping_passes() {
    let store = redis_cluster_sessions().await;
    assert!(store.is_cluster());
    let topology = store.topology().await.unwrap();
    assert!(topology.is_usable());
    assert_eq!(topology.nodes.len(), 6);
    assert_eq!(topology.primaries().len(), 3);
    assert!(store.ping().await);
}

/// A cluster-enabled `redis-server` of the test's own on `port`, alone and
/// serving no slot: a cluster with no usable topology. Shut down on drop.
struct LonelyNode {
    port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl LonelyNode {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("cartd-lonely-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        Self { port, child, dir }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for LonelyNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn without_a_usable_topology_the_store_does_not_start_and_the_listener_says_so() {
    let node = LonelyNode::start();
    let client = redis::Client::open(node.url()).unwrap();
    let started = std::time::Instant::now();
    while client.get_multiplexed_async_connection().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "redis-server started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = RedisSessions::connect(&RedisSettings::cluster([node.url()])).await.unwrap_err();
    let why = domain::error_chain(&e);
    assert!(why.contains("serves 0 of 16384 slots"), "{why}");

    let listener = RedisExpiryListener::spawn(&ListenerSettings {
        cluster_nodes: vec![node.url()],
        topology_interval: Duration::from_millis(200),
        ..ListenerSettings::new(String::new(), fresh_key_prefix())
    })
    .unwrap();
    let status = listener.status();
    // The node answers, but with no slot served and no address of its own:
    // no usable topology, nothing to subscribe to, not connected.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(status.topology_usable(), Some(false));
    assert_eq!(status.nodes(), Some((0, 0)));
    assert!(!status.is_connected());
}
