//! Example-based tests of the use cases ([`CartService`]) over the in-memory
//! adapters, for behaviours the property tests do not pin down by name.

use std::time::Duration;

use cartd_adapters::{ManualClock, MemoryInventory, MemorySessions};
use cartd_test_support::fixtures::{START, item, line, product};
use domain::ports::{Clock, SessionStore};
use domain::{
    CartError, CartId, CartService, ExpiryMode, ExpiryPolicy, Limits, Quantity, SessionTtl, StockCount, StockLevel,
    Target,
};

type Service = CartService<MemorySessions, MemoryInventory, ManualClock>;

const TTL: Duration = Duration::from_secs(900);

fn service(mode: ExpiryMode) -> Service {
    let policy = ExpiryPolicy { ttl: SessionTtl::new(TTL).unwrap(), mode };
    let limits = Limits::new(10, 5).unwrap();
    CartService::new(MemorySessions::new(), MemoryInventory::new(), ManualClock::new(START), policy, limits)
}

async fn stocked(svc: &Service, name: &str, n: u32) {
    svc.set_stock(&item(name), StockCount::new(n).unwrap()).await.unwrap();
}

fn level(available: i64, reserved: i64, sold: i64) -> StockLevel {
    StockLevel { available, reserved, sold }
}

#[tokio::test]
async fn existing_or_new_makes_a_new_session_for_an_unknown_id() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    let unknown = CartId::random();
    let res = svc.set_line(Target::ExistingOrNew(unknown), product("p1"), item("sku-a"), 2).await.unwrap();
    assert!(res.created);
    assert_ne!(res.cart.id, unknown, "the new session gets a fresh random id, not the client's");
    assert_eq!(res.cart.lines, vec![line("p1", "sku-a", 2)]);
    assert_eq!(res.cart.expires_at, START.plus(TTL));
    assert_eq!(svc.get_cart(res.cart.id).await.unwrap(), res.cart);
    assert!(matches!(svc.get_cart(unknown).await, Err(CartError::SessionNotFound)));
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 2, 0));
    // A second call with the new id changes that cart instead of making another.
    let again = svc.set_line(Target::ExistingOrNew(res.cart.id), product("p1"), item("sku-a"), 3).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.cart.id, res.cart.id);
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(2, 3, 0));
}

#[tokio::test]
async fn existing_or_new_replaces_an_expired_cart_and_frees_its_holds() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 2).await;
    let old = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
    svc.clock().advance(TTL);
    // The old cart's two units are the only ones; its deadline has passed.
    let res = svc.set_line(Target::ExistingOrNew(old.id), product("p1"), item("sku-a"), 2).await.unwrap();
    assert!(res.created);
    assert_ne!(res.cart.id, old.id);
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(0, 2, 0));
    assert_eq!(svc.inventory().holds(old.id), vec![]);
    assert_eq!(svc.release_cart(old.id).await.unwrap().units, 0, "the old hold went back once");
}

#[tokio::test]
async fn existing_target_of_an_unknown_id_is_session_not_found() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    let r = svc.set_line(Target::Existing(CartId::random()), product("p1"), item("sku-a"), 2).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
    assert!(svc.sessions().is_empty(), "no session was made");
    assert_eq!(svc.inventory().open_carts(), 0, "no ledger entry was made");
}

#[tokio::test]
async fn quantity_over_the_limit_is_refused_and_changes_nothing() {
    let svc = service(ExpiryMode::Sliding);
    stocked(&svc, "sku-a", 50).await;
    let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 3).await.unwrap().cart;
    svc.clock().advance(Duration::from_secs(10));
    for n in [11, Quantity::MAX + 1, u32::MAX] {
        let r = svc.set_line(Target::Existing(cart.id), product("p1"), item("sku-a"), n).await;
        assert!(matches!(r, Err(CartError::QuantityOverLimit { max: 10 })), "{n}: {r:?}");
    }
    let r = svc.set_line(Target::New, product("p2"), item("sku-a"), 11).await;
    assert!(matches!(r, Err(CartError::QuantityOverLimit { max: 10 })), "{r:?}");
    assert_eq!(svc.get_cart(cart.id).await.unwrap(), cart, "lines and (sliding) deadline unchanged");
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(47, 3, 0));
    assert_eq!(svc.sessions().len(), 1, "a refused Target::New makes no session");
    // The limit itself is accepted.
    let ok = svc.set_line(Target::Existing(cart.id), product("p1"), item("sku-a"), 10).await.unwrap();
    assert_eq!(ok.cart.lines, vec![line("p1", "sku-a", 10)]);
}

