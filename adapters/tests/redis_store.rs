//! Behaviours of the Redis adapter beyond the port contract, against a real
//! Redis: the key layout and its expiry, atomicity under concurrency, the
//! expiry listener (notifications, reconnection), failure when Redis is
//! unreachable, and the memory a cart takes compared with the tutorial's
//! layout.
//!
//! The server is `cartd_test_support::servers::redis_url()`. Tests that
//! change server-wide settings (`CONFIG SET`, `CLIENT KILL`, `SCRIPT FLUSH`)
//! or depend on them hold [`SERVER`] and restore what they changed, even when
//! they fail.

use std::error::Error as _;
use std::time::{Duration, Instant};

use cartd_adapters::SystemClock;
use cartd_adapters::redis_store::{ListenerSettings, Notifications, RedisExpiryListener, RedisSessions, RedisSettings};
use cartd_test_support::fixtures::{line, receipt, secs, set};
use cartd_test_support::isolation::fresh_key_prefix;
use cartd_test_support::servers::redis_url;
use cartd_test_support::stores::{redis_sessions, redis_sessions_with_prefix};
use domain::ports::{Clock, ExpiryEvents, LineChange, PortError, SessionStore};
use domain::{CartId, ProductId, Timestamp};
use redis::aio::MultiplexedConnection;

/// Held by every test that changes server-wide settings or needs expired
/// events to be on, so they do not disturb each other.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn describe(e: &PortError) -> String {
    domain::error_chain(e)
}

fn unreachable(url: &str, e: &dyn std::fmt::Display) -> ! {
    cartd_test_support::servers::unreachable("Redis", url, e)
}

/// A plain connection for looking at what the store wrote.
async fn raw() -> MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).unwrap_or_else(|e| unreachable(&url, &e));
    client.get_multiplexed_async_connection().await.unwrap_or_else(|e| unreachable(&url, &e))
}

async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, cmd: &mut redis::Cmd) -> T {
    cmd.query_async(conn).await.expect("redis command")
}

fn now() -> Timestamp {
    SystemClock.now()
}

/// Every key under `prefix`.
async fn keys_under(conn: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) =
            query(conn, redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(1000))
                .await;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys
}

/// Asserts that `key` expires at `deadline` (to within what passes between
/// reading the clock and `PTTL`).
async fn assert_expires_at(conn: &mut MultiplexedConnection, key: &str, deadline: Timestamp) {
    let before = now();
    let pttl: i64 = query(conn, redis::cmd("PTTL").arg(key)).await;
    let after = now();
    let slack = 5;
    let low = deadline.as_millis() - after.as_millis() - slack;
    let high = deadline.as_millis() - before.as_millis() + slack;
    assert!((low..=high).contains(&pttl), "PTTL {pttl} ms of {key} is not in {low}..={high} (deadline {deadline:?})");
}

#[tokio::test]
async fn a_session_is_one_hash_whose_ttl_matches_its_deadline() {
    let prefix = fresh_key_prefix();
    let store = redis_sessions_with_prefix(&prefix).await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    let deadline = secs(t0, 60);
    store.create(id, deadline, t0).await.unwrap();
    store.apply(id, &set("p1", "sku-a", 2), receipt(1, deadline), t0).await.unwrap().expect("live");
    store.apply(id, &set("p2", "sku-b", 1), receipt(2, deadline), t0).await.unwrap().expect("live");
    store
        .apply(id, &LineChange { product_id: ProductId::parse("p2").unwrap(), line: None }, receipt(3, deadline), t0)
        .await
        .unwrap()
        .expect("live");

    let key = store.key_of(id);
    assert_eq!(key, format!("{prefix}cart:{{{id}}}"));
    assert_eq!(keys_under(&mut conn, &prefix).await, vec![key.clone()], "one key per session, nothing else");
    let kind: String = query(&mut conn, redis::cmd("TYPE").arg(&key)).await;
    assert_eq!(kind, "hash");
    assert_expires_at(&mut conn, &key, deadline).await;
    let mut fields: Vec<(String, String)> = query(&mut conn, redis::cmd("HGETALL").arg(&key)).await;
    fields.sort();
    let expected = [("@", deadline.as_millis().to_string()), ("p1", "1 2 sku-a".to_owned()), ("p2", "3".to_owned())];
    let expected: Vec<(String, String)> = expected.into_iter().map(|(f, v)| (f.to_owned(), v)).collect();
    assert_eq!(fields, expected, "deadline, a line and a tombstone");

    assert!(store.close(id, t0).await.unwrap());
    assert_eq!(keys_under(&mut conn, &prefix).await, Vec::<String>::new(), "close leaves nothing");
}

