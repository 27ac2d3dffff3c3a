//! PostgreSQL-specific behaviour under concurrency: what the in-memory adapter
//! gets from one mutex, the SQL functions must get from locks and transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cartd_adapters::postgres_store::{PgInventory, PgSettings};
use cartd_test_support::fixtures::{item, set};
use cartd_test_support::servers::postgres_url;
use cartd_test_support::stores;
use domain::ports::{Clock, Inventory};
use domain::{CartError, CartId, OrderId, StockCount, StockLevel, Timestamp};

fn now() -> Timestamp {
    cartd_adapters::SystemClock.now()
}

async fn stock(inv: &PgInventory, name: &str) -> StockLevel {
    inv.stock(&item(name)).await.unwrap().expect("item exists")
}

#[tokio::test]
async fn two_hundred_carts_racing_for_fifty_units_hold_exactly_fifty() {
    let inv = Arc::new(stores::pg_inventory().await);
    inv.set_available(&item("hot"), StockCount::new(50).unwrap()).await.unwrap();
    let t0 = now();
    let deadline = t0.plus(Duration::from_secs(60));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let inv = inv.clone();
        tasks.push(tokio::spawn(async move {
            let cart = CartId::random();
            inv.open_cart(cart, deadline).await.unwrap();
            inv.set_hold(cart, &set("p", "hot", 1), None, 50, t0).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CartError::InsufficientStock { available }) => {
                assert_eq!(available, 0);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, refused), (50, 150));
    assert_eq!(stock(&inv, "hot").await, StockLevel { available: 0, reserved: 50, sold: 0 });
}

#[tokio::test]
async fn racing_releases_of_one_cart_return_its_units_once() {
    let inv = Arc::new(stores::pg_inventory().await);
    inv.set_available(&item("a"), StockCount::new(10).unwrap()).await.unwrap();
    inv.set_available(&item("b"), StockCount::new(10).unwrap()).await.unwrap();
    let t0 = now();
    for _ in 0..20 {
        let cart = CartId::random();
        inv.open_cart(cart, t0.plus(Duration::from_secs(60))).await.unwrap();
        inv.set_hold(cart, &set("p1", "a", 3), None, 50, t0).await.unwrap();
        inv.set_hold(cart, &set("p2", "b", 2), None, 50, t0).await.unwrap();
        let racers: Vec<_> = (0..6)
            .map(|_| {
                let inv = inv.clone();
                tokio::spawn(async move { inv.release(cart).await.unwrap().units })
            })
            .collect();
        let mut total = 0;
        for r in racers {
            total += r.await.unwrap();
        }
        assert_eq!(total, 5, "each held unit comes back exactly once");
        assert_eq!(stock(&inv, "a").await, StockLevel { available: 10, reserved: 0, sold: 0 });
        assert_eq!(stock(&inv, "b").await, StockLevel { available: 10, reserved: 0, sold: 0 });
    }
}

#[tokio::test]
async fn checkout_racing_release_has_exactly_one_winner() {
    let inv = Arc::new(stores::pg_inventory().await);
    inv.set_available(&item("a"), StockCount::new(1000).unwrap()).await.unwrap();
    let t0 = now();
    let (mut sold_wins, mut release_wins) = (0, 0);
    for _ in 0..50 {
        let cart = CartId::random();
        inv.open_cart(cart, t0.plus(Duration::from_secs(60))).await.unwrap();
        inv.set_hold(cart, &set("p1", "a", 2), None, 50, t0).await.unwrap();
        let (a, b) = (inv.clone(), inv.clone());
        let checkout = tokio::spawn(async move { a.checkout(cart, OrderId::random(), t0).await });
        let release = tokio::spawn(async move { b.release(cart).await.unwrap().units });
        let (checkout, released) = (checkout.await.unwrap(), release.await.unwrap());
        match (checkout, released) {
            (Ok((order, true)), 0) => {
                assert_eq!(order.lines.len(), 1);
                sold_wins += 1;
            }
            (Err(CartError::SessionNotFound), 2) => release_wins += 1,
            other => panic!("both or neither won: {other:?}"),
        }
    }
    let s = stock(&inv, "a").await;
    assert_eq!(s.total(), 1000, "conservation: {s:?}");
    assert_eq!(s.reserved, 0);
    assert_eq!(s.sold, 2 * sold_wins);
    assert_eq!(sold_wins + release_wins, 50);
}

#[tokio::test]
async fn three_sweepers_release_a_thousand_expired_carts_exactly_once() {
    let inv = Arc::new(stores::pg_inventory().await);
    for name in ["a", "b", "c"] {
        inv.set_available(&item(name), StockCount::new(10_000).unwrap()).await.unwrap();
    }
    let t0 = now();
    let deadline = t0.plus(Duration::from_secs(1));
    for n in 0..1000u32 {
        let cart = CartId::random();
        inv.open_cart(cart, deadline).await.unwrap();
        inv.set_hold(cart, &set("p1", ["a", "b", "c"][n as usize % 3], 1 + n % 3), None, 50, t0).await.unwrap();
        inv.set_hold(cart, &set("p2", ["c", "a", "b"][n as usize % 3], 1), None, 50, t0).await.unwrap();
    }
    let later = t0.plus(Duration::from_secs(2));
    let sweepers: Vec<_> = (0..3)
        .map(|_| {
            let inv = inv.clone();
            tokio::spawn(async move {
                let (mut carts, mut units) = (0, 0);
                loop {
                    let r = inv.release_expired(later, 50).await.unwrap();
                    if r.carts == 0 {
                        break (carts, units);
                    }
                    carts += r.carts;
                    units += r.units;
                }
            })
        })
        .collect();
    let (mut carts, mut units) = (0, 0);
    for s in sweepers {
        let (c, u) = s.await.unwrap();
        carts += c;
        units += u;
    }
    let expected_units: u64 = (0..1000u64).map(|n| 1 + n % 3 + 1).sum();
    assert_eq!((carts, units), (1000, expected_units));
    for name in ["a", "b", "c"] {
        assert_eq!(stock(&inv, name).await, StockLevel { available: 10_000, reserved: 0, sold: 0 }, "{name}");
    }
}

#[tokio::test]
async fn migrations_apply_once() {
    let schema = format!("test_{}", CartId::random().as_uuid().simple());
    let mut settings = PgSettings::new(postgres_url());
    settings.schema = Some(schema.clone());
    let inv = PgInventory::connect(&settings).unwrap();
    let first = inv.migrate(Some(&schema)).await.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count();
    assert_eq!(first.len(), files, "every migration file once: {first:?}");
    assert!(inv.migrate(Some(&schema)).await.unwrap().is_empty());
    assert!(inv.ready().await);
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_with_a_port_error() {
    let mut settings = PgSettings::new("postgres://cartd:cartd@127.0.0.1:1/cartd");
    settings.op_timeout = Duration::from_millis(500);
    settings.connect_timeout = Duration::from_millis(500);
    let inv = PgInventory::connect(&settings).unwrap();
    let started = Instant::now();
    let err = inv.stock(&item("a")).await.unwrap_err();
    assert_eq!(err.store(), "postgres");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(!inv.ready().await);
}

/// Runs `sql` in `schema` on a connection of its own (to corrupt counts the
/// way a bug or a hand edit would).
async fn exec_in(schema: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("set search_path = {schema}; {sql}")).await.unwrap();
}

#[tokio::test]
async fn reconcile_reports_reserved_counts_that_disagree_with_the_ledger_and_fixes_them() {
    use cartd_adapters::postgres_store::Drift;
    let schema = format!("test_{}", CartId::random().as_uuid().simple());
    let mut settings = PgSettings::new(postgres_url());
    settings.schema = Some(schema.clone());
    let inv = PgInventory::connect(&settings).unwrap();
    inv.migrate(Some(&schema)).await.unwrap();
    for (name, n) in [("a", 10), ("b", 10), ("c", 5), ("d", 1)] {
        inv.set_available(&item(name), StockCount::new(n).unwrap()).await.unwrap();
    }
    let t0 = now();
    let cart = CartId::random();
    inv.open_cart(cart, t0.plus(Duration::from_secs(600))).await.unwrap();
    for (product, name, n) in [("p1", "a", 3), ("p2", "b", 2), ("p3", "d", 1)] {
        inv.set_hold(cart, &set(product, name, n), None, 50, t0).await.unwrap();
    }
    assert!(inv.reconcile(false).await.unwrap().is_empty(), "a consistent ledger reports nothing");

    // a: 4 too many reserved; b: 2 too few; d: 1 too few and nothing available
    // to cover it; c is untouched.
    exec_in(
        &schema,
        "update items set reserved = reserved + 4 where inventory_id = 'a'; \
         update items set reserved = 0 where inventory_id in ('b', 'd');",
    )
    .await;
    let expected = vec![
        Drift { inventory_id: "a".into(), available: 7, reserved: 7, ledger: 3 },
        Drift { inventory_id: "b".into(), available: 8, reserved: 0, ledger: 2 },
        Drift { inventory_id: "d".into(), available: 0, reserved: 0, ledger: 1 },
    ];
    assert_eq!(inv.reconcile(false).await.unwrap(), expected);
    assert_eq!(stock(&inv, "a").await, StockLevel { available: 7, reserved: 7, sold: 0 }, "a report changes nothing");
    assert_eq!(expected.iter().map(Drift::difference).collect::<Vec<_>>(), [-4, 2, 1]);
    assert_eq!(expected.iter().map(Drift::shortfall).collect::<Vec<_>>(), [0, 0, 1]);

    assert_eq!(inv.reconcile(true).await.unwrap(), expected, "the fix reports what it repaired");
    // available + reserved + sold is what it was (14 and 8), except where
    // available could not cover the ledger (d).
    assert_eq!(stock(&inv, "a").await, StockLevel { available: 11, reserved: 3, sold: 0 });
    assert_eq!(stock(&inv, "b").await, StockLevel { available: 6, reserved: 2, sold: 0 });
    assert_eq!(stock(&inv, "c").await, StockLevel { available: 5, reserved: 0, sold: 0 });
    assert_eq!(stock(&inv, "d").await, StockLevel { available: 0, reserved: 1, sold: 0 });
    assert!(inv.reconcile(false).await.unwrap().is_empty());
    // Releasing the cart now works and returns every unit: before the fix,
    // b's and d's reserved would have gone below zero.
    assert_eq!(inv.release(cart).await.unwrap().units, 6);
    assert_eq!(stock(&inv, "b").await, StockLevel { available: 8, reserved: 0, sold: 0 });
    assert!(inv.reconcile(false).await.unwrap().is_empty());
}
