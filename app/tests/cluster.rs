//! The service end to end on a real Redis Cluster (3 primaries, 3 replicas:
//! `scripts/redis-cluster.sh start`, which the test command runs) and real
//! PostgreSQL: the same guarantees as on one server, through the faults a
//! cluster adds. Carts on every primary released by their own node's expired
//! events; three instances releasing every hold exactly once; a primary
//! killed under load (503 only until its replica takes over, the promoted
//! node's events heard, conservation exact); slots resharded under load (no
//! 5xx but 503, no session lost); a primary restarted empty (its carts' stock
//! back by the sweeper); a client's hold quota shared by two instances, freed
//! by checkout and abandon, its top holders seen on every primary (a 503,
//! not a shorter list, while one does not answer; after a failover, on the
//! promoted replica).
//!
//! The tests change the cluster (failover, reshard, restart), so they run one
//! at a time ([`CLUSTER`]) and never assume which port is a primary: they read
//! it from `CLUSTER NODES`.

use cartd_test_support::app as support;
use cartd_test_support::cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use adapters::redis_store::{ListenerSettings, RedisExpiryListener};
use domain::CartId;
use domain::ports::ExpiryEvents;
use http::{Method, StatusCode};
use support::{Isolation, TestApp, spawn_cluster_app_in};
use tokio::sync::Mutex;

static CLUSTER: Mutex<()> = Mutex::const_new(());

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/redis-cluster.sh");