#[tokio::test]
async fn creating_a_session_again_replaces_its_content_and_expiry() {
    let store = redis_sessions().await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    store.create(id, secs(t0, 60), t0).await.unwrap();
    store.apply(id, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap();
    store.create(id, secs(t0, 20), t0).await.unwrap();
    let cart = store.load(id, t0).await.unwrap().expect("live");
    assert_eq!((cart.expires_at, cart.lines), (secs(t0, 20), vec![]));
    assert_expires_at(&mut conn, &store.key_of(id), secs(t0, 20)).await;
}

#[tokio::test]
async fn a_sliding_deadline_moves_the_keys_expiry() {
    let store = redis_sessions().await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    store.create(id, secs(t0, 10), t0).await.unwrap();
    let key = store.key_of(id);
    assert_expires_at(&mut conn, &key, secs(t0, 10)).await;
    store.apply(id, &set("p1", "sku-a", 1), receipt(1, secs(t0, 10)), t0).await.unwrap();
    assert_expires_at(&mut conn, &key, secs(t0, 10)).await;
    let cart = store.apply(id, &set("p1", "sku-a", 2), receipt(2, secs(t0, 40)), t0).await.unwrap().expect("live");
    assert_eq!(cart.expires_at, secs(t0, 40));
    assert_expires_at(&mut conn, &key, secs(t0, 40)).await;
    // A receipt with an earlier deadline, applied late, does not pull it back.
    store.apply(id, &set("p2", "sku-a", 1), receipt(1, secs(t0, 20)), t0).await.unwrap();
    assert_expires_at(&mut conn, &key, secs(t0, 40)).await;
}

#[tokio::test]
async fn a_stale_version_does_not_overwrite_a_newer_line() {
    let store = redis_sessions().await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    let d = secs(t0, 60);
    store.create(id, d, t0).await.unwrap();
    store.apply(id, &set("p1", "sku-a", 5), receipt(10, d), t0).await.unwrap();
    // 9 < 10 although "9" > "10" as text: versions compare as numbers.
    let cart = store.apply(id, &set("p1", "sku-b", 2), receipt(9, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 5)]);
    let value: String = query(&mut conn, redis::cmd("HGET").arg(store.key_of(id)).arg("p1")).await;
    assert_eq!(value, "10 5 sku-a");
    // The same version again is not newer either.
    store.apply(id, &set("p1", "sku-b", 3), receipt(10, d), t0).await.unwrap();
    let value: String = query(&mut conn, redis::cmd("HGET").arg(store.key_of(id)).arg("p1")).await;
    assert_eq!(value, "10 5 sku-a");
    // Versions beyond 2^53 (where Lua's numbers lose precision) still compare.
    let big = u64::MAX - 1;
    store.apply(id, &set("p1", "sku-c", 1), receipt(big, d), t0).await.unwrap();
    let cart = store.apply(id, &set("p1", "sku-d", 1), receipt(big - 1, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-c", 1)]);
}

#[tokio::test]
async fn concurrent_applies_to_one_line_leave_the_highest_version() {
    const N: u64 = 64;
    let store = redis_sessions().await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    let d = secs(t0, 60);
    store.create(id, d, t0).await.unwrap();
    // Versions in a scrambled order; each sets the quantity to its version.
    let tasks: Vec<_> = (0..N)
        .map(|i| (i * 37) % N + 1)
        .map(|version| {
            let store = store.clone();
            let n = u32::try_from(version).unwrap();
            tokio::spawn(async move { store.apply(id, &set("p1", "sku-a", n), receipt(version, d), t0).await })
        })
        .collect();
    for task in futures_util::future::join_all(tasks).await {
        task.expect("task").expect("apply").expect("live");
    }
    let cart = store.load(id, t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", u32::try_from(N).unwrap())]);
    let value: String = query(&mut conn, redis::cmd("HGET").arg(store.key_of(id)).arg("p1")).await;
    assert_eq!(value, format!("{N} {N} sku-a"));
}

#[tokio::test]
async fn uuid_product_ids_are_packed_and_read_back_unchanged() {
    let store = redis_sessions().await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    let d = secs(t0, 60);
    store.create(id, d, t0).await.unwrap();
    let lower = uuid::Uuid::new_v4().hyphenated().to_string();
    let upper = lower.to_uppercase();
    store.apply(id, &set(&lower, "inv-1", 1), receipt(1, d), t0).await.unwrap();
    store.apply(id, &set(&upper, "inv-2", 2), receipt(1, d), t0).await.unwrap();
    let cart = store.load(id, t0).await.unwrap().expect("live");
    // Ordered by product id: upper-case letters sort before lower-case ones.
    let mut expected = vec![line(&lower, "inv-1", 1), line(&upper, "inv-2", 2)];
    expected.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    assert_eq!(cart.lines, expected);
    let fields: Vec<Vec<u8>> = query(&mut conn, redis::cmd("HKEYS").arg(store.key_of(id))).await;
    let mut lengths: Vec<usize> = fields.iter().map(Vec::len).collect();
    lengths.sort_unstable();
    assert_eq!(lengths, vec![1, 17, 36], "`@`, the canonical UUID packed, the other kept as text");
    // Removing the packed line finds the packed field.
    let removal = LineChange { product_id: ProductId::parse(&lower).unwrap(), line: None };
    let cart = store.apply(id, &removal, receipt(2, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line(&upper, "inv-2", 2)]);
}

#[tokio::test]
async fn unparseable_fields_are_skipped_and_the_rest_of_the_cart_is_read() {
    let store = redis_sessions().await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    let d = secs(t0, 60);
    store.create(id, d, t0).await.unwrap();
    store.apply(id, &set("p1", "sku-a", 2), receipt(1, d), t0).await.unwrap();
    let key = store.key_of(id);
    let junk: [(&[u8], &[u8]); 6] = [
        (b"bad field", b"1 2 sku-a"),
        (b"p2", b"x 2 sku-a"),
        (b"p3", b"1 0 sku-a"),
        (b"p4", b"1 2 sku-a extra"),
        (b"#short", b"1 2 sku-a"),
        (b"p5", b"\xff\xfe"),
    ];
    for (field, value) in junk {
        let _: i64 = query(&mut conn, redis::cmd("HSET").arg(&key).arg(field).arg(value)).await;
    }
    let cart = store.load(id, t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 2)]);
    let cart = store.apply(id, &set("p6", "sku-b", 1), receipt(2, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 2), line("p6", "sku-b", 1)]);

    // A hash without a readable deadline is no session.
    let _: i64 = query(&mut conn, redis::cmd("HSET").arg(&key).arg("@").arg("soon")).await;
    assert_eq!(store.load(id, t0).await.unwrap(), None);
    assert_eq!(store.apply(id, &set("p1", "sku-a", 3), receipt(3, d), t0).await.unwrap(), None);
}

