//! The [`Inventory`] contract. See the parent module for how to run it.
//!
//! Every deadline comparison goes through the `now` argument, so none of these
//! needs real time to pass, for any adapter.

use domain::ports::{Clock, HoldReceipt, Inventory, LineChange, Released};
use domain::{CartError, CartId, Order, OrderId, StockCount, StockLevel, Timestamp};

use crate::fixtures::{item, line, remove, secs, set};

/// Enough lines for every test that is not about the line limit.
const LINES: u16 = 50;

fn level(available: i64, reserved: i64, sold: i64) -> StockLevel {
    StockLevel { available, reserved, sold }
}

/// Creates item `name` with `n` units available.
async fn stocked(inv: &impl Inventory, name: &str, n: u32) {
    let l = inv.set_available(&item(name), StockCount::new(n).unwrap()).await.unwrap();
    assert_eq!(l, level(i64::from(n), 0, 0));
}

/// The counts of an item that must exist.
async fn stock(inv: &impl Inventory, name: &str) -> StockLevel {
    inv.stock(&item(name)).await.unwrap().unwrap_or_else(|| panic!("item {name} exists"))
}

/// Opens a fresh cart with deadline `deadline`.
async fn opened(inv: &impl Inventory, deadline: Timestamp) -> CartId {
    let id = CartId::random();
    inv.open_cart(id, deadline).await.unwrap();
    id
}

/// A change that must succeed (no deadline move, generous line limit).
async fn hold(inv: &impl Inventory, cart: CartId, change: &LineChange, now: Timestamp) -> HoldReceipt {
    match inv.set_hold(cart, change, None, LINES, now).await {
        Ok(r) => r,
        Err(e) => panic!("set_hold({change}) failed: {e:?}"),
    }
}

pub async fn stock_of_unknown_item_is_none(inv: impl Inventory, _clock: impl Clock) {
    assert_eq!(inv.stock(&item("nope")).await.unwrap(), None);
}

pub async fn set_available_creates_an_item(inv: impl Inventory, _clock: impl Clock) {
    let l = inv.set_available(&item("sku-a"), StockCount::new(7).unwrap()).await.unwrap();
    assert_eq!(l, level(7, 0, 0));
    assert_eq!(inv.stock(&item("sku-a")).await.unwrap(), Some(level(7, 0, 0)));
    assert_eq!(inv.stock(&item("sku-b")).await.unwrap(), None, "only the named item is created");
}

pub async fn set_available_keeps_reserved_and_sold(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let held = opened(&inv, secs(t0, 60)).await;
    hold(&inv, held, &set("p1", "sku-a", 3), t0).await;
    let bought = opened(&inv, secs(t0, 60)).await;
    hold(&inv, bought, &set("p1", "sku-a", 2), t0).await;
    inv.checkout(bought, OrderId::random(), t0).await.unwrap();
    assert_eq!(stock(&inv, "sku-a").await, level(5, 3, 2));

    let l = inv.set_available(&item("sku-a"), StockCount::new(7).unwrap()).await.unwrap();
    assert_eq!(l, level(7, 3, 2));
    assert_eq!(stock(&inv, "sku-a").await, level(7, 3, 2));
    let l = inv.set_available(&item("sku-a"), StockCount::new(0).unwrap()).await.unwrap();
    assert_eq!(l, level(0, 3, 2));
    // The hold survives the restock and still goes back when released.
    assert_eq!(inv.release(held).await.unwrap().units, 3);
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 2));
}

pub async fn open_cart_is_idempotent(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let id = opened(&inv, secs(t0, 10)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    inv.open_cart(id, secs(t0, 100)).await.unwrap();
    // Neither the holds nor the deadline changed.
    let r = hold(&inv, id, &set("p2", "sku-a", 1), t0).await;
    assert_eq!(r.expires_at, secs(t0, 10), "the second open_cart must not move the deadline");
    assert_eq!(stock(&inv, "sku-a").await, level(2, 3, 0));
    assert_eq!(inv.release(id).await.unwrap().units, 3, "the first hold was kept");
}

pub async fn set_hold_on_unknown_cart_is_session_not_found(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let r = inv.set_hold(CartId::random(), &set("p1", "sku-a", 2), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(stock(&inv, "sku-a").await, level(5, 0, 0));
}

pub async fn set_hold_moves_only_the_difference(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 3), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(7, 3, 0));
    hold(&inv, id, &set("p1", "sku-a", 5), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(5, 5, 0), "set to 5, not add 5");
    hold(&inv, id, &set("p1", "sku-a", 5), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(5, 5, 0), "setting the same quantity moves nothing");
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(8, 2, 0));
    hold(&inv, id, &remove("p1"), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(10, 0, 0));
    hold(&inv, id, &remove("p1"), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(10, 0, 0), "removing an absent line moves nothing");
    assert_eq!(inv.release(id).await.unwrap().units, 0);
}