#[tokio::test]
async fn quantity_zero_removes_the_line_and_releases_its_hold() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 3).await.unwrap().cart;
    let res = svc.set_line(Target::Existing(cart.id), product("p1"), item("sku-a"), 0).await.unwrap();
    assert_eq!(res.cart.lines, vec![]);
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
}

#[tokio::test]
async fn fixed_mode_keeps_the_deadline_and_sliding_mode_moves_it() {
    for mode in [ExpiryMode::Fixed, ExpiryMode::Sliding] {
        let sliding = mode == ExpiryMode::Sliding;
        let svc = service(mode);
        stocked(&svc, "sku-a", 5).await;
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 1).await.unwrap().cart;
        assert_eq!(cart.expires_at, START.plus(TTL));
        svc.clock().advance(TTL - Duration::from_secs(1));
        let now = svc.clock().now();
        let cart = svc.set_line(Target::Existing(cart.id), product("p1"), item("sku-a"), 2).await.unwrap().cart;
        let expected = if sliding { now.plus(TTL) } else { START.plus(TTL) };
        assert_eq!(cart.expires_at, expected, "{mode:?}");
        // At the original deadline the cart survives only in sliding mode.
        svc.clock().advance(Duration::from_secs(1));
        assert_eq!(svc.get_cart(cart.id).await.is_ok(), sliding, "{mode:?}");
        let swept = svc.release_expired(100).await.unwrap();
        assert_eq!(swept.units, if sliding { 0 } else { 2 }, "{mode:?}");
    }
}

#[tokio::test]
async fn abandon_releases_once_and_then_reports_not_found() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    stocked(&svc, "sku-b", 5).await;
    let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
    svc.set_line(Target::Existing(cart.id), product("p2"), item("sku-b"), 1).await.unwrap();
    assert_eq!(svc.abandon(cart.id).await.unwrap().units, 3);
    assert!(matches!(svc.get_cart(cart.id).await, Err(CartError::SessionNotFound)));
    assert!(matches!(svc.abandon(cart.id).await, Err(CartError::SessionNotFound)));
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
    assert_eq!(svc.stock(&item("sku-b")).await.unwrap(), level(5, 0, 0));
}

#[tokio::test]
async fn checkout_closes_the_session_and_a_retry_returns_the_same_order() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
    let first = svc.checkout(cart.id).await.unwrap();
    assert!(first.created);
    assert_eq!(first.order.lines, cart.lines);
    assert!(matches!(svc.get_cart(cart.id).await, Err(CartError::SessionNotFound)));
    let retry = svc.checkout(cart.id).await.unwrap();
    assert!(!retry.created);
    assert_eq!(retry.order, first.order);
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 0, 2));
    // A checked-out cart cannot be changed; ExistingOrNew makes a new one.
    let r = svc.set_line(Target::Existing(cart.id), product("p1"), item("sku-a"), 1).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    let res = svc.set_line(Target::ExistingOrNew(cart.id), product("p1"), item("sku-a"), 1).await.unwrap();
    assert!(res.created);
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(2, 1, 2));
}

#[tokio::test]
async fn a_change_to_a_cart_whose_session_was_lost_releases_its_holds() {
    // The session store lost the session (e.g. Redis restarted without
    // persistence) while the ledger still holds the cart's units.
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
    assert!(svc.sessions().close(cart.id, svc.clock().now()).await.unwrap());
    let r = svc.set_line(Target::Existing(cart.id), product("p1"), item("sku-a"), 3).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "{r:?}");
    assert_eq!(svc.inventory().holds(cart.id), vec![], "the ledger does not outlive the session");
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
}

