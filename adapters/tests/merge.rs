//! Merging carts through the use case (`CartService::merge`), on the
//! in-memory adapters and on real Redis + PostgreSQL (issue 15, item 1):
//! the merged cart and its shortfalls, the source's session closed, a retry
//! that moves nothing, the edge cases, and merges racing the source's
//! checkout and expiry.

use std::sync::Arc;
use std::time::Duration;

use cartd_adapters::redis_store::RedisSessions;
use cartd_adapters::{MemoryInventory, MemorySessions, SystemClock};
use domain::merge::{MergeStrategy, Shortage};
use domain::ports::{Clock, Inventory, SessionStore};
use domain::{
    CartError, CartId, CartService, ExpiryMode, ExpiryPolicy, InventoryId, Limits, Line, ProductId, Quantity,
    SessionTtl, StockCount, Target,
};

fn policy(mode: ExpiryMode) -> ExpiryPolicy {
    ExpiryPolicy { ttl: SessionTtl::new(Duration::from_secs(600)).unwrap(), mode }
}

fn item(s: &str) -> InventoryId {
    InventoryId::parse(s).unwrap()
}

fn product(s: &str) -> ProductId {
    ProductId::parse(s).unwrap()
}

fn line(p: &str, i: &str, n: u32) -> Line {
    Line { product_id: product(p), inventory_id: item(i), quantity: Quantity::new(n).unwrap() }
}

fn memory(mode: ExpiryMode) -> CartService<MemorySessions, MemoryInventory, SystemClock> {
    CartService::new(
        MemorySessions::new(),
        MemoryInventory::new(),
        SystemClock,
        policy(mode),
        Limits::new(10, 3).unwrap(),
    )
}

async fn real(
    mode: ExpiryMode,
) -> CartService<RedisSessions, cartd_adapters::postgres_store::PgInventory, SystemClock> {
    let inventory = cartd_test_support::stores::pg_inventory().await;
    CartService::new(
        cartd_test_support::stores::redis_sessions().await,
        inventory,
        SystemClock,
        policy(mode),
        Limits::new(10, 3).unwrap(),
    )
}

async fn cart_with<S: SessionStore, I: Inventory, C: Clock>(
    svc: &CartService<S, I, C>,
    lines: &[(&str, &str, u32)],
) -> CartId {
    let mut id = None;
    for (p, i, n) in lines {
        let target = id.map_or(Target::New, Target::Existing);
        id = Some(svc.set_line(target, product(p), item(i), *n).await.unwrap().cart.id);
    }
    id.unwrap()
}

/// The merge as a shopper's front end sees it.
async fn merges_as_documented<S: SessionStore, I: Inventory, C: Clock>(svc: CartService<S, I, C>) {
    svc.set_stock(&item("sku-a"), StockCount::new(10).unwrap()).await.unwrap();
    svc.set_stock(&item("sku-b"), StockCount::new(5).unwrap()).await.unwrap();
    let guest = cart_with(&svc, &[("p1", "sku-a", 2), ("p2", "sku-b", 3)]).await;
    let mine = cart_with(&svc, &[("p1", "sku-a", 3)]).await;
    // p1 is in both carts: 3 + 2 (sum), all of it already held; p2 moves as is.
    let merged = svc.merge(mine, guest, MergeStrategy::Sum).await.unwrap();
    assert_eq!(merged.cart.id, mine);
    assert_eq!(merged.cart.lines, [line("p1", "sku-a", 5), line("p2", "sku-b", 3)]);
    assert!(merged.shortfalls.is_empty(), "{:?}", merged.shortfalls);
    assert!(!merged.replayed);
    assert!(matches!(svc.get_cart(guest).await, Err(CartError::SessionNotFound)), "the source's session is closed");
    assert_eq!(svc.get_cart(mine).await.unwrap().lines, merged.cart.lines, "the session shows what the ledger holds");

    let again = svc.merge(mine, guest, MergeStrategy::Sum).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.cart.lines, merged.cart.lines, "a retry answers the same cart");
    let a = svc.stock(&item("sku-a")).await.unwrap();
    assert_eq!((a.available, a.reserved), (5, 5), "nothing moved twice");

    // Max of a product in both carts gives the smaller hold back.
    let third = cart_with(&svc, &[("p1", "sku-a", 1)]).await;
    let r = svc.merge(third, mine, MergeStrategy::Max).await.unwrap();
    assert_eq!(r.cart.lines, [line("p1", "sku-a", 5), line("p2", "sku-b", 3)], "max(1, 5) from 1 + 5 held");
    let r = svc.merge(mine, third, MergeStrategy::Sum).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "merged away already: {r:?}");

    assert!(matches!(svc.merge(third, third, MergeStrategy::Sum).await, Err(CartError::MergeIntoItself)));
    let before = svc.get_cart(third).await.unwrap();
    let r = svc.merge(third, CartId::random(), MergeStrategy::Sum).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(svc.get_cart(third).await.unwrap(), before, "an unknown source leaves the target unchanged");

    let sold = cart_with(&svc, &[("p9", "sku-b", 1)]).await;
    svc.checkout(sold).await.unwrap();
    let r = svc.merge(third, sold, MergeStrategy::Sum).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "a checked-out source: {r:?}");

    // The line limit (3 lines): a fourth product is dropped and reported.
    let full = cart_with(&svc, &[("q1", "sku-b", 1)]).await;
    let more = cart_with(&svc, &[("q2", "sku-a", 1), ("q3", "sku-a", 1), ("q4", "sku-a", 1)]).await;
    let r = svc.merge(full, more, MergeStrategy::Sum).await.unwrap();
    assert_eq!(r.cart.lines.len(), 3);
    assert_eq!(r.shortfalls.len(), 1);
    assert_eq!((r.shortfalls[0].granted, r.shortfalls[0].reason), (0, Shortage::TooManyLines));
}