pub async fn receipt_versions_increase_with_every_change(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let id = opened(&inv, secs(t0, 60)).await;
    let changes = [set("p1", "sku-a", 1), set("p2", "sku-a", 1), set("p1", "sku-a", 3), remove("p2")];
    let mut last = None;
    for change in &changes {
        let v = hold(&inv, id, change, t0).await.version;
        if let Some(prev) = last {
            assert!(v > prev, "version {v} after {prev} for {change}");
        }
        last = Some(v);
    }
}

/// The hold rule (`domain::hold`): every call on a live cart takes the next
/// version, granted or refused, on every adapter.
pub async fn every_call_on_a_live_cart_takes_a_version_granted_or_refused(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let id = opened(&inv, secs(t0, 60)).await;
    let first = hold(&inv, id, &set("p1", "sku-a", 1), t0).await.version;
    let short = inv.set_hold(id, &set("p2", "sku-a", 100), None, LINES, t0).await;
    assert!(matches!(short, Err(CartError::InsufficientStock { available: 9 })), "{short:?}");
    let unknown = inv.set_hold(id, &set("p2", "sku-none", 1), None, LINES, t0).await;
    assert!(matches!(unknown, Err(CartError::UnknownItem)), "{unknown:?}");
    let next = hold(&inv, id, &set("p1", "sku-a", 2), t0).await.version;
    assert_eq!(next, first + 3, "two refused calls and one granted one after version {first}");
}

pub async fn new_deadline_moves_the_carts_deadline(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let id = opened(&inv, secs(t0, 10)).await;
    let r = hold(&inv, id, &set("p1", "sku-a", 1), t0).await;
    assert_eq!(r.expires_at, secs(t0, 10), "no new deadline keeps the one set by open_cart");
    let r = inv.set_hold(id, &set("p1", "sku-a", 2), Some(secs(t0, 30)), LINES, secs(t0, 5)).await.unwrap();
    assert_eq!(r.expires_at, secs(t0, 30));
    // Past the first deadline, the cart is still open.
    let r = hold(&inv, id, &set("p1", "sku-a", 3), secs(t0, 20)).await;
    assert_eq!(r.expires_at, secs(t0, 30), "the moved deadline is kept");
    assert_eq!(inv.release_expired(secs(t0, 29), 100).await.unwrap(), Released::default());
    let r = inv.release_expired(secs(t0, 30), 100).await.unwrap();
    assert_eq!((r.carts, r.units, r.deadlines), (1, 3, vec![secs(t0, 30)]));
    assert_eq!(stock(&inv, "sku-a").await, level(10, 0, 0));
}

pub async fn moving_a_line_to_another_item_moves_its_hold(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    stocked(&inv, "sku-b", 10).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 3), t0).await;
    hold(&inv, id, &set("p1", "sku-b", 4), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(10, 0, 0), "the old hold is released");
    assert_eq!(stock(&inv, "sku-b").await, level(6, 4, 0), "the whole new quantity is held");
    hold(&inv, id, &set("p2", "sku-a", 1), t0).await;
    assert_eq!(inv.release(id).await.unwrap().units, 5);
    assert_eq!(stock(&inv, "sku-a").await, level(10, 0, 0));
    assert_eq!(stock(&inv, "sku-b").await, level(10, 0, 0));
}