/// Runs `scripts/redis-cluster.sh ARGS`.
fn cluster_script(args: &[&str]) {
    let out = std::process::Command::new(SCRIPT).args(args).output().expect("scripts/redis-cluster.sh runs");
    assert!(out.status.success(), "redis-cluster.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The Redis key of session `id` for an instance in `iso`.
fn key_of(iso: &Isolation, session: &str) -> String {
    format!("{}cart:{{{session}}}", iso.prefix)
}

/// The primary holding `session`'s key.
async fn owner_of(iso: &Isolation, session: &str) -> String {
    let nodes = cluster::nodes().await;
    cluster::owner(&nodes, cluster::keyslot(&key_of(iso, session)).await).expect("every slot has a primary")
}

/// Waits until every node of the cluster says `cluster_state:ok` and three
/// primaries serve slots, none of them `not` (at most 30 s).
async fn wait_cluster_ok(not: Option<&str>) -> Duration {
    let started = Instant::now();
    loop {
        let primaries = cluster::primaries().await;
        let mut ok = primaries.len() == 3 && not.is_none_or(|n| !primaries.iter().any(|p| p == n));
        if ok {
            for (addr, ..) in cluster::nodes().await {
                let Ok(client) = redis::Client::open(format!("redis://{addr}")) else { continue };
                let Ok(mut con) = client.get_multiplexed_async_connection().await else {
                    ok = false;
                    break;
                };
                let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut con).await.unwrap_or_default();
                ok &= info.contains("cluster_state:ok");
            }
        }
        if ok {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "cluster not ok after 30 s: {primaries:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_released(app: &TestApp, item: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let (_, reserved, _) = app.stock(item).await;
        if reserved == 0 {
            return;
        }
        assert!(started.elapsed() < limit, "{item} still has {reserved} reserved after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes the test's keys (every primary) and schema.
async fn cleanup(iso: &Isolation) {
    cluster::flush_prefix(&iso.prefix).await;
    let (client, connection) = tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("drop schema if exists {} cascade", iso.schema)).await.unwrap();
}

/// One answer seen by the load.
#[derive(Debug)]
struct Seen {
    at: Instant,
    status: u16,
    retry_after: bool,
}

/// Shoppers opening carts of one unit of `item` and reading them back, on
/// every instance in turn, until stopped. Each keeps the sessions it opened.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Seen>, Vec<String>)>>,
}

impl Load {
    fn start(apps: &Arc<Vec<TestApp>>, item: &'static str, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|w| {
                let (apps, stop) = (apps.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut seen, mut sessions) = (Vec::new(), Vec::new());
                    let mut n = w;
                    while !stop.load(Ordering::Relaxed) {
                        let app = &apps[n % apps.len()];
                        n += 1;
                        let res = app.set_line_new("p1", item, 1).await;
                        let record = |res: &support::TestResponse| Seen {
                            at: Instant::now(),
                            status: res.status.as_u16(),
                            retry_after: res.header("retry-after").is_some(),
                        };
                        seen.push(record(&res));
                        if res.status != StatusCode::OK {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        let session = res.session();
                        let read = app.cart(&session).await;
                        seen.push(record(&read));
                        sessions.push(session);
                    }
                    (seen, sessions)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) -> (Vec<Seen>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut seen, mut sessions) = (Vec::new(), Vec::new());
        for t in self.tasks {
            let (s, c) = t.await.unwrap();
            seen.extend(s);
            sessions.extend(c);
        }
        (seen, sessions)
    }
}

/// `redis-cli --cluster reshard`, moving `slots` slots from node id `from` to
/// node id `to`, asking `via` (on a blocking thread: the load runs meanwhile).
async fn reshard(via: &str, from: &str, to: &str, slots: u32) -> std::process::Output {
    let args: Vec<String> = [
        "--cluster",
        "reshard",
        via,
        "--cluster-from",
        from,
        "--cluster-to",
        to,
        "--cluster-slots",
        &slots.to_string(),
        "--cluster-yes",
        "--cluster-pipeline",
        "10",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    tokio::task::spawn_blocking(move || std::process::Command::new("redis-cli").args(&args).output())
        .await
        .unwrap()
        .expect("redis-cli runs")
}

fn statuses(seen: &[Seen]) -> BTreeMap<u16, usize> {
    let mut by = BTreeMap::new();
    for s in seen {
        *by.entry(s.status).or_default() += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_on_every_primary_are_released_by_their_own_nodes_expired_events_with_the_sweeper_off() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    // The sweeper is an hour away: only expiry events can release.
    let app =
        spawn_cluster_app_in(&iso, &[("CART__SESSION__TTL_SECS", "2"), ("CART__SWEEPER__INTERVAL_MS", "3600000")])
            .await;
    let m = app.metrics().await;
    assert_eq!(m.get("cartd_expiry_listener_known_nodes", &[]), Some(6.0));
    let started = Instant::now();
    while app.metrics().await.get("cartd_expiry_listener_subscribed_nodes", &[]) != Some(6.0) {
        assert!(started.elapsed() < Duration::from_secs(5), "every node subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.set_stock("c-1", 1000).await;
    let nodes = cluster::nodes().await;
    let mut con = cluster::node(&cluster::primaries().await[0]).await;
    let mut by_primary: BTreeMap<String, usize> = BTreeMap::new();
    let mut opened = 0;
    while by_primary.len() < 3 || by_primary.values().any(|n| *n < 3) {
        let session = app.set_line_new("p1", "c-1", 2).await.session();
        let slot: u16 =
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key_of(&iso, &session)).query_async(&mut con).await.unwrap();
        *by_primary.entry(cluster::owner(&nodes, slot).expect("a primary")).or_default() += 1;
        opened += 1;
        assert!(opened < 200, "carts land on every primary: {by_primary:?}");
    }
    let last_deadline = Instant::now() + Duration::from_secs(2);
    assert!(app.stock("c-1").await.1 > 0, "held until the carts expire");
    // Every cart's stock is back within a second of the last deadline.
    wait_released(&app, "c-1", (last_deadline + Duration::from_secs(1)).saturating_duration_since(Instant::now()))
        .await;
    assert_eq!(app.stock("c-1").await, (1000, 0, 0));
    let released =
        app.metrics().await.value("cartd_hold_units_total", &[("change", "released"), ("cause", "expiry_event")]);
    assert_eq!(released, f64::from(2 * u32::try_from(opened).unwrap()), "all by expiry events: {by_primary:?}");
    println!("{opened} carts over the primaries {by_primary:?}, all released by their expired events");
    cleanup(&iso).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_the_cluster_release_every_hold_exactly_once() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    let vars = [("CART__SESSION__TTL_SECS", "2"), ("CART__SWEEPER__INTERVAL_MS", "200")];
    let apps = Arc::new(vec![
        spawn_cluster_app_in(&iso, &vars).await,
        spawn_cluster_app_in(&iso, &vars).await,
        spawn_cluster_app_in(&iso, &vars).await,
    ]);
    apps[0].set_stock("e-1", 100_000).await;
    let load = Load::start(&apps, "e-1", 12);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (seen, sessions) = load.stop().await;
    let by = statuses(&seen);
    assert!(by.keys().all(|s| *s == 200), "only 200 on a healthy cluster: {by:?}");
    let held = i64::try_from(sessions.len()).unwrap();
    assert!(held > 50, "{held} carts");
    wait_released(&apps[1], "e-1", Duration::from_secs(15)).await;
    for app in apps.iter() {
        assert_eq!(app.stock("e-1").await, (100_000, 0, 0), "every unit back exactly once");
    }
    let released: f64 = {
        let mut r = 0.0;
        for app in apps.iter() {
            let m = app.metrics().await;
            r += m.value("cartd_hold_units_total", &[("change", "released"), ("cause", "expiry_event")])
                + m.value("cartd_hold_units_total", &[("change", "released"), ("cause", "sweeper")]);
        }
        r
    };
    assert_eq!(released, held as f64, "each of the {held} units released once over the three instances");
    cleanup(&iso).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_gives_503_only_until_its_replica_takes_over() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    let vars = [("CART__SESSION__TTL_SECS", "3"), ("CART__SWEEPER__INTERVAL_MS", "500")];
    let apps = Arc::new(vec![spawn_cluster_app_in(&iso, &vars).await, spawn_cluster_app_in(&iso, &vars).await]);
    apps[0].set_stock("f-1", 100_000).await;
    // A listener of the test's own, sweeper-free, to hear the promoted node.
    let mut listener = RedisExpiryListener::spawn(&ListenerSettings {
        cluster_nodes: cartd_test_support::servers::redis_cluster_nodes(),
        topology_interval: Duration::from_millis(500),
        ..ListenerSettings::new(String::new(), iso.prefix.clone())
    })
    .unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), listener.status().wait_connected()).await.unwrap_or(false));

    let load = Load::start(&apps, "f-1", 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = cluster::primaries().await.remove(0);
    let before = cluster::nodes().await;
    let shard_slot = before.iter().find(|(a, ..)| *a == victim).and_then(|(_, _, slots)| slots.first()).unwrap().0;
    let killed_at = Instant::now();
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query_async::<()>(&mut cluster::node(&victim).await).await;
    let took = wait_cluster_ok(Some(&victim)).await;
    let promoted_at = Instant::now();
    let promoted = cluster::owner(&cluster::nodes().await, shard_slot).expect("the shard has a primary again");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (seen, sessions) = load.stop().await;

    let by = statuses(&seen);
    println!("primary {victim} killed; {promoted} promoted, cluster ok after {took:?}; answers {by:?}");
    assert!(by.keys().all(|s| [200, 404, 503].contains(s)), "no 5xx but 503: {by:?}");
    assert!(seen.iter().filter(|s| s.status == 503).all(|s| s.retry_after), "every 503 says Retry-After");
    assert!(by.get(&503).is_some_and(|n| *n > 0), "requests for the dead primary's slots got 503: {by:?}");
    let last_503 = seen.iter().filter(|s| s.status == 503).map(|s| s.at).max().unwrap();
    let first_503 = seen.iter().filter(|s| s.status == 503).map(|s| s.at).min().unwrap();
    assert!(first_503 >= killed_at, "no 503 before the kill");
    // The cluster client learns the new primary on its next MOVED or failed
    // attempt; give it one request timeout past the promotion.
    assert!(last_503 <= promoted_at + Duration::from_secs(1), "503s end with the failover");
    println!(
        "503s from {:?} to {:?} after the kill",
        first_503.duration_since(killed_at),
        last_503.duration_since(killed_at)
    );
    // Reads of carts whose write reached the old primary but not its replica
    // may be 404: such a session is lost, its hold released by the sweeper.
    let lost = seen.iter().filter(|s| s.status == 404).count();
    assert!(lost * 10 <= sessions.len(), "{lost} of {} sessions lost", sessions.len());

    // The promoted node's expired events are heard: carts on its slots.
    let mut on_promoted = BTreeSet::new();
    for _ in 0..300 {
        if on_promoted.len() == 3 {
            break;
        }
        let session = apps[0].set_line_new("p1", "f-1", 1).await.session();
        if owner_of(&iso, &session).await == promoted {
            on_promoted.insert(CartId::parse(&session).unwrap());
        }
    }
    assert_eq!(on_promoted.len(), 3, "carts on the promoted node {promoted}");
    let until = Instant::now() + Duration::from_secs(6);
    let mut pending = on_promoted;
    while !pending.is_empty() {
        let id = tokio::time::timeout_at(tokio::time::Instant::from_std(until), listener.next_expired())
            .await
            .unwrap_or_else(|_| panic!("expiries from the promoted node {promoted} not heard: {pending:?}"));
        pending.remove(&id);
    }
    wait_released(&apps[1], "f-1", Duration::from_secs(15)).await;
    assert_eq!(apps[0].stock("f-1").await, (100_000, 0, 0), "conservation exact after the failover");
    // The killed node comes back as a replica of its old shard's new primary.
    cluster_script(&["restart-node", victim.rsplit(':').next().unwrap()]);
    wait_cluster_ok(None).await;
    cleanup(&iso).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_resharded_under_load_lose_no_session_and_give_no_5xx() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    let vars = [("CART__SESSION__TTL_SECS", "120"), ("CART__SWEEPER__INTERVAL_MS", "500")];
    let apps = Arc::new(vec![spawn_cluster_app_in(&iso, &vars).await, spawn_cluster_app_in(&iso, &vars).await]);
    apps[0].set_stock("g-1", 100_000).await;
    let primaries = cluster::primaries().await;
    let id_of = |addr: String| async move {
        let mut con = cluster::node(&addr).await;
        redis::cmd("CLUSTER").arg("MYID").query_async::<String>(&mut con).await.unwrap()
    };
    let (from, to) = (id_of(primaries[0].clone()).await, id_of(primaries[1].clone()).await);

    let load = Load::start(&apps, "g-1", 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster::nodes().await;
    let started = Instant::now();
    let out = reshard(&primaries[2], &from, &to, 400).await;
    assert!(out.status.success(), "reshard: {}", String::from_utf8_lossy(&out.stdout));
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (seen, sessions) = load.stop().await;
    let by = statuses(&seen);
    println!("400 slots moved {} -> {} in {took:?} under load; answers {by:?}", primaries[0], primaries[1]);
    assert!(by.keys().all(|s| *s == 200 || *s == 503), "MOVED/ASK followed, no 5xx but 503: {by:?}");
    assert!(seen.iter().filter(|s| s.status == 503).all(|s| s.retry_after));
    // Every session opened is still there, with its line, those whose slot
    // moved included (their reads followed MOVED).
    let after = cluster::nodes().await;
    let mut moved = 0;
    for session in &sessions {
        let slot = cluster::keyslot(&key_of(&iso, session)).await;
        moved += usize::from(cluster::owner(&before, slot) != cluster::owner(&after, slot));
    }
    assert!(moved > 0, "some sessions lived in the slots that moved");
    println!("{moved} of {} sessions had their slot moved", sessions.len());
    for (n, session) in sessions.iter().enumerate() {
        let res = apps[n % 2].cart(session).await;
        assert_eq!(res.status, StatusCode::OK, "session {session} lost");
        assert_eq!(res.json()["lines"].as_array().map(Vec::len), Some(1));
    }
    let held = i64::try_from(sessions.len()).unwrap();
    assert_eq!(apps[0].stock("g-1").await, (100_000 - held, held, 0));
    // Give the slots back, so the next test meets an even cluster.
    let out = reshard(&primaries[2], &to, &from, 400).await;
    assert!(out.status.success(), "reshard back: {}", String::from_utf8_lossy(&out.stdout));
    for session in &sessions {
        assert_eq!(
            apps[0].request(Method::DELETE, "/v1/cart", &[("cart-session-id", session)], None).await.status,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(apps[0].stock("g-1").await, (100_000, 0, 0));
    cleanup(&iso).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_restarted_empty_loses_its_carts_and_the_sweeper_gives_their_stock_back() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    let app =
        spawn_cluster_app_in(&iso, &[("CART__SESSION__TTL_SECS", "12"), ("CART__SWEEPER__INTERVAL_MS", "300")]).await;
    app.set_stock("h-1", 1000).await;
    let victim = cluster::primaries().await.remove(0);
    // One look at the slot map and one connection for CLUSTER KEYSLOT: the
    // carts must all be opened, and the node restarted, well within 12 s.
    let nodes = cluster::nodes().await;
    let mut con = cluster::node(&victim).await;
    let mut on_victim = Vec::new();
    let mut elsewhere = Vec::new();
    let opening = Instant::now();
    while on_victim.len() < 5 || elsewhere.len() < 5 {
        let session = app.set_line_new("p1", "h-1", 1).await.session();
        let slot: u16 =
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key_of(&iso, &session)).query_async(&mut con).await.unwrap();
        if cluster::owner(&nodes, slot).as_deref() == Some(victim.as_str()) {
            on_victim.push(session);
        } else {
            elsewhere.push(session);
        }
    }
    println!("{} carts opened in {:?}", on_victim.len() + elsewhere.len(), opening.elapsed());
    let opened = i64::try_from(on_victim.len() + elsewhere.len()).unwrap();
    // Faster than the node timeout: the node comes back as the same
    // primary, without its data (no persistence), and its replica resyncs.
    let restarted_at = Instant::now();
    cluster_script(&["restart-node", victim.rsplit(':').next().unwrap(), "--empty"]);
    let took = wait_cluster_ok(None).await;
    println!("{victim} restarted empty, cluster ok after {:?} (wait {took:?})", restarted_at.elapsed());
    assert!(cluster::primaries().await.contains(&victim), "restarted before any failover");
    for session in &on_victim {
        app.cart(session).await.assert_error(404, "session_not_found");
    }
    for session in &elsewhere {
        let res = app.cart(session).await;
        assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
    }
    assert_eq!(app.stock("h-1").await, (1000 - opened, opened, 0), "the lost carts' units are still held");
    // The restarted node has no scripts either: a new cart there works.
    loop {
        let session = app.set_line_new("p2", "h-1", 1).await.session();
        if owner_of(&iso, &session).await == victim {
            break;
        }
    }
    wait_released(&app, "h-1", Duration::from_secs(25)).await;
    assert_eq!(app.stock("h-1").await, (1000, 0, 0), "every unit back, the lost carts' by the sweeper");
    cleanup(&iso).await;
}

/// The quota settings of the quota test: only the held-units quota, 6 units;
/// clients told apart by `X-Forwarded-For` from the test (a trusted proxy).
const QUOTAS: [(&str, &str); 6] = [
    ("CART__QUOTAS__ENABLED", "true"),
    ("CART__QUOTAS__CARTS_PER_MINUTE", "0"),
    ("CART__QUOTAS__OPEN_CARTS", "0"),
    ("CART__QUOTAS__HELD_UNITS", "6"),
    ("CART__QUOTAS__HELD_SHARE_PERCENT", "0"),
    ("CART__QUOTAS__TRUSTED_PROXIES", "127.0.0.1"),
];

/// `client` sets line p1 of `session` to `quantity` of `item`.
async fn set_as(app: &TestApp, client: &str, session: &str, item: &str, quantity: i64) -> support::TestResponse {
    let body = serde_json::json!({"inventory_id": item, "quantity": quantity});
    app.json(Method::PUT, "/v1/cart/items/p1", &[("cart-session-id", session), ("x-forwarded-for", client)], &body)
        .await
}

/// `client` opens a cart on `app` and puts `quantity` of `item` in it.
async fn cart_as(app: &TestApp, client: &str, item: &str, quantity: i64) -> (String, support::TestResponse) {
    let res = app.request(Method::POST, "/v1/carts", &[("x-forwarded-for", client)], None).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&res.body));
    let session = res.session();
    let res = set_as(app, client, &session, item, quantity).await;
    (session, res)
}

/// The Redis key counting what `client`'s carts hold of `item`.
fn held_key(iso: &Isolation, client: &str, item: &str) -> String {
    format!("{}lim:{{{client}}}:h:{item}", iso.prefix)
}

/// One client address per primary: `(client, primary)` such that the
/// client's quota keys (hash-tagged by the client) live on that primary.
async fn clients_on_every_primary(iso: &Isolation, item: &str) -> Vec<(String, String)> {
    let nodes = cluster::nodes().await;
    let mut by_primary: BTreeMap<String, String> = BTreeMap::new();
    for n in 1..=250 {
        let client = format!("198.51.100.{n}");
        let owner = cluster::owner(&nodes, cluster::keyslot(&held_key(iso, &client, item)).await).expect("a primary");
        by_primary.entry(owner).or_insert(client);
        if by_primary.len() == 3 {
            break;
        }
    }
    assert_eq!(by_primary.len(), 3, "clients on every primary: {by_primary:?}");
    by_primary.into_iter().map(|(primary, client)| (client, primary)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hold_quota_holds_across_two_instances_and_the_admin_route_sees_holders_on_every_primary() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    let a = spawn_cluster_app_in(&iso, &QUOTAS).await;
    let b = spawn_cluster_app_in(&iso, &QUOTAS).await;
    a.set_stock("q-1", 1000).await;
    let clients = clients_on_every_primary(&iso, "q-1").await;
    let hoarder = clients[0].0.as_str();

    // 4 held through one instance: 3 more through the other are refused,
    // with what may still be held, and hold nothing.
    let (first, res) = cart_as(&a, hoarder, "q-1", 4).await;
    assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
    let (second, res) = cart_as(&b, hoarder, "q-1", 3).await;
    res.assert_error(429, "hold_limit_reached");
    assert_eq!(res.json()["may_hold"], 2);
    assert!(res.header("retry-after").is_some());
    assert_eq!(b.stock("q-1").await, (996, 4, 0), "the refused change held nothing");
    assert_eq!(set_as(&b, hoarder, &second, "q-1", 2).await.status, StatusCode::OK);
    cart_as(&a, hoarder, "q-1", 1).await.1.assert_error(429, "hold_limit_reached");

    // A checkout (on the other instance) frees its cart's 4 units.
    let res = b.request(Method::POST, "/v1/cart/checkout", &[("cart-session-id", &first)], None).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&res.body));
    let (third, res) = cart_as(&a, hoarder, "q-1", 4).await;
    assert_eq!(res.status, StatusCode::OK, "checkout freed the quota: {}", String::from_utf8_lossy(&res.body));
    cart_as(&b, hoarder, "q-1", 1).await.1.assert_error(429, "hold_limit_reached");
    // An abandon (on the other instance) frees its cart's 4 units too.
    let res = b.request(Method::DELETE, "/v1/cart", &[("cart-session-id", &third)], None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let (_, res) = cart_as(&b, hoarder, "q-1", 4).await;
    assert_eq!(res.status, StatusCode::OK, "abandon freed the quota: {}", String::from_utf8_lossy(&res.body));

    // Two more clients, whose counts live on the two other primaries.
    let (_, res) = cart_as(&b, &clients[1].0, "q-1", 5).await;
    assert_eq!(res.status, StatusCode::OK);
    let (_, res) = cart_as(&a, &clients[2].0, "q-1", 3).await;
    assert_eq!(res.status, StatusCode::OK);
    for (client, primary) in &clients {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(held_key(&iso, client, "q-1"))
            .query_async(&mut cluster::node(primary).await)
            .await
            .unwrap();
        assert_eq!(exists, 1, "{client}'s count is on {primary}");
    }
    let distinct: BTreeSet<&String> = clients.iter().map(|(_, p)| p).collect();
    assert_eq!(distinct.len(), 3, "the holders' counts are on three primaries: {clients:?}");

    // Every instance lists all three, with what they hold (4 + 2 units by
    // the hoarder, after its checkout and abandon), and the stock agrees.
    let expected = serde_json::json!([
        {"client": hoarder, "held": 6},
        {"client": clients[1].0, "held": 5},
        {"client": clients[2].0, "held": 3},
    ]);
    let auth = format!("Bearer {}", support::ADMIN_TOKEN);
    for app in [&a, &b] {
        let res = app.get("/v1/admin/limits?inventory_id=q-1&top=10", &[("authorization", &auth)]).await;
        assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
        assert_eq!(res.json()["item"]["top_holders"], expected);
    }
    assert_eq!(a.stock("q-1").await, (1000 - 4 - 14, 14, 4), "4 sold, 6 + 5 + 3 held");
    cleanup(&iso).await;
}

/// `GET /v1/admin/limits` for `item`'s top 10 holders.
async fn top_holders(app: &TestApp, item: &str) -> support::TestResponse {
    let auth = format!("Bearer {}", support::ADMIN_TOKEN);
    app.get(&format!("/v1/admin/limits?inventory_id={item}&top=10"), &[("authorization", &auth)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_route_answers_503_rather_than_miss_a_primary_that_does_not_answer() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    let app = spawn_cluster_app_in(&iso, &QUOTAS).await;
    app.set_stock("q-2", 100).await;
    let clients = clients_on_every_primary(&iso, "q-2").await;
    for (client, _) in &clients {
        assert_eq!(cart_as(&app, client, "q-2", 2).await.1.status, StatusCode::OK);
    }
    let res = top_holders(&app, "q-2").await;
    assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["item"]["top_holders"].as_array().map(Vec::len), Some(3));
    // A primary stops answering (its clients are paused; no failover: the
    // cluster bus carries on), not the one with the refusals' key, so only the
    // walk meets it: it cannot see that node's holders, so the route says so
    // with a 503 within the timeouts instead of a shorter list.
    let refusals_on =
        cluster::owner(&cluster::nodes().await, cluster::keyslot(&format!("{}lim:refused", iso.prefix)).await)
            .expect("a primary");
    let victim = clients.iter().map(|(_, p)| p).find(|p| **p != refusals_on).expect("another primary");
    let mut paused = cluster::node(victim).await;
    let paused_at = Instant::now();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(2500).arg("ALL").query_async(&mut paused).await.unwrap();
    let res = top_holders(&app, "q-2").await;
    assert!(paused_at.elapsed() < Duration::from_millis(2500), "answered before the pause ended");
    res.assert_error(503, "unavailable");
    assert!(res.header("retry-after").is_some());
    tokio::time::sleep_until((paused_at + Duration::from_millis(2600)).into()).await;
    let res = top_holders(&app, "q-2").await;
    assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["item"]["top_holders"].as_array().map(Vec::len), Some(3));
    cleanup(&iso).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_admin_route_walks_the_promoted_primary_not_the_dead_one() {
    let _one = CLUSTER.lock().await;
    wait_cluster_ok(None).await;
    let iso = Isolation::new();
    let app = spawn_cluster_app_in(&iso, &QUOTAS).await;
    app.set_stock("q-3", 100).await;
    let clients = clients_on_every_primary(&iso, "q-3").await;
    for (client, _) in &clients {
        assert_eq!(cart_as(&app, client, "q-3", 2).await.1.status, StatusCode::OK);
    }
    let (victim, on_victim) = (clients[0].1.clone(), clients[0].0.clone());
    // Let the victim's replica receive the count before the victim dies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query_async::<()>(&mut cluster::node(&victim).await).await;
    wait_cluster_ok(Some(&victim)).await;
    // The dead node stays in the topology, as a failed primary without slots,
    // until it comes back: the walk skips it and finds its holder on the
    // promoted replica (the cluster client may need a moment to learn it).
    let started = Instant::now();
    let body = loop {
        let res = top_holders(&app, "q-3").await;
        if res.status == StatusCode::OK {
            break res.json();
        }
        res.assert_error(503, "unavailable");
        assert!(started.elapsed() < Duration::from_secs(5), "503 for 5 s after the failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut listed: Vec<(String, i64)> = body["item"]["top_holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["client"].as_str().unwrap().to_owned(), h["held"].as_i64().unwrap()))
        .collect();
    listed.sort();
    let mut expected: Vec<(String, i64)> = clients.iter().map(|(c, _)| (c.clone(), 2)).collect();
    expected.sort();
    assert_eq!(listed, expected, "{on_victim}'s count found on the promoted replica");
    cluster_script(&["restart-node", victim.rsplit(':').next().unwrap()]);
    wait_cluster_ok(None).await;
    cleanup(&iso).await;
}
