//! The [`SessionStore`] contract. See the parent module for how to run it.

use domain::ports::{Clock, HoldReceipt, SessionStore};
use domain::{Cart, CartId, Timestamp};

use crate::fixtures::{line, millis, remove, secs, set};

/// A receipt as the ledger would hand it out.
fn receipt(version: u64, expires_at: Timestamp) -> HoldReceipt {
    HoldReceipt { version, expires_at, taken: 0, released: 0 }
}

/// Creates a fresh session at `t0` that ends `ttl_secs` later.
async fn created(store: &impl SessionStore, t0: Timestamp, ttl_secs: u64) -> CartId {
    let id = CartId::random();
    store.create(id, secs(t0, ttl_secs), t0).await.expect("create");
    id
}

pub async fn load_of_unknown_session_is_none(store: impl SessionStore, clock: impl Clock) {
    let now = clock.now();
    assert_eq!(store.load(CartId::random(), now).await.unwrap(), None);
}

pub async fn created_session_is_empty_and_carries_its_deadline(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    assert_eq!(store.load(id, t0).await.unwrap(), Some(Cart { id, expires_at: secs(t0, 60), lines: vec![] }));
    assert_eq!(store.load(CartId::random(), t0).await.unwrap(), None, "only the created id exists");
}

// REDIS: needs real sleeping (until t0 + 2 s) if expiry relies on the key TTL alone.
pub async fn session_is_invisible_after_its_deadline(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 1).await;
    assert!(store.load(id, millis(t0, 999)).await.unwrap().is_some(), "live just before its deadline");
    // The ledger treats `deadline <= now` as expired; the session must agree,
    // or a cart could be shown while its holds are being released.
    assert_eq!(store.load(id, secs(t0, 1)).await.unwrap(), None, "ended exactly at its deadline");
    assert_eq!(store.load(id, secs(t0, 2)).await.unwrap(), None);
}

pub async fn apply_sets_a_line_and_returns_the_cart(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    let cart = store.apply(id, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap();
    let expected = Cart { id, expires_at: secs(t0, 60), lines: vec![line("p1", "sku-a", 2)] };
    assert_eq!(cart.as_ref(), Some(&expected));
    assert_eq!(store.load(id, t0).await.unwrap(), Some(expected));
}

pub async fn apply_replaces_a_line_rather_than_adding_to_it(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    let d = secs(t0, 60);
    store.apply(id, &set("p1", "sku-a", 2), receipt(1, d), t0).await.unwrap();
    let cart = store.apply(id, &set("p1", "sku-a", 5), receipt(2, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 5)], "set, not add");
    // Moving the line to another item keeps one line per product.
    let cart = store.apply(id, &set("p1", "sku-b", 1), receipt(3, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-b", 1)]);
    assert_eq!(store.load(id, t0).await.unwrap().expect("live").lines, vec![line("p1", "sku-b", 1)]);
}

pub async fn lines_are_one_per_product_in_product_order(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    let d = secs(t0, 60);
    store.apply(id, &set("p3", "sku-a", 3), receipt(1, d), t0).await.unwrap();
    store.apply(id, &set("p1", "sku-a", 1), receipt(2, d), t0).await.unwrap();
    let cart = store.apply(id, &set("p2", "sku-b", 2), receipt(3, d), t0).await.unwrap().expect("live");
    let expected = vec![line("p1", "sku-a", 1), line("p2", "sku-b", 2), line("p3", "sku-a", 3)];
    assert_eq!(cart.lines, expected);
    assert_eq!(store.load(id, t0).await.unwrap().expect("live").lines, expected);
}

pub async fn apply_ignores_older_versions_of_a_line(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    let d = secs(t0, 60);
    store.apply(id, &set("p1", "sku-a", 5), receipt(2, d), t0).await.unwrap();
    // The change the ledger made before (version 1) arrives late.
    let cart = store.apply(id, &set("p1", "sku-a", 2), receipt(1, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 5)], "the returned cart keeps the newer line");
    assert_eq!(store.load(id, t0).await.unwrap().expect("live").lines, vec![line("p1", "sku-a", 5)]);
    // Versions are compared per line: an older change to another product applies.
    let cart = store.apply(id, &set("p2", "sku-b", 1), receipt(1, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 5), line("p2", "sku-b", 1)]);
}

pub async fn removed_line_is_not_resurrected_by_an_older_change(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    let d = secs(t0, 60);
    store.apply(id, &set("p1", "sku-a", 2), receipt(1, d), t0).await.unwrap();
    let cart = store.apply(id, &remove("p1"), receipt(3, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![]);
    let cart = store.apply(id, &set("p1", "sku-a", 4), receipt(2, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![], "version 2 is older than the removal at version 3");
    assert_eq!(store.load(id, t0).await.unwrap().expect("live").lines, vec![]);
    // A newer change brings the line back.
    let cart = store.apply(id, &set("p1", "sku-a", 1), receipt(4, d), t0).await.unwrap().expect("live");
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 1)]);
}