pub async fn insufficient_stock_changes_nothing_and_reports_available(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 3).await;
    stocked(&inv, "sku-b", 1).await;
    let first = opened(&inv, secs(t0, 60)).await;
    hold(&inv, first, &set("p1", "sku-a", 2), t0).await;
    let second = opened(&inv, secs(t0, 10)).await;

    let r = inv.set_hold(second, &set("p1", "sku-a", 2), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::InsufficientStock { available: 1 })), "{r:?}");
    // Growing a line needs only the difference, which is still too much.
    let r = inv.set_hold(first, &set("p1", "sku-a", 4), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::InsufficientStock { available: 1 })), "{r:?}");
    // Moving the line to an item without enough units keeps the old hold.
    let r = inv.set_hold(first, &set("p1", "sku-b", 2), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::InsufficientStock { available: 1 })), "{r:?}");
    assert_eq!(stock(&inv, "sku-a").await, level(1, 2, 0));
    assert_eq!(stock(&inv, "sku-b").await, level(1, 0, 0));

    // A refused change does not move the deadline either.
    let r = inv.set_hold(second, &set("p1", "sku-a", 2), Some(secs(t0, 100)), LINES, t0).await;
    assert!(matches!(r, Err(CartError::InsufficientStock { available: 1 })), "{r:?}");
    let r = inv.set_hold(second, &remove("p1"), None, LINES, secs(t0, 10)).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "the deadline stayed at t0+10s: {r:?}");

    assert_eq!(inv.release(first).await.unwrap().units, 2, "the refused changes left the first hold as it was");
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 0));
}

pub async fn unknown_item_is_refused_and_changes_nothing(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 1), t0).await;
    let r = inv.set_hold(id, &set("p2", "nope", 1), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::UnknownItem)), "{r:?}");
    let r = inv.set_hold(id, &set("p1", "nope", 1), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::UnknownItem)), "moving a line to an unknown item: {r:?}");
    assert_eq!(inv.stock(&item("nope")).await.unwrap(), None, "the unknown item is not created");
    assert_eq!(stock(&inv, "sku-a").await, level(4, 1, 0));
    assert_eq!(inv.release(id).await.unwrap().units, 1);
}

pub async fn too_many_lines_is_refused_but_existing_lines_may_change(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    stocked(&inv, "sku-b", 10).await;
    let id = opened(&inv, secs(t0, 60)).await;
    for (p, n) in [("p1", 1), ("p2", 2)] {
        inv.set_hold(id, &set(p, "sku-a", n), None, 2, t0).await.unwrap();
    }
    let r = inv.set_hold(id, &set("p3", "sku-b", 1), None, 2, t0).await;
    assert!(matches!(r, Err(CartError::TooManyLines { max: 2 })), "{r:?}");
    assert_eq!(stock(&inv, "sku-b").await, level(10, 0, 0));
    // Changing or moving an existing line adds no line.
    inv.set_hold(id, &set("p1", "sku-a", 4), None, 2, t0).await.unwrap();
    inv.set_hold(id, &set("p2", "sku-b", 3), None, 2, t0).await.unwrap();
    assert_eq!(stock(&inv, "sku-a").await, level(6, 4, 0));
    assert_eq!(stock(&inv, "sku-b").await, level(7, 3, 0));
    // A removed line frees its place.
    inv.set_hold(id, &remove("p1"), None, 2, t0).await.unwrap();
    inv.set_hold(id, &set("p3", "sku-a", 1), None, 2, t0).await.unwrap();
    assert_eq!(inv.release(id).await.unwrap().units, 4);
}

pub async fn release_returns_units_exactly_once(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    stocked(&inv, "sku-b", 5).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    hold(&inv, id, &set("p2", "sku-b", 3), t0).await;
    assert_eq!(inv.release(id).await.unwrap().units, 5);
    assert_eq!(stock(&inv, "sku-a").await, level(5, 0, 0));
    assert_eq!(stock(&inv, "sku-b").await, level(5, 0, 0));
    assert_eq!(inv.release(id).await.unwrap().units, 0, "a second release returns nothing");
    assert_eq!(stock(&inv, "sku-a").await, level(5, 0, 0));
    assert_eq!(inv.release(CartId::random()).await.unwrap(), Released::default(), "unknown cart");
    let r = inv.set_hold(id, &set("p1", "sku-a", 1), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "a released cart takes no holds: {r:?}");
    assert_eq!(inv.release_expired(secs(t0, 60), 100).await.unwrap(), Released::default());
}

