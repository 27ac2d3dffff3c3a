//! The HTTP API end to end, on the in-memory backend: every route, every error
//! code, and the tutorial routes' exact bodies.

use cartd_test_support::app as support;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use support::{ADMIN_TOKEN, spawn_app, spawn_app_with};

const MISSING: &str = "4f1c9b9e-4a8e-4d61-9f4f-6a2b8f0f6c11";

#[tokio::test]
async fn tutorial_add_to_cart_without_session_creates_one_and_holds_stock() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 10).await;
    let res = app
        .json(Method::POST, "/add-to-cart", &[], &json!({"product_id": "p1", "inventory_id": "inv-1", "quantity": 3}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let session = res.session();
    assert_eq!(res.json(), json!({"message": "Product added to cart successfully", "cartSessionId": session}));
    assert_eq!(app.stock("inv-1").await, (7, 3, 0));
    app.stop().await;
}

#[tokio::test]
async fn tutorial_add_to_cart_sets_the_quantity_and_moves_only_the_difference() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 10).await;
    let first = app
        .json(Method::POST, "/add-to-cart", &[], &json!({"product_id": "p1", "inventory_id": "inv-1", "quantity": 3}))
        .await;
    let session = first.session();
    let h = [("cart-session-id", session.as_str())];
    let body = json!({"product_id": "p1", "inventory_id": "inv-1", "quantity": 5});
    let res = app.json(Method::POST, "/add-to-cart", &h, &body).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["cartSessionId"], session.as_str());
    assert_eq!(app.stock("inv-1").await, (5, 5, 0));
    let body = json!({"product_id": "p1", "inventory_id": "inv-1", "quantity": 1});
    app.json(Method::POST, "/add-to-cart", &h, &body).await;
    assert_eq!(app.stock("inv-1").await, (9, 1, 0));
    app.stop().await;
}

#[tokio::test]
async fn tutorial_add_to_cart_with_unknown_or_malformed_session_starts_a_new_one() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 10).await;
    let body = json!({"product_id": "p1", "inventory_id": "inv-1", "quantity": 1});
    for sent in [MISSING, "not-a-uuid"] {
        let res = app.json(Method::POST, "/add-to-cart", &[("cart-session-id", sent)], &body).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_ne!(res.session(), sent);
        assert_eq!(res.json()["cartSessionId"], res.session().as_str());
    }
    app.stop().await;
}

#[tokio::test]
async fn tutorial_get_cart_answers_exactly_like_the_tutorial() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 10).await;
    let res = app.get("/get-cart", &[]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(&res.body[..], br#"{"data":[]}"#);

    let res = app.get("/get-cart", &[("cart-session-id", MISSING)]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(&res.body[..], br#"{"message":"Cart is empty","data":[]}"#);

    let empty = app.create_cart().await;
    let res = app.get("/get-cart", &[("cart-session-id", &empty)]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(&res.body[..], br#"{"message":"Cart is empty","data":[]}"#);

    let body = json!({"product_id": "p1", "inventory_id": "inv-1", "quantity": 2});
    let session = app.json(Method::POST, "/add-to-cart", &[], &body).await.session();
    let res = app.get("/get-cart", &[("cart-session-id", &session)]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        &res.body[..],
        br#"{"message":"Cart retrieved successfully","data":[{"product_id":"p1","inventory_id":"inv-1","quantity":2}]}"#
    );
    app.stop().await;
}

#[tokio::test]
async fn create_cart_returns_an_empty_cart_with_its_deadline_and_header() {
    let app = spawn_app_with(&[("CART__SESSION__TTL_SECS", "600")]).await;
    let res = app.request(Method::POST, "/v1/carts", &[], None).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let body = res.json();
    assert_eq!(body["cart_session_id"], res.session().as_str());
    assert_eq!(body["lines"], json!([]));
    let expires = humantime::parse_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600), "{left:?}");
    app.stop().await;
}

#[tokio::test]
async fn get_cart_requires_a_valid_known_session() {
    let app = spawn_app().await;
    app.get("/v1/cart", &[]).await.assert_error(400, "invalid_request");
    app.get("/v1/cart", &[("cart-session-id", "nope")]).await.assert_error(400, "invalid_request");
    app.get("/v1/cart", &[("cart-session-id", MISSING)]).await.assert_error(404, "session_not_found");
    let session = app.create_cart().await;
    let res = app.cart(&session).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["cart_session_id"], session.as_str());
    app.stop().await;
}

#[tokio::test]
async fn set_line_holds_changes_and_zero_removes() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 10).await;
    app.set_stock("inv-2", 10).await;
    let session = app.create_cart().await;
    let res = app.set_line(&session, "p1", "inv-1", 4).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["lines"], json!([{"product_id": "p1", "inventory_id": "inv-1", "quantity": 4}]));
    assert_eq!(app.stock("inv-1").await, (6, 4, 0));

    // Moving the line to another item moves the hold.
    app.set_line(&session, "p1", "inv-2", 2).await;
    assert_eq!(app.stock("inv-1").await, (10, 0, 0));
    assert_eq!(app.stock("inv-2").await, (8, 2, 0));

    let res = app.set_line(&session, "p1", "inv-2", 0).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["lines"], json!([]));
    assert_eq!(app.stock("inv-2").await, (10, 0, 0));
    app.stop().await;
}

