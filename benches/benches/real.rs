//! The real adapters: `RedisSessions`, `PgInventory` in a fresh schema, and
//! `CartService` over both. One operation at a time, so the figures are
//! round-trip latencies, not throughput under load (that is the load-test
//! harness's job).
//!
//! Servers: `CARTD_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`) and
//! `CARTD_BENCH_POSTGRES_URL` (default
//! `postgres://cartd:cartd@127.0.0.1:5432/cartd`). A server that does not
//! answer is reported as skipped and its benchmarks are not registered; the
//! run still succeeds. Everything written goes under a random Redis key prefix
//! and a fresh `bench_<random>` schema, both removed at the end (also when a
//! benchmark panics).

use std::error::Error as StdError;
use std::hint::black_box;
use std::time::{Duration, Instant};

use adapters::SystemClock;
use adapters::postgres_store::{PgInventory, PgSettings};
use adapters::redis_store::{RedisSessions, RedisSettings};
use cartd_test_support::fixtures::{item, numbered_product as product, qty};
use criterion::{Criterion, criterion_group, criterion_main};
use domain::ports::{Clock, HoldReceipt, Inventory, LineChange, SessionStore};
use domain::{
    CartId, CartService, ExpiryMode, ExpiryPolicy, InventoryId, Limits, OrderId, ProductId, SessionTtl, StockCount,
    Target, Timestamp,
};
use tokio::runtime::{Builder, Runtime};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of every cart the benchmarks make: far enough for any run.
const CART_TTL: Duration = Duration::from_secs(3600);
const MAX_LINES: u16 = 50;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `e` and its sources, for the skip message.
fn chain(e: &dyn StdError) -> String {
    domain::error_chain(e)
}

/// Hides the password of a `scheme://user:password@host` URL.
fn redacted(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.rsplit_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

fn line(p: &ProductId, inventory: &InventoryId, n: u32) -> LineChange {
    LineChange { product_id: p.clone(), line: Some((inventory.clone(), qty(n))) }
}

fn deadline() -> Timestamp {
    SystemClock.now().plus(CART_TTL)
}

/// Removes what the benchmarks wrote, when dropped.
struct Cleanup<'a> {
    rt: &'a Runtime,
    redis: Option<(String, String)>,
    postgres: Option<(tokio_postgres::Client, String)>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let (redis, postgres) = (self.redis.take(), self.postgres.take());
        self.rt.block_on(async {
            if let Some((url, prefix)) = redis {
                match delete_keys(&url, &prefix).await {
                    Ok(n) => println!("cleanup: deleted {n} Redis keys under {prefix}"),
                    Err(e) => eprintln!("cleanup: could not delete Redis keys under {prefix}: {}", chain(&e)),
                }
            }
            if let Some((client, schema)) = postgres {
                match client.batch_execute(&format!("drop schema if exists {schema} cascade")).await {
                    Ok(()) => println!("cleanup: dropped schema {schema}"),
                    Err(e) => eprintln!("cleanup: could not drop schema {schema}: {}", chain(&e)),
                }
            }
        });
    }
}

async fn delete_keys(url: &str, prefix: &str) -> Result<usize, redis::RedisError> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let (mut cursor, mut deleted) = (0_u64, 0);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

async fn connect_redis(url: &str, prefix: &str) -> Result<RedisSessions, String> {
    let mut settings = RedisSettings::new(url);
    settings.key_prefix = prefix.to_owned();
    settings.connect_timeout = CONNECT_TIMEOUT;
    RedisSessions::connect(&settings).await.map_err(|e| chain(&e))
}

/// An admin connection (for the final `drop schema`) and a migrated
/// inventory in `schema`.
async fn connect_postgres(url: &str, schema: &str) -> Result<(tokio_postgres::Client, PgInventory), String> {
    let (client, connection) =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| chain(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres admin connection: {e}");
        }
    });
    let mut settings = PgSettings::new(url);
    settings.schema = Some(schema.to_owned());
    settings.pool_size = 4;
    let inventory = PgInventory::connect(&settings).map_err(|e| chain(&e))?;
    // From here on the schema may exist: hand the client back so it is dropped.
    match inventory.migrate(Some(schema)).await {
        Ok(_) => Ok((client, inventory)),
        Err(e) => {
            let _ = client.batch_execute(&format!("drop schema if exists {schema} cascade")).await;
            Err(chain(&e))
        }
    }
}

