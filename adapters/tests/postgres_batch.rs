//! Holds are grouped into batches (one transaction each); several instances'
//! batches on the same items must neither deadlock nor lose a unit.

mod pg_support;

use std::sync::Arc;
use std::time::Duration;

use cartd_adapters::SystemClock;
use cartd_adapters::postgres_store::{PgInventory, PgSettings};
use domain::ports::{Clock, Inventory, LineChange};
use domain::{CartError, CartId, InventoryId, ProductId, Quantity, StockCount};

fn item(s: &str) -> InventoryId {
    InventoryId::parse(s).unwrap()
}

fn set(product: &str, inv: &str, n: u32) -> LineChange {
    LineChange { product_id: ProductId::parse(product).unwrap(), line: Some((item(inv), Quantity::new(n).unwrap())) }
}

/// An instance on `schema`: its own pool and batcher. Generous timeouts:
/// these tests are about correctness under contention, not latency, and the
/// machine may be busy.
fn instance(schema: &str) -> PgInventory {
    let mut settings = PgSettings::new(pg_support::url());
    settings.schema = Some(schema.to_owned());
    settings.pool_size = 4;
    settings.op_timeout = Duration::from_secs(20);
    PgInventory::connect(&settings).unwrap()
}

#[tokio::test]
async fn three_instances_batching_holds_on_shared_items_neither_deadlock_nor_oversell() {
    let (_, schema) = pg_support::fresh_inventory_with_schema().await;
    let instances = Arc::new([instance(&schema), instance(&schema), instance(&schema)]);
    let items = ["a", "b", "c", "d"];
    for name in items {
        instances[0].set_available(&item(name), StockCount::new(300).unwrap()).await.unwrap();
    }
    let now = SystemClock.now();
    let deadline = now.plus(Duration::from_secs(60));
    let mut tasks = Vec::new();
    for n in 0..600usize {
        let instances = instances.clone();
        tasks.push(tokio::spawn(async move {
            let inv = &instances[n % 3];
            let cart = CartId::random();
            inv.open_cart(cart, deadline).await.unwrap();
            // Two lines on different items, in an order that differs by cart.
            let first = inv.set_hold(cart, &set("p1", items[n % 4], 1), None, 50, now).await;
            let second = inv.set_hold(cart, &set("p2", items[(n + 3) % 4], 1), None, 50, now).await;
            for r in [&first, &second] {
                assert!(r.is_ok(), "{r:?}");
            }
            2i64
        }));
    }
    let mut held = 0;
    for t in tasks {
        held += t.await.unwrap();
    }
    let mut reserved = 0;
    for name in items {
        let s = instances[1].stock(&item(name)).await.unwrap().unwrap();
        assert_eq!(s.available + s.reserved, 300, "{name}: {s:?}");
        assert!(s.available >= 0);
        reserved += s.reserved;
    }
    assert_eq!(reserved, held, "every successful hold is reserved exactly once");
    assert_eq!(held, 1200, "1,200 holds fit in 1,200 units: none may fail");
}

#[tokio::test]
async fn a_hot_item_is_held_exactly_up_to_its_stock_by_batched_holds() {
    let (_, schema) = pg_support::fresh_inventory_with_schema().await;
    let inv = Arc::new(instance(&schema));
    inv.set_available(&item("flash"), StockCount::new(137).unwrap()).await.unwrap();
    let now = SystemClock.now();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let inv = inv.clone();
        tasks.push(tokio::spawn(async move {
            let cart = CartId::random();
            inv.open_cart(cart, now.plus(Duration::from_secs(60))).await.unwrap();
            inv.set_hold(cart, &set("p", "flash", 1), None, 50, now).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CartError::InsufficientStock { available: 0 }) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, refused), (137, 863));
    let s = inv.stock(&item("flash")).await.unwrap().unwrap();
    assert_eq!((s.available, s.reserved), (0, 137));
}
