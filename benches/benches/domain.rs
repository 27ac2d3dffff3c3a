//! Domain operations: parsing ids, validating quantities, computing deadlines.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use domain::{CartId, ExpiryMode, ExpiryPolicy, InventoryId, ProductId, Quantity, SessionTtl, Timestamp};

fn ids(c: &mut Criterion) {
    let mut g = c.benchmark_group("domain/ids");
    let uuid_product = "3f2b8c1e-7d4a-4e2b-9c1f-0a6b5d4e3c2b";
    g.bench_function("product_id/short", |b| b.iter(|| ProductId::parse(black_box("sku-42"))));
    g.bench_function("product_id/uuid", |b| b.iter(|| ProductId::parse(black_box(uuid_product))));
    g.bench_function("product_id/invalid", |b| b.iter(|| ProductId::parse(black_box("bad id/with spaces"))));
    g.bench_function("inventory_id", |b| b.iter(|| InventoryId::parse(black_box("warehouse-1:sku-42"))));
    let cart = CartId::random().to_string();
    g.bench_function("cart_id/parse", |b| b.iter(|| CartId::parse(black_box(&cart))));
    g.bench_function("cart_id/parse_invalid", |b| b.iter(|| CartId::parse(black_box("not-a-uuid"))));
    g.bench_function("cart_id/random", |b| b.iter(CartId::random));
    g.bench_function("cart_id/to_string", |b| {
        let id = CartId::random();
        b.iter(|| black_box(id).to_string());
    });
    g.finish();
}

fn quantities(c: &mut Criterion) {
    let mut g = c.benchmark_group("domain/quantity");
    g.bench_function("new/valid", |b| b.iter(|| Quantity::new(black_box(7))));
    g.bench_function("new/zero", |b| b.iter(|| Quantity::new(black_box(0))));
    g.bench_function("new/too_large", |b| b.iter(|| Quantity::new(black_box(Quantity::MAX + 1))));
    g.finish();
}

fn deadlines(c: &mut Criterion) {
    let mut g = c.benchmark_group("domain/expiry");
    let ttl = SessionTtl::new(Duration::from_secs(900)).expect("valid ttl");
    let fixed = ExpiryPolicy { ttl, mode: ExpiryMode::Fixed };
    let sliding = ExpiryPolicy { ttl, mode: ExpiryMode::Sliding };
    let now = Timestamp::from_millis(1_750_000_000_000);
    g.bench_function("initial_deadline", |b| b.iter(|| black_box(&fixed).initial_deadline(black_box(now))));
    g.bench_function("on_change/fixed", |b| b.iter(|| black_box(&fixed).deadline_on_change(black_box(now))));
    g.bench_function("on_change/sliding", |b| b.iter(|| black_box(&sliding).deadline_on_change(black_box(now))));
    g.finish();
}

criterion_group!(benches, ids, quantities, deadlines);
criterion_main!(benches);
