//! Requests that close a cart, racing each other: the ledger decides which
//! one won, and only that one reports success (issue 15, item 4). Run on the
//! in-memory adapters and on real Redis + PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use cartd_adapters::postgres_store::PgInventory;
use cartd_adapters::redis_store::RedisSessions;
use cartd_adapters::{MemoryInventory, MemorySessions, SystemClock};
use domain::ports::{Clock, Inventory, SessionStore};
use domain::{
    CartError, CartService, ExpiryMode, ExpiryPolicy, InventoryId, Limits, ProductId, SessionTtl, StockCount,
    StockLevel, Target,
};

const CARTS: usize = 50;
const UNITS: u32 = 2;

fn policy() -> ExpiryPolicy {
    ExpiryPolicy { ttl: SessionTtl::new(Duration::from_secs(600)).unwrap(), mode: ExpiryMode::Fixed }
}

fn item() -> InventoryId {
    InventoryId::parse("sku-race").unwrap()
}

/// The use cases over the in-memory stores.
fn memory_service() -> CartService<MemorySessions, MemoryInventory, SystemClock> {
    CartService::new(MemorySessions::new(), MemoryInventory::new(), SystemClock, policy(), Limits::default())
}

/// The use cases over real Redis and PostgreSQL, in a fresh key prefix and schema.
async fn real_service() -> CartService<RedisSessions, PgInventory, SystemClock> {
    let inventory = cartd_test_support::stores::pg_inventory().await;
    CartService::new(
        cartd_test_support::stores::redis_sessions().await,
        inventory,
        SystemClock,
        policy(),
        Limits::default(),
    )
}

