//! `CartService` over the in-memory adapters (`MemorySessions`,
//! `MemoryInventory`, a `ManualClock` that stands still so no cart expires).
//!
//! Benchmarks that consume state (creating carts, adding a first line,
//! checking out) use `iter_custom`: the carts they need are prepared before
//! the clock starts and abandoned after it stops, so memory stays bounded and
//! only the operation itself is timed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::{ManualClock, MemoryInventory, MemorySessions, SystemClock};
use cartd_test_support::fixtures::{item, numbered_product as product};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use domain::ports::Clock;
use domain::{CartId, CartService, ExpiryMode, ExpiryPolicy, InventoryId, Limits, SessionTtl, StockCount, Target};
use tokio::runtime::{Builder, Runtime};

type Svc = CartService<MemorySessions, MemoryInventory, ManualClock>;

/// Tasks racing for one item in the contended benchmark.
const CONTENDERS: usize = 64;

fn service(rt: &Runtime) -> Arc<Svc> {
    let policy =
        ExpiryPolicy { ttl: SessionTtl::new(Duration::from_secs(900)).expect("valid ttl"), mode: ExpiryMode::Fixed };
    let clock = ManualClock::new(SystemClock.now());
    let svc = CartService::new(MemorySessions::new(), MemoryInventory::new(), clock, policy, Limits::default());
    rt.block_on(async {
        for name in ["hot", "sku-0", "sku-1", "sku-2"] {
            svc.set_stock(&item(name), StockCount::new(StockCount::MAX).expect("valid stock")).await.expect("stock");
        }
    });
    Arc::new(svc)
}

/// A new cart with one line of `quantity` units of `inventory` per product in `lines`.
async fn cart_with(svc: &Svc, lines: usize, inventory: &InventoryId, quantity: u32) -> CartId {
    let id = svc.create_cart().await.expect("create_cart").id;
    for n in 0..lines {
        svc.set_line(Target::Existing(id), product(n), inventory.clone(), quantity).await.expect("set_line");
    }
    id
}

async fn abandon_all(svc: &Svc, carts: Vec<CartId>) {
    for id in carts {
        let _ = svc.abandon(id).await;
    }
}

fn single(c: &mut Criterion) {
    let rt = Builder::new_current_thread().enable_all().build().expect("runtime");
    let svc = service(&rt);
    let sku = item("sku-0");
    let p0 = product(0);
    let mut g = c.benchmark_group("memory/service");

    g.bench_function("create_cart", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let svc = Arc::clone(&svc);
            async move {
                let mut carts = Vec::with_capacity(usize::try_from(iters).unwrap_or(0));
                let start = Instant::now();
                for _ in 0..iters {
                    carts.push(black_box(svc.create_cart().await.expect("create_cart")).id);
                }
                let elapsed = start.elapsed();
                abandon_all(&svc, carts).await;
                elapsed
            }
        });
    });

    g.bench_function("set_line/new_line", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (svc, sku, p0) = (Arc::clone(&svc), sku.clone(), p0.clone());
            async move {
                let mut carts = Vec::new();
                for _ in 0..iters {
                    carts.push(cart_with(&svc, 0, &sku, 1).await);
                }
                let start = Instant::now();
                for &id in &carts {
                    black_box(svc.set_line(Target::Existing(id), p0.clone(), sku.clone(), 1).await.expect("set_line"));
                }
                let elapsed = start.elapsed();
                abandon_all(&svc, carts).await;
                elapsed
            }
        });
    });

    let id = rt.block_on(cart_with(&svc, 1, &sku, 1));
    let mut toggle = 0;
    g.bench_function("set_line/change_quantity", |b| {
        b.to_async(&rt).iter(|| {
            toggle ^= 1;
            let fut = svc.set_line(Target::Existing(id), p0.clone(), sku.clone(), 1 + toggle);
            async move { fut.await.expect("set_line") }
        });
    });

    let three = rt.block_on(cart_with(&svc, 3, &sku, 2));
    g.bench_function("get_cart/3_lines", |b| {
        b.to_async(&rt).iter(|| async { svc.get_cart(three).await.expect("get_cart") });
    });

    g.bench_function("checkout/1_line", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (svc, sku) = (Arc::clone(&svc), sku.clone());
            async move {
                let mut carts = Vec::new();
                for _ in 0..iters {
                    carts.push(cart_with(&svc, 1, &sku, 1).await);
                }
                let start = Instant::now();
                for &id in &carts {
                    black_box(svc.checkout(id).await.expect("checkout"));
                }
                start.elapsed()
            }
        });
    });
    g.finish();
}

/// `CONTENDERS` tasks on a multi-threaded runtime, each changing its own
/// cart's line on the same item at once: one round is one change per task.
fn contended(c: &mut Criterion) {
    let rt = Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let svc = service(&rt);
    let hot = item("hot");
    let p0 = product(0);
    let carts: Vec<CartId> = rt
        .block_on(async { futures_util::future::join_all((0..CONTENDERS).map(|_| cart_with(&svc, 1, &hot, 1))).await });
    let mut g = c.benchmark_group("memory/contended");
    g.throughput(Throughput::Elements(CONTENDERS as u64));
    let mut round: u32 = 0;
    g.bench_function(format!("set_line/{CONTENDERS}_tasks_one_item"), |b| {
        b.to_async(&rt).iter(|| {
            round = round.wrapping_add(1);
            let quantity = 1 + (round & 1);
            let tasks: Vec<_> = carts
                .iter()
                .map(|&id| {
                    let (svc, hot, p0) = (Arc::clone(&svc), hot.clone(), p0.clone());
                    tokio::spawn(async move {
                        svc.set_line(Target::Existing(id), p0, hot, quantity).await.expect("set_line")
                    })
                })
                .collect();
            async move {
                for t in tasks {
                    black_box(t.await.expect("task"));
                }
            }
        });
    });
    g.finish();
}

criterion_group!(benches, single, contended);
criterion_main!(benches);
