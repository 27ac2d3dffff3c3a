//! Property tests of request parsing, end to end on the in-memory backend:
//! arbitrary bodies (bytes, JSON of any shape, the right keys with values of any
//! type and size), arbitrary product and inventory ids in paths (percent-encoded
//! strings and bytes), arbitrary `cart-session-id` and `Authorization` values and
//! content types, sent to the routes that parse them. Whatever comes in, the
//! answer is a 2xx, or a 4xx with the API's JSON error body (non-empty `error`
//! and `message`); never a 5xx, and the server still answers `/healthz` after.
//!
//! Each test starts one server and one tokio runtime and drives proptest's
//! `TestRunner` itself, so the cases share that server (and the state they
//! leave in it, which is part of the point: later cases meet carts and stock
//! that earlier ones changed).

use cartd_test_support::app as support;

use std::net::SocketAddr;

use axum::body::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use support::{ADMIN_TOKEN, TestApp, spawn_app_with};

/// Cases per property: enough to meet every kind of input several times, few
/// enough to run in a couple of seconds in a debug build.
const CASES: u32 = 200;

/// Items the tests stock, and so the ids that sometimes reach the use cases.
const ITEMS: [&str; 2] = ["inv-1", "inv-2"];

// ---------------------------------------------------------------------------
// The harness: one runtime, one server, one client per test.

struct Harness {
    rt: tokio::runtime::Runtime,
    app: Option<TestApp>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Ids of carts opened at the start, so that some cases name a real one.
    sessions: Vec<String>,
}

/// One answer, fully read.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: Bytes,
}

/// One request, as generated.
#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Req {
    /// The body as text (lossy, and cut short), so a failure reads easily.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let shown: String = body.chars().take(300).collect();
        let more = if shown.len() < body.len() { format!("... ({} bytes)", self.body.len()) } else { String::new() };
        write!(f, "{} {} {:?} body {shown:?}{more}", self.method, self.path, self.headers)
    }
}

impl Harness {
    fn start() -> Self {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        let (app, sessions) = rt.block_on(async {
            // Little stock and few lines per cart, so that holds get refused
            // (409) as well as taken.
            let app = spawn_app_with(&[("CART__LIMITS__MAX_LINES", "8")]).await;
            for item in ITEMS {
                app.set_stock(item, 400).await;
            }
            let mut sessions = Vec::new();
            for _ in 0..3 {
                sessions.push(app.create_cart().await);
            }
            (app, sessions)
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Harness { rt, app: Some(app), client, sessions }
    }

    fn addr(&self) -> SocketAddr {
        self.app.as_ref().expect("server running").addr
    }

    fn send(&self, req: &Req) -> Result<Answer, TestCaseError> {
        let mut builder =
            Request::builder().method(req.method.clone()).uri(format!("http://{}{}", self.addr(), req.path));
        for (name, value) in &req.headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| TestCaseError::reject(format!("not a header value ({e}): {value:?}")))?;
            builder = builder.header(HeaderName::from_static(name), value);
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|e| TestCaseError::reject(format!("not a request ({e}): {req:?}")))?;
        self.rt.block_on(async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TestCaseError::fail(format!("no answer ({e}) to {req:?}")))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| TestCaseError::fail(format!("answer body unreadable ({e}) for {req:?}")))?
                .to_bytes();
            let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            Ok(Answer { status: parts.status, content_type, body })
        })
    }

    /// Runs `strategy` through `property` for [`CASES`] cases, then checks the
    /// server is still alive and stops it.
    fn run<S: Strategy>(mut self, strategy: S, property: impl Fn(&Harness, S::Value) -> Result<(), TestCaseError>) {
        let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        let result = runner.run(&strategy, |value| property(&self, value));
        let health = self.send(&Req { method: Method::GET, path: "/healthz".into(), headers: vec![], body: vec![] });
        let app = self.app.take().expect("server running");
        self.rt.block_on(app.stop());
        if let Err(e) = result {
            panic!("{e}");
        }
        let health = health.expect("the server still answers /healthz");
        assert_eq!(health.status, StatusCode::OK, "/healthz after the run: {health:?}");
    }
}