/// A storm: sweeper batches (two at once, as `sweeper.concurrency` runs them)
/// race one-cart releases (expiry events) over the same carts and items:
/// every cart is released once and every unit goes back once.
pub async fn releases_racing_over_the_same_carts_give_each_unit_back_once(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 200).await;
    stocked(&inv, "sku-b", 200).await;
    let mut carts = Vec::new();
    for i in 0..60 {
        let id = opened(&inv, secs(t0, 10)).await;
        hold(&inv, id, &set("p1", if i % 2 == 0 { "sku-a" } else { "sku-b" }, 2), t0).await;
        hold(&inv, id, &set("p2", "sku-a", 1), t0).await;
        carts.push(id);
    }
    let after = secs(t0, 11);
    let one_by_one = |ids: Vec<CartId>| {
        let inv = &inv;
        async move {
            let mut sum = Released::default();
            for id in ids {
                let r = inv.release(id).await.unwrap();
                sum.carts += r.carts;
                sum.units += r.units;
            }
            sum
        }
    };
    let (a, b, c, d) = tokio::join!(
        inv.release_expired(after, 20),
        inv.release_expired(after, 20),
        one_by_one(carts.iter().rev().step_by(2).copied().collect()),
        one_by_one(carts.iter().step_by(3).copied().collect()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let rest = inv.release_expired(after, 1_000).await.unwrap();
    assert_eq!(a.carts + b.carts + c.carts + d.carts + rest.carts, 60, "each cart released once");
    assert_eq!(a.units + b.units + c.units + d.units + rest.units, 180, "each unit given back once");
    assert_eq!(stock(&inv, "sku-a").await, level(200, 0, 0));
    assert_eq!(stock(&inv, "sku-b").await, level(200, 0, 0));
}

pub async fn checkout_turns_reserved_into_sold(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    stocked(&inv, "sku-b", 5).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p2", "sku-a", 2), t0).await;
    hold(&inv, id, &set("p1", "sku-b", 3), t0).await;
    let order_id = OrderId::random();
    let (order, created) = inv.checkout(id, order_id, t0).await.unwrap();
    assert!(created);
    let expected = Order { id: order_id, cart_id: id, lines: vec![line("p1", "sku-b", 3), line("p2", "sku-a", 2)] };
    assert_eq!(order, expected, "lines ordered by product id");
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 2));
    assert_eq!(stock(&inv, "sku-b").await, level(2, 0, 3));
}

pub async fn checkout_retry_returns_the_same_order(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    let (first, created) = inv.checkout(id, OrderId::random(), t0).await.unwrap();
    assert!(created);
    let (again, created) = inv.checkout(id, OrderId::random(), secs(t0, 1)).await.unwrap();
    assert!(!created, "a retry creates nothing");
    assert_eq!(again, first, "a retry returns the first order, not one with its own id");
    let (late, created) = inv.checkout(id, OrderId::random(), secs(t0, 61)).await.unwrap();
    assert!(!created);
    assert_eq!(late, first, "even after the cart's deadline");
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 2), "sold once");
}

/// `order_of` tells a cart that was sold from one that was released (what
/// settles an abandon racing a checkout).
pub async fn order_of_names_the_order_a_cart_became_and_nothing_else(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let (sold, released) = (opened(&inv, secs(t0, 60)).await, opened(&inv, secs(t0, 60)).await);
    hold(&inv, sold, &set("p1", "sku-a", 2), t0).await;
    hold(&inv, released, &set("p1", "sku-a", 1), t0).await;
    assert_eq!(inv.order_of(sold).await.unwrap(), None, "an open cart is no order");
    let (order, _) = inv.checkout(sold, OrderId::random(), t0).await.unwrap();
    assert_eq!(inv.order_of(sold).await.unwrap(), Some(order));
    assert_eq!(inv.release(released).await.unwrap().units, 1);
    assert_eq!(inv.order_of(released).await.unwrap(), None, "a released cart is no order");
    assert_eq!(inv.order_of(CartId::random()).await.unwrap(), None);
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 2), "reading changed nothing");
}

