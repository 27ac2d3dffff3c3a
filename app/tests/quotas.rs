//! Client quotas (issue 14, denial of inventory) end to end, on the in-memory
//! backend and on Redis + PostgreSQL: each quota refuses with 429 and changes
//! nothing, every way a hold ends frees the quota, the trusted-proxy rule, and
//! what a Redis outage does to the checks.
//!
//! Clients are told apart by `X-Forwarded-For` from a trusted loopback proxy
//! (the test's own address), except in the proxy-rule tests.

use cartd_test_support::app as support;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use support::proxy::Proxy;
use support::{ADMIN_TOKEN, TestApp, TestResponse, redis_url, spawn_app_with, spawn_real_app};

const TRUST_LOOPBACK: (&str, &str) = ("CART__QUOTAS__TRUSTED_PROXIES", "127.0.0.1");

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Real,
}

/// An instance with quotas on and `vars` on top; clients by `X-Forwarded-For`.
async fn spawn(backend: Backend, vars: &[(&str, &str)]) -> TestApp {
    let mut all = vec![
        ("CART__QUOTAS__ENABLED", "true"),
        ("CART__QUOTAS__CARTS_PER_MINUTE", "0"),
        ("CART__QUOTAS__OPEN_CARTS", "0"),
        ("CART__QUOTAS__HELD_UNITS", "0"),
        ("CART__QUOTAS__HELD_SHARE_PERCENT", "0"),
        ("CART__QUOTAS__HELD_SHARE_FLOOR", "0"),
        TRUST_LOOPBACK,
    ];
    all.extend_from_slice(vars);
    match backend {
        Backend::Memory => spawn_app_with(&all).await,
        Backend::Real => spawn_real_app(&all).await,
    }
}

async fn new_cart(app: &TestApp, client: &str) -> TestResponse {
    app.request(Method::POST, "/v1/carts", &[("x-forwarded-for", client)], None).await
}

async fn set(app: &TestApp, client: &str, session: &str, item: &str, quantity: i64) -> TestResponse {
    let body = json!({"inventory_id": item, "quantity": quantity});
    app.json(Method::PUT, "/v1/cart/items/p1", &[("cart-session-id", session), ("x-forwarded-for", client)], &body)
        .await
}

async fn cart_with(app: &TestApp, client: &str, item: &str, quantity: i64) -> (String, TestResponse) {
    let res = new_cart(app, client).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&res.body));
    let session = res.session();
    let res = set(app, client, &session, item, quantity).await;
    (session, res)
}

async fn refusals(app: &TestApp, limit: &str) -> f64 {
    app.metrics().await.value("cartd_limit_refusals_total", &[("limit", limit)])
}

fn retry_after(res: &TestResponse) -> u64 {
    res.header("retry-after").expect("Retry-After").parse().expect("seconds")
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Memory).await } )+ }
        mod real { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Real).await } )+ }
    };
}

on_both_backends!(
    carts_per_minute_refuses_with_429_and_retry_after,
    open_carts_refuses_until_a_cart_is_checked_out_or_abandoned,
    held_units_refuse_beyond_the_cap_across_carts_and_change_nothing,
    the_share_quota_follows_the_items_stock,
    an_expired_cart_frees_its_clients_quota,
    new_carts_made_by_a_change_count_too,
    an_untrusted_peers_forwarded_for_is_ignored,
    the_admin_route_shows_refused_clients_and_top_holders,
);

async fn carts_per_minute_refuses_with_429_and_retry_after(backend: Backend) {
    let app = spawn(backend, &[("CART__QUOTAS__CARTS_PER_MINUTE", "3")]).await;
    // A minute boundary between the three carts and the fourth would let it
    // through: start just after one if we are close to it.
    let into_minute = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    for _ in 0..3 {
        assert_eq!(new_cart(&app, "198.51.100.1").await.status, StatusCode::CREATED);
    }
    let res = new_cart(&app, "198.51.100.1").await;
    res.assert_error(429, "too_many_requests");
    assert!((1..=60).contains(&retry_after(&res)), "until the minute ends: {:?}", res.header("retry-after"));
    assert!(res.header("cart-session-id").is_none(), "no cart was made");
    assert_eq!(new_cart(&app, "198.51.100.2").await.status, StatusCode::CREATED, "another client is not limited");
    assert_eq!(refusals(&app, "carts_per_minute").await, 1.0);
}

