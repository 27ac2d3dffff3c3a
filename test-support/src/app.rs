//! Black-box test support for the app (feature `app`): `spawn_app()` starts the
//! real server on port 0 with the in-memory backend, `spawn_real_app()` with
//! Redis + PostgreSQL in a key prefix and schema of its own, and both hand back
//! a typed client.

use std::net::SocketAddr;

use axum::body::Bytes;
use cartd::{Application, Settings};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn session(&self) -> String {
        self.header("cart-session-id").expect("response carries cart-session-id").to_owned()
    }

    /// Asserts the status and the API error code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.body));
        let body = self.json();
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "message missing: {body}");
    }
}

/// Starts the server with the test defaults plus `vars` (as `CART__...`).
/// Logs are silent unless `CARTD_TEST_LOG` holds a filter (e.g. `cartd=debug`).
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    if let Ok(filter) = std::env::var("CARTD_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let mut map = config::Map::new();
    for (k, v) in [
        ("CART__HTTP__ADDR", "127.0.0.1:0"),
        ("CART__ADMIN__TOKEN", ADMIN_TOKEN),
        ("CART__DEMO__SEED", "false"),
        ("CART__SWEEPER__INTERVAL_MS", "100"),
        // Every test request comes from loopback: client quotas (issue 14)
        // are off unless a test turns them on.
        ("CART__QUOTAS__ENABLED", "false"),
    ]
    .iter()
    .chain(vars)
    {
        map.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = Settings::from_sources(None, Settings::environment().source(Some(map))).expect("test settings");
    let app = Application::build(settings).await.expect("application builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http();
    TestApp { addr, client, stop: Some(stop), handle: Some(handle) }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub use crate::Isolation;
pub use crate::proxy;
pub use crate::servers::{postgres_url, redis_url};

/// Starts an instance on Redis + PostgreSQL in `iso`, with `vars` on top, and
/// waits until it is ready (migrations applied, both servers answering).
pub async fn spawn_real_app_in(iso: &Isolation, vars: &[(&str, &str)]) -> TestApp {
    let (redis, postgres) = (redis_url(), postgres_url());
    let mut all: Vec<(&str, &str)> = vec![
        ("CART__BACKEND", "redis"),
        ("CART__REDIS__URL", &redis),
        ("CART__REDIS__KEY_PREFIX", &iso.prefix),
        ("CART__POSTGRES__URL", &postgres),
        ("CART__POSTGRES__SCHEMA", &iso.schema),
        ("CART__POSTGRES__POOL_SIZE", "8"),
    ];
    all.extend_from_slice(vars);
    let app = spawn_app_with(&all).await;
    app.wait_ready().await;
    app
}

/// Starts an instance on the local Redis Cluster (`scripts/redis-cluster.sh`)
/// and PostgreSQL in `iso`, with `vars` on top, and waits until it is ready.
pub async fn spawn_cluster_app_in(iso: &Isolation, vars: &[(&str, &str)]) -> TestApp {
    let seeds = crate::servers::redis_cluster_nodes().join(",");
    let mut all: Vec<(&str, &str)> = vec![("CART__REDIS__CLUSTER_NODES", &seeds)];
    all.extend_from_slice(vars);
    spawn_real_app_in(iso, &all).await
}

pub async fn spawn_real_app(vars: &[(&str, &str)]) -> TestApp {
    spawn_real_app_in(&Isolation::new(), vars).await
}

impl TestApp {
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(format!("http://{}{}", self.addr, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned()))).expect("valid request");
        let res = self.client.request(req).await.expect("server answers");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body reads").to_bytes();
        TestResponse { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.request(Method::GET, path, headers, None).await
    }

    pub async fn json(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &Value) -> TestResponse {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request(method, path, &h, Some(&body.to_string())).await
    }

    pub async fn create_cart(&self) -> String {
        let res = self.request(Method::POST, "/v1/carts", &[], None).await;
        assert_eq!(res.status, StatusCode::CREATED);
        res.session()
    }

    pub async fn set_line(&self, session: &str, product: &str, item: &str, quantity: i64) -> TestResponse {
        let body = serde_json::json!({"inventory_id": item, "quantity": quantity});
        self.json(Method::PUT, &format!("/v1/cart/items/{product}"), &[("cart-session-id", session)], &body).await
    }

    /// Sets a line without a session header, so a new cart is made for it.
    pub async fn set_line_new(&self, product: &str, item: &str, quantity: i64) -> TestResponse {
        let body = serde_json::json!({"inventory_id": item, "quantity": quantity});
        self.json(Method::PUT, &format!("/v1/cart/items/{product}"), &[], &body).await
    }

    pub async fn cart(&self, session: &str) -> TestResponse {
        self.get("/v1/cart", &[("cart-session-id", session)]).await
    }

    pub async fn set_stock(&self, item: &str, available: i64) -> Value {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let res = self
            .json(
                Method::PUT,
                &format!("/v1/inventory/{item}"),
                &[("authorization", &auth)],
                &serde_json::json!({ "available": available }),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
        res.json()
    }

    /// `(available, reserved, sold)` of `item`.
    pub async fn stock(&self, item: &str) -> (i64, i64, i64) {
        let res = self.get(&format!("/v1/inventory/{item}"), &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(&res.body));
        let v = res.json();
        (v["available"].as_i64().unwrap(), v["reserved"].as_i64().unwrap(), v["sold"].as_i64().unwrap())
    }

    /// Polls `/readyz` until it answers 200 (at most 20 s).
    pub async fn wait_ready(&self) {
        let started = std::time::Instant::now();
        loop {
            if self.get("/readyz", &[]).await.status == StatusCode::OK {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "not ready after 20 s: are Redis ({}) and PostgreSQL ({}) running? (scripts/services.sh)",
                redis_url(),
                postgres_url()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Fires shutdown and waits for the server and its tasks to stop.
    pub async fn stop(mut self) {
        self.fire_stop();
        self.wait_stopped().await;
    }

    /// Fires shutdown without waiting for it.
    pub fn fire_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the server and its background tasks have stopped.
    pub async fn wait_stopped(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task ends cleanly");
        }
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let res = self.get("/metrics", &[]).await;
        assert_eq!(res.status, StatusCode::OK);
        let content_type = res.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Metrics::parse(std::str::from_utf8(&res.body).expect("metrics are UTF-8"))
    }
}

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed Prometheus text exposition (version 0.0.4).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses every sample line; panics on a line that is not one.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a sample line: {l:?}")))
            .collect();
        Metrics { text: text.to_owned(), samples }
    }

    /// The value of the series `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: std::collections::BTreeMap<String, String> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
    }

    /// Like [`Metrics::get`], but the series must exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no series {name} {labels:?} in\n{}", self.text))
    }

    /// Every sample of the metric `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = std::collections::BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].to_owned();
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => value.push(chars.next()?.1),
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key, value);
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.trim().split(' ').next()?.parse().ok()?;
    Some(Sample { name, labels, value })
}

/// Sends `bytes` on a new connection and reads until the server closes it
/// (or 5 s pass).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("server accepts");
    // A server that answers before reading everything may reset the
    // connection under a large write: what it answered is still readable.
    let _ = stream.write_all(bytes).await;
    read_to_close(&mut stream).await
}

/// Reads from `stream` until the peer closes it (or 5 s pass).
pub async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
