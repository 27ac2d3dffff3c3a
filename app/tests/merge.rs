//! `POST /v1/cart/merge` end to end, on the in-memory backend and on real
//! Redis + PostgreSQL (issue 15, item 1).

use cartd_test_support::Isolation;
use cartd_test_support::app::{TestApp, spawn_app, spawn_real_app_in};
use http::{Method, StatusCode};
use serde_json::json;

const MISSING: &str = "4f1c9b9e-4a8e-4d61-9f4f-6a2b8f0f6c11";

async fn merges_over_http(app: &TestApp) {
    app.set_stock("m-a", 6).await;
    app.set_stock("m-b", 5).await;
    let guest = app.set_line_new("p1", "m-a", 2).await.session();
    app.set_line(&guest, "p2", "m-b", 3).await;
    let mine = app.set_line_new("p1", "m-a", 3).await.session();
    app.set_line_new("p9", "m-a", 1).await; // leaves 0 of m-a free

    let h = [("cart-session-id", mine.as_str())];
    let body = json!({"from_cart_session_id": guest, "strategy": "max"});
    let res = app.json(Method::POST, "/v1/cart/merge", &h, &body).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.json());
    assert_eq!(res.session(), mine);
    let merged = res.json();
    assert_eq!(
        merged["lines"],
        json!([
            {"product_id": "p1", "inventory_id": "m-a", "quantity": 3},
            {"product_id": "p2", "inventory_id": "m-b", "quantity": 3},
        ])
    );
    assert_eq!(merged["shortfalls"], json!([]));
    assert_eq!(merged["replayed"], false);
    assert_eq!(app.stock("m-a").await, (2, 4, 0), "max(3, 2): the guest's 2 went back");
    assert_eq!(app.stock("m-b").await, (2, 3, 0), "moved, not taken again");
    app.cart(&guest).await.assert_error(404, "session_not_found");
    assert_eq!(app.cart(&mine).await.json()["lines"], merged["lines"]);

    let again = app.json(Method::POST, "/v1/cart/merge", &h, &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["replayed"], true);
    assert_eq!(again.json()["lines"], merged["lines"]);
    assert_eq!(app.stock("m-a").await, (2, 4, 0), "a retry moves nothing");

    // p1 is on another item in the target: the target's item stays, and it
    // needs 3 more of m-b, of which none is free: clamped and told.
    let other = app.set_line_new("p1", "m-b", 2).await.session();
    let res = app
        .json(
            Method::POST,
            "/v1/cart/merge",
            &[("cart-session-id", other.as_str())],
            &json!({"from_cart_session_id": mine}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.json());
    assert_eq!(
        res.json()["shortfalls"],
        json!([{"product_id": "p1", "requested": 5, "granted": 2, "reason": "insufficient_stock"}])
    );
    assert_eq!(app.stock("m-a").await, (5, 1, 0), "the source's m-a went back");
    assert_eq!(app.stock("m-b").await, (0, 5, 0));

    // Refusals, each with the JSON error body.
    let h = [("cart-session-id", other.as_str())];
    app.json(Method::POST, "/v1/cart/merge", &h, &json!({"from_cart_session_id": other}))
        .await
        .assert_error(409, "merge_into_itself");
    app.json(Method::POST, "/v1/cart/merge", &h, &json!({"from_cart_session_id": MISSING}))
        .await
        .assert_error(404, "session_not_found");
    let res = app.json(Method::POST, "/v1/cart/merge", &h, &json!({"from_cart_session_id": "secret-but-bad"})).await;
    res.assert_error(400, "invalid_request");
    assert!(!res.json()["message"].as_str().unwrap().contains("secret-but-bad"), "the id is never echoed");
    app.json(Method::POST, "/v1/cart/merge", &h, &json!({"from_cart_session_id": MISSING, "strategy": "min"}))
        .await
        .assert_error(400, "invalid_request");
    app.json(Method::POST, "/v1/cart/merge", &[], &json!({"from_cart_session_id": MISSING}))
        .await
        .assert_error(400, "invalid_request");
    app.json(Method::POST, "/v1/cart/merge", &[("cart-session-id", MISSING)], &json!({"from_cart_session_id": other}))
        .await
        .assert_error(404, "session_not_found");
    assert_eq!(app.cart(&other).await.status, StatusCode::OK, "a refused merge leaves both carts");
}

#[tokio::test]
async fn merge_over_http_in_memory() {
    let app = spawn_app().await;
    merges_over_http(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn merge_over_http_on_redis_and_postgres() {
    let iso = Isolation::new();
    let app = spawn_real_app_in(&iso, &[]).await;
    merges_over_http(&app).await;
    app.stop().await;
    iso.cleanup().await;
}
