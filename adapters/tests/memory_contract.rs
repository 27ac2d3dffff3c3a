//! The port contracts (see `cartd_test_support::contract`) run against the
//! in-memory adapters, plus the few behaviours that only the in-memory ones have.

use std::time::Duration;

use cartd_adapters::{ManualClock, MemoryInventory, MemorySessions};
use cartd_test_support::fixtures::{self, START};
use domain::ports::{Clock, HoldReceipt, Inventory, SessionStore};
use domain::{CartId, StockCount, Timestamp};

async fn memory_sessions() -> (MemorySessions, ManualClock) {
    (MemorySessions::new(), ManualClock::new(START))
}

async fn memory_inventory() -> (MemoryInventory, ManualClock) {
    (MemoryInventory::new(), ManualClock::new(START))
}

mod session_store {
    cartd_test_support::session_store_contract!(super::memory_sessions);
}

mod inventory {
    cartd_test_support::inventory_contract!(super::memory_inventory);
}

/// Behaviours of the in-memory adapters beyond the port contracts.
mod memory_only {
    use super::*;

    #[tokio::test]
    async fn ended_sessions_are_reclaimed_by_later_calls() {
        let store = MemorySessions::new();
        let t0 = START;
        for _ in 0..3 {
            store.create(CartId::random(), t0.plus(Duration::from_secs(1)), t0).await.unwrap();
        }
        let keeper = CartId::random();
        store.create(keeper, t0.plus(Duration::from_secs(60)), t0).await.unwrap();
        assert_eq!(store.len(), 4);
        store.load(CartId::random(), t0.plus(Duration::from_secs(2))).await.unwrap();
        assert_eq!(store.len(), 1, "a later call drops the ended sessions");
        assert!(store.load(keeper, t0.plus(Duration::from_secs(2))).await.unwrap().is_some());
        assert!(store.close(keeper, t0.plus(Duration::from_secs(2))).await.unwrap());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn an_ended_session_left_by_a_bounded_purge_is_still_invisible() {
        // Each call reclaims a bounded batch of ended sessions; those left for
        // later must still read as ended, to `load`, `apply` and `close` alike.
        let store = MemorySessions::new();
        let t0 = START;
        // Enough ended sessions that none of the four calls below reaches `last`.
        for _ in 0..1_100 {
            store.create(CartId::random(), t0.plus(Duration::from_secs(1)), t0).await.unwrap();
        }
        let last = CartId::random();
        let deadline = t0.plus(Duration::from_secs(2));
        store.create(last, deadline, t0).await.unwrap();
        let receipt = HoldReceipt { version: 1, expires_at: t0.plus(Duration::from_secs(60)), taken: 0, released: 0 };
        assert_eq!(store.load(last, deadline).await.unwrap(), None, "ended at its deadline");
        assert_eq!(store.apply(last, &fixtures::set("p1", "sku-a", 1), receipt, deadline).await.unwrap(), None);
        assert_eq!(store.load(last, deadline).await.unwrap(), None, "apply did not revive it");
        assert!(!store.close(last, deadline).await.unwrap(), "it was not live when closed");
        assert!(store.len() > 1, "the purge is bounded, so ended sessions were left for later calls");
    }

    #[tokio::test]
    async fn a_moved_deadline_is_honoured_when_reclaiming() {
        // The purge index must follow the deadline `apply` moved, or the
        // session would be dropped at its first deadline.
        let store = MemorySessions::new();
        let t0 = START;
        let id = CartId::random();
        store.create(id, t0.plus(Duration::from_secs(1)), t0).await.unwrap();
        let receipt = HoldReceipt { version: 1, expires_at: t0.plus(Duration::from_secs(60)), taken: 0, released: 0 };
        store.apply(id, &fixtures::set("p1", "sku-a", 1), receipt, t0).await.unwrap();
        store.load(CartId::random(), t0.plus(Duration::from_secs(2))).await.unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.load(id, t0.plus(Duration::from_secs(2))).await.unwrap().is_some());
        store.load(CartId::random(), t0.plus(Duration::from_secs(60))).await.unwrap();
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn holds_snapshot_and_open_carts_report_the_ledger() {
        let inv = MemoryInventory::new();
        let t0 = START;
        inv.set_available(&fixtures::item("sku-b"), StockCount::new(4).unwrap()).await.unwrap();
        inv.set_available(&fixtures::item("sku-a"), StockCount::new(5).unwrap()).await.unwrap();
        let id = CartId::random();
        inv.open_cart(id, t0.plus(Duration::from_secs(60))).await.unwrap();
        assert_eq!(inv.open_carts(), 1);
        assert_eq!(inv.holds(id), vec![]);
        inv.set_hold(id, &fixtures::set("p2", "sku-a", 2), None, 10, t0).await.unwrap();
        inv.set_hold(id, &fixtures::set("p1", "sku-b", 1), None, 10, t0).await.unwrap();
        assert_eq!(inv.holds(id), vec![fixtures::line("p1", "sku-b", 1), fixtures::line("p2", "sku-a", 2)]);
        let snap: Vec<_> = inv.snapshot().into_iter().map(|(i, l)| (i.to_string(), l.available, l.reserved)).collect();
        assert_eq!(snap, vec![("sku-a".to_owned(), 3, 2), ("sku-b".to_owned(), 3, 1)]);
        assert_eq!(inv.release(id).await.unwrap().units, 3);
        assert_eq!(inv.holds(id), vec![]);
        assert_eq!(inv.open_carts(), 0);
    }

    #[tokio::test]
    async fn take_changed_names_each_item_a_change_touched_once() {
        let inv = MemoryInventory::new();
        let t0 = START;
        for name in ["sku-a", "sku-b", "sku-c"] {
            inv.set_available(&fixtures::item(name), StockCount::new(5).unwrap()).await.unwrap();
        }
        let names = |v: Vec<domain::InventoryId>| v.into_iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(names(inv.take_changed()), ["sku-a", "sku-b", "sku-c"]);
        assert_eq!(inv.take_changed(), vec![], "taken once");
        let id = CartId::random();
        inv.open_cart(id, t0.plus(Duration::from_secs(60))).await.unwrap();
        assert_eq!(inv.take_changed(), vec![], "opening a cart moves no stock");
        inv.set_hold(id, &fixtures::set("p1", "sku-a", 2), None, 10, t0).await.unwrap();
        inv.set_hold(id, &fixtures::set("p1", "sku-b", 2), None, 10, t0).await.unwrap();
        assert_eq!(names(inv.take_changed()), ["sku-a", "sku-b"], "moving a line changes both items");
        assert!(inv.set_hold(id, &fixtures::set("p2", "sku-c", 9), None, 10, t0).await.is_err());
        assert_eq!(inv.take_changed(), vec![], "a refused hold changes nothing");
        inv.checkout(id, domain::OrderId::random(), t0).await.unwrap();
        assert_eq!(names(inv.take_changed()), ["sku-b"]);
        let other = CartId::random();
        inv.open_cart(other, t0.plus(Duration::from_secs(1))).await.unwrap();
        inv.set_hold(other, &fixtures::set("p1", "sku-c", 1), None, 10, t0).await.unwrap();
        let _ = inv.take_changed();
        inv.release_expired(t0.plus(Duration::from_secs(2)), 10).await.unwrap();
        assert_eq!(names(inv.take_changed()), ["sku-c"], "the sweeper's releases count too");
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(START);
        let other = clock.clone();
        assert_eq!(clock.now(), START);
        other.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now(), Timestamp::from_millis(START.as_millis() + 1_500));
        assert_eq!(other.now(), clock.now());
    }
}

async fn memory_quotas() -> (cartd_adapters::MemoryQuotas, ManualClock) {
    (cartd_adapters::MemoryQuotas::new(), ManualClock::new(START))
}

mod quotas {
    cartd_test_support::quotas_contract!(super::memory_quotas);
}