#[tokio::test]
async fn set_line_without_a_session_creates_one() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 5).await;
    let body = json!({"inventory_id": "inv-1", "quantity": 1});
    let res = app.json(Method::PUT, "/v1/cart/items/p1", &[], &body).await;
    assert_eq!(res.status, StatusCode::OK);
    let session = res.session();
    assert_eq!(res.json()["cart_session_id"], session.as_str());
    assert_eq!(app.cart(&session).await.json()["lines"][0]["quantity"], 1);
    app.stop().await;
}

#[tokio::test]
async fn set_line_on_an_unknown_session_is_session_not_found() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 5).await;
    app.set_line(MISSING, "p1", "inv-1", 1).await.assert_error(404, "session_not_found");
    assert_eq!(app.stock("inv-1").await, (5, 0, 0));
    app.stop().await;
}

#[tokio::test]
async fn insufficient_stock_is_409_with_the_available_count_and_changes_nothing() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 5).await;
    let session = app.create_cart().await;
    app.set_line(&session, "p1", "inv-1", 2).await;
    let res = app.set_line(&session, "p1", "inv-1", 9).await;
    res.assert_error(409, "insufficient_stock");
    assert_eq!(res.json()["available"], 3);
    assert_eq!(app.stock("inv-1").await, (3, 2, 0));
    assert_eq!(app.cart(&session).await.json()["lines"][0]["quantity"], 2);
    app.stop().await;
}