/// The property every answer has: a 2xx, or a 4xx with the JSON error body.
fn assert_2xx_or_json_4xx(req: &Req, answer: &Answer) -> Result<(), TestCaseError> {
    let status = answer.status;
    let body = String::from_utf8_lossy(&answer.body);
    prop_assert!(!status.is_server_error(), "{status} for {req:?}: {body}");
    if status.is_success() {
        return Ok(());
    }
    prop_assert!(status.is_client_error(), "{status} is neither 2xx nor 4xx, for {req:?}: {body}");
    prop_assert!(
        answer.content_type.as_deref().is_some_and(|t| t.starts_with("application/json")),
        "{status} with content type {:?} for {req:?}",
        answer.content_type
    );
    let json: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("{status} body is not JSON ({e}) for {req:?}: {body}")))?;
    for field in ["error", "message"] {
        prop_assert!(
            json[field].as_str().is_some_and(|s| !s.is_empty()),
            "{status} body without a non-empty {field:?} for {req:?}: {json}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Strategies.

/// Percent-encodes every byte but the unreserved ones, so any string or byte
/// sequence makes a valid path segment (decoding it may still give invalid UTF-8).
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A product or inventory id in a path: valid ones, ones just too long, and
/// anything at all, encoded (including `/`, `%`, `?`, NUL, non-ASCII, invalid UTF-8
/// and nothing).
fn path_id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z0-9._:-]{1,64}",
        2 => prop::sample::select(ITEMS.to_vec()).prop_map(str::to_owned),
        1 => "[A-Za-z0-9._:-]{65,80}",
        3 => any::<String>().prop_map(|s| percent_encode(s.as_bytes())),
        2 => prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| percent_encode(&b)),
        1 => Just(String::new()),
    ]
}

/// JSON number text of every kind: small, `i64`/`u64` extremes, beyond 64 bits,
/// negative, fractional, integral-valued fractions, exponents (some beyond `f64`).
fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0u32..=120).prop_map(|n| n.to_string()),
        1 => Just("1000000000".to_owned()),
        1 => Just("1000000001".to_owned()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just(u32::MAX.to_string()),
        1 => Just((u64::from(u32::MAX) + 1).to_string()),
        2 => "-?[1-9][0-9]{19,80}",
        2 => "-?[0-9]{1,4}\\.[0-9]{1,6}",
        1 => "[0-9]{1,3}\\.0",
        2 => "-?[0-9]{1,3}(\\.[0-9]{1,3})?[eE][+-]?[0-9]{1,4}",
        1 => Just("-0".to_owned()),
        1 => any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| f.to_string()),
    ]
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Any JSON value, as text: scalars of every type, arrays and objects nested a
/// few levels (with unknown and repeated keys), and arrays nested far past
/// serde_json's recursion limit.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        json_number(),
        any::<String>().prop_map(|s| json_string(&s)),
        "[A-Za-z0-9._:-]{0,12}".prop_map(|s| json_string(&s)),
    ];
    let nested = leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..5).prop_map(|kv| {
                let members: Vec<String> = kv.iter().map(|(k, v)| format!("{}:{v}", json_string(k))).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    });
    prop_oneof![
        20 => nested,
        1 => (1usize..3000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
    ]
}

/// Object keys: the API's own names (so that repeats happen) and anything else.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["product_id", "inventory_id", "quantity", "available"]).prop_map(str::to_owned),
        "\\PC{0,12}",
    ]
}

/// An id field's value: known items (often, so that many requests get through
/// to the use cases), other valid ids, bad ids, or any JSON value.
fn id_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(ITEMS.to_vec()).prop_map(json_string),
        2 => "[A-Za-z0-9._:-]{1,64}".prop_map(|s| json_string(&s)),
        1 => "[A-Za-z0-9._:-]{65,70}".prop_map(|s| json_string(&s)),
        1 => any::<String>().prop_map(|s| json_string(&s)),
        2 => json_value(),
    ]
}

/// A number field's value: small ones (often, as for ids), numbers of every
/// kind, numbers in strings, or any JSON value.
fn number_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u32..=120).prop_map(|n| n.to_string()),
        4 => json_number(),
        1 => json_number().prop_map(|n| json_string(&n)),
        2 => json_value(),
    ]
}

