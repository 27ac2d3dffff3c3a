//! [`Faulty`]: with nothing armed it keeps the port contracts of the adapter
//! it wraps (both suites of `cartd_test_support::contract` run over it); armed, it fails,
//! delays or loses exactly the calls it was told to, with the error a real
//! outage gives.

use std::time::Duration;

use cartd_adapters::{
    Fault, Faults, Faulty, InjectedFault, ManualClock, MemoryInventory, MemorySessions, Op, UnknownOp,
};
use cartd_test_support::fixtures::{self, START};
use domain::ports::{ExpiryEvents, Inventory, PortError, SessionStore};
use domain::{CartError, CartId, OrderId, StockCount, StockLevel, Timestamp};

async fn faulty_sessions() -> (Faulty<MemorySessions>, ManualClock) {
    (Faulty::new(MemorySessions::new()), ManualClock::new(START))
}

async fn faulty_inventory() -> (Faulty<MemoryInventory>, ManualClock) {
    (Faulty::new(MemoryInventory::new()), ManualClock::new(START))
}

mod session_store {
    cartd_test_support::session_store_contract!(super::faulty_sessions);
}

mod inventory {
    cartd_test_support::inventory_contract!(super::faulty_inventory);
}

/// The injected cause inside a port error.
fn cause(e: &PortError) -> InjectedFault {
    *std::error::Error::source(e).and_then(|s| s.downcast_ref::<InjectedFault>()).expect("an injected fault")
}

fn secs(s: u64) -> Timestamp {
    START.plus(Duration::from_secs(s))
}

async fn stocked(inv: &impl Inventory, n: u32) {
    inv.set_available(&fixtures::item("sku-a"), StockCount::new(n).unwrap()).await.unwrap();
}

async fn level(inv: &impl Inventory) -> StockLevel {
    inv.stock(&fixtures::item("sku-a")).await.unwrap().unwrap()
}

mod wrapper {
    use super::*;

    #[tokio::test]
    async fn fail_next_fails_exactly_the_next_n_calls_of_any_operation() {
        let inv = Faulty::new(MemoryInventory::new());
        stocked(&inv, 5).await;
        inv.faults().fail_next(2);
        let e = inv.stock(&fixtures::item("sku-a")).await.unwrap_err();
        assert_eq!(e.store(), "postgres", "the store a real outage names");
        assert_eq!(cause(&e), InjectedFault { op: Op::Stock, after_call: false });
        assert!(inv.reserved_total().await.is_err(), "the second call, another operation, fails too");
        assert_eq!(level(&inv).await, StockLevel { available: 5, reserved: 0, sold: 0 }, "the third passes");
        assert_eq!(inv.faults().injected(Op::Stock), 1);
        assert_eq!(inv.faults().injected(Op::ReservedTotal), 1);
        assert_eq!(inv.faults().calls(Op::Stock), 2);
    }

    #[tokio::test]
    async fn a_fault_on_one_operation_leaves_the_others_alone_until_healed() {
        let sessions = Faulty::new(MemorySessions::new());
        let id = CartId::random();
        sessions.faults().fail(Op::Load);
        sessions.create(id, secs(60), START).await.unwrap();
        for _ in 0..3 {
            let e = sessions.load(id, START).await.unwrap_err();
            assert_eq!(e.store(), "redis");
            assert_eq!(cause(&e).op, Op::Load);
        }
        assert!(sessions.close(id, START).await.is_ok_and(|live| live));
        sessions.faults().heal();
        assert_eq!(sessions.load(id, START).await.unwrap(), None, "closed above, although loads failed");
        assert_eq!(sessions.faults().injected(Op::Load), 3);
    }

    #[tokio::test]
    async fn operations_that_return_a_cart_error_fail_with_unavailable() {
        let inv = Faulty::new(MemoryInventory::new());
        stocked(&inv, 5).await;
        let id = CartId::random();
        inv.open_cart(id, secs(60)).await.unwrap();
        inv.faults().inject(Fault::on(Op::SetHold).times(1));
        inv.faults().inject(Fault::on(Op::Checkout).times(1));
        let r = inv.set_hold(id, &fixtures::set("p1", "sku-a", 2), None, 10, START).await;
        let Err(CartError::Unavailable(e)) = r else { panic!("{r:?}") };
        assert_eq!((e.store(), cause(&e).op), ("postgres", Op::SetHold));
        assert_eq!(level(&inv).await.reserved, 0, "a fault before the call changes nothing");
        inv.set_hold(id, &fixtures::set("p1", "sku-a", 2), None, 10, START).await.unwrap();
        let r = inv.checkout(id, OrderId::random(), START).await;
        assert!(matches!(r, Err(CartError::Unavailable(_))), "{r:?}");
        assert_eq!(level(&inv).await, StockLevel { available: 3, reserved: 2, sold: 0 });
    }