/// The merge rule applied by the ledger (issue 15): the source's lines move
/// into the target with their units, only the extra is taken, the source
/// leaves the ledger, and the same merge again moves nothing.
pub async fn merge_moves_the_source_into_the_target_once(inv: impl Inventory, clock: impl Clock) {
    use domain::merge::{MergeCall, MergeLimits, MergeStrategy, Shortage};
    let t0 = clock.now();
    let limits = MergeLimits { max_quantity: 100, max_lines: LINES };
    stocked(&inv, "sku-a", 10).await;
    stocked(&inv, "sku-b", 5).await;
    let (target, source, other) =
        (opened(&inv, secs(t0, 60)).await, opened(&inv, secs(t0, 60)).await, opened(&inv, secs(t0, 60)).await);
    let before = hold(&inv, target, &set("p1", "sku-a", 2), t0).await.version;
    hold(&inv, source, &set("p1", "sku-b", 3), t0).await;
    hold(&inv, source, &set("p2", "sku-a", 4), t0).await;
    // Leave 1 of sku-a free: p1 (on sku-a, the target's item) wants 2 + 3.
    hold(&inv, other, &set("p9", "sku-a", 3), t0).await;
    assert_eq!(stock(&inv, "sku-a").await, level(1, 9, 0));

    let r = inv
        .merge(&MergeCall {
            from: source,
            into: target,
            strategy: MergeStrategy::Sum,
            limits,
            new_deadline: Some(secs(t0, 90)),
            now: secs(t0, 1),
        })
        .await
        .unwrap();
    assert_eq!(r.lines, [line("p1", "sku-a", 3), line("p2", "sku-a", 4)], "p1 kept sku-a and got the 1 free");
    assert_eq!(r.shortfalls.len(), 1);
    assert_eq!((r.shortfalls[0].requested, r.shortfalls[0].granted), (5, 3));
    assert_eq!(r.shortfalls[0].reason, Shortage::InsufficientStock);
    assert_eq!((r.taken, r.released, r.replayed), (1, 3, false));
    assert_eq!(r.version, before + 1, "the target takes its next version");
    assert_eq!(r.expires_at, secs(t0, 90));
    assert_eq!(stock(&inv, "sku-a").await, level(0, 10, 0), "the source's 4 moved, 1 taken");
    assert_eq!(stock(&inv, "sku-b").await, level(5, 0, 0), "the source's other item went back");

    assert_eq!(inv.merged_into(source).await.unwrap(), Some(target));
    assert_eq!(inv.merged_into(target).await.unwrap(), None);
    assert_eq!(inv.order_of(source).await.unwrap(), None, "merged, not sold");
    let again = inv
        .merge(&MergeCall {
            from: source,
            into: target,
            strategy: MergeStrategy::Sum,
            limits,
            new_deadline: None,
            now: secs(t0, 2),
        })
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!((again.lines, again.shortfalls, again.taken, again.released), (r.lines, r.shortfalls, 0, 0));
    assert_eq!(stock(&inv, "sku-a").await, level(0, 10, 0), "nothing moved twice");
    let elsewhere = inv
        .merge(&MergeCall {
            from: source,
            into: other,
            strategy: MergeStrategy::Sum,
            limits,
            new_deadline: None,
            now: secs(t0, 2),
        })
        .await;
    assert!(matches!(elsewhere, Err(CartError::SessionNotFound)), "{elsewhere:?}");
    let r = inv.set_hold(source, &set("p3", "sku-b", 1), None, LINES, secs(t0, 2)).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "the source left the ledger: {r:?}");
    assert_eq!(inv.release(source).await.unwrap(), Released::default());
    assert_eq!(inv.release(target).await.unwrap().units, 7);
    assert_eq!(stock(&inv, "sku-a").await, level(7, 3, 0), "only the other cart holds sku-a now");
}