#[tokio::test]
async fn unknown_items_limits_and_malformed_input_get_clear_4xx_errors() {
    let app = spawn_app_with(&[("CART__LIMITS__MAX_LINES", "2"), ("CART__HTTP__MAX_BODY_BYTES", "1024")]).await;
    app.set_stock("inv-1", 50).await;
    let session = app.create_cart().await;
    let h = [("cart-session-id", session.as_str())];
    app.set_line(&session, "p1", "nope", 1).await.assert_error(404, "inventory_not_found");
    app.set_line(&session, "p1", "inv-1", 101).await.assert_error(400, "invalid_request");
    app.set_line(&session, "p1", "inv-1", 1).await;
    app.set_line(&session, "p2", "inv-1", 1).await;
    app.set_line(&session, "p3", "inv-1", 1).await.assert_error(409, "too_many_lines");
    app.set_line(&session, &"x".repeat(65), "inv-1", 1).await.assert_error(400, "invalid_request");
    app.set_line(&session, "p1", "bad id", 1).await.assert_error(400, "invalid_request");
    app.set_line(&session, "p%C3%A9", "inv-1", 1).await.assert_error(400, "invalid_request");
    for quantity in
        [json!(-1), json!(1.5), json!("2"), json!(1e30), json!(null), json!(18446744073709551616u128 as f64)]
    {
        let body = json!({"inventory_id": "inv-1", "quantity": quantity});
        app.json(Method::PUT, "/v1/cart/items/p1", &h, &body).await.assert_error(400, "invalid_request");
    }
    let body = json!({"inventory_id": "inv-1", "quantity": 1, "extra": true});
    app.json(Method::PUT, "/v1/cart/items/p1", &h, &body).await.assert_error(400, "invalid_request");
    let body = json!({"quantity": 1});
    app.json(Method::PUT, "/v1/cart/items/p1", &h, &body).await.assert_error(400, "invalid_request");
    let mut h2 = vec![("content-type", "application/json")];
    h2.extend_from_slice(&h);
    app.request(Method::PUT, "/v1/cart/items/p1", &h2, Some("{not json")).await.assert_error(400, "invalid_request");
    let mut h3 = vec![("content-type", "text/plain")];
    h3.extend_from_slice(&h);
    let body = r#"{"inventory_id":"inv-1","quantity":1}"#;
    app.request(Method::PUT, "/v1/cart/items/p1", &h3, Some(body)).await.assert_error(415, "unsupported_media_type");
    app.request(Method::PUT, "/v1/cart/items/p1", &h, Some(body)).await.assert_error(415, "unsupported_media_type");
    let big = format!(r#"{{"inventory_id":"inv-1","quantity":1,"pad":"{}"}}"#, "x".repeat(2000));
    app.request(Method::PUT, "/v1/cart/items/p1", &h2, Some(&big)).await.assert_error(413, "payload_too_large");
    // Nothing above changed the two lines taken.
    assert_eq!(app.stock("inv-1").await, (48, 2, 0));
    app.stop().await;
}

#[tokio::test]
async fn remove_line_releases_its_hold() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 5).await;
    let session = app.create_cart().await;
    app.set_line(&session, "p1", "inv-1", 3).await;
    let res = app.request(Method::DELETE, "/v1/cart/items/p1", &[("cart-session-id", &session)], None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["lines"], json!([]));
    assert_eq!(app.stock("inv-1").await, (5, 0, 0));
    app.request(Method::DELETE, "/v1/cart/items/p1", &[], None).await.assert_error(400, "invalid_request");
    app.request(Method::DELETE, "/v1/cart/items/p1", &[("cart-session-id", MISSING)], None)
        .await
        .assert_error(404, "session_not_found");
    app.stop().await;
}

#[tokio::test]
async fn abandoning_a_cart_releases_everything_and_closes_the_session() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 5).await;
    let session = app.create_cart().await;
    app.set_line(&session, "p1", "inv-1", 3).await;
    let h = [("cart-session-id", session.as_str())];
    let res = app.request(Method::DELETE, "/v1/cart", &h, None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.body.is_empty());
    assert_eq!(app.stock("inv-1").await, (5, 0, 0));
    app.cart(&session).await.assert_error(404, "session_not_found");
    app.request(Method::DELETE, "/v1/cart", &h, None).await.assert_error(404, "session_not_found");
    app.stop().await;
}

#[tokio::test]
async fn checkout_sells_the_holds_once_and_a_retry_returns_the_same_order() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 5).await;
    app.set_stock("inv-2", 5).await;
    let session = app.create_cart().await;
    app.set_line(&session, "p1", "inv-1", 2).await;
    app.set_line(&session, "p2", "inv-2", 1).await;
    let h = [("cart-session-id", session.as_str())];
    let res = app.request(Method::POST, "/v1/cart/checkout", &h, None).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let order = res.json();
    assert_eq!(order["cart_session_id"], session.as_str());
    assert_eq!(
        order["lines"],
        json!([
            {"product_id": "p1", "inventory_id": "inv-1", "quantity": 2},
            {"product_id": "p2", "inventory_id": "inv-2", "quantity": 1}
        ])
    );
    assert_eq!(app.stock("inv-1").await, (3, 0, 2));
    assert_eq!(app.stock("inv-2").await, (4, 0, 1));

    let retry = app.request(Method::POST, "/v1/cart/checkout", &h, None).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.json(), order);
    assert_eq!(app.stock("inv-1").await, (3, 0, 2));
    app.cart(&session).await.assert_error(404, "session_not_found");
    app.set_line(&session, "p3", "inv-1", 1).await.assert_error(404, "session_not_found");
    app.stop().await;
}

