//! The expiry storm: N carts with one and the same deadline, each holding one
//! unit, then the time from that deadline until every unit is back in
//! `available`, as a running `cartd` (its listener and sweeper) sees to it.
//!
//! The carts are written straight through the adapters (the same calls the
//! service makes: ledger first, then the session), which is much faster than
//! creating them over HTTP and lets them all share one deadline.
//!
//! ```text
//! cargo run --release -p cartd-benches --example expiry_storm -- \
//!     CARTS PREFIX SCHEMA [LEAD_SECS]
//! ```
//! `PREFIX` and `SCHEMA` must be the `CART__REDIS__KEY_PREFIX` and
//! `CART__POSTGRES__SCHEMA` of the running cartd (scripts/perf.sh does this).
//! Prints one `RESULT` line: p50/p99/p100 of the release delay after the
//! deadline, measured on the inventory counts every 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::SystemClock;
use adapters::postgres_store::{PgInventory, PgSettings};
use adapters::redis_store::{RedisSessions, RedisSettings};
use domain::ports::{Clock, Inventory, LineChange, SessionStore};
use domain::{CartId, InventoryId, ProductId, Quantity, StockCount};
use tokio::sync::Semaphore;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let carts: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let prefix = args.get(2).cloned().unwrap_or_else(|| "perf:".to_owned());
    let schema = args.get(3).cloned().unwrap_or_else(|| "perf".to_owned());
    let lead: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(60);
    let pg_url = std::env::var("CARTD_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://cartd:cartd@127.0.0.1:5432/cartd".to_owned());
    let redis_url = std::env::var("CARTD_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());

    let mut pg = PgSettings::new(pg_url);
    pg.schema = Some(schema);
    pg.pool_size = 8;
    pg.op_timeout = Duration::from_secs(30);
    let inventory = Arc::new(PgInventory::connect(&pg).expect("postgres settings"));
    let mut rs = RedisSettings::new(redis_url);
    rs.key_prefix = prefix;
    let sessions = Arc::new(RedisSessions::connect(&rs).await.expect("redis reachable"));

    let items = 100usize;
    for n in 1..=items {
        let item = InventoryId::parse(&format!("storm-{n}")).expect("valid id");
        inventory.set_available(&item, StockCount::new(1_000_000).expect("valid")).await.expect("seed");
    }
    let total_before = reserved(&inventory).await;

    let now = SystemClock.now();
    let deadline = now.plus(Duration::from_secs(lead));
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(512));
    let mut tasks = Vec::with_capacity(carts);
    for n in 0..carts {
        let permit = slots.clone().acquire_owned().await.expect("open semaphore");
        let (inventory, sessions) = (inventory.clone(), sessions.clone());
        tasks.push(tokio::spawn(async move {
            let id = CartId::random();
            let change = LineChange {
                product_id: ProductId::parse("p1").expect("valid"),
                line: Some((
                    InventoryId::parse(&format!("storm-{}", n % items + 1)).expect("valid"),
                    Quantity::new(1).expect("valid"),
                )),
            };
            inventory.open_cart(id, deadline).await.expect("open cart");
            sessions.create(id, deadline, now).await.expect("create session");
            let receipt = inventory.set_hold(id, &change, None, 50, now).await.expect("hold");
            sessions.apply(id, &change, receipt, now).await.expect("apply");
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let held = reserved(&inventory).await - total_before;
    eprintln!("created {carts} carts holding {held} units in {:?}", started.elapsed());
    let until_deadline =
        Duration::from_millis(u64::try_from(deadline.as_millis() - SystemClock.now().as_millis()).unwrap_or(0));
    assert!(until_deadline > Duration::ZERO, "creation took longer than the lead time; raise LEAD_SECS");
    tokio::time::sleep(until_deadline).await;

    let mut p50 = None;
    let mut p99 = None;
    loop {
        let left = reserved(&inventory).await - total_before;
        let after = SystemClock.now().since(deadline);
        let released = held - left;
        if p50.is_none() && released * 2 >= held {
            p50 = Some(after);
        }
        if p99.is_none() && released * 100 >= held * 99 {
            p99 = Some(after);
        }
        if left <= 0 {
            println!(
                "RESULT carts={carts} units={held} p50_ms={} p99_ms={} p100_ms={}",
                p50.unwrap_or(after).as_millis(),
                p99.unwrap_or(after).as_millis(),
                after.as_millis()
            );
            return;
        }
        if after > Duration::from_secs(120) {
            println!("RESULT carts={carts} units={held} unreleased={left} after_ms={}", after.as_millis());
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reserved(inventory: &PgInventory) -> i64 {
    inventory.reserved_total().await.expect("reserved total")
}