/// A merge with a cart that is not open, or past its deadline, changes
/// nothing but releasing the expired cart.
pub async fn merge_with_a_missing_or_expired_cart_is_session_not_found(inv: impl Inventory, clock: impl Clock) {
    use domain::merge::{MergeCall, MergeLimits, MergeStrategy};
    let t0 = clock.now();
    let limits = MergeLimits { max_quantity: 100, max_lines: LINES };
    stocked(&inv, "sku-a", 10).await;
    let (live, short) = (opened(&inv, secs(t0, 60)).await, opened(&inv, secs(t0, 5)).await);
    hold(&inv, live, &set("p1", "sku-a", 2), t0).await;
    hold(&inv, short, &set("p1", "sku-a", 3), t0).await;
    for (from, into) in [(CartId::random(), live), (live, CartId::random())] {
        let r = inv
            .merge(&MergeCall { from, into, strategy: MergeStrategy::Max, limits, new_deadline: None, now: t0 })
            .await;
        assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    }
    let r = inv
        .merge(&MergeCall {
            from: short,
            into: live,
            strategy: MergeStrategy::Max,
            limits,
            new_deadline: None,
            now: secs(t0, 5),
        })
        .await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(stock(&inv, "sku-a").await, level(8, 2, 0), "the expired source was released, the target untouched");
    assert_eq!(hold(&inv, live, &set("p1", "sku-a", 2), secs(t0, 5)).await.taken, 0);
}

pub async fn checkout_of_an_empty_cart_is_cart_empty(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let id = opened(&inv, secs(t0, 60)).await;
    let r = inv.checkout(id, OrderId::random(), t0).await;
    assert!(matches!(r, Err(CartError::CartEmpty)), "{r:?}");
    hold(&inv, id, &set("p1", "sku-a", 1), t0).await;
    hold(&inv, id, &remove("p1"), t0).await;
    let r = inv.checkout(id, OrderId::random(), t0).await;
    assert!(matches!(r, Err(CartError::CartEmpty)), "all lines removed: {r:?}");
    // The cart stays open and can still be filled and checked out.
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    let (order, created) = inv.checkout(id, OrderId::random(), t0).await.unwrap();
    assert!(created);
    assert_eq!(order.lines, vec![line("p1", "sku-a", 2)]);
}

pub async fn checkout_of_an_expired_cart_is_session_not_found_and_releases_its_holds(
    inv: impl Inventory,
    clock: impl Clock,
) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 3).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    let r = inv.checkout(id, OrderId::random(), secs(t0, 60)).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "checkout at the deadline: {r:?}");
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 0), "released at once, before any sweep");
    assert_eq!(inv.release(id).await.unwrap().units, 0, "and only once");
    assert_eq!(inv.release_expired(secs(t0, 60), 100).await.unwrap(), Released::default());
    let r = inv.checkout(id, OrderId::random(), secs(t0, 60)).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 0));
}

pub async fn checkout_of_an_unknown_or_released_cart_is_session_not_found(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 3).await;
    let r = inv.checkout(CartId::random(), OrderId::random(), t0).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    assert_eq!(inv.release(id).await.unwrap().units, 2);
    let r = inv.checkout(id, OrderId::random(), t0).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 0), "nothing sold");
}

pub async fn checked_out_cart_cannot_be_changed_or_released(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    inv.checkout(id, OrderId::random(), t0).await.unwrap();
    let r = inv.set_hold(id, &set("p1", "sku-a", 1), None, LINES, t0).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(inv.release(id).await.unwrap().units, 0, "sold units never go back");
    assert_eq!(inv.release_expired(secs(t0, 60), 100).await.unwrap(), Released::default());
    assert_eq!(stock(&inv, "sku-a").await, level(3, 0, 2));
}

pub async fn release_expired_releases_only_carts_at_or_past_their_deadline(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let c1 = opened(&inv, secs(t0, 10)).await;
    hold(&inv, c1, &set("p1", "sku-a", 1), t0).await;
    let c2 = opened(&inv, secs(t0, 20)).await;
    hold(&inv, c2, &set("p1", "sku-a", 2), t0).await;
    let c3 = opened(&inv, secs(t0, 30)).await;
    hold(&inv, c3, &set("p1", "sku-a", 3), t0).await;
    let _empty = opened(&inv, secs(t0, 15)).await;

    assert_eq!(inv.release_expired(secs(t0, 5), 100).await.unwrap(), Released::default());
    let r = inv.release_expired(secs(t0, 20), 100).await.unwrap();
    assert_eq!((r.carts, r.units), (3, 3), "c1, the empty cart and c2 (at its deadline)");
    assert_eq!(stock(&inv, "sku-a").await, level(7, 3, 0));
    assert_eq!(inv.release_expired(secs(t0, 20), 100).await.unwrap(), Released::default(), "each cart once");
    assert_eq!(inv.release(c1).await.unwrap().units, 0);
    assert_eq!(inv.release(c2).await.unwrap().units, 0);
    // c3 is untouched and still open.
    hold(&inv, c3, &set("p1", "sku-a", 4), secs(t0, 20)).await;
    assert_eq!(inv.release(c3).await.unwrap().units, 4);
    assert_eq!(stock(&inv, "sku-a").await, level(10, 0, 0));
}

