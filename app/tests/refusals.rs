//! Every refusal carries the JSON error body, on both backends (issue 15,
//! item 3): the ones hyper writes by itself before any route runs (431 for
//! too large or too many headers, 400 for a request it cannot read) and the
//! ones cartd's layers write (404 no route, 405, 413, 415).

use cartd_test_support::Isolation;
use cartd_test_support::app::{TestApp, raw_exchange, spawn_app_with, spawn_real_app_in};

const LIMITS: [(&str, &str); 3] = [
    ("CART__HTTP__MAX_HEADER_BYTES", "4096"),
    ("CART__HTTP__MAX_HEADERS", "20"),
    ("CART__HTTP__MAX_BODY_BYTES", "1024"),
];

/// Status and JSON `error` code of a raw exchange's answer.
fn refusal(answer: &str) -> (u16, String) {
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {answer}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {answer}"));
    assert!(head.to_ascii_lowercase().contains("\r\ncontent-type: application/json"), "{answer}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    (status, json["error"].as_str().unwrap_or_default().to_owned())
}

async fn every_refusal_has_the_json_body(app: &TestApp) {
    let big_header = format!("GET /healthz HTTP/1.1\r\nhost: cartd\r\nx-filler: {}\r\n\r\n", "a".repeat(5000));
    let many: String = (0..25).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let many_headers = format!("GET /healthz HTTP/1.1\r\nhost: cartd\r\n{many}\r\n");
    let big_body = format!(
        "PUT /v1/cart/items/p1 HTTP/1.1\r\nhost: cartd\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 2000\r\n\r\n{}",
        "a".repeat(2000)
    );
    let cases: [(&str, &str, u16, &str); 7] = [
        ("head over the limit", &big_header, 431, "request_header_fields_too_large"),
        ("too many headers", &many_headers, 431, "request_header_fields_too_large"),
        ("not HTTP", "GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400, "invalid_request"),
        ("no route", "GET /nowhere HTTP/1.1\r\nhost: cartd\r\nconnection: close\r\n\r\n", 404, "not_found"),
        (
            "wrong method",
            "PATCH /v1/cart HTTP/1.1\r\nhost: cartd\r\nconnection: close\r\n\r\n",
            405,
            "method_not_allowed",
        ),
        ("body over the limit", &big_body, 413, "payload_too_large"),
        (
            "not JSON",
            "PUT /v1/cart/items/p1 HTTP/1.1\r\nhost: cartd\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = raw_exchange(app.addr, request.as_bytes()).await;
        assert_eq!(refusal(&answer), (status, code.to_owned()), "{what}: {answer}");
    }
}

#[tokio::test]
async fn every_refusal_has_the_json_body_in_memory() {
    let app = spawn_app_with(&LIMITS).await;
    every_refusal_has_the_json_body(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn every_refusal_has_the_json_body_on_redis_and_postgres() {
    let iso = Isolation::new();
    let app = spawn_real_app_in(&iso, &LIMITS).await;
    every_refusal_has_the_json_body(&app).await;
    app.stop().await;
    iso.cleanup().await;
}