    #[tokio::test]
    async fn a_fault_after_the_call_lets_the_store_commit_and_loses_the_answer() {
        let inv = Faulty::new(MemoryInventory::new());
        stocked(&inv, 5).await;
        let id = CartId::random();
        inv.open_cart(id, secs(60)).await.unwrap();
        inv.faults().inject(Fault::on(Op::SetHold).times(1).after_call());
        let r = inv.set_hold(id, &fixtures::set("p1", "sku-a", 2), None, 10, START).await;
        let Err(CartError::Unavailable(e)) = r else { panic!("{r:?}") };
        assert_eq!(cause(&e), InjectedFault { op: Op::SetHold, after_call: true });
        assert_eq!(level(&inv).await, StockLevel { available: 3, reserved: 2, sold: 0 }, "the hold was taken");
        assert_eq!(inv.inner().holds(id), vec![fixtures::line("p1", "sku-a", 2)]);
    }

    #[tokio::test]
    async fn faults_are_used_in_the_order_they_were_armed_and_run_out() {
        let inv = Faulty::new(MemoryInventory::new());
        inv.faults().inject(Fault::on(Op::ReservedTotal).times(1).after_call());
        inv.faults().inject(Fault::on(Op::ReservedTotal).times(2));
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(cause(&inv.reserved_total().await.unwrap_err()).after_call);
        }
        assert_eq!(seen, vec![true, false, false]);
        assert_eq!(inv.reserved_total().await.unwrap(), 0);
        // times(0) never fires.
        inv.faults().inject(Fault::any().times(0));
        assert!(inv.reserved_total().await.is_ok());
    }

    #[tokio::test]
    async fn one_plan_can_drive_several_ports() {
        let faults = Faults::new();
        let sessions = Faulty::with_faults(MemorySessions::new(), faults.clone());
        let inv = Faulty::with_faults(MemoryInventory::new(), faults.clone());
        faults.fail_next(2);
        assert!(sessions.load(CartId::random(), START).await.is_err());
        assert!(inv.reserved_total().await.is_err());
        assert!(sessions.load(CartId::random(), START).await.is_ok());
        assert!(inv.reserved_total().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_calls_on_tokios_clock() {
        let inv = Faulty::new(MemoryInventory::new());
        inv.faults().delay(Duration::from_millis(200));
        inv.faults().delay_op(Op::Stock, Duration::from_secs(3));
        let t = tokio::time::Instant::now();
        inv.reserved_total().await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_millis(200));
        let t = tokio::time::Instant::now();
        inv.stock(&fixtures::item("sku-a")).await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_secs(3), "the operation's own delay wins");
        // A caller's timeout sees the delay as a slow store.
        let slow = tokio::time::timeout(Duration::from_secs(1), inv.stock(&fixtures::item("sku-a"))).await;
        assert!(slow.is_err(), "timed out");
        inv.faults().heal();
        let t = tokio::time::Instant::now();
        inv.stock(&fixtures::item("sku-a")).await.unwrap();
        assert_eq!(t.elapsed(), Duration::ZERO);
    }

    #[test]
    fn an_operation_can_be_named_and_every_name_is_distinct() {
        for op in Op::ALL {
            assert_eq!(op.name().parse::<Op>(), Ok(op));
            assert_eq!(op.to_string(), op.name());
        }
        let names: std::collections::HashSet<_> = Op::ALL.iter().map(|op| op.name()).collect();
        assert_eq!(names.len(), Op::ALL.len());
        assert_eq!("inventory.checkout".parse::<Op>(), Ok(Op::Checkout));
        assert_eq!("checkout".parse::<Op>(), Err(UnknownOp("checkout".to_owned())));
    }

    /// Expiry notices from a list, then none.
    struct Notices(Vec<CartId>);

    impl ExpiryEvents for Notices {
        async fn next_expired(&mut self) -> CartId {
            match self.0.pop() {
                Some(id) => id,
                None => std::future::pending().await,
            }
        }
    }

    #[tokio::test]
    async fn a_failed_expiry_notice_is_lost_and_the_next_one_arrives() {
        let (a, b, c) = (CartId::random(), CartId::random(), CartId::random());
        let mut events = Faulty::new(Notices(vec![c, b, a]));
        events.faults().inject(Fault::on(Op::NextExpired).times(1));
        assert_eq!(events.next_expired().await, b, "a was lost");
        assert_eq!(events.next_expired().await, c);
        assert_eq!(events.faults().calls(Op::NextExpired), 3);
        assert_eq!(events.faults().injected(Op::NextExpired), 1);
    }
}