#[tokio::test]
async fn a_cart_whose_session_was_lost_cannot_be_checked_out_and_its_holds_go_back() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
    assert!(svc.sessions().close(cart.id, svc.clock().now()).await.unwrap());
    let r = svc.checkout(cart.id).await;
    assert!(matches!(r, Err(CartError::SessionNotFound)), "the shopper cannot see this cart: {r:?}");
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
}

#[tokio::test]
async fn create_cart_opens_an_empty_session_and_ledger_entry() {
    let svc = service(ExpiryMode::Fixed);
    let cart = svc.create_cart().await.unwrap();
    assert_eq!(cart.lines, vec![]);
    assert_eq!(cart.expires_at, START.plus(TTL));
    assert_eq!(svc.get_cart(cart.id).await.unwrap(), cart);
    assert_eq!(svc.inventory().open_carts(), 1);
    assert!(matches!(svc.checkout(cart.id).await, Err(CartError::CartEmpty)));
    assert!(matches!(svc.stock(&item("nope")).await, Err(CartError::UnknownItem)));
}

#[tokio::test]
async fn add_line_makes_the_same_change_as_set_line_without_the_cart() {
    let svc = service(ExpiryMode::Fixed);
    stocked(&svc, "sku-a", 5).await;
    let unknown = CartId::random();
    let added = svc.add_line(Target::ExistingOrNew(unknown), product("p1"), item("sku-a"), 2).await.unwrap();
    assert!(added.created);
    assert_ne!(added.id, unknown);
    let cart = svc.get_cart(added.id).await.unwrap();
    assert_eq!(cart.lines, vec![line("p1", "sku-a", 2)]);
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 2, 0));
    // Into the same session: set, not add; 0 removes the line and its hold.
    let again = svc.add_line(Target::ExistingOrNew(added.id), product("p1"), item("sku-a"), 4).await.unwrap();
    assert_eq!((again.id, again.created), (added.id, false));
    assert_eq!(svc.get_cart(added.id).await.unwrap().lines, vec![line("p1", "sku-a", 4)]);
    assert!(matches!(
        svc.add_line(Target::Existing(added.id), product("p2"), item("sku-a"), 2).await,
        Err(CartError::InsufficientStock { available: 1 })
    ));
    assert!(matches!(
        svc.add_line(Target::Existing(added.id), product("p2"), item("sku-a"), 11).await,
        Err(CartError::QuantityOverLimit { max: 10 })
    ));
    svc.add_line(Target::Existing(added.id), product("p1"), item("sku-a"), 0).await.unwrap();
    assert_eq!(svc.get_cart(added.id).await.unwrap().lines, vec![]);
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
    // A session the store lost: the ledger's hold does not outlive it.
    svc.sessions().close(added.id, START).await.unwrap();
    assert!(matches!(
        svc.add_line(Target::Existing(added.id), product("p1"), item("sku-a"), 1).await,
        Err(CartError::SessionNotFound)
    ));
    assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
}

/// The use cases when a store fails midway, with [`Faulty`] adapters: no
/// stock is lost, nothing is sold twice, and what a failure leaves behind is
/// repaired by a retry or by the sweeper.
mod outages {
    use super::*;
    use cartd_adapters::{Fault, Faulty, Op};

    type Faulted = CartService<Faulty<MemorySessions>, Faulty<MemoryInventory>, ManualClock>;

    fn faulted() -> Faulted {
        let policy = ExpiryPolicy { ttl: SessionTtl::new(TTL).unwrap(), mode: ExpiryMode::Fixed };
        let limits = Limits::new(10, 5).unwrap();
        CartService::new(
            Faulty::new(MemorySessions::new()),
            Faulty::new(MemoryInventory::new()),
            ManualClock::new(START),
            policy,
            limits,
        )
    }

    async fn stocked(svc: &Faulted, name: &str, n: u32) {
        svc.set_stock(&item(name), StockCount::new(n).unwrap()).await.unwrap();
    }

    /// Conservation for one item: available + reserved + sold == stock, and
    /// available never below zero.
    async fn assert_conserved(svc: &Faulted, name: &str, stock: i64) {
        let l = svc.stock(&item(name)).await.unwrap();
        assert_eq!(l.available + l.reserved + l.sold, stock, "{l:?}");
        assert!(l.available >= 0, "{l:?}");
    }