pub async fn release_expired_respects_its_limit(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    for n in 1..=3 {
        let id = opened(&inv, secs(t0, u64::from(n))).await;
        hold(&inv, id, &set("p1", "sku-a", n), t0).await;
    }
    let now = secs(t0, 10);
    assert_eq!(inv.release_expired(now, 0).await.unwrap(), Released::default());
    let first = inv.release_expired(now, 2).await.unwrap();
    assert_eq!(first.carts, 2);
    let second = inv.release_expired(now, 2).await.unwrap();
    assert_eq!(second.carts, 1);
    assert_eq!(first.units + second.units, 6);
    assert_eq!(inv.release_expired(now, 2).await.unwrap(), Released::default());
    assert_eq!(stock(&inv, "sku-a").await, level(10, 0, 0));
}

pub async fn expired_holds_never_block(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 1).await;
    let stale = opened(&inv, secs(t0, 10)).await;
    hold(&inv, stale, &set("p1", "sku-a", 1), t0).await;
    let fresh = opened(&inv, secs(t0, 60)).await;
    let r = inv.set_hold(fresh, &set("p1", "sku-a", 1), None, LINES, secs(t0, 5)).await;
    assert!(matches!(r, Err(CartError::InsufficientStock { available: 0 })), "the hold is live: {r:?}");
    // At the stale cart's deadline, with no sweep run, the unit is free.
    hold(&inv, fresh, &set("p1", "sku-a", 1), secs(t0, 10)).await;
    assert_eq!(stock(&inv, "sku-a").await, level(0, 1, 0));
    // The stale hold went back exactly once.
    assert_eq!(inv.release(stale).await.unwrap().units, 0);
    inv.release_expired(secs(t0, 10), 100).await.unwrap();
    assert_eq!(stock(&inv, "sku-a").await, level(0, 1, 0), "the fresh hold survives the sweep");
    assert_eq!(inv.release(fresh).await.unwrap().units, 1);
    assert_eq!(stock(&inv, "sku-a").await, level(1, 0, 0));
}

pub async fn set_hold_on_an_expired_cart_is_session_not_found(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 5).await;
    let id = opened(&inv, secs(t0, 10)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    for change in [set("p1", "sku-a", 4), set("p2", "sku-a", 1), remove("p1")] {
        let r = inv.set_hold(id, &change, Some(secs(t0, 100)), LINES, secs(t0, 10)).await;
        assert!(matches!(r, Err(CartError::SessionNotFound)), "{change} at the deadline: {r:?}");
    }
    // Whether the expired hold went back now or goes back with the sweep, no new
    // hold was taken and the deadline did not move.
    inv.release_expired(secs(t0, 10), 100).await.unwrap();
    assert_eq!(stock(&inv, "sku-a").await, level(5, 0, 0));
    assert_eq!(inv.release(id).await.unwrap().units, 0);
}

pub async fn an_earlier_new_deadline_does_not_shorten_the_cart(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let id = opened(&inv, secs(t0, 10)).await;
    let r = inv.set_hold(id, &set("p1", "sku-a", 1), Some(secs(t0, 40)), LINES, t0).await.unwrap();
    assert_eq!(r.expires_at, secs(t0, 40));
    // A change computed earlier but applied later carries an earlier deadline.
    let r = inv.set_hold(id, &set("p2", "sku-a", 1), Some(secs(t0, 30)), LINES, t0).await.unwrap();
    assert_eq!(r.expires_at, secs(t0, 40));
    assert_eq!(inv.release_expired(secs(t0, 35), 100).await.unwrap(), Released::default());
}