pub async fn apply_on_missing_session_changes_nothing(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = CartId::random();
    let r = store.apply(id, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap();
    assert_eq!(r, None);
    assert_eq!(store.load(id, t0).await.unwrap(), None, "apply must not create a session");
    // Nor may a closed session come back through apply.
    let closed = created(&store, t0, 60).await;
    assert!(store.close(closed, t0).await.unwrap());
    let r = store.apply(closed, &set("p1", "sku-a", 2), receipt(1, secs(t0, 120)), t0).await.unwrap();
    assert_eq!(r, None);
    assert_eq!(store.load(closed, t0).await.unwrap(), None);
}

/// `apply_only` is `apply` without the cart: the same writes, the same rules
/// (line versions, deadlines that only move later), `true`/`false` for
/// whether the session exists.
pub async fn apply_only_applies_like_apply_and_says_whether_the_session_exists(
    store: impl SessionStore,
    clock: impl Clock,
) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    assert!(store.apply_only(id, &set("p1", "sku-a", 5), receipt(2, secs(t0, 90)), t0).await.unwrap());
    // An older change of the same line is ignored, a newer one of another applies.
    assert!(store.apply_only(id, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap());
    assert!(store.apply_only(id, &set("p2", "sku-b", 1), receipt(3, secs(t0, 60)), t0).await.unwrap());
    let expected = Cart { id, expires_at: secs(t0, 90), lines: vec![line("p1", "sku-a", 5), line("p2", "sku-b", 1)] };
    assert_eq!(store.load(id, t0).await.unwrap(), Some(expected), "deadline moved later, never back");
    assert!(store.apply_only(id, &remove("p1"), receipt(4, secs(t0, 90)), t0).await.unwrap());
    assert_eq!(store.load(id, t0).await.unwrap().expect("live").lines, vec![line("p2", "sku-b", 1)]);
    // A missing or closed session stays missing.
    let missing = CartId::random();
    assert!(!store.apply_only(missing, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap());
    assert_eq!(store.load(missing, t0).await.unwrap(), None);
    assert!(store.close(id, t0).await.unwrap());
    assert!(!store.apply_only(id, &set("p1", "sku-a", 2), receipt(9, secs(t0, 120)), t0).await.unwrap());
    assert_eq!(store.load(id, t0).await.unwrap(), None);
}

// REDIS: needs real sleeping (until t0 + 3 s) if expiry relies on the key TTL alone.
pub async fn apply_does_not_revive_an_ended_session(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 1).await;
    store.apply(id, &set("p1", "sku-a", 2), receipt(1, secs(t0, 1)), t0).await.unwrap();
    // A (sliding) receipt pushing the deadline out arrives after the session ended.
    let r = store.apply(id, &set("p1", "sku-a", 3), receipt(2, secs(t0, 60)), secs(t0, 2)).await.unwrap();
    assert_eq!(r, None, "an ended session cannot be changed");
    assert_eq!(store.load(id, secs(t0, 3)).await.unwrap(), None, "nor is its deadline moved");
}

// REDIS: needs real sleeping (until t0 + 2 s) if expiry relies on the key TTL alone.
pub async fn close_reports_whether_session_was_live(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    assert!(!store.close(CartId::random(), t0).await.unwrap(), "unknown session");
    let id = created(&store, t0, 60).await;
    assert!(store.close(id, t0).await.unwrap(), "live session");
    assert_eq!(store.load(id, t0).await.unwrap(), None);
    assert!(!store.close(id, t0).await.unwrap(), "already closed");
    let ended = created(&store, t0, 1).await;
    assert!(!store.close(ended, secs(t0, 2)).await.unwrap(), "ended before it was closed");
}

pub async fn closed_session_keeps_nothing(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 60).await;
    store.apply(id, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap();
    assert!(store.close(id, t0).await.unwrap());
    // Opening the same id again must not find the old lines (every key of the
    // session went away with it).
    store.create(id, secs(t0, 30), t0).await.unwrap();
    assert_eq!(store.load(id, t0).await.unwrap(), Some(Cart { id, expires_at: secs(t0, 30), lines: vec![] }));
}

// REDIS: needs real sleeping (until t0 + 30 s, or scale the numbers down) if
// expiry relies on the key TTL alone.
pub async fn sliding_deadline_moves_with_apply(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 10).await;
    // Fixed mode: the receipt carries the unchanged deadline.
    let cart = store.apply(id, &set("p1", "sku-a", 1), receipt(1, secs(t0, 10)), t0).await.unwrap();
    assert_eq!(cart.expect("live").expires_at, secs(t0, 10));
    // Sliding mode: the receipt carries a later deadline.
    let cart = store.apply(id, &set("p1", "sku-a", 2), receipt(2, secs(t0, 30)), secs(t0, 5)).await.unwrap();
    assert_eq!(cart.expect("live").expires_at, secs(t0, 30));
    let cart = store.load(id, secs(t0, 20)).await.unwrap().expect("live past its first deadline");
    assert_eq!(cart, Cart { id, expires_at: secs(t0, 30), lines: vec![line("p1", "sku-a", 2)] });
    assert_eq!(store.load(id, secs(t0, 30)).await.unwrap(), None, "ends at the moved deadline");
}