#[tokio::test]
async fn checkout_of_an_empty_or_unknown_cart_fails_clearly() {
    let app = spawn_app().await;
    let session = app.create_cart().await;
    app.request(Method::POST, "/v1/cart/checkout", &[("cart-session-id", &session)], None)
        .await
        .assert_error(409, "cart_empty");
    app.request(Method::POST, "/v1/cart/checkout", &[("cart-session-id", MISSING)], None)
        .await
        .assert_error(404, "session_not_found");
    app.request(Method::POST, "/v1/cart/checkout", &[], None).await.assert_error(400, "invalid_request");
    app.stop().await;
}

#[tokio::test]
async fn inventory_reads_are_public_and_writes_need_the_admin_token() {
    let app = spawn_app().await;
    app.get("/v1/inventory/inv-9", &[]).await.assert_error(404, "inventory_not_found");
    app.get("/v1/inventory/bad%20id", &[]).await.assert_error(400, "invalid_request");
    let body = json!({"available": 7});
    let res = app.json(Method::PUT, "/v1/inventory/inv-9", &[], &body).await;
    res.assert_error(401, "unauthorized");
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    app.json(Method::PUT, "/v1/inventory/inv-9", &[("authorization", "Bearer wrong-token-0123456789")], &body)
        .await
        .assert_error(401, "unauthorized");
    app.json(Method::PUT, "/v1/inventory/inv-9", &[("authorization", ADMIN_TOKEN)], &body)
        .await
        .assert_error(401, "unauthorized");
    app.get("/v1/inventory/inv-9", &[]).await.assert_error(404, "inventory_not_found");

    let created = app.set_stock("inv-9", 7).await;
    assert_eq!(created, json!({"inventory_id": "inv-9", "available": 7, "reserved": 0, "sold": 0}));
    let session = app.create_cart().await;
    app.set_line(&session, "p1", "inv-9", 2).await;
    // Restocking sets `available` and leaves the holds alone.
    let restocked = app.set_stock("inv-9", 20).await;
    assert_eq!(restocked, json!({"inventory_id": "inv-9", "available": 20, "reserved": 2, "sold": 0}));
    let auth = format!("Bearer {ADMIN_TOKEN}");
    app.json(Method::PUT, "/v1/inventory/inv-9", &[("authorization", &auth)], &json!({"available": -1}))
        .await
        .assert_error(400, "invalid_request");
    app.json(Method::PUT, "/v1/inventory/inv-9", &[("authorization", &auth)], &json!({"available": 1_000_000_001}))
        .await
        .assert_error(400, "invalid_request");
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let res = app.get("/healthz", &[]).await;
    assert_eq!((res.status, res.json()), (StatusCode::OK, json!({"status": "ok"})));
    let res = app.get("/readyz", &[]).await;
    assert_eq!((res.status, res.json()), (StatusCode::OK, json!({"status": "ready"})));
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_are_405_with_allow() {
    let app = spawn_app().await;
    app.get("/nope", &[]).await.assert_error(404, "not_found");
    let res = app.request(Method::PATCH, "/v1/cart", &[], None).await;
    res.assert_error(405, "method_not_allowed");
    let allow = res.header("allow").expect("Allow header");
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    let res = app.request(Method::GET, "/v1/cart/checkout", &[], None).await;
    res.assert_error(405, "method_not_allowed");
    assert_eq!(res.header("allow"), Some("POST"));
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let res = app.get("/openapi.json", &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let doc = res.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("/add-to-cart", "post"),
        ("/get-cart", "get"),
        ("/v1/carts", "post"),
        ("/v1/cart", "get"),
        ("/v1/cart", "delete"),
        ("/v1/cart/items/{product_id}", "put"),
        ("/v1/cart/items/{product_id}", "delete"),
        ("/v1/cart/checkout", "post"),
        ("/v1/cart/merge", "post"),
        ("/v1/inventory", "get"),
        ("/v1/inventory/events", "get"),
        ("/v1/inventory/{inventory_id}", "get"),
        ("/v1/inventory/{inventory_id}", "put"),
        ("/v1/admin/limits", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/", "get"),
        ("/assets/app.js", "get"),
        ("/assets/app.css", "get"),
        ("/v1/catalog", "get"),
    ];
    for (path, method) in expected {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from /openapi.json");
    }
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, expected.len(), "the document lists routes the server does not have");
    // Every schema referenced is defined.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "schema {name} referenced but not defined");
    }
    assert_eq!(doc["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
    app.stop().await;
}

// The in-memory backend's clock is tokio's, so the tests of expiry below run
// on a paused clock: it moves only as the test sleeps, and a sleep returns as
// soon as nothing else can run, so no test waits in real time.
#[tokio::test(start_paused = true)]
async fn an_abandoned_cart_expires_and_its_stock_returns() {
    let app = spawn_app_with(&[("CART__SESSION__TTL_SECS", "1"), ("CART__SWEEPER__INTERVAL_MS", "50")]).await;
    app.set_stock("inv-1", 5).await;
    let session = app.create_cart().await;
    app.set_line(&session, "p1", "inv-1", 4).await;
    assert_eq!(app.stock("inv-1").await, (1, 4, 0));
    let mut waited = Duration::ZERO;
    while app.stock("inv-1").await != (5, 0, 0) {
        assert!(waited < Duration::from_secs(5), "stock did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    app.cart(&session).await.assert_error(404, "session_not_found");
    app.stop().await;
}

#[tokio::test(start_paused = true)]
async fn sliding_expiry_pushes_the_deadline_on_every_change() {
    let app = spawn_app_with(&[("CART__SESSION__TTL_SECS", "60"), ("CART__SESSION__SLIDING", "true")]).await;
    app.set_stock("inv-1", 5).await;
    app.set_stock("inv-2", 5).await;
    let session = app.create_cart().await;
    let deadline = |body: serde_json::Value| humantime::parse_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let mut last = deadline(app.cart(&session).await.json());
    // A new line, another quantity, another item, a removal: each is a change.
    for (step, (item, quantity)) in [("inv-1", 1), ("inv-1", 3), ("inv-2", 2), ("inv-2", 0)].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = deadline(app.set_line(&session, "p1", item, quantity).await.json());
        assert!(now > last, "change {step} ({item} x{quantity}) did not push the deadline: {last:?} -> {now:?}");
        last = now;
    }
    app.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fixed_expiry_keeps_the_deadline() {
    let app = spawn_app_with(&[("CART__SESSION__TTL_SECS", "60")]).await;
    app.set_stock("inv-1", 5).await;
    let session = app.create_cart().await;
    let before = app.cart(&session).await.json()["expires_at"].clone();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(app.set_line(&session, "p1", "inv-1", 1).await.json()["expires_at"], before);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_shoppers_never_hold_more_than_the_stock() {
    let app = std::sync::Arc::new(spawn_app().await);
    app.set_stock("hot", 10).await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"inventory_id": "hot", "quantity": 1});
            app.json(Method::PUT, "/v1/cart/items/p", &[], &body).await.status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(app.stock("hot").await, (0, 10, 0));
}

#[tokio::test]
async fn cors_allows_configured_origins_and_exposes_the_session_header() {
    let app = spawn_app_with(&[("CART__CORS__ALLOWED_ORIGINS", "https://shop.example")]).await;
    let res = app
        .request(
            Method::OPTIONS,
            "/v1/cart",
            &[("origin", "https://shop.example"), ("access-control-request-method", "GET")],
            None,
        )
        .await;
    assert_eq!(res.header("access-control-allow-origin"), Some("https://shop.example"));
    let res = app.request(Method::POST, "/v1/carts", &[("origin", "https://shop.example")], None).await;
    assert_eq!(res.header("access-control-expose-headers"), Some("cart-session-id,idempotent-replayed"));
    // A browser may send an idempotency key (preflight lists what it may send).
    let res = app
        .request(
            Method::OPTIONS,
            "/v1/carts",
            &[
                ("origin", "https://shop.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "idempotency-key"),
            ],
            None,
        )
        .await;
    let allowed = res.header("access-control-allow-headers").unwrap_or_default();
    assert!(allowed.split(',').any(|h| h.trim() == "idempotency-key"), "{allowed}");
    let res = app.request(Method::POST, "/v1/carts", &[("origin", "https://evil.example")], None).await;
    assert_eq!(res.header("access-control-allow-origin"), None);
    app.stop().await;
}

#[test]
fn the_binary_refuses_an_invalid_setting_and_names_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartd"))
        .env("CART__SESSION__TTL_SECS", "0")
        .env("CART__HTTP__ADDR", "127.0.0.1:0")
        .output()
        .expect("cartd runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("session.ttl_secs"), "{stderr}");
}

#[tokio::test(start_paused = true)]
async fn metrics_count_requests_and_every_kind_of_stock_movement() {
    let app = spawn_app_with(&[("CART__SESSION__TTL_SECS", "1"), ("CART__SWEEPER__INTERVAL_MS", "50")]).await;
    app.set_stock("inv-1", 20).await;
    // A line taken then lowered: 3 taken, 2 released by the change; its cart
    // then expires and the sweeper releases the last unit.
    let expiring = app.set_line_new("p1", "inv-1", 3).await.session();
    assert_eq!(app.set_line(&expiring, "p1", "inv-1", 1).await.status, StatusCode::OK);
    // 2 taken, then released by abandoning the cart.
    let abandoned = app.set_line_new("p1", "inv-1", 2).await.session();
    assert_eq!(app.request(Method::DELETE, "/v1/cart", &[("cart-session-id", &abandoned)], None).await.status, 204);
    // 4 taken, then sold.
    let bought = app.set_line_new("p1", "inv-1", 4).await.session();
    let res = app.request(Method::POST, "/v1/cart/checkout", &[("cart-session-id", &bought)], None).await;
    assert_eq!(res.status, StatusCode::CREATED);
    app.get("/nope", &[]).await.assert_error(404, "not_found");
    app.request(Method::PATCH, "/v1/cart", &[], None).await.assert_error(405, "method_not_allowed");

    let hold = |change: &'static str, cause: &'static str| [("change", change), ("cause", cause)];
    let started = tokio::time::Instant::now();
    let m = loop {
        let m = app.metrics().await;
        if m.value("cartd_hold_units_total", &hold("released", "sweeper")) >= 1.0 {
            break m;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the sweeper did not release the expired cart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m.value("cartd_hold_units_total", &hold("taken", "line_change")), 9.0);
    assert_eq!(m.value("cartd_hold_units_total", &hold("released", "line_change")), 2.0);
    assert_eq!(m.value("cartd_hold_units_total", &hold("released", "abandon")), 2.0);
    assert_eq!(m.value("cartd_hold_units_total", &hold("sold", "checkout")), 4.0);
    assert_eq!(m.value("cartd_hold_units_total", &hold("released", "sweeper")), 1.0);
    assert_eq!(m.value("cartd_hold_units_total", &hold("released", "expiry_event")), 0.0);
    assert_eq!(m.value("cartd_held_units", &[]), 0.0);
    assert_eq!(app.stock("inv-1").await, (16, 0, 4));
    // One expired cart, released within a few sweep intervals of its deadline.
    let lag = [("cause", "sweeper")];
    assert_eq!(m.value("cartd_release_lag_seconds_count", &lag), 1.0);
    let late = m.value("cartd_release_lag_seconds_sum", &lag);
    assert!((0.0..1.0).contains(&late), "released {late} s after the deadline");
    assert_eq!(m.value("cartd_release_lag_seconds_bucket", &[("cause", "sweeper"), ("le", "+Inf")]), 1.0);

    let http = |route: &'static str, method: &'static str, status: &'static str| {
        [("route", route), ("method", method), ("status", status)]
    };
    for (labels, n) in [
        (http("/v1/inventory/{inventory_id}", "PUT", "200"), 1.0),
        (http("/v1/cart/items/{product_id}", "PUT", "200"), 4.0),
        (http("/v1/cart", "DELETE", "204"), 1.0),
        (http("/v1/cart/checkout", "POST", "201"), 1.0),
        (http("unmatched", "GET", "404"), 1.0),
        (http("/v1/cart", "PATCH", "405"), 1.0),
    ] {
        assert_eq!(m.value("cartd_http_requests_total", &labels), n, "{labels:?}");
        assert_eq!(m.value("cartd_http_request_duration_seconds_count", &labels), n, "{labels:?}");
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(m.value("cartd_http_request_duration_seconds_bucket", &inf), n, "{labels:?}");
    }
    assert_eq!(m.value("cartd_store_errors_total", &[("store", "redis")]), 0.0);
    assert_eq!(m.value("cartd_store_errors_total", &[("store", "postgres")]), 0.0);
    // The memory backend has neither pools nor a listener.
    assert!(m.series("cartd_pool_connections").is_empty());
    assert!(m.series("cartd_expiry_listener_connected").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn ids_in_headers_and_paths_never_become_metric_labels() {
    let app = spawn_app().await;
    app.set_stock("inv-secret-item", 5).await;
    let session = app.set_line_new("product-secret", "inv-secret-item", 1).await.session();
    assert_eq!(app.cart(&session).await.status, StatusCode::OK);
    app.get("/v1/inventory/inv-secret-item", &[]).await;
    app.cart(MISSING).await.assert_error(404, "session_not_found");
    app.get(&format!("/v1/cart/{session}"), &[]).await.assert_error(404, "not_found");
    let m = app.metrics().await;
    for id in [session.as_str(), MISSING, "inv-secret-item", "product-secret"] {
        assert!(!m.text.contains(id), "{id} appears in /metrics");
    }
    let routes: std::collections::BTreeSet<&str> =
        m.series("cartd_http_requests_total").iter().map(|s| s.labels["route"].as_str()).collect();
    let expected = ["/v1/cart", "/v1/cart/items/{product_id}", "/v1/inventory/{inventory_id}", "unmatched"];
    assert_eq!(routes, expected.into_iter().collect());
    assert_eq!(
        m.value("cartd_http_requests_total", &[("route", "/v1/cart"), ("method", "GET"), ("status", "200")]),
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_one_is_kept() {
    let app = spawn_app().await;
    let res = app.get("/healthz", &[("x-request-id", "trace-42.a_b")]).await;
    assert_eq!(res.header("x-request-id"), Some("trace-42.a_b"));
    let res = app.get("/nope", &[]).await;
    let generated = res.header("x-request-id").expect("a generated request id");
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    let long = "x".repeat(65);
    for odd in ["has space", "semi;colon", long.as_str()] {
        let res = app.get("/healthz", &[("x-request-id", odd)]).await;
        let id = res.header("x-request-id").expect("a request id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{odd:?} was answered with {id:?}");
    }
    let res = app.request(Method::PATCH, "/v1/cart", &[("x-request-id", "on-405")], None).await;
    assert_eq!(res.header("x-request-id"), Some("on-405"));
    app.stop().await;
}

/// A PUT whose body is `body`, of which only the first `sent` bytes are in
/// the returned request text.
fn partial_put(body: &str, sent: usize) -> String {
    format!(
        "PUT /v1/cart/items/p1 HTTP/1.1\r\nhost: cartd\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        &body[..sent]
    )
}

#[tokio::test]
async fn a_request_slower_than_the_request_timeout_gets_408_request_timeout() {
    let app = spawn_app_with(&[("CART__HTTP__REQUEST_TIMEOUT_MS", "300")]).await;
    app.set_stock("inv-1", 10).await;
    let body = r#"{"inventory_id":"inv-1","quantity":2}"#;
    let started = std::time::Instant::now();
    // Half a body, then nothing: the request must not hold the connection.
    let answer = support::raw_exchange(app.addr, partial_put(body, 10).as_bytes()).await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    let json_start = answer.find("\r\n\r\n").expect("a body") + 4;
    let body: serde_json::Value = serde_json::from_str(&answer[json_start..]).expect("a JSON error body");
    assert_eq!(body["error"], "request_timeout");
    assert_eq!(app.stock("inv-1").await, (10, 0, 0), "nothing was held");
    let m = app.metrics().await;
    let labels = [("route", "/v1/cart/items/{product_id}"), ("method", "PUT"), ("status", "408")];
    assert_eq!(m.value("cartd_http_requests_total", &labels), 1.0);
    app.stop().await;
}

/// An answer hyper writes by itself carries the same JSON error body as
/// every other refusal (issue 15, item 3).
fn assert_json_refusal(answer: &str, code: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let head = head.to_ascii_lowercase();
    assert!(head.contains("\r\ncontent-type: application/json"), "{answer}");
    assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{answer}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(json["error"], code, "{answer}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
}

#[tokio::test]
async fn a_request_that_is_not_http_gets_400_with_the_json_body() {
    let app = spawn_app().await;
    for garbage in
        ["GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", "GET / HTTP/1.1\r\nhost: cartd\r\nx-bad\u{1}: 1\r\n\r\n"]
    {
        let answer = support::raw_exchange(app.addr, garbage.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert_json_refusal(&answer, "invalid_request");
    }
    app.stop().await;
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let app = spawn_app_with(&[("CART__HTTP__MAX_HEADER_BYTES", "4096"), ("CART__HTTP__MAX_HEADERS", "20")]).await;
    let big = format!("GET /healthz HTTP/1.1\r\nhost: cartd\r\nx-filler: {}\r\n\r\n", "a".repeat(5000));
    let answer = support::raw_exchange(app.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert_json_refusal(&answer, "request_header_fields_too_large");
    let many: String = (0..25).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let answer =
        support::raw_exchange(app.addr, format!("GET /healthz HTTP/1.1\r\nhost: cartd\r\n{many}\r\n").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert_json_refusal(&answer, "request_header_fields_too_large");
    // Within the limits the same requests are served.
    let few: String = (0..15).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: cartd\r\nconnection: close\r\n{few}\r\n");
    let answer = support::raw_exchange(app.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    use tokio::io::AsyncWriteExt;
    let mut app = spawn_app().await;
    app.set_stock("inv-1", 10).await;
    let body = r#"{"inventory_id":"inv-1","quantity":2}"#;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(partial_put(body, 10).as_bytes()).await.unwrap();
    // Let the server accept it and start reading the body.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let addr = app.addr;
    app.fire_stop();
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(3), "still accepting connections after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let answer = support::read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let json_start = answer.find("\r\n\r\n").expect("a body") + 4;
    let cart: serde_json::Value = serde_json::from_str(&answer[json_start..]).expect("the complete JSON body");
    assert_eq!(cart["lines"][0]["quantity"], 2);
    // The server task (serve loop, then the sweeper) ends by itself.
    tokio::time::timeout(Duration::from_secs(5), app.wait_stopped()).await.expect("the server stops");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
