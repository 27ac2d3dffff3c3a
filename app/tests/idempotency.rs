//! `Idempotency-Key` on the requests that create a cart (issue 15, item 2),
//! on the in-memory backend and on real Redis + PostgreSQL.

use cartd_test_support::Isolation;
use cartd_test_support::app::{TestApp, spawn_app, spawn_real_app_in};
use http::{Method, StatusCode};
use serde_json::json;

async fn retries_are_answered_once(app: &TestApp) {
    // POST /v1/carts: the same key answers the same cart, marked replayed.
    let k = [("idempotency-key", "create-7f3a")];
    let first = app.request(Method::POST, "/v1/carts", &k, None).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = app.request(Method::POST, "/v1/carts", &k, None).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.session(), first.session(), "the same cart");
    assert_eq!(again.json()["expires_at"], first.json()["expires_at"], "a key never extends a session");
    let other = app.request(Method::POST, "/v1/carts", &[("idempotency-key", "create-other")], None).await;
    assert_ne!(other.session(), first.session());
    let plain = app.request(Method::POST, "/v1/carts", &[], None).await;
    assert_ne!(plain.session(), first.session(), "no key, a new cart");

    // POST /add-to-cart without a session: a retry adds nothing.
    app.set_stock("idem-1", 10).await;
    let body = json!({"product_id": "p1", "inventory_id": "idem-1", "quantity": 3});
    let k = [("idempotency-key", "add-7f3a")];
    let first = app.json(Method::POST, "/add-to-cart", &k, &body).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = app.json(Method::POST, "/add-to-cart", &k, &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["cartSessionId"], first.json()["cartSessionId"]);
    assert_eq!(app.stock("idem-1").await, (7, 3, 0), "held once");
    // The same key with another line is a reuse, refused; nothing changes.
    let other = json!({"product_id": "p1", "inventory_id": "idem-1", "quantity": 4});
    app.json(Method::POST, "/add-to-cart", &k, &other).await.assert_error(422, "idempotency_key_reused");
    assert_eq!(app.stock("idem-1").await, (7, 3, 0));
    // Scopes never meet: the create key means nothing to add-to-cart.
    let elsewhere = app.json(Method::POST, "/add-to-cart", &[("idempotency-key", "create-7f3a")], &body).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
    assert_eq!(elsewhere.header("idempotent-replayed"), None);
    assert_eq!(app.stock("idem-1").await, (4, 6, 0));
    // A refused first request leaves the key free for a retry that can succeed.
    let greedy = json!({"product_id": "p2", "inventory_id": "idem-1", "quantity": 5});
    let k = [("idempotency-key", "add-after-refusal")];
    app.json(Method::POST, "/add-to-cart", &k, &greedy).await.assert_error(409, "insufficient_stock");
    app.set_stock("idem-1", 5).await;
    let retry = app.json(Method::POST, "/add-to-cart", &k, &greedy).await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.json());
    assert_eq!(retry.header("idempotent-replayed"), None, "the refusal was not kept");

    // Malformed keys.
    for bad in ["with space", &"k".repeat(256)] {
        app.request(Method::POST, "/v1/carts", &[("idempotency-key", bad)], None)
            .await
            .assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn idempotency_keys_in_memory() {
    let app = spawn_app().await;
    retries_are_answered_once(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_on_redis_and_postgres() {
    let iso = Isolation::new();
    let app = spawn_real_app_in(&iso, &[]).await;
    retries_are_answered_once(&app).await;
    app.stop().await;
    iso.cleanup().await;
}