#[tokio::test]
async fn scripts_are_loaded_again_after_the_server_forgets_them() {
    let _server = SERVER.lock().await;
    let store = redis_sessions().await;
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    store.create(id, secs(t0, 60), t0).await.unwrap();
    let _: () = query(&mut conn, redis::cmd("SCRIPT").arg("FLUSH")).await;
    let cart = store.apply(id, &set("p1", "sku-a", 1), receipt(1, secs(t0, 60)), t0).await.unwrap();
    assert_eq!(cart.expect("live").lines, vec![line("p1", "sku-a", 1)]);
    let _: () = query(&mut conn, redis::cmd("SCRIPT").arg("FLUSH")).await;
    assert!(store.close(id, t0).await.unwrap());
}

/// `redis_url()` with its database replaced by `db`.
fn url_with_db(db: u8) -> String {
    let url = redis_url();
    let (scheme, rest) = url.split_once("://").expect("a redis:// url");
    let server = rest.split_once('/').map_or(rest, |(server, _)| server);
    format!("{scheme}://{server}/{db}")
}

#[tokio::test]
async fn a_pooled_connection_that_redis_dropped_is_replaced() {
    // The store works in a database of its own, so its connection can be told
    // apart from everyone else's in CLIENT LIST and killed alone.
    const DB: u8 = 13;
    let mut settings = RedisSettings::new(url_with_db(DB));
    settings.key_prefix = fresh_key_prefix();
    settings.pool_size = 1;
    let store = RedisSessions::connect(&settings).await.unwrap_or_else(|e| unreachable(&settings.url, &describe(&e)));
    let mut conn = raw().await;
    let t0 = now();
    let id = CartId::random();
    store.create(id, secs(t0, 60), t0).await.unwrap();

    let clients: String = query(&mut conn, redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("normal")).await;
    let ids: Vec<&str> = clients
        .lines()
        .filter(|l| l.split(' ').any(|f| f == format!("db={DB}")))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(ids.len(), 1, "one pooled connection in db {DB}: {clients}");
    let _: i64 = query(&mut conn, redis::cmd("CLIENT").arg("KILL").arg("ID").arg(ids[0])).await;

    // The request that meets the dead connection may fail; the pool then
    // replaces it, and every request after that succeeds.
    let first = store.load(id, t0).await;
    if let Err(e) = &first {
        assert_eq!(e.store(), "redis", "{}", describe(e));
    }
    for _ in 0..3 {
        assert!(store.load(id, t0).await.unwrap().is_some(), "the session is still there");
    }
}