async fn open_carts_refuses_until_a_cart_is_checked_out_or_abandoned(backend: Backend) {
    let app = spawn(backend, &[("CART__QUOTAS__OPEN_CARTS", "2")]).await;
    app.set_stock("inv-o", 10).await;
    let (a, res) = cart_with(&app, "198.51.100.3", "inv-o", 1).await;
    assert_eq!(res.status, StatusCode::OK);
    let b = new_cart(&app, "198.51.100.3").await.session();
    let res = new_cart(&app, "198.51.100.3").await;
    res.assert_error(429, "too_many_requests");
    assert!(retry_after(&res) > 800, "until its first cart ends (900 s TTL)");
    // Checkout frees one slot.
    let res = app.request(Method::POST, "/v1/cart/checkout", &[("cart-session-id", &a)], None).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let c = new_cart(&app, "198.51.100.3").await;
    assert_eq!(c.status, StatusCode::CREATED);
    new_cart(&app, "198.51.100.3").await.assert_error(429, "too_many_requests");
    // Abandon frees one too.
    let res = app.request(Method::DELETE, "/v1/cart", &[("cart-session-id", &b)], None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(new_cart(&app, "198.51.100.3").await.status, StatusCode::CREATED);
    assert_eq!(refusals(&app, "open_carts").await, 2.0);
}

async fn held_units_refuse_beyond_the_cap_across_carts_and_change_nothing(backend: Backend) {
    let app = spawn(backend, &[("CART__QUOTAS__HELD_UNITS", "10")]).await;
    app.set_stock("inv-h", 100).await;
    let (first, res) = cart_with(&app, "198.51.100.4", "inv-h", 7).await;
    assert_eq!(res.status, StatusCode::OK);
    let (second, res) = cart_with(&app, "198.51.100.4", "inv-h", 4).await;
    res.assert_error(429, "hold_limit_reached");
    assert_eq!(res.json()["may_hold"], 3, "10 minus the 7 its first cart holds");
    assert!(retry_after(&res) > 800);
    assert_eq!(app.stock("inv-h").await, (93, 7, 0), "the refused change held nothing");
    let cart = app.cart(&second).await.json();
    assert_eq!(cart["lines"], json!([]), "and the cart shows nothing");
    assert_eq!(set(&app, "198.51.100.4", &second, "inv-h", 3).await.status, StatusCode::OK);
    // Lowering is always fine; the freed units can go elsewhere.
    assert_eq!(set(&app, "198.51.100.4", &first, "inv-h", 2).await.status, StatusCode::OK);
    assert_eq!(set(&app, "198.51.100.4", &second, "inv-h", 8).await.status, StatusCode::OK);
    // Removing a line frees its units too.
    let h = [("cart-session-id", first.as_str()), ("x-forwarded-for", "198.51.100.4")];
    assert_eq!(app.request(Method::DELETE, "/v1/cart/items/p1", &h, None).await.status, StatusCode::OK);
    assert_eq!(set(&app, "198.51.100.4", &second, "inv-h", 10).await.status, StatusCode::OK);
    assert_eq!(set(&app, "198.51.100.4", &second, "inv-h", 8).await.status, StatusCode::OK);
    // Another client has a quota of its own.
    let (_, res) = cart_with(&app, "198.51.100.5", "inv-h", 10).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(app.stock("inv-h").await, (82, 18, 0));
    assert_eq!(refusals(&app, "held_units").await, 1.0);
    // A quota refusal is not an insufficient-stock one: a change the stock
    // cannot serve is still 409, and uncounted.
    app.set_stock("inv-h2", 5).await;
    let (_, res) = cart_with(&app, "198.51.100.6", "inv-h2", 8).await;
    res.assert_error(409, "insufficient_stock");
    let (_, res) = cart_with(&app, "198.51.100.6", "inv-h2", 5).await;
    assert_eq!(res.status, StatusCode::OK, "the failed change counted nothing");
    // Over both the quota and the stock: the stock's answer, which says what
    // is left (the storefront shows it), and no quota refusal is counted.
    app.set_stock("inv-h3", 5).await;
    assert_eq!(cart_with(&app, "198.51.100.7", "inv-h3", 4).await.1.status, StatusCode::OK);
    let (_, res) = cart_with(&app, "198.51.100.7", "inv-h3", 8).await;
    res.assert_error(409, "insufficient_stock");
    assert_eq!(res.json()["available"], 1);
    assert_eq!(refusals(&app, "held_units").await, 1.0);
}

async fn the_share_quota_follows_the_items_stock(backend: Backend) {
    let app = spawn(backend, &[("CART__QUOTAS__HELD_SHARE_PERCENT", "5")]).await;
    app.set_stock("flash", 500).await;
    let (_, res) = cart_with(&app, "198.51.100.7", "flash", 25).await;
    assert_eq!(res.status, StatusCode::OK, "5 % of 500");
    let (_, res) = cart_with(&app, "198.51.100.7", "flash", 1).await;
    res.assert_error(429, "hold_limit_reached");
    assert_eq!(res.json()["may_hold"], 0);
    // A small item stays sellable: one unit each.
    app.set_stock("tiny", 3).await;
    let (_, res) = cart_with(&app, "198.51.100.7", "tiny", 1).await;
    assert_eq!(res.status, StatusCode::OK);
    let (_, res) = cart_with(&app, "198.51.100.7", "tiny", 1).await;
    res.assert_error(429, "hold_limit_reached");
    // With a floor, an ordinary purchase of a small item is not refused.
    let floored =
        spawn(backend, &[("CART__QUOTAS__HELD_SHARE_PERCENT", "5"), ("CART__QUOTAS__HELD_SHARE_FLOOR", "2")]).await;
    floored.set_stock("tiny", 3).await;
    let (_, res) = cart_with(&floored, "198.51.100.7", "tiny", 2).await;
    assert_eq!(res.status, StatusCode::OK);
    let (_, res) = cart_with(&floored, "198.51.100.7", "tiny", 1).await;
    res.assert_error(429, "hold_limit_reached");
}

async fn an_expired_cart_frees_its_clients_quota(backend: Backend) {
    // No listener and a sweeper that never runs: the quota must end at the
    // deadline by itself, as the hold's own expiry does.
    let app = spawn(
        backend,
        &[
            ("CART__QUOTAS__HELD_UNITS", "5"),
            ("CART__QUOTAS__OPEN_CARTS", "1"),
            ("CART__SESSION__TTL_SECS", "1"),
            ("CART__LISTENER__ENABLED", "false"),
            ("CART__SWEEPER__INTERVAL_MS", "3600000"),
        ],
    )
    .await;
    app.set_stock("inv-e", 50).await;
    let (_, res) = cart_with(&app, "198.51.100.8", "inv-e", 5).await;
    assert_eq!(res.status, StatusCode::OK);
    new_cart(&app, "198.51.100.8").await.assert_error(429, "too_many_requests");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, res) = cart_with(&app, "198.51.100.8", "inv-e", 5).await;
    assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
}