#[tokio::test]
async fn merge_in_memory() {
    merges_as_documented(memory(ExpiryMode::Fixed)).await;
}

#[tokio::test]
async fn merge_on_redis_and_postgres() {
    merges_as_documented(real(ExpiryMode::Fixed).await).await;
}

/// Fixed expiry keeps the target's deadline; sliding moves it as any change.
#[tokio::test]
async fn the_targets_deadline_follows_the_expiry_mode() {
    for mode in [ExpiryMode::Fixed, ExpiryMode::Sliding] {
        let svc = memory(mode);
        svc.set_stock(&item("sku-a"), StockCount::new(10).unwrap()).await.unwrap();
        let target = cart_with(&svc, &[("p1", "sku-a", 1)]).await;
        let deadline = svc.get_cart(target).await.unwrap().expires_at;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let source = cart_with(&svc, &[("p2", "sku-a", 1)]).await;
        let merged = svc.merge(target, source, MergeStrategy::Sum).await.unwrap();
        match mode {
            ExpiryMode::Fixed => assert_eq!(merged.cart.expires_at, deadline),
            ExpiryMode::Sliding => assert!(merged.cart.expires_at > deadline),
        }
    }
}

/// 50 merges racing 50 checkouts and 50 expiry releases of their sources,
/// over shared items: each source goes exactly one way, nothing is oversold,
/// and what the ledger reserves is exactly what the merged carts show.
async fn merges_race_checkouts_and_expiries<S: SessionStore, I: Inventory, C: Clock>(svc: CartService<S, I, C>) {
    const PAIRS: usize = 50;
    let items = ["sku-0", "sku-1", "sku-2"];
    let stock = 400;
    for i in items {
        svc.set_stock(&item(i), StockCount::new(stock).unwrap()).await.unwrap();
    }
    let svc = Arc::new(svc);
    let mut pairs = Vec::new();
    for n in 0..PAIRS {
        let (a, b) = (items[n % 3], items[(n + 1) % 3]);
        let target = cart_with(&svc, &[("p1", a, 2), ("p2", b, 1)]).await;
        let source = cart_with(&svc, &[("p1", b, 3), ("p3", a, 2)]).await;
        pairs.push((target, source));
    }
    let races: Vec<_> = pairs
        .iter()
        .map(|&(target, source)| {
            let (m, c, e) = (svc.clone(), svc.clone(), svc.clone());
            let merge = tokio::spawn(async move { m.merge(target, source, MergeStrategy::Sum).await });
            let checkout = tokio::spawn(async move { c.checkout(source).await });
            let expiry = tokio::spawn(async move { e.release_cart(source).await });
            async move { (merge.await.unwrap(), checkout.await.unwrap(), expiry.await.unwrap()) }
        })
        .collect();
    let mut sold = 0i64;
    for (n, race) in races.into_iter().enumerate() {
        let (merge, checkout, expiry) = race.await;
        let merged = match merge {
            Ok(r) => !r.replayed,
            Err(CartError::SessionNotFound) => false,
            Err(e) => panic!("pair {n}: merge failed: {e}"),
        };
        let ordered = match checkout {
            Ok(r) => {
                sold += r.order.lines.iter().map(|l| i64::from(l.quantity.get())).sum::<i64>();
                r.created
            }
            Err(CartError::SessionNotFound) => false,
            Err(e) => panic!("pair {n}: checkout failed: {e}"),
        };
        let expired = expiry.unwrap().carts == 1;
        assert_eq!(
            u8::from(merged) + u8::from(ordered) + u8::from(expired),
            1,
            "pair {n}: merged {merged}, ordered {ordered}, expired {expired}: the source goes exactly one way"
        );
    }
    let mut shown = std::collections::BTreeMap::<String, i64>::new();
    for (target, _) in &pairs {
        for l in svc.get_cart(*target).await.unwrap().lines {
            *shown.entry(l.inventory_id.to_string()).or_default() += i64::from(l.quantity.get());
        }
    }
    let mut total_sold = 0;
    for i in items {
        let level = svc.stock(&item(i)).await.unwrap();
        assert_eq!(level.available + level.reserved + level.sold, i64::from(stock), "{i}: conservation");
        assert!(level.available >= 0, "{i}: never oversold");
        assert_eq!(level.reserved, shown.get(i).copied().unwrap_or(0), "{i}: held once, by the carts that show it");
        total_sold += level.sold;
    }
    assert_eq!(total_sold, sold, "sold is what the checkouts confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_race_checkouts_and_expiries_in_memory() {
    merges_race_checkouts_and_expiries(memory(ExpiryMode::Sliding)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_race_checkouts_and_expiries_on_redis_and_postgres() {
    merges_race_checkouts_and_expiries(real(ExpiryMode::Sliding).await).await;
}