pub async fn set_hold_reports_the_units_it_moved(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    stocked(&inv, "sku-b", 10).await;
    let id = opened(&inv, secs(t0, 60)).await;
    let r = hold(&inv, id, &set("p1", "sku-a", 3), t0).await;
    assert_eq!((r.taken, r.released), (3, 0));
    let r = hold(&inv, id, &set("p1", "sku-a", 5), t0).await;
    assert_eq!((r.taken, r.released), (2, 0), "only the difference");
    let r = hold(&inv, id, &set("p1", "sku-a", 1), t0).await;
    assert_eq!((r.taken, r.released), (0, 4));
    let r = hold(&inv, id, &set("p1", "sku-b", 2), t0).await;
    assert_eq!((r.taken, r.released), (2, 1), "moving to another item takes the new and releases the old");
    let r = hold(&inv, id, &remove("p1"), t0).await;
    assert_eq!((r.taken, r.released), (0, 2));
    let r = hold(&inv, id, &remove("p1"), t0).await;
    assert_eq!((r.taken, r.released), (0, 0), "removing a missing line moves nothing");
}

pub async fn releases_report_the_deadlines_of_the_carts_they_released(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    let r = inv.release(id).await.unwrap();
    assert_eq!(r, Released { carts: 1, units: 2, deadlines: vec![secs(t0, 60)] });
    assert_eq!(inv.release(id).await.unwrap(), Released::default(), "nothing the second time");
}

pub async fn reserved_total_sums_every_items_holds(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    stocked(&inv, "sku-a", 10).await;
    stocked(&inv, "sku-b", 10).await;
    assert_eq!(inv.reserved_total().await.unwrap(), 0);
    let id = opened(&inv, secs(t0, 60)).await;
    hold(&inv, id, &set("p1", "sku-a", 2), t0).await;
    hold(&inv, id, &set("p2", "sku-b", 3), t0).await;
    assert_eq!(inv.reserved_total().await.unwrap(), 5);
    inv.release(id).await.unwrap();
    assert_eq!(inv.reserved_total().await.unwrap(), 0);
}

pub async fn list_stock_pages_through_every_item_in_byte_order(inv: impl Inventory, clock: impl Clock) {
    let t0 = clock.now();
    // Byte order, not a locale's: upper case before lower case, `-` before `.`.
    for (name, n) in [("sku-b", 2), ("Sku-z", 9), ("sku.a", 4), ("sku-a", 1), ("sku_c", 3)] {
        stocked(&inv, name, n).await;
    }
    let cart = opened(&inv, secs(t0, 60)).await;
    hold(&inv, cart, &set("p1", "sku-b", 2), t0).await;
    let names = |v: &[(domain::InventoryId, StockLevel)]| v.iter().map(|(i, _)| i.to_string()).collect::<Vec<_>>();

    let first = inv.list_stock(None, 2).await.unwrap();
    assert_eq!(names(&first), ["Sku-z", "sku-a"]);
    assert_eq!(first[0].1, level(9, 0, 0));
    let second = inv.list_stock(Some(&first[1].0), 2).await.unwrap();
    assert_eq!(names(&second), ["sku-b", "sku.a"]);
    assert_eq!(second[0].1, level(0, 2, 0), "counts include holds");
    let third = inv.list_stock(Some(&second[1].0), 2).await.unwrap();
    assert_eq!(names(&third), ["sku_c"]);
    assert_eq!(inv.list_stock(Some(&third[0].0), 2).await.unwrap(), vec![]);
    assert_eq!(names(&inv.list_stock(None, 100).await.unwrap()).len(), 5);
    // A cursor need not name an existing item.
    assert_eq!(names(&inv.list_stock(Some(&item("sku-aa")), 100).await.unwrap()), ["sku-b", "sku.a", "sku_c"]);
}

pub async fn stock_of_returns_each_known_item_once_in_byte_order(inv: impl Inventory, _clock: impl Clock) {
    stocked(&inv, "sku-b", 2).await;
    stocked(&inv, "sku-a", 1).await;
    stocked(&inv, "Sku-c", 3).await;
    let got = inv.stock_of(&[item("sku-b"), item("nope"), item("sku-a"), item("sku-b"), item("Sku-c")]).await.unwrap();
    let want = vec![(item("Sku-c"), level(3, 0, 0)), (item("sku-a"), level(1, 0, 0)), (item("sku-b"), level(2, 0, 0))];
    assert_eq!(got, want);
    assert_eq!(inv.stock_of(&[]).await.unwrap(), vec![]);
    assert_eq!(inv.stock_of(&[item("nope")]).await.unwrap(), vec![]);
}