/// A JSON object with the given fields, each present or not, in any order,
/// sometimes with an unknown or repeated member.
fn object_with(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> impl Strategy<Value = String> {
    let members: Vec<BoxedStrategy<Option<String>>> = fields
        .into_iter()
        .map(|(name, value)| {
            prop::option::weighted(0.9, value.prop_map(move |v| format!("{}:{v}", json_string(name)))).boxed()
        })
        .collect();
    let extra =
        prop::option::weighted(0.1, (key(), json_value()).prop_map(|(k, v)| format!("{}:{v}", json_string(&k))));
    (members, extra).prop_flat_map(|(members, extra)| {
        let all: Vec<String> = members.into_iter().flatten().chain(extra).collect();
        Just(all).prop_shuffle().prop_map(|m| format!("{{{}}}", m.join(",")))
    })
}

/// A request body: a well-formed one (so that many requests reach the use
/// cases and change carts and stock), an object with the route's keys and any
/// values, any JSON value, any bytes, or a body just over the 16 KiB cap.
fn body(
    well_formed: BoxedStrategy<String>,
    fields: Vec<(&'static str, BoxedStrategy<String>)>,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => well_formed.prop_map(String::into_bytes),
        12 => object_with(fields).prop_map(String::into_bytes),
        4 => json_value().prop_map(String::into_bytes),
        3 => prop::collection::vec(any::<u8>(), 0..256),
        1 => (16_385usize..17_000).prop_map(|n| format!(r#"{{"pad":"{}"}}"#, "x".repeat(n)).into_bytes()),
    ]
}

/// `Content-Type`: mostly JSON (spelled several ways), sometimes absent or
/// anything visible.
fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        12 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => Just(Some("Application/JSON".to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,40}".prop_map(Some),
    ]
}

/// A random UUID v4, hyphenated.
fn uuid_v4() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|b| uuid::Builder::from_random_bytes(b).into_uuid().to_string())
}

/// `cart-session-id` values: none, one or two of: any visible ASCII (with
/// spaces), a random UUID v4, a real open session, or one in upper case or
/// padded with spaces.
fn session_headers(real: Vec<String>) -> impl Strategy<Value = Vec<String>> {
    let one = prop_oneof![
        4 => "[ -~]{0,80}",
        2 => uuid_v4(),
        4 => prop::sample::select(real.clone()),
        1 => prop::sample::select(real.clone()).prop_map(|s| s.to_uppercase()),
        1 => prop::sample::select(real).prop_map(|s| format!("  {s} ")),
    ];
    prop_oneof![
        2 => Just(Vec::new()),
        6 => one.clone().prop_map(|v| vec![v]),
        1 => prop::collection::vec(one, 2..=2),
    ]
}

