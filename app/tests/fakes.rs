//! `cartd::testing::TestServer` used the way a client team would: only its
//! public API and plain HTTP. The team's client holds stock, the test moves
//! the server's clock past the cart's deadline and runs the release, and the
//! stock is back, with no real sleeping; armed faults give the 503 +
//! `Retry-After` a real outage gives, and a retried checkout sells once.

use std::time::Duration;

use adapters::{Fault, ManualClock, Op};
use cartd::testing::TestServer;
use domain::{ExpiryMode, ExpiryPolicy, SessionTtl, Timestamp};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const START: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const TTL: Duration = Duration::from_secs(600);

/// A minimal HTTP client of the kind a team would have.
struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    session: Option<String>,
    body: Value,
}

impl Api {
    fn new() -> Self {
        Self { client: Client::builder(TokioExecutor::new()).build_http() }
    }

    async fn send(&self, method: Method, url: String, headers: &[(&str, &str)], body: Option<Value>) -> Answer {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let res = self.client.request(req.body(Full::new(bytes)).unwrap()).await.expect("server answers");
        let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (status, retry_after, session) = (res.status(), header("retry-after"), header("cart-session-id"));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
        Answer { status, retry_after, session, body }
    }

    async fn set_stock(&self, server: &TestServer, item: &str, available: u32) {
        let auth = format!("Bearer {}", server.admin_token());
        let url = server.url(&format!("/v1/inventory/{item}"));
        let res = self.send(Method::PUT, url, &[("authorization", &auth)], Some(json!({"available": available}))).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }

    /// `(available, reserved, sold)`.
    async fn stock(&self, server: &TestServer, item: &str) -> (i64, i64, i64) {
        let res = self.send(Method::GET, server.url(&format!("/v1/inventory/{item}")), &[], None).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let n = |k: &str| res.body[k].as_i64().unwrap();
        (n("available"), n("reserved"), n("sold"))
    }

    /// Puts `quantity` of `item` in a new cart; returns its session id.
    async fn hold(&self, server: &TestServer, item: &str, quantity: u32) -> String {
        let url = server.url("/v1/cart/items/p1");
        let res = self.send(Method::PUT, url, &[], Some(json!({"inventory_id": item, "quantity": quantity}))).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        res.session.expect("a new cart's session id")
    }
}

async fn server() -> TestServer {
    let policy = ExpiryPolicy { ttl: SessionTtl::new(TTL).unwrap(), mode: ExpiryMode::Fixed };
    TestServer::builder(ManualClock::new(START)).expiry(policy).start().await.expect("a loopback port")
}

#[tokio::test]
async fn held_stock_comes_back_once_the_clock_passes_the_deadline_and_the_release_runs() {
    let server = server().await;
    let api = Api::new();
    api.set_stock(&server, "sku-1", 10).await;
    let session = api.hold(&server, "sku-1", 4).await;
    assert_eq!(api.stock(&server, "sku-1").await, (6, 4, 0));

    // One millisecond before the deadline the cart is alive and a sweep
    // gives nothing back.
    server.clock().advance(TTL - Duration::from_millis(1));
    let cart = api.send(Method::GET, server.url("/v1/cart"), &[("cart-session-id", &session)], None).await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.body);
    assert_eq!(server.sweep().await.unwrap().units, 0);
    assert_eq!(api.stock(&server, "sku-1").await, (6, 4, 0));

    // At the deadline the session is gone, and the release returns the units.
    server.clock().advance(Duration::from_millis(1));
    let cart = api.send(Method::GET, server.url("/v1/cart"), &[("cart-session-id", &session)], None).await;
    assert_eq!(cart.status, StatusCode::NOT_FOUND);
    assert_eq!(cart.body["error"], "session_not_found");
    let released = server.sweep().await.unwrap();
    assert_eq!((released.carts, released.units), (1, 4));
    assert_eq!(api.stock(&server, "sku-1").await, (10, 0, 0));
    assert_eq!(server.sweep().await.unwrap().units, 0, "released once");
    server.shutdown().await;
}

#[tokio::test]
async fn an_expiry_notice_releases_at_once_and_the_sweep_then_finds_nothing() {
    let server = server().await;
    let api = Api::new();
    api.set_stock(&server, "sku-1", 3).await;
    let session = api.hold(&server, "sku-1", 3).await;
    server.clock().advance(TTL);
    let id = domain::CartId::parse(&session).unwrap();
    assert_eq!(server.notify_expired(id).await.unwrap().units, 3);
    assert_eq!(server.sweep().await.unwrap().units, 0);
    assert_eq!(api.stock(&server, "sku-1").await, (3, 0, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn an_inventory_outage_answers_503_with_retry_after_and_the_retry_succeeds() {
    let server = server().await;
    let api = Api::new();
    api.set_stock(&server, "sku-1", 5).await;
    server.inventory_faults().inject(Fault::on(Op::SetHold).times(1));
    let url = server.url("/v1/cart/items/p1");
    let body = json!({"inventory_id": "sku-1", "quantity": 2});
    let first = api.send(Method::PUT, url.clone(), &[], Some(body.clone())).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.retry_after.as_deref(), Some("1"));
    assert_eq!(first.body["error"], "unavailable");
    assert_eq!(api.stock(&server, "sku-1").await, (5, 0, 0), "nothing held by the failed request");
    let retry = api.send(Method::PUT, url, &[], Some(body)).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(api.stock(&server, "sku-1").await, (3, 2, 0));
    assert_eq!(server.inventory_faults().injected(Op::SetHold), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_checkout_that_times_out_after_the_commit_is_retried_without_selling_twice() {
    let server = server().await;
    let api = Api::new();
    api.set_stock(&server, "sku-1", 5).await;
    let session = api.hold(&server, "sku-1", 2).await;
    server.inventory_faults().inject(Fault::on(Op::Checkout).times(1).after_call());
    let h = [("cart-session-id", session.as_str())];
    let lost = api.send(Method::POST, server.url("/v1/cart/checkout"), &h, None).await;
    assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(lost.retry_after.is_some());
    let retry = api.send(Method::POST, server.url("/v1/cart/checkout"), &h, None).await;
    assert_eq!(retry.status, StatusCode::OK, "the order made by the lost call: {}", retry.body);
    assert_eq!(api.stock(&server, "sku-1").await, (3, 0, 2), "sold once");
    server.shutdown().await;
}

#[tokio::test]
async fn a_dropped_server_stops_listening() {
    let server = server().await;
    let addr = server.addr();
    assert!(addr.ip().is_loopback());
    drop(server);
    // The serve loop stops accepting once it sees the shutdown; give the
    // runtime a few turns to run it (no timer involved).
    let mut refused = false;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "still accepting on {addr}");
}
