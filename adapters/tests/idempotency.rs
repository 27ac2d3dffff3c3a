//! Idempotency keys through the use cases (issue 15, item 2): what HTTP
//! cannot easily show, a key still in flight and a first request that failed
//! half-way, on the in-memory stores (with faults) and on real Redis.

use std::time::Duration;

use cartd_adapters::{Fault, Faulty, MemoryInventory, MemorySessions, Op, SystemClock};
use domain::idempotency::{IN_FLIGHT, IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
use domain::ports::{Clock, Inventory, SessionStore};
use domain::{
    CartError, CartId, CartService, ExpiryMode, ExpiryPolicy, InventoryId, Limits, Once, ProductId, SessionTtl,
    StockCount,
};

fn policy() -> ExpiryPolicy {
    ExpiryPolicy { ttl: SessionTtl::new(Duration::from_secs(600)).unwrap(), mode: ExpiryMode::Fixed }
}

/// A key claimed by a request still running answers `IdempotencyKeyInUse`
/// until that request settles it.
async fn a_key_in_flight_is_in_use<S: SessionStore, I: Inventory, C: Clock>(svc: CartService<S, I, C>) {
    let key = IdempotencyKey::parse(&format!("in-flight-{}", CartId::random())).unwrap();
    let now = svc.clock().now();
    let running = KeyRecord { cart: CartId::random(), fingerprint: "POST /v1/carts".into(), done: false };
    let claim = svc.sessions().claim_key(KeyScope::CreateCart, &key, &running, now.plus(IN_FLIGHT), now).await;
    assert_eq!(claim.unwrap(), KeyClaim::Claimed);
    let once = Once { key: &key, fingerprint: "POST /v1/carts" };
    assert!(matches!(svc.create_cart_once(&once).await, Err(CartError::IdempotencyKeyInUse)));
    let reused = Once { key: &key, fingerprint: "something else" };
    assert!(matches!(svc.create_cart_once(&reused).await, Err(CartError::IdempotencyKeyReused)));
}

#[tokio::test]
async fn a_key_in_flight_is_in_use_in_memory() {
    let svc = CartService::new(MemorySessions::new(), MemoryInventory::new(), SystemClock, policy(), Limits::default());
    a_key_in_flight_is_in_use(svc).await;
}

#[tokio::test]
async fn a_key_in_flight_is_in_use_on_redis() {
    let sessions = cartd_test_support::stores::redis_sessions().await;
    let svc = CartService::new(sessions, MemoryInventory::new(), SystemClock, policy(), Limits::default());
    a_key_in_flight_is_in_use(svc).await;
}

/// A first request that failed half-way leaves its key free: the retry runs
/// afresh, and then it is answered once.
#[tokio::test]
async fn a_failed_first_request_frees_its_key_for_the_retry() {
    let svc = CartService::new(
        MemorySessions::new(),
        Faulty::new(MemoryInventory::new()),
        SystemClock,
        policy(),
        Limits::default(),
    );
    let item = InventoryId::parse("sku-a").unwrap();
    svc.set_stock(&item, StockCount::new(10).unwrap()).await.unwrap();
    let key = IdempotencyKey::parse("add-once").unwrap();
    let once = Once { key: &key, fingerprint: "p1 sku-a 2" };
    let product = ProductId::parse("p1").unwrap();
    svc.inventory().faults().inject(Fault::on(Op::SetHold).times(1));
    let failed = svc.add_line_once(product.clone(), item.clone(), 2, &once).await;
    assert!(matches!(failed, Err(CartError::Unavailable(_))), "{failed:?}");
    let first = svc.add_line_once(product.clone(), item.clone(), 2, &once).await.unwrap();
    assert!(!first.replayed, "the failed attempt was not kept");
    let again = svc.add_line_once(product, item.clone(), 2, &once).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.value.id, first.value.id);
    let level = svc.stock(&item).await.unwrap();
    assert_eq!((level.available, level.reserved), (8, 2), "held once");
}