fn with_session_headers(headers: &mut Vec<(&'static str, String)>, sessions: Vec<String>) {
    headers.extend(sessions.into_iter().map(|s| ("cart-session-id", s)));
}

fn with_content_type(headers: &mut Vec<(&'static str, String)>, content_type: Option<String>) {
    headers.extend(content_type.map(|t| ("content-type", t)));
}

fn quantity_fields() -> Vec<(&'static str, BoxedStrategy<String>)> {
    vec![("inventory_id", id_value().boxed()), ("quantity", number_value().boxed())]
}

/// A known item and a quantity from 0 to a little over the limit.
fn item_and_quantity() -> impl Strategy<Value = (&'static str, u32)> {
    (prop::sample::select(ITEMS.to_vec()), 0u32..=110)
}

// ---------------------------------------------------------------------------
// The properties.

#[test]
fn set_line_answers_every_input_with_2xx_or_a_json_4xx() {
    let h = Harness::start();
    let well_formed =
        item_and_quantity().prop_map(|(item, n)| format!(r#"{{"inventory_id":"{item}","quantity":{n}}}"#)).boxed();
    let strategy =
        (path_id(), session_headers(h.sessions.clone()), content_type(), body(well_formed, quantity_fields()));
    h.run(strategy, |h, (product, sessions, content_type, body)| {
        let mut headers = Vec::new();
        with_session_headers(&mut headers, sessions);
        with_content_type(&mut headers, content_type);
        let req = Req { method: Method::PUT, path: format!("/v1/cart/items/{product}"), headers, body };
        assert_2xx_or_json_4xx(&req, &h.send(&req)?)
    });
}

#[test]
fn add_to_cart_answers_every_input_with_2xx_or_a_json_4xx() {
    let h = Harness::start();
    let mut fields = quantity_fields();
    fields.push(("product_id", id_value().boxed()));
    let well_formed = ("[A-Za-z0-9._:-]{1,64}", item_and_quantity())
        .prop_map(|(product, (item, n))| {
            format!(r#"{{"product_id":"{product}","inventory_id":"{item}","quantity":{n}}}"#)
        })
        .boxed();
    let strategy = (session_headers(h.sessions.clone()), content_type(), body(well_formed, fields));
    h.run(strategy, |h, (sessions, content_type, body)| {
        let mut headers = Vec::new();
        with_session_headers(&mut headers, sessions);
        with_content_type(&mut headers, content_type);
        let req = Req { method: Method::POST, path: "/add-to-cart".into(), headers, body };
        assert_2xx_or_json_4xx(&req, &h.send(&req)?)
    });
}

#[test]
fn set_stock_answers_every_input_with_2xx_or_a_json_4xx_and_401_without_the_token() {
    let h = Harness::start();
    let right = format!("Bearer {ADMIN_TOKEN}");
    let authorization = prop_oneof![
        4 => Just(Some(right.clone())),
        2 => Just(None),
        2 => "[ -~]{0,60}".prop_map(Some),
        1 => Just(Some(format!("bearer {ADMIN_TOKEN}"))),
        1 => Just(Some(ADMIN_TOKEN.to_owned())),
        1 => Just(Some(format!("Bearer {}", &ADMIN_TOKEN[1..]))),
        1 => Just(Some(format!("Bearer {ADMIN_TOKEN}x"))),
        1 => Just(Some(format!("Bearer  {ADMIN_TOKEN}"))),
    ];
    let well_formed = (0u32..=1_000_001_000).prop_map(|n| format!(r#"{{"available":{n}}}"#)).boxed();
    let strategy =
        (path_id(), authorization, content_type(), body(well_formed, vec![("available", number_value().boxed())]));
    h.run(strategy, |h, (item, authorization, content_type, body)| {
        // HTTP drops the spaces around a header value; nothing else is forgiven.
        let authorized = authorization.as_deref().is_some_and(|a| a.trim_matches(' ') == right);
        let mut headers = Vec::new();
        headers.extend(authorization.map(|a| ("authorization", a)));
        with_content_type(&mut headers, content_type);
        let req = Req { method: Method::PUT, path: format!("/v1/inventory/{item}"), headers, body };
        let answer = h.send(&req)?;
        assert_2xx_or_json_4xx(&req, &answer)?;
        // The token comes first: without it nothing else about the request shows.
        // (An empty id does not reach the route at all: that is 404 `not_found`.)
        if !authorized && !item.is_empty() {
            prop_assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", req);
        }
        Ok(())
    });
}

#[test]
fn get_cart_answers_every_session_header_as_documented() {
    let h = Harness::start();
    let strategy = session_headers(h.sessions.clone());
    h.run(strategy, |h, sessions| {
        // The documented rule: exactly one value, a hyphenated UUID v4 (spaces
        // around it ignored, any case); 200 for an open cart, 404 for any other
        // well-formed id, 400 for everything else.
        let open: Vec<uuid::Uuid> = h.sessions.iter().map(|s| uuid::Uuid::parse_str(s).unwrap()).collect();
        let expected = match sessions.as_slice() {
            [one] => {
                let one = one.trim_matches(' ');
                match uuid::Uuid::try_parse(one) {
                    Ok(id) if one.len() == 36 && id.get_version_num() == 4 => {
                        if open.contains(&id) {
                            StatusCode::OK
                        } else {
                            StatusCode::NOT_FOUND
                        }
                    }
                    _ => StatusCode::BAD_REQUEST,
                }
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let mut headers = Vec::new();
        with_session_headers(&mut headers, sessions);
        let req = Req { method: Method::GET, path: "/v1/cart".into(), headers, body: vec![] };
        let answer = h.send(&req)?;
        assert_2xx_or_json_4xx(&req, &answer)?;
        prop_assert_eq!(answer.status, expected, "{:?}: {}", req, String::from_utf8_lossy(&answer.body));
        Ok(())
    });
}
