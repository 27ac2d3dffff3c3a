//! The [`Quotas`] contract: what the in-memory and the Redis client quotas
//! both keep. Every count ends at its cart's deadline with no call needed (the
//! expiry and sweeper paths), or when the cart is forgotten (checkout, abandon).

use std::time::Duration;

use domain::ports::{Clock, Quotas};
use domain::quota::{CartAdmission, ClientKey, HoldAdmission, LimitKind};
use domain::{CartId, InventoryId, Timestamp};

const TTL: Duration = Duration::from_secs(900);

fn client(s: &str) -> ClientKey {
    ClientKey::new(s).expect("a valid client key")
}

fn item(s: &str) -> InventoryId {
    InventoryId::parse(s).expect("a valid item id")
}

/// `now` at the start of a minute plus 1 s, so a test never crosses a minute
/// by accident.
fn start_of_minute(clock: &impl Clock) -> Timestamp {
    let now = clock.now().as_millis();
    Timestamp::from_millis(now - now.rem_euclid(60_000) + 60_000 + 1_000)
}

async fn admit(
    store: &impl Quotas,
    c: &ClientKey,
    now: Timestamp,
    per_minute: Option<u32>,
    open: Option<u32>,
) -> CartAdmission {
    store.admit_cart(c, CartId::random(), now.plus(TTL), now, per_minute, open).await.expect("store answers")
}