#[tokio::test]
async fn ping_answers_true_for_a_reachable_server() {
    assert!(redis_sessions().await.ping().await);
}

#[tokio::test]
async fn a_store_whose_redis_is_unreachable_fails_quickly_with_a_port_error() {
    let mut settings = RedisSettings::new("redis://127.0.0.1:1");
    settings.connect_timeout = Duration::from_millis(300);
    settings.op_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = RedisSessions::connect(&settings).await.expect_err("nothing listens on port 1");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert_eq!(err.store(), "redis");
    assert!(err.source().is_some(), "the driver's error is kept as the cause: {}", describe(&err));

    // A black-holed address (nothing answers, not even a reset) is bounded by
    // the connect timeout too. 10.255.255.1 is unrouted on test machines; if it
    // fails at once instead, the bound still holds.
    let mut settings = RedisSettings::new("redis://10.255.255.1:6379");
    settings.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = RedisSessions::connect(&settings).await.expect_err("nothing answers there");
    assert!(started.elapsed() < Duration::from_millis(1_500), "took {:?}", started.elapsed());
    assert_eq!(err.store(), "redis");

    // Bad settings are refused before any connection is tried.
    let mut settings = RedisSettings::new(redis_url());
    settings.key_prefix = "a{b}".to_owned();
    assert!(RedisSessions::connect(&settings).await.is_err());
    assert!(RedisSessions::connect(&RedisSettings::new("not a url")).await.is_err());

    // The listener does not fail: it keeps trying and says it is not connected.
    let listener = RedisExpiryListener::spawn(&ListenerSettings::new("redis://127.0.0.1:1", "x:")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!listener.status().is_connected());
}