pub async fn sessions_are_independent(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let a = created(&store, t0, 60).await;
    let b = created(&store, t0, 90).await;
    store.apply(a, &set("p1", "sku-a", 2), receipt(1, secs(t0, 60)), t0).await.unwrap();
    store.apply(b, &set("p1", "sku-b", 3), receipt(1, secs(t0, 90)), t0).await.unwrap();
    assert!(store.close(a, t0).await.unwrap());
    assert_eq!(store.load(a, t0).await.unwrap(), None);
    assert_eq!(
        store.load(b, t0).await.unwrap(),
        Some(Cart { id: b, expires_at: secs(t0, 90), lines: vec![line("p1", "sku-b", 3)] })
    );
}

pub async fn deadline_never_moves_back_when_changes_arrive_out_of_order(store: impl SessionStore, clock: impl Clock) {
    let t0 = clock.now();
    let id = created(&store, t0, 10).await;
    store.apply(id, &set("p1", "sku-a", 1), receipt(2, secs(t0, 40)), t0).await.unwrap();
    let cart = store.apply(id, &set("p2", "sku-a", 1), receipt(1, secs(t0, 30)), t0).await.unwrap().expect("live");
    assert_eq!(cart.expires_at, secs(t0, 40));
    assert_eq!(store.load(id, secs(t0, 35)).await.unwrap().map(|c| c.expires_at), Some(secs(t0, 40)));
}

/// Idempotency keys (issue 15): the first claim wins and later ones see its
/// record; only the claimant settles it; scopes never meet.
pub async fn an_idempotency_key_is_claimed_once_and_settled_by_its_claimant(
    store: impl SessionStore,
    clock: impl Clock,
) {
    use domain::idempotency::{IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
    let t0 = clock.now();
    let key = IdempotencyKey::parse("retry-me-1").unwrap();
    let first = KeyRecord { cart: CartId::random(), fingerprint: "line p1 x 2".into(), done: false };
    let second = KeyRecord { cart: CartId::random(), fingerprint: "line p1 x 3".into(), done: false };
    let until = secs(t0, 60);
    assert_eq!(store.claim_key(KeyScope::AddToCart, &key, &first, until, t0).await.unwrap(), KeyClaim::Claimed);
    assert_eq!(
        store.claim_key(KeyScope::AddToCart, &key, &second, until, t0).await.unwrap(),
        KeyClaim::Taken(first.clone()),
        "in flight"
    );
    store.settle_key(KeyScope::AddToCart, &key, second.cart, None, t0).await.unwrap();
    assert_eq!(
        store.claim_key(KeyScope::AddToCart, &key, &second, until, t0).await.unwrap(),
        KeyClaim::Taken(first.clone()),
        "another cart cannot settle it"
    );
    store.settle_key(KeyScope::AddToCart, &key, first.cart, Some(until), t0).await.unwrap();
    let done = KeyRecord { done: true, ..first.clone() };
    assert_eq!(store.claim_key(KeyScope::AddToCart, &key, &second, until, t0).await.unwrap(), KeyClaim::Taken(done));
    assert_eq!(
        store.claim_key(KeyScope::CreateCart, &key, &second, until, t0).await.unwrap(),
        KeyClaim::Claimed,
        "another scope is another key"
    );
}

/// A key dropped by its claimant, or past its end, can be claimed afresh.
pub async fn a_dropped_or_ended_idempotency_key_can_be_claimed_again(store: impl SessionStore, clock: impl Clock) {
    use domain::idempotency::{IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
    let t0 = clock.now();
    let key = IdempotencyKey::parse("retry-me-2").unwrap();
    let record = |fingerprint: &str| KeyRecord { cart: CartId::random(), fingerprint: fingerprint.into(), done: false };
    let (a, b, c) = (record("a"), record("b"), record("c"));
    assert_eq!(store.claim_key(KeyScope::CreateCart, &key, &a, secs(t0, 60), t0).await.unwrap(), KeyClaim::Claimed);
    store.settle_key(KeyScope::CreateCart, &key, a.cart, None, t0).await.unwrap();
    assert_eq!(
        store.claim_key(KeyScope::CreateCart, &key, &b, secs(t0, 10), t0).await.unwrap(),
        KeyClaim::Claimed,
        "a dropped key is free"
    );
    assert!(matches!(
        store.claim_key(KeyScope::CreateCart, &key, &c, secs(t0, 60), secs(t0, 9)).await.unwrap(),
        KeyClaim::Taken(_)
    ));
    assert_eq!(
        store.claim_key(KeyScope::CreateCart, &key, &c, secs(t0, 60), secs(t0, 10)).await.unwrap(),
        KeyClaim::Claimed,
        "a key is free at its end"
    );
}