    fn unavailable<T: std::fmt::Debug>(r: Result<T, CartError>, store: &str) {
        match r {
            Err(CartError::Unavailable(e)) => assert_eq!(e.store(), store),
            other => panic!("expected {store} unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hold_that_fails_after_the_session_was_created_leaves_no_cart_and_no_hold() {
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        svc.inventory().faults().inject(Fault::on(Op::SetHold).times(1));
        unavailable(svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await, "postgres");
        assert_eq!(svc.sessions().faults().calls(Op::Create), 1, "the session had been created");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
        assert!(svc.sessions().inner().is_empty(), "the session the client never learnt of is closed");
        assert_eq!(svc.inventory().inner().open_carts(), 0, "and its ledger entry released");
        // The store is back: the retry holds exactly what it asked for.
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
        assert_eq!(svc.inventory().inner().holds(cart.id), cart.lines, "holds == lines");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 2, 0));
    }

    #[tokio::test]
    async fn a_hold_whose_answer_is_lost_after_the_session_was_created_is_given_back() {
        // The ledger took the hold, then the answer was lost: the service must
        // not leave those units held for a cart nobody knows.
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        svc.inventory().faults().inject(Fault::on(Op::SetHold).times(1).after_call());
        unavailable(svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await, "postgres");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
        assert_eq!(svc.inventory().inner().open_carts(), 0);
        assert!(svc.sessions().inner().is_empty());
    }