fn real(c: &mut Criterion) {
    let rt = Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let run = CartId::random().as_uuid().simple().to_string();
    let (redis_url, pg_url) = (
        env_or("CARTD_BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
        env_or("CARTD_BENCH_POSTGRES_URL", "postgres://cartd:cartd@127.0.0.1:5432/cartd"),
    );
    let (prefix, schema) = (format!("cartd-bench:{run}:"), format!("bench_{run}"));
    let mut cleanup = Cleanup { rt: &rt, redis: None, postgres: None };

    let sessions = match rt.block_on(connect_redis(&redis_url, &prefix)) {
        Ok(s) => {
            cleanup.redis = Some((redis_url.clone(), prefix.clone()));
            Some(s)
        }
        Err(e) => {
            println!("skipped: Redis benchmarks: Redis at {} not reachable ({e})", redacted(&redis_url));
            None
        }
    };
    let inventory = match rt.block_on(connect_postgres(&pg_url, &schema)) {
        Ok((client, inv)) => {
            cleanup.postgres = Some((client, schema.clone()));
            Some(inv)
        }
        Err(e) => {
            println!("skipped: PostgreSQL benchmarks: PostgreSQL at {} not reachable ({e})", redacted(&pg_url));
            None
        }
    };

    if let Some(sessions) = &sessions {
        redis_benches(c, &rt, sessions);
    }
    if let Some(inventory) = &inventory {
        postgres_benches(c, &rt, inventory);
    }
    match (sessions, inventory) {
        (Some(s), Some(i)) => service_benches(c, &rt, s, i),
        _ => println!("skipped: CartService over Redis + PostgreSQL: needs both servers"),
    }
    drop(cleanup);
}

fn redis_benches(c: &mut Criterion, rt: &Runtime, store: &RedisSessions) {
    let mut g = c.benchmark_group("redis/sessions");
    let sku = item("sku-0");

    g.bench_function("create", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let ids: Vec<CartId> = (0..iters).map(|_| CartId::random()).collect();
            let (expires, now) = (deadline(), SystemClock.now());
            let start = Instant::now();
            for &id in &ids {
                store.create(id, expires, now).await.expect("create");
            }
            start.elapsed()
        });
    });

    // One session with three lines, then its first line changed over and over.
    let id = CartId::random();
    let products: Vec<ProductId> = (0..3).map(product).collect();
    let mut version = 0_u64;
    rt.block_on(async {
        store.create(id, deadline(), SystemClock.now()).await.expect("create");
        for p in &products {
            version += 1;
            let receipt = HoldReceipt { version, expires_at: deadline(), taken: 1, released: 0 };
            store.apply(id, &line(p, &sku, 1), receipt, SystemClock.now()).await.expect("apply").expect("live");
        }
    });
    g.bench_function("load/3_lines", |b| {
        b.to_async(rt).iter(|| async { store.load(id, SystemClock.now()).await.expect("load").expect("live") });
    });
    let expires_at = deadline();
    g.bench_function("apply/change_quantity", |b| {
        b.to_async(rt).iter(|| {
            version += 1;
            let change = line(&products[0], &sku, 1 + u32::from(version.is_multiple_of(2)));
            let receipt = HoldReceipt { version, expires_at, taken: 1, released: 0 };
            async move { store.apply(id, &change, receipt, SystemClock.now()).await.expect("apply").expect("live") }
        });
    });
    g.finish();
}

/// Opens a cart in the ledger and holds one unit of `sku` for it.
async fn held_cart(inv: &PgInventory, p: &ProductId, sku: &InventoryId) -> CartId {
    let id = CartId::random();
    inv.open_cart(id, deadline()).await.expect("open_cart");
    inv.set_hold(id, &line(p, sku, 1), None, MAX_LINES, SystemClock.now()).await.expect("set_hold");
    id
}

/// `n` carts from [`held_cart`], opened one after the other.
async fn held_carts(inv: &PgInventory, p: &ProductId, sku: &InventoryId, n: u64) -> Vec<CartId> {
    let mut carts = Vec::new();
    for _ in 0..n {
        carts.push(held_cart(inv, p, sku).await);
    }
    carts
}

fn postgres_benches(c: &mut Criterion, rt: &Runtime, inv: &PgInventory) {
    let sku = item("sku-0");
    let p0 = product(0);
    rt.block_on(inv.set_available(&sku, StockCount::new(StockCount::MAX).expect("stock"))).expect("set_available");
    let mut g = c.benchmark_group("postgres/inventory");

    let id = rt.block_on(held_cart(inv, &p0, &sku));
    let mut toggle = 0;
    g.bench_function("set_hold/change_quantity", |b| {
        b.to_async(rt).iter(|| {
            toggle ^= 1;
            let change = line(&p0, &sku, 1 + toggle);
            async move { inv.set_hold(id, &change, None, MAX_LINES, SystemClock.now()).await.expect("set_hold") }
        });
    });

    g.bench_function("release/1_line", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (p0, sku) = (&p0, &sku);
            async move {
                let carts = held_carts(inv, p0, sku, iters).await;
                let start = Instant::now();
                for &id in &carts {
                    black_box(inv.release(id).await.expect("release"));
                }
                start.elapsed()
            }
        });
    });

    g.bench_function("checkout/1_line", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (p0, sku) = (&p0, &sku);
            async move {
                let carts = held_carts(inv, p0, sku, iters).await;
                let start = Instant::now();
                for &id in &carts {
                    black_box(inv.checkout(id, OrderId::random(), SystemClock.now()).await.expect("checkout"));
                }
                start.elapsed()
            }
        });
    });
    g.finish();
}

fn service_benches(c: &mut Criterion, rt: &Runtime, sessions: RedisSessions, inventory: PgInventory) {
    let policy = ExpiryPolicy { ttl: SessionTtl::new(CART_TTL).expect("valid ttl"), mode: ExpiryMode::Fixed };
    let svc = CartService::new(sessions, inventory, SystemClock, policy, Limits::default());
    let sku = item("sku-1");
    let products: Vec<ProductId> = (0..3).map(product).collect();
    let id = rt.block_on(async {
        svc.set_stock(&sku, StockCount::new(StockCount::MAX).expect("stock")).await.expect("set_stock");
        let id = svc.create_cart().await.expect("create_cart").id;
        for p in &products {
            svc.set_line(Target::Existing(id), p.clone(), sku.clone(), 1).await.expect("set_line");
        }
        id
    });
    let mut g = c.benchmark_group("real/service");
    let mut toggle = 0;
    g.bench_function("set_line/change_quantity", |b| {
        b.to_async(rt).iter(|| {
            toggle ^= 1;
            let fut = svc.set_line(Target::Existing(id), products[0].clone(), sku.clone(), 1 + toggle);
            async move { fut.await.expect("set_line") }
        });
    });
    g.bench_function("get_cart/3_lines", |b| {
        b.to_async(rt).iter(|| async { svc.get_cart(id).await.expect("get_cart") });
    });
    g.finish();
}

criterion_group!(benches, real);
criterion_main!(benches);