/// Opens [`CARTS`] carts of [`UNITS`] units each, then sends an abandon and a
/// checkout for every cart at once. Each cart must get exactly one success,
/// and the stock must add up: what the checkouts sold is sold, the rest is
/// back on sale.
async fn abandon_and_checkout_race<S: SessionStore, I: Inventory, C: Clock>(svc: CartService<S, I, C>) {
    let svc = Arc::new(svc);
    let stock = u32::try_from(CARTS).unwrap() * UNITS;
    svc.set_stock(&item(), StockCount::new(stock).unwrap()).await.unwrap();
    let mut carts = Vec::new();
    for n in 0..CARTS {
        let product = ProductId::parse(&format!("p{n}")).unwrap();
        carts.push(svc.set_line(Target::New, product, item(), UNITS).await.unwrap().cart.id);
    }
    let races: Vec<_> = carts
        .into_iter()
        .map(|id| {
            let (a, b) = (svc.clone(), svc.clone());
            let abandon = tokio::spawn(async move { a.abandon(id).await });
            let checkout = tokio::spawn(async move { b.checkout(id).await });
            async move { (abandon.await.unwrap(), checkout.await.unwrap()) }
        })
        .collect();
    let mut sold = 0;
    for (n, race) in races.into_iter().enumerate() {
        let (abandon, checkout) = race.await;
        let abandoned = match abandon {
            Ok(_) => true,
            Err(CartError::SessionNotFound) => false,
            Err(e) => panic!("cart {n}: abandon failed: {e}"),
        };
        let ordered = match checkout {
            Ok(result) => {
                assert!(result.created, "cart {n}: one checkout, so it created the order");
                true
            }
            Err(CartError::SessionNotFound) => false,
            Err(e) => panic!("cart {n}: checkout failed: {e}"),
        };
        assert!(abandoned != ordered, "cart {n}: abandoned {abandoned}, ordered {ordered}: exactly one may succeed");
        if ordered {
            sold += i64::from(UNITS);
        }
    }
    let level = svc.stock(&item()).await.unwrap();
    assert_eq!(level, StockLevel { available: i64::from(stock) - sold, reserved: 0, sold });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandon_racing_checkout_has_exactly_one_success_in_memory() {
    let svc = memory_service();
    abandon_and_checkout_race(svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandon_racing_checkout_has_exactly_one_success_on_redis_and_postgres() {
    let svc = real_service().await;
    abandon_and_checkout_race(svc).await;
}

/// The interleaving that gave both answers before the ledger decided, forced
/// on the in-memory stores with delays: the checkout reads the live session,
/// the abandon closes it, the checkout sells the cart, and only then does the
/// abandon's release reach the ledger, which no longer holds the cart.
#[tokio::test]
async fn an_abandon_whose_release_comes_after_a_checkout_sold_the_cart_is_not_found() {
    use cartd_adapters::{Faulty, Op};
    let svc = Arc::new(CartService::new(
        MemorySessions::new(),
        Faulty::new(MemoryInventory::new()),
        SystemClock,
        policy(),
        Limits::default(),
    ));
    svc.set_stock(&item(), StockCount::new(5).unwrap()).await.unwrap();
    let id = svc.set_line(Target::New, ProductId::parse("p1").unwrap(), item(), 2).await.unwrap().cart.id;
    svc.inventory().faults().delay_op(Op::Checkout, Duration::from_millis(20));
    svc.inventory().faults().delay_op(Op::Release, Duration::from_millis(100));
    let (a, b) = (svc.clone(), svc.clone());
    let checkout = tokio::spawn(async move { b.checkout(id).await });
    tokio::task::yield_now().await;
    let abandon = tokio::spawn(async move { a.abandon(id).await });
    let (checkout, abandon) = (checkout.await.unwrap(), abandon.await.unwrap());
    assert!(checkout.as_ref().is_ok_and(|r| r.created), "{checkout:?}");
    assert!(matches!(abandon, Err(CartError::SessionNotFound)), "the checkout won: {abandon:?}");
    assert_eq!(svc.stock(&item()).await.unwrap(), StockLevel { available: 3, reserved: 0, sold: 2 });
}

/// Opens [`CARTS`] pairs of carts, then sends, for each pair, an abandon of
/// the second and a merge of it into the first at once: exactly one of the
/// two succeeds, and the stock adds up.
async fn abandon_and_merge_race<S: SessionStore, I: Inventory, C: Clock>(svc: CartService<S, I, C>) {
    use domain::merge::MergeStrategy;
    let svc = Arc::new(svc);
    let stock = u32::try_from(2 * CARTS).unwrap() * UNITS;
    svc.set_stock(&item(), StockCount::new(stock).unwrap()).await.unwrap();
    let mut pairs = Vec::new();
    for n in 0..CARTS {
        let product = |p: &str| ProductId::parse(&format!("{p}{n}")).unwrap();
        let target = svc.set_line(Target::New, product("t"), item(), UNITS).await.unwrap().cart.id;
        let source = svc.set_line(Target::New, product("s"), item(), UNITS).await.unwrap().cart.id;
        pairs.push((target, source));
    }
    let races: Vec<_> = pairs
        .iter()
        .map(|&(target, source)| {
            let (a, m) = (svc.clone(), svc.clone());
            let abandon = tokio::spawn(async move { a.abandon(source).await });
            let merge = tokio::spawn(async move { m.merge(target, source, MergeStrategy::Sum).await });
            async move { (abandon.await.unwrap(), merge.await.unwrap()) }
        })
        .collect();
    let mut held = 0;
    for (n, race) in races.into_iter().enumerate() {
        let (abandon, merge) = race.await;
        let abandoned = match abandon {
            Ok(_) => true,
            Err(CartError::SessionNotFound) => false,
            Err(e) => panic!("pair {n}: abandon failed: {e}"),
        };
        let merged = match merge {
            Ok(r) => !r.replayed,
            Err(CartError::SessionNotFound) => false,
            Err(e) => panic!("pair {n}: merge failed: {e}"),
        };
        assert!(abandoned != merged, "pair {n}: abandoned {abandoned}, merged {merged}: exactly one may succeed");
        held += if merged { 2 * i64::from(UNITS) } else { i64::from(UNITS) };
    }
    let level = svc.stock(&item()).await.unwrap();
    assert_eq!(level, StockLevel { available: i64::from(stock) - held, reserved: held, sold: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandon_racing_merge_has_exactly_one_success_in_memory() {
    let svc = memory_service();
    abandon_and_merge_race(svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandon_racing_merge_has_exactly_one_success_on_redis_and_postgres() {
    let svc = real_service().await;
    abandon_and_merge_race(svc).await;
}