    #[tokio::test]
    async fn a_session_step_that_fails_after_the_hold_is_repaired_by_the_sweeper() {
        // Ledger first, then the session: when the session step fails the
        // ledger holds units the cart does not show. The design promises that
        // such a hold ends at the cart's deadline, released once by the sweep.
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 1).await.unwrap().cart;
        svc.sessions().faults().inject(Fault::on(Op::Apply).times(1));
        unavailable(svc.set_line(Target::Existing(cart.id), product("p2"), item("sku-a"), 3).await, "redis");
        assert_eq!(svc.get_cart(cart.id).await.unwrap().lines, vec![line("p1", "sku-a", 1)]);
        assert_eq!(svc.inventory().inner().holds(cart.id).len(), 2, "the ledger holds the unseen line");
        assert_conserved(&svc, "sku-a", 5).await;
        // Setting the line again makes the cart and the ledger agree.
        let again = svc.set_line(Target::Existing(cart.id), product("p2"), item("sku-a"), 3).await.unwrap().cart;
        assert_eq!(svc.inventory().inner().holds(cart.id), again.lines, "holds == lines after a retry");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(1, 4, 0), "no unit taken twice");
        // Without a retry, the deadline and the sweeper give everything back.
        svc.sessions().faults().inject(Fault::on(Op::Apply).times(1));
        unavailable(svc.set_line(Target::Existing(cart.id), product("p3"), item("sku-a"), 1).await, "redis");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(0, 5, 0));
        svc.clock().advance(TTL);
        assert_eq!(svc.release_expired(100).await.unwrap().units, 5);
        assert_eq!(svc.release_expired(100).await.unwrap().units, 0);
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
    }

    #[tokio::test]
    async fn a_checkout_whose_ledger_call_fails_sells_nothing_and_a_retry_sells_once() {
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
        svc.inventory().faults().inject(Fault::on(Op::Checkout).times(1));
        unavailable(svc.checkout(cart.id).await, "postgres");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 2, 0), "nothing sold");
        assert_eq!(svc.get_cart(cart.id).await.unwrap(), cart, "the cart is still there to retry");
        let first = svc.checkout(cart.id).await.unwrap();
        assert!(first.created);
        assert_eq!(first.order.lines, cart.lines);
        let again = svc.checkout(cart.id).await.unwrap();
        assert_eq!((again.order, again.created), (first.order, false), "one order");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 0, 2));
    }

    #[tokio::test]
    async fn a_checkout_that_times_out_after_the_commit_is_not_sold_twice() {
        // The ledger committed the sale, then the answer was lost (a timeout):
        // the client retries and must get the same order, not a second sale.
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
        svc.inventory().faults().inject(Fault::on(Op::Checkout).times(1).after_call());
        unavailable(svc.checkout(cart.id).await, "postgres");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 0, 2), "sold once, by the lost call");
        let retry = svc.checkout(cart.id).await.unwrap();
        assert!(!retry.created, "the retry finds the committed order");
        assert_eq!(retry.order.lines, cart.lines);
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 0, 2), "and sells nothing more");
        // Nor can the sweeper give back what was sold.
        svc.clock().advance(TTL);
        assert_eq!(svc.release_expired(100).await.unwrap().units, 0);
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 0, 2));
    }

    #[tokio::test]
    async fn a_checkout_whose_session_close_fails_is_retried_to_the_same_order() {
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
        svc.sessions().faults().inject(Fault::on(Op::Close).times(1));
        unavailable(svc.checkout(cart.id).await, "redis");
        let retry = svc.checkout(cart.id).await.unwrap();
        assert!(!retry.created);
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 0, 2));
        assert!(matches!(svc.get_cart(cart.id).await, Err(CartError::SessionNotFound)));
    }

    #[tokio::test]
    async fn a_sweep_that_fails_is_retried_by_the_next_sweep_and_stock_comes_back_once() {
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        let a = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
        let b = svc.set_line(Target::New, product("p1"), item("sku-a"), 1).await.unwrap().cart;
        svc.clock().advance(TTL);
        svc.inventory().faults().inject(Fault::on(Op::ReleaseExpired).times(1));
        unavailable(svc.release_expired(100).await, "postgres");
        assert_eq!(svc.inventory().inner().open_carts(), 2, "nothing released by the failed sweep");
        let next = svc.release_expired(100).await.unwrap();
        assert_eq!((next.carts, next.units), (2, 3));
        assert_eq!(svc.release_expired(100).await.unwrap().units, 0, "exactly once");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
        assert_eq!(svc.inventory().inner().holds(a.id), vec![]);
        assert_eq!(svc.inventory().inner().holds(b.id), vec![]);
    }

    #[tokio::test]
    async fn a_sweep_whose_answer_is_lost_does_not_release_twice() {
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap();
        svc.clock().advance(TTL);
        svc.inventory().faults().inject(Fault::on(Op::ReleaseExpired).times(1).after_call());
        unavailable(svc.release_expired(100).await, "postgres");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0), "the lost sweep released");
        assert_eq!(svc.release_expired(100).await.unwrap().units, 0, "the next finds nothing to give back");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
    }

    #[tokio::test]
    async fn a_release_on_an_expiry_event_that_fails_is_left_to_the_sweeper() {
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 4).await.unwrap().cart;
        svc.clock().advance(TTL);
        svc.inventory().faults().inject(Fault::on(Op::Release).times(1));
        unavailable(svc.release_cart(cart.id).await, "postgres");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(1, 4, 0));
        assert_eq!(svc.release_expired(100).await.unwrap().units, 4);
        assert_eq!(svc.release_cart(cart.id).await.unwrap().units, 0, "a late event finds nothing");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
    }

    #[tokio::test]
    async fn an_abandon_whose_release_fails_gives_the_stock_back_on_retry_or_by_the_sweeper() {
        let svc = faulted();
        stocked(&svc, "sku-a", 5).await;
        let cart = svc.set_line(Target::New, product("p1"), item("sku-a"), 2).await.unwrap().cart;
        svc.inventory().faults().inject(Fault::on(Op::Release).times(1));
        unavailable(svc.abandon(cart.id).await, "postgres");
        assert!(matches!(svc.get_cart(cart.id).await, Err(CartError::SessionNotFound)), "session closed");
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(3, 2, 0), "still held");
        // The client's retry: the session is gone, but the stock comes back.
        assert!(matches!(svc.abandon(cart.id).await, Err(CartError::SessionNotFound)));
        assert_eq!(svc.stock(&item("sku-a")).await.unwrap(), level(5, 0, 0));
        svc.clock().advance(TTL);
        assert_eq!(svc.release_expired(100).await.unwrap().units, 0, "and only once");
    }
}