async fn new_carts_made_by_a_change_count_too(backend: Backend) {
    let app = spawn(backend, &[("CART__QUOTAS__OPEN_CARTS", "2"), ("CART__QUOTAS__HELD_UNITS", "4")]).await;
    app.set_stock("inv-n", 50).await;
    let client = [("x-forwarded-for", "198.51.100.9")];
    let put = |q: i64| json!({"inventory_id": "inv-n", "quantity": q});
    let h = [("x-forwarded-for", "198.51.100.9"), ("content-type", "application/json")];
    let res = app.json(Method::PUT, "/v1/cart/items/p1", &client, &put(3)).await;
    assert_eq!(res.status, StatusCode::OK);
    let add = json!({"product_id": "p1", "inventory_id": "inv-n", "quantity": 2});
    let res = app.request(Method::POST, "/add-to-cart", &h, Some(&add.to_string())).await;
    res.assert_error(429, "hold_limit_reached");
    let add = json!({"product_id": "p1", "inventory_id": "inv-n", "quantity": 1});
    let res = app.request(Method::POST, "/add-to-cart", &h, Some(&add.to_string())).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app.json(Method::PUT, "/v1/cart/items/p1", &client, &put(0)).await;
    res.assert_error(429, "too_many_requests");
    assert_eq!(app.stock("inv-n").await, (46, 4, 0));
}