pub async fn carts_per_minute_refuses_the_next_cart_until_the_minute_ends(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let c = client("10.0.0.1");
    for _ in 0..3 {
        assert_eq!(admit(&store, &c, now, Some(3), None).await, CartAdmission::Admitted);
    }
    match admit(&store, &c, now.plus(Duration::from_secs(10)), Some(3), None).await {
        CartAdmission::Refused { limit, retry_after_secs } => {
            assert_eq!(limit, LimitKind::CartsPerMinute);
            assert!((49..=50).contains(&retry_after_secs), "until the minute ends: {retry_after_secs}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let next_minute = now.plus(Duration::from_secs(60));
    assert_eq!(admit(&store, &c, next_minute, Some(3), None).await, CartAdmission::Admitted);
}

pub async fn open_carts_refuses_until_a_cart_ends_or_is_forgotten(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let c = client("10.0.0.2");
    let first = CartId::random();
    store.admit_cart(&c, first, now.plus(Duration::from_secs(30)), now, None, Some(2)).await.unwrap();
    store.admit_cart(&c, CartId::random(), now.plus(TTL), now, None, Some(2)).await.unwrap();
    match admit(&store, &c, now, None, Some(2)).await {
        CartAdmission::Refused { limit, retry_after_secs } => {
            assert_eq!(limit, LimitKind::OpenCarts);
            assert_eq!(retry_after_secs, 30, "until the first open cart ends");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Forgotten (checkout, abandon): the slot frees at once.
    store.forget_cart(first, now).await.unwrap();
    assert_eq!(admit(&store, &c, now, None, Some(2)).await, CartAdmission::Admitted);
    assert!(matches!(admit(&store, &c, now, None, Some(2)).await, CartAdmission::Refused { .. }));
    // Ended by its deadline (expiry, sweeper): the slot frees with no call.
    let later = now.plus(TTL).plus(Duration::from_secs(1));
    assert_eq!(admit(&store, &c, later, None, Some(2)).await, CartAdmission::Admitted);
}

pub async fn held_units_count_across_a_clients_carts_and_refuse_beyond_the_cap(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let (c, flash) = (client("10.0.0.3"), item("flash"));
    let (a, b) = (CartId::random(), CartId::random());
    let d = now.plus(TTL);
    assert_eq!(
        store.admit_hold(&c, a, &flash, 15, 25, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { previous: 0 }
    );
    match store.admit_hold(&c, b, &flash, 11, 25, d, true, now).await.unwrap() {
        HoldAdmission::Refused { may_hold, retry_after_secs, holding } => {
            assert_eq!(may_hold, 10, "25 minus the 15 its other cart holds");
            assert_eq!(retry_after_secs, 900);
            assert_eq!(holding, 0);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The refusal counted nothing: exactly the rest still fits.
    assert_eq!(
        store.admit_hold(&c, b, &flash, 10, 25, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { previous: 0 }
    );
    assert!(matches!(
        store.admit_hold(&c, CartId::random(), &flash, 1, 25, d, true, now).await.unwrap(),
        HoldAdmission::Refused { may_hold: 0, .. }
    ));
    // Raising a cart's own line counts only the others against it.
    assert!(matches!(
        store.admit_hold(&c, a, &flash, 16, 25, d, true, now).await.unwrap(),
        HoldAdmission::Refused { may_hold: 15, holding: 15, .. }
    ));
    // Another item and another client count apart.
    assert!(matches!(
        store.admit_hold(&c, a, &item("other"), 25, 25, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { .. }
    ));
    assert!(matches!(
        store.admit_hold(&client("10.0.0.4"), CartId::random(), &flash, 25, 25, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { .. }
    ));
}

pub async fn lowering_a_hold_is_always_admitted_and_reports_what_was_counted(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let (c, flash, cart) = (client("10.0.0.5"), item("flash"), CartId::random());
    let d = now.plus(TTL);
    store.admit_hold(&c, cart, &flash, 20, 20, d, true, now).await.unwrap();
    // Even under a cap lowered since (the stock shrank): lowering is fine.
    assert_eq!(
        store.admit_hold(&c, cart, &flash, 12, 5, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { previous: 20 }
    );
    assert_eq!(
        store.admit_hold(&c, cart, &flash, 0, 5, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { previous: 12 }
    );
    assert_eq!(
        store.admit_hold(&c, CartId::random(), &flash, 5, 5, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { previous: 0 }
    );
}

pub async fn held_units_end_at_the_carts_deadline_with_no_call(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let (c, flash) = (client("10.0.0.6"), item("flash"));
    let short = now.plus(Duration::from_secs(60));
    store.admit_hold(&c, CartId::random(), &flash, 10, 10, short, true, now).await.unwrap();
    assert!(matches!(
        store.admit_hold(&c, CartId::random(), &flash, 1, 10, now.plus(TTL), true, now).await.unwrap(),
        HoldAdmission::Refused { retry_after_secs: 60, .. }
    ));
    // The cart expired (its event may never come; the sweeper releases it at
    // the deadline): its units no longer count.
    let after = short.plus(Duration::from_millis(1));
    assert!(matches!(
        store.admit_hold(&c, CartId::random(), &flash, 10, 10, after.plus(TTL), true, after).await.unwrap(),
        HoldAdmission::Admitted { previous: 0 }
    ));
}

pub async fn forgetting_a_cart_frees_its_units_of_every_item(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let c = client("10.0.0.7");
    let (x, y) = (item("x"), item("y"));
    let cart = CartId::random();
    let d = now.plus(TTL);
    store.admit_cart(&c, cart, d, now, None, Some(1)).await.unwrap();
    store.admit_hold(&c, cart, &x, 4, 4, d, true, now).await.unwrap();
    store.admit_hold(&c, cart, &y, 4, 4, d, true, now).await.unwrap();
    let other = CartId::random();
    assert!(matches!(
        store.admit_hold(&c, other, &x, 1, 4, d, true, now).await.unwrap(),
        HoldAdmission::Refused { .. }
    ));
    store.forget_cart(cart, now).await.unwrap();
    store.forget_cart(cart, now).await.unwrap();
    store.forget_cart(CartId::random(), now).await.unwrap();
    assert!(matches!(
        store.admit_hold(&c, other, &x, 4, 4, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { .. }
    ));
    assert!(matches!(
        store.admit_hold(&c, other, &y, 4, 4, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { .. }
    ));
    assert_eq!(admit(&store, &c, now, None, Some(1)).await, CartAdmission::Admitted);
}

pub async fn a_cart_known_only_by_its_holds_is_forgotten_too(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let (c, x, cart) = (client("10.0.0.8"), item("x"), CartId::random());
    let d = now.plus(TTL);
    store.admit_hold(&c, cart, &x, 3, 3, d, true, now).await.unwrap();
    store.forget_cart(cart, now).await.unwrap();
    assert!(matches!(
        store.admit_hold(&c, CartId::random(), &x, 3, 3, d, true, now).await.unwrap(),
        HoldAdmission::Admitted { .. }
    ));
}

pub async fn a_later_deadline_keeps_an_open_cart_counted(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let (c, cart) = (client("10.0.0.9"), CartId::random());
    store.admit_cart(&c, cart, now.plus(Duration::from_secs(60)), now, None, Some(1)).await.unwrap();
    // Sliding expiry: a change moved the cart's deadline.
    store.admit_hold(&c, cart, &item("x"), 1, 10, now.plus(TTL), true, now).await.unwrap();
    let after_first = now.plus(Duration::from_secs(61));
    assert!(matches!(
        admit(&store, &c, after_first, None, Some(1)).await,
        CartAdmission::Refused { limit: LimitKind::OpenCarts, .. }
    ));
}

pub async fn under_fixed_expiry_a_count_ends_with_its_open_carts_deadline(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let (c, x, cart) = (client("10.0.0.10"), item("x"), CartId::random());
    let cart_deadline = now.plus(Duration::from_secs(60));
    store.admit_cart(&c, cart, cart_deadline, now, None, None).await.unwrap();
    // A change 30 s later bounds its count by now + TTL, but the cart is
    // known to end at its own deadline: so does the count.
    let later = now.plus(Duration::from_secs(30));
    store.admit_hold(&c, cart, &x, 5, 5, later.plus(TTL), false, later).await.unwrap();
    let after = cart_deadline.plus(Duration::from_millis(1));
    assert!(matches!(
        store.admit_hold(&c, CartId::random(), &x, 5, 5, after.plus(TTL), false, after).await.unwrap(),
        HoldAdmission::Admitted { previous: 0 }
    ));
}

pub async fn under_sliding_expiry_a_change_keeps_all_the_carts_counts_alive(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let (c, x, y, cart) = (client("10.0.0.11"), item("x"), item("y"), CartId::random());
    store.admit_hold(&c, cart, &x, 5, 5, now.plus(Duration::from_secs(60)), true, now).await.unwrap();
    // 50 s later a change to another line moves the cart's deadline.
    let later = now.plus(Duration::from_secs(50));
    store.admit_hold(&c, cart, &y, 1, 5, later.plus(TTL), true, later).await.unwrap();
    // Past the first deadline the cart still holds its 5 of x: they still count.
    let after = now.plus(Duration::from_secs(61));
    assert!(matches!(
        store.admit_hold(&c, CartId::random(), &x, 1, 5, after.plus(TTL), true, after).await.unwrap(),
        HoldAdmission::Refused { may_hold: 0, .. }
    ));
}

pub async fn standing_lists_refused_clients_and_the_top_holders_of_an_item(store: impl Quotas, clock: impl Clock) {
    let now = start_of_minute(&clock);
    let flash = item("flash");
    let d = now.plus(TTL);
    for (who, units) in [("10.1.0.1", 5), ("10.1.0.2", 9), ("10.1.0.3", 2)] {
        store.admit_hold(&client(who), CartId::random(), &flash, units, 100, d, true, now).await.unwrap();
    }
    store.admit_hold(&client("10.1.0.3"), CartId::random(), &flash, 4, 100, d, true, now).await.unwrap();
    store.admit_hold(&client("10.1.0.4"), CartId::random(), &item("other"), 50, 100, d, true, now).await.unwrap();
    store.note_refusal(&client("10.1.0.2"), LimitKind::HeldUnits, now).await.unwrap();
    store.note_refusal(&client("10.1.0.9"), LimitKind::OpenCarts, now.plus(Duration::from_secs(1))).await.unwrap();
    let s = store.standing(Some(&flash), 2, now.plus(Duration::from_secs(2))).await.unwrap();
    let top: Vec<(&str, u64)> = s.top_holders.iter().map(|h| (h.client.as_str(), h.count)).collect();
    assert_eq!(top, [("10.1.0.2", 9), ("10.1.0.3", 6)]);
    let refused: Vec<(&str, LimitKind)> = s.refused.iter().map(|(c, l)| (c.as_str(), *l)).collect();
    assert_eq!(refused, [("10.1.0.9", LimitKind::OpenCarts), ("10.1.0.2", LimitKind::HeldUnits)]);
    // Refusals are forgotten after a while; holds after their deadline.
    let much_later = d.plus(Duration::from_secs(1));
    let s = store.standing(Some(&flash), 2, much_later).await.unwrap();
    assert!(s.refused.is_empty() && s.top_holders.is_empty(), "{s:?}");
}
