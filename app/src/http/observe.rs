//! The middleware around every route, in one layer: the request id and the
//! span that carries it into every log line of the request, one debug line
//! per answered request, the request metrics, the per-request timeout, the
//! body cap handed to the extractors and the JSON body of axum's 405.
//!
//! One layer rather than one per concern: axum wraps every route in every
//! layer, and each layer costs a boxed service clone and a boxed future per
//! request (`app/tests/allocations.rs` counts them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use tracing::Instrument;

use super::error::{ApiError, FailedStore};
use super::extract::BodyLimit;
use crate::metrics::{Metrics, UNMATCHED};

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the request being served, as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The client's `x-request-id` when it is a sane value (1 to 64 characters of
/// `[A-Za-z0-9._-]`, given once), else a new UUID. Anything else could forge
/// log lines or grow without bound.
#[must_use]
pub fn request_id(headers: &HeaderMap) -> String {
    let mut given = headers.get_all(REQUEST_ID_HEADER).iter();
    match (given.next(), given.next()) {
        (Some(value), None) if is_sane_id(value.as_bytes()) => {
            String::from_utf8(value.as_bytes().to_vec()).unwrap_or_else(|_| new_id())
        }
        _ => new_id(),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_sane_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What the middleware needs, resolved once.
#[derive(Debug)]
pub struct Around {
    pub metrics: Arc<Metrics>,
    /// Longest time one request may take, reading its body included.
    pub timeout: Duration,
    /// Largest request body the extractors accept.
    pub max_body_bytes: usize,
}

/// Gives the request an id and a span, runs it within the timeout, then
/// records the metrics, logs one line and echoes the id in the response.
pub async fn observe(State(around): State<Arc<Around>>, mut req: Request, next: Next) -> Response {
    let id = request_id(req.headers());
    // The route template, never the path: ids in paths must not become labels.
    // (A clone of axum's `Arc<str>`: the same text for every request of a route.)
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(BodyLimit(around.max_body_bytes));
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    let mut response = timeout(around.timeout, next.run(req)).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let metrics = &around.metrics;
    let status = response.status().as_u16();
    metrics.observe_request(route, &method, status, elapsed);
    if let Some(FailedStore(store)) = response.extensions().get::<FailedStore>() {
        metrics.store_error(store);
    }
    span.in_scope(|| {
        tracing::debug!(
            status,
            latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Answers `408 request_timeout` when the request (reading its body included)
/// takes longer than the configured limit. The handler is dropped at that
/// point; the use cases are written so that stopping between two steps leaves
/// nothing held past the cart's deadline.
async fn timeout(limit: Duration, run: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(limit, run).await {
        Ok(response) => json_405(response),
        Err(_) => {
            tracing::info!(?limit, "request timed out");
            let mut response = ApiError::RequestTimeout.into_response();
            // Part of the body may still be on its way: do not reuse the connection.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// Gives axum's bare 405 answers (which carry `Allow`, and the CORS headers
/// when CORS is on) the API's JSON body, keeping their headers.
fn json_405(response: Response) -> Response {
    if response.status() != http::StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let mut out = ApiError::MethodNotAllowed.into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(REQUEST_ID_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// A log sink the test can read.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_json_log_line_of_a_request_carries_its_id_and_never_the_token() {
        use tower::ServiceExt;
        let sink = Captured::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let app = axum::Router::new()
            .route(
                "/items/{id}",
                axum::routing::get(|| async {
                    tracing::info!("inside the handler");
                    "ok"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(Around {
                    metrics: Arc::new(Metrics::new()),
                    timeout: Duration::from_secs(5),
                    max_body_bytes: 1024,
                }),
                observe,
            ));
        let request = http::Request::builder()
            .uri("/items/secret-item")
            .header(REQUEST_ID_HEADER, "log-test-1")
            .header(header::AUTHORIZATION, "Bearer do-not-log-me")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.headers()[REQUEST_ID_HEADER], "log-test-1");

        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
        assert_eq!(messages, ["inside the handler", "request answered"], "{text}");
        for line in &lines {
            assert_eq!(line["span"]["request_id"], "log-test-1", "{line}");
            assert_eq!(line["span"]["route"], "/items/{id}", "{line}");
        }
        assert_eq!(lines[1]["fields"]["status"], 200);
        assert!(!text.contains("do-not-log-me") && !text.contains("secret-item"), "{text}");
    }

    #[test]
    fn a_sane_request_id_is_kept() {
        for id in ["abc", "A-1_2.3", &"x".repeat(64)] {
            assert_eq!(request_id(&with(&[id])), id);
        }
    }

    #[test]
    fn odd_missing_or_repeated_request_ids_are_replaced() {
        for given in
            [vec![], vec![""], vec!["has space"], vec!["a/b"], vec!["a\"b"], vec![&"x".repeat(65)], vec!["a", "b"]]
        {
            let id = request_id(&with(&given));
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{given:?} gave {id}");
        }
    }
}