async fn an_untrusted_peers_forwarded_for_is_ignored(backend: Backend) {
    // Nothing trusted: the peer (127.0.0.1) is the client whatever the header says.
    let app = spawn(backend, &[("CART__QUOTAS__TRUSTED_PROXIES", ""), ("CART__QUOTAS__OPEN_CARTS", "2")]).await;
    for forged in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(new_cart(&app, forged).await.status, StatusCode::CREATED);
    }
    new_cart(&app, "203.0.113.3").await.assert_error(429, "too_many_requests");
    let res = app.request(Method::POST, "/v1/carts", &[("forwarded", "for=203.0.113.4")], None).await;
    res.assert_error(429, "too_many_requests");
    // Trusting the peer, the same headers are distinct clients.
    let trusting = spawn(backend, &[("CART__QUOTAS__OPEN_CARTS", "2")]).await;
    for forged in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.1"] {
        assert_eq!(new_cart(&trusting, forged).await.status, StatusCode::CREATED);
    }
    new_cart(&trusting, "203.0.113.1").await.assert_error(429, "too_many_requests");
}

async fn the_admin_route_shows_refused_clients_and_top_holders(backend: Backend) {
    let app = spawn(backend, &[("CART__QUOTAS__HELD_UNITS", "10")]).await;
    app.set_stock("inv-a", 100).await;
    for (client, q) in [("198.51.100.20", 10), ("198.51.100.21", 4)] {
        assert_eq!(cart_with(&app, client, "inv-a", q).await.1.status, StatusCode::OK);
    }
    cart_with(&app, "198.51.100.20", "inv-a", 1).await.1.assert_error(429, "hold_limit_reached");
    app.get("/v1/admin/limits", &[]).await.assert_error(401, "unauthorized");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let res = app.get("/v1/admin/limits?inventory_id=inv-a&top=5", &[("authorization", &auth)]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!(body["policy"]["held_units"], 10);
    assert_eq!(body["refused"], json!([{"client": "198.51.100.20", "limit": "held_units"}]));
    assert_eq!(body["item"]["cap"], 10);
    assert_eq!(
        body["item"]["top_holders"],
        json!([{"client": "198.51.100.20", "held": 10}, {"client": "198.51.100.21", "held": 4}])
    );
    let res = app.get("/v1/admin/limits?top=0", &[("authorization", &auth)]).await;
    res.assert_error(400, "invalid_request");
}

/// The host:port of a URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_hold_quotas_fail_closed_by_default_and_open_when_asked() {
    for (mode, unchecked) in [("closed", 0.0), ("open", 1.0)] {
        let hp = host_port(&redis_url());
        let proxy = Proxy::start(hp.parse().expect("redis host:port")).await;
        let url = redis_url().replace(&hp, &proxy.addr.to_string());
        let app = spawn(
            Backend::Real,
            &[("CART__REDIS__URL", &url), ("CART__QUOTAS__HELD_UNITS", "10"), ("CART__QUOTAS__FAIL_HOLDS", mode)],
        )
        .await;
        app.set_stock("inv-x", 10).await;
        let (session, res) = cart_with(&app, "198.51.100.30", "inv-x", 1).await;
        assert_eq!(res.status, StatusCode::OK);
        proxy.cut();
        let res = set(&app, "198.51.100.30", &session, "inv-x", 2).await;
        res.assert_error(503, "unavailable");
        assert_eq!(res.header("retry-after"), Some("1"));
        let metrics = app.metrics().await;
        assert_eq!(metrics.value("cartd_limit_unchecked_total", &[("limit", "holds")]), unchecked, "{mode}");
        if mode == "closed" {
            // Refused before the ledger was asked: nothing more is held.
            assert_eq!(app.stock("inv-x").await, (9, 1, 0));
        }
        proxy.restore();
        app.wait_ready().await;
        let res = set(&app, "198.51.100.30", &session, "inv-x", 2).await;
        assert_eq!(res.status, StatusCode::OK, "{mode}: {}", String::from_utf8_lossy(&res.body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_clients_quota() {
    let iso = support::Isolation::new();
    let vars = [
        ("CART__QUOTAS__ENABLED", "true"),
        ("CART__QUOTAS__CARTS_PER_MINUTE", "0"),
        ("CART__QUOTAS__OPEN_CARTS", "0"),
        ("CART__QUOTAS__HELD_UNITS", "6"),
        ("CART__QUOTAS__HELD_SHARE_PERCENT", "0"),
        TRUST_LOOPBACK,
    ];
    let a = support::spawn_real_app_in(&iso, &vars).await;
    let b = support::spawn_real_app_in(&iso, &vars).await;
    a.set_stock("inv-2", 100).await;
    let (_, res) = cart_with(&a, "198.51.100.40", "inv-2", 4).await;
    assert_eq!(res.status, StatusCode::OK);
    let (_, res) = cart_with(&b, "198.51.100.40", "inv-2", 3).await;
    res.assert_error(429, "hold_limit_reached");
    assert_eq!(res.json()["may_hold"], 2);
}

/// A cart released by its expiry event, or by the sweeper, frees its client's
/// quota: `cause` names the path that released it, and the metrics show it
/// was that one.
async fn released_by(listener: bool) {
    let (listener_on, sweep_ms, cause) =
        if listener { ("true", "3600000", "expiry_event") } else { ("false", "100", "sweeper") };
    let app = spawn(
        Backend::Real,
        &[
            ("CART__QUOTAS__HELD_UNITS", "5"),
            ("CART__QUOTAS__OPEN_CARTS", "1"),
            ("CART__SESSION__TTL_SECS", "1"),
            ("CART__LISTENER__ENABLED", listener_on),
            ("CART__SWEEPER__INTERVAL_MS", sweep_ms),
        ],
    )
    .await;
    app.set_stock("inv-r", 5).await;
    let (_, res) = cart_with(&app, "198.51.100.50", "inv-r", 5).await;
    assert_eq!(res.status, StatusCode::OK);
    // Released (stock back), by the path under test.
    let started = std::time::Instant::now();
    while app.stock("inv-r").await != (5, 0, 0) {
        assert!(started.elapsed() < Duration::from_secs(30), "{cause}: not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = app.metrics().await;
    let released = metrics.value("cartd_hold_units_total", &[("change", "released"), ("cause", cause)]);
    assert_eq!(released, 5.0, "released by {cause}");
    let (_, res) = cart_with(&app, "198.51.100.50", "inv-r", 5).await;
    assert_eq!(res.status, StatusCode::OK, "{cause}: {}", String::from_utf8_lossy(&res.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_released_by_its_expiry_event_frees_its_clients_quota() {
    released_by(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_released_by_the_sweeper_frees_its_clients_quota() {
    released_by(false).await;
}