#[tokio::test]
async fn settings_do_not_show_the_password() {
    let settings = RedisSettings::new("redis://user:s3cret@127.0.0.1:6379/0");
    let shown = format!("{settings:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("127.0.0.1:6379"), "{shown}");
    let shown = format!("{:?}", ListenerSettings::for_store(&settings));
    assert!(!shown.contains("s3cret"), "{shown}");
}

/// Waits for the listener's next notice, at most `limit`.
async fn next_notice(listener: &mut RedisExpiryListener, limit: Duration) -> Option<CartId> {
    tokio::time::timeout(limit, listener.next_expired()).await.ok()
}

/// Waits for `id`'s expiry notice: first for Redis's own expire cycle (up to
/// 2 s after the deadline), then, if that has not come round to the key yet,
/// by touching the key, which makes Redis expire it on access. Returns how
/// long after the deadline the notice came and whether Redis expired it by
/// itself.
async fn expect_expiry(
    listener: &mut RedisExpiryListener,
    conn: &mut MultiplexedConnection,
    store: &RedisSessions,
    id: CartId,
    deadline: Timestamp,
) -> (Duration, bool) {
    let wait = deadline.since(now()) + Duration::from_secs(2);
    if let Some(got) = next_notice(listener, wait).await {
        assert_eq!(got, id, "only this store's session expired");
        return (now().since(deadline), true);
    }
    let exists: i64 = query(conn, redis::cmd("EXISTS").arg(store.key_of(id))).await;
    assert_eq!(exists, 0, "the key is gone once touched after its deadline");
    let got = next_notice(listener, Duration::from_secs(1)).await.expect("expiry notice after the key was touched");
    assert_eq!(got, id);
    (now().since(deadline), false)
}

async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn notify_flags(conn: &mut MultiplexedConnection) -> String {
    let (_, flags): (String, String) = query(conn, redis::cmd("CONFIG").arg("GET").arg("notify-keyspace-events")).await;
    flags
}

/// Puts `notify-keyspace-events` back as it was when dropped, even if the test
/// panicked.
struct RestoreNotifyFlags(String);

impl Drop for RestoreNotifyFlags {
    fn drop(&mut self) {
        let restored = redis::Client::open(redis_url().as_str()).and_then(|c| c.get_connection()).and_then(|mut c| {
            redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg(&self.0).query::<()>(&mut c)
        });
        if let Err(e) = restored {
            eprintln!("could not restore notify-keyspace-events to {:?}: {e}", self.0);
        }
    }
}

#[tokio::test]
async fn the_expiry_listener_delivers_a_session_that_expires_and_ignores_other_prefixes() {
    let _server = SERVER.lock().await;
    let prefix = fresh_key_prefix();
    let other = redis_sessions().await;
    let store = redis_sessions_with_prefix(&prefix).await;
    let mut conn = raw().await;
    let mut listener = RedisExpiryListener::spawn(&ListenerSettings::new(redis_url(), prefix)).unwrap();
    let status = listener.status();
    assert!(tokio::time::timeout(Duration::from_secs(3), status.wait_connected()).await.unwrap_or(false));
    wait_until("notifications checked", Duration::from_secs(3), || status.notifications() != Notifications::Unknown)
        .await;
    assert_eq!(status.notifications(), Notifications::On);

    let t0 = now();
    let deadline = secs(t0, 1);
    // Another store's session ends first; a closed session is deleted, not
    // expired: neither may produce a notice.
    other.create(CartId::random(), t0.plus(Duration::from_millis(800)), t0).await.unwrap();
    let closed = CartId::random();
    store.create(closed, deadline, t0).await.unwrap();
    assert!(store.close(closed, t0).await.unwrap());
    let id = CartId::random();
    store.create(id, deadline, t0).await.unwrap();

    let (delay, by_itself) = expect_expiry(&mut listener, &mut conn, &store, id, deadline).await;
    println!("expiry notice {delay:?} after the deadline (expired by Redis itself: {by_itself})");
    assert_eq!(next_notice(&mut listener, Duration::from_millis(300)).await, None, "no other notice");
    assert_eq!(status.notices(), 1);
}

#[tokio::test]
async fn the_listener_switches_notifications_back_on_and_survives_a_killed_connection() {
    let _server = SERVER.lock().await;
    let mut conn = raw().await;
    let _restore = RestoreNotifyFlags(notify_flags(&mut conn).await);
    let _: () = query(&mut conn, redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg("")).await;

    let prefix = fresh_key_prefix();
    let store = redis_sessions_with_prefix(&prefix).await;
    let mut listener = RedisExpiryListener::spawn(&ListenerSettings::new(redis_url(), prefix)).unwrap();
    let status = listener.status();
    wait_until("notifications switched on", Duration::from_secs(3), || status.notifications() == Notifications::On)
        .await;
    let flags = notify_flags(&mut conn).await;
    assert!(flags.contains('E') && (flags.contains('x') || flags.contains('A')), "flags now {flags:?}");

    let killed: i64 = query(&mut conn, redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub")).await;
    assert!(killed >= 1, "the listener's connection was killed");
    wait_until("reconnected", Duration::from_secs(3), || status.reconnects() >= 1 && status.is_connected()).await;

    let t0 = now();
    let id = CartId::random();
    let deadline = secs(t0, 1);
    store.create(id, deadline, t0).await.unwrap();
    let (delay, by_itself) = expect_expiry(&mut listener, &mut conn, &store, id, deadline).await;
    println!("after reconnecting: expiry notice {delay:?} after the deadline (expired by Redis itself: {by_itself})");
}

/// Deletes an ACL user when dropped, even if the test panicked.
struct DeleteAclUser(String);

impl Drop for DeleteAclUser {
    fn drop(&mut self) {
        let deleted = redis::Client::open(redis_url().as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("ACL").arg("DELUSER").arg(&self.0).query::<i64>(&mut c));
        if let Err(e) = deleted {
            eprintln!("could not delete ACL user {}: {e}", self.0);
        }
    }
}

#[tokio::test]
async fn a_listener_that_may_not_use_config_reports_notifications_off() {
    let _server = SERVER.lock().await;
    let mut conn = raw().await;
    let _restore = RestoreNotifyFlags(notify_flags(&mut conn).await);
    let user = format!("cartd-test-{}", CartId::random());
    let _: () = query(
        &mut conn,
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .arg("-config"),
    )
    .await;
    // Deleting the user (which also disconnects its clients) comes last.
    let _user = DeleteAclUser(user.clone());
    let _: () = query(&mut conn, redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg("")).await;

    let url = redis_url();
    let info = redis::Client::open(url.as_str()).unwrap().get_connection_info().clone();
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else { panic!("{url} is not a TCP address") };
    let db = info.redis_settings().db();
    let limited = format!("redis://{user}:pw@{host}:{port}/{db}");
    let listener = RedisExpiryListener::spawn(&ListenerSettings::new(limited, "x:")).unwrap();
    let status = listener.status();
    wait_until("notifications checked", Duration::from_secs(3), || status.notifications() != Notifications::Unknown)
        .await;
    assert_eq!(status.notifications(), Notifications::Off);
    assert!(status.is_connected(), "it still listens, in case the operator switches them on");
}

/// `MEMORY USAGE` of `key`, in bytes.
async fn memory_usage(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    query(conn, redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0)).await
}

#[tokio::test]
async fn redis_memory_per_session_is_at_most_half_of_the_tutorials() {
    let mut conn = raw().await;
    // The production prefix: the measurement is of the real key.
    let store = redis_sessions_with_prefix(&RedisSettings::new(redis_url()).key_prefix).await;
    let t0 = now();
    let id = CartId::random();
    let d = t0.plus(Duration::from_secs(900));
    let lines: Vec<(String, &str, u32)> = [("inv-42", 3), ("inv-7", 1), ("inv-133", 5)]
        .into_iter()
        .map(|(inv, q)| (uuid::Uuid::new_v4().to_string(), inv, q))
        .collect();

    store.create(id, d, t0).await.unwrap();
    for (version, (product, inv, q)) in (1..).zip(&lines) {
        store.apply(id, &set(product, inv, *q), receipt(version, d), t0).await.unwrap().expect("live");
    }
    let ours = memory_usage(&mut conn, &store.key_of(id)).await;

    // The same cart with product ids kept as text, for comparison.
    let text_key = format!("{}-text", store.key_of(id));
    for (version, (product, inv, q)) in (1..).zip(&lines) {
        let value = format!("{version} {q} {inv}");
        let _: i64 = query(&mut conn, redis::cmd("HSET").arg(&text_key).arg(product).arg(value)).await;
    }
    let _: i64 = query(&mut conn, redis::cmd("HSET").arg(&text_key).arg("@").arg(d.as_millis())).await;
    let _: i64 = query(&mut conn, redis::cmd("PEXPIREAT").arg(&text_key).arg(d.as_millis())).await;
    let ours_text = memory_usage(&mut conn, &text_key).await;

    // The tutorial: a session key and an (unexpiring) cart hash of JSON lines.
    let session_key = format!("sessions:{id}");
    let cart_key = format!("cart:{id}");
    let _: () = query(&mut conn, redis::cmd("SETEX").arg(&session_key).arg(900).arg(id.to_string())).await;
    for (product, inv, q) in &lines {
        let json = format!(r#"{{"inventory_id":"{inv}","quantity":{q}}}"#);
        let _: i64 = query(&mut conn, redis::cmd("HSET").arg(&cart_key).arg(product).arg(json)).await;
    }
    let tutorial = memory_usage(&mut conn, &session_key).await + memory_usage(&mut conn, &cart_key).await;

    let _: i64 = query(&mut conn, redis::cmd("DEL").arg(&session_key).arg(&cart_key).arg(&text_key)).await;
    store.close(id, t0).await.unwrap();

    #[allow(clippy::cast_precision_loss)]
    let pct = |n: u64| 100.0 * n as f64 / tutorial as f64;
    println!("memory per session with 3 lines: ours {ours} B ({:.0}% of the tutorial's)", pct(ours));
    println!("  ours with product ids as text: {ours_text} B ({:.0}%)", pct(ours_text));
    println!("  tutorial (sessions:<id> + cart:<id>): {tutorial} B");
    assert!(2 * ours <= tutorial, "ours {ours} B is more than half of the tutorial's {tutorial} B");
}
