//! Property tests of the use cases ([`CartService`]) over the in-memory adapters:
//! random sequences of shopper (merges included), operator, clock and sweeper actions over a few
//! carts and items, with the design's invariants checked after every step.
//!
//! After every operation:
//! - conservation: per item, `available + reserved + sold` equals the stock the
//!   operator set (each `set_stock` makes it `new available + reserved + sold`);
//!   `sold` equals the units of the orders made so far;
//! - no oversell: no count is negative;
//! - agreement: every live cart's session lines equal its ledger holds, and each
//!   item's `reserved` equals the sum of the holds on it;
//! - bounded holds: after a sweep that drained its batch, no ended cart holds
//!   anything.
//!
//! Each operation's outcome is also checked against what the state before it
//! implies (set semantics, errors, deadlines, checkout retries returning the
//! same order).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cartd_adapters::{ManualClock, MemoryInventory, MemorySessions};
use domain::merge::MergeStrategy;
use domain::ports::Clock;
use domain::{
    Cart, CartError, CartId, CartService, ExpiryMode, ExpiryPolicy, InventoryId, Limits, Line, Order, ProductId,
    Quantity, SessionTtl, StockCount, StockLevel, Target, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const CARTS: usize = 4;
const ITEMS: usize = 3;
const PRODUCTS: usize = 4;
/// The configured per-line limit; generated quantities go up to `MAX_QTY + 2`.
const MAX_QTY: u32 = 4;
/// Fewer lines than products, so the line limit is hit.
const MAX_LINES: u16 = 3;
const TTL_SECS: u64 = 60;
const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

type Service = CartService<MemorySessions, MemoryInventory, ManualClock>;

/// How a `SetLine` names its cart.
#[derive(Clone, Copy, Debug)]
enum Kind {
    New,
    Existing,
    ExistingOrNew,
}

#[derive(Clone, Debug)]
enum Op {
    /// Set a line of the slot's cart (`item == ITEMS` is an item that does not
    /// exist; `qty == 0` removes the line).
    SetLine {
        slot: usize,
        kind: Kind,
        product: usize,
        item: usize,
        qty: u32,
    },
    RemoveLine {
        slot: usize,
        product: usize,
    },
    Abandon {
        slot: usize,
    },
    /// Move the clock to the slot's cart's deadline plus `extra_ms`, then
    /// optionally sweep everything.
    Expire {
        slot: usize,
        extra_ms: u64,
        sweep: bool,
    },
    Advance {
        secs: u64,
    },
    /// One sweep batch of at most `limit` carts.
    Sweep {
        limit: u32,
    },
    Checkout {
        slot: usize,
    },
    SetStock {
        item: usize,
        available: u32,
    },
    /// Merge the `from` slot's cart into the `into` slot's (`max`: the larger
    /// quantity of a product in both, else their sum).
    Merge {
        into: usize,
        from: usize,
        max: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..CARTS;
    let kind = prop_oneof![1 => Just(Kind::New), 4 => Just(Kind::Existing), 4 => Just(Kind::ExistingOrNew)];
    let item = prop_oneof![12 => 0..ITEMS, 1 => Just(ITEMS)];
    let qty = prop_oneof![1 => Just(0), 6 => 1..=MAX_QTY, 1 => MAX_QTY + 1..=MAX_QTY + 2];
    prop_oneof![
        16 => (slot.clone(), kind, 0..PRODUCTS, item, qty)
            .prop_map(|(slot, kind, product, item, qty)| Op::SetLine { slot, kind, product, item, qty }),
        2 => (slot.clone(), 0..PRODUCTS).prop_map(|(slot, product)| Op::RemoveLine { slot, product }),
        1 => slot.clone().prop_map(|slot| Op::Abandon { slot }),
        1 => (slot.clone(), 0..=2_000u64, any::<bool>())
            .prop_map(|(slot, extra_ms, sweep)| Op::Expire { slot, extra_ms, sweep }),
        1 => (0..=30u64).prop_map(|secs| Op::Advance { secs }),
        2 => (1..=3u32).prop_map(|limit| Op::Sweep { limit }),
        2 => slot.clone().prop_map(|slot| Op::Checkout { slot }),
        2 => (0..ITEMS, 0..=8u32).prop_map(|(item, available)| Op::SetStock { item, available }),
        2 => (slot.clone(), 0..CARTS, any::<bool>()).prop_map(|(into, from, max)| Op::Merge { into, from, max }),
    ]
}

fn product_id(n: usize) -> ProductId {
    ProductId::parse(&format!("p{n}")).expect("valid product id")
}

/// Item `n`; `ITEMS` names an item that is never created.
fn item_id(n: usize) -> InventoryId {
    let name = if n == ITEMS { "ghost".to_owned() } else { format!("sku-{n}") };
    InventoryId::parse(&name).expect("valid inventory id")
}

fn units(lines: &[Line]) -> u64 {
    lines.iter().map(|l| u64::from(l.quantity.get())).sum()
}

fn other_lines(lines: &[Line], product: &ProductId) -> Vec<Line> {
    lines.iter().filter(|l| &l.product_id != product).cloned().collect()
}

struct Harness {
    svc: Service,
    clock: ManualClock,
    mode: ExpiryMode,
    /// The cart each slot refers to (kept after checkout, so retries happen).
    slots: [Option<CartId>; CARTS],
    /// Every cart the test has seen. Carts it never saw (made by a `New` whose
    /// first change failed) hold nothing, so sums over these are complete.
    known: Vec<CartId>,
    /// Expected `available + reserved + sold` per item.
    totals: BTreeMap<InventoryId, i64>,
    /// Units sold per item, from the orders made.
    sold: BTreeMap<InventoryId, i64>,
    orders: HashMap<CartId, Order>,
}

impl Harness {
    async fn new(mode: ExpiryMode, stock: &[u32]) -> Result<Self, TestCaseError> {
        let clock = ManualClock::new(START);
        let policy = ExpiryPolicy { ttl: SessionTtl::new(Duration::from_secs(TTL_SECS)).unwrap(), mode };
        let limits = Limits::new(MAX_QTY, MAX_LINES).unwrap();
        let svc = CartService::new(MemorySessions::new(), MemoryInventory::new(), clock.clone(), policy, limits);
        let mut totals = BTreeMap::new();
        let mut sold = BTreeMap::new();
        for (n, &available) in stock.iter().enumerate() {
            let level = svc.set_stock(&item_id(n), StockCount::new(available).unwrap()).await.unwrap();
            prop_assert_eq!(level, StockLevel { available: i64::from(available), reserved: 0, sold: 0 });
            totals.insert(item_id(n), i64::from(available));
            sold.insert(item_id(n), 0);
        }
        Ok(Self { svc, clock, mode, slots: [None; CARTS], known: Vec::new(), totals, sold, orders: HashMap::new() })
    }

    /// The live cart `id`, or `None`.
    async fn live(&self, id: CartId) -> Result<Option<Cart>, TestCaseError> {
        match self.svc.get_cart(id).await {
            Ok(cart) => Ok(Some(cart)),
            Err(CartError::SessionNotFound) => Ok(None),
            Err(e) => Err(TestCaseError::fail(format!("get_cart: {e:?}"))),
        }
    }

    fn holds(&self, id: CartId) -> Vec<Line> {
        self.svc.inventory().holds(id)
    }

    fn held_units(&self) -> u64 {
        self.known.iter().map(|&id| units(&self.holds(id))).sum()
    }

    async fn level(&self, item: &InventoryId) -> StockLevel {
        self.svc.stock(item).await.expect("every item the test uses exists")
    }

    /// The slot's cart, or an id no cart has.
    fn cart_of(&self, slot: usize) -> CartId {
        self.slots[slot].unwrap_or_else(CartId::random)
    }

    fn remember(&mut self, slot: usize, id: CartId) {
        self.slots[slot] = Some(id);
        if !self.known.contains(&id) {
            self.known.push(id);
        }
    }

    /// The deadline a change at `now` leaves on a cart whose deadline was `old`.
    fn deadline_after_change(&self, old: Timestamp, now: Timestamp) -> Timestamp {
        match self.mode {
            ExpiryMode::Fixed => old,
            ExpiryMode::Sliding => now.plus(Duration::from_secs(TTL_SECS)),
        }
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::SetLine { slot, kind, product, item, qty } => self.set_line(slot, kind, product, item, qty).await,
            Op::RemoveLine { slot, product } => self.remove_line(slot, product).await,
            Op::Abandon { slot } => self.abandon(slot).await,
            Op::Expire { slot, extra_ms, sweep } => {
                let id = self.cart_of(slot);
                let now = self.clock.now();
                match self.live(id).await? {
                    Some(cart) => {
                        let to = cart.expires_at.plus(Duration::from_millis(extra_ms));
                        self.clock.advance(to.since(now));
                        prop_assert_eq!(self.live(id).await?, None, "a cart is gone at its deadline");
                    }
                    None => self.clock.advance(Duration::from_millis(extra_ms)),
                }
                if sweep { self.sweep(1_000).await } else { Ok(()) }
            }
            Op::Advance { secs } => {
                self.clock.advance(Duration::from_secs(secs));
                Ok(())
            }
            Op::Sweep { limit } => self.sweep(limit).await,
            Op::Checkout { slot } => self.checkout(slot).await,
            Op::Merge { into, from, max } => self.merge(into, from, max).await,
            Op::SetStock { item, available } => {
                let item = item_id(item);
                let before = self.level(&item).await;
                let level = self.svc.set_stock(&item, StockCount::new(available).unwrap()).await.unwrap();
                let expected = StockLevel { available: i64::from(available), ..before };
                prop_assert_eq!(level, expected, "set_stock keeps reserved and sold");
                self.totals.insert(item, level.total());
                Ok(())
            }
        }
    }

    async fn set_line(
        &mut self,
        slot: usize,
        kind: Kind,
        product: usize,
        item: usize,
        qty: u32,
    ) -> Result<(), TestCaseError> {
        let (product, item) = (product_id(product), item_id(item));
        let target = match kind {
            Kind::New => Target::New,
            Kind::Existing => Target::Existing(self.cart_of(slot)),
            Kind::ExistingOrNew => Target::ExistingOrNew(self.cart_of(slot)),
        };
        let before = match target {
            Target::New => None,
            Target::Existing(id) | Target::ExistingOrNew(id) => self.live(id).await?,
        };
        let makes_new = match target {
            Target::New => true,
            Target::Existing(_) => false,
            Target::ExistingOrNew(_) => before.is_none(),
        };
        let now = self.clock.now();
        let levels_before = self.svc.inventory().snapshot();
        // Falling back from a gone cart to a new one may release the gone cart's
        // holds on the way (its deadline has passed); otherwise a refused change
        // moves no stock at all.
        let untouched_unless_ok = !matches!(target, Target::ExistingOrNew(_)) || before.is_some();

        let result = self.svc.set_line(target, product.clone(), item.clone(), qty).await;

        if qty > MAX_QTY {
            prop_assert!(matches!(result, Err(CartError::QuantityOverLimit { max: MAX_QTY })), "{:?}", result);
            prop_assert_eq!(self.svc.inventory().snapshot(), levels_before, "nothing moved");
            if let Some(cart) = &before {
                prop_assert_eq!(self.live(cart.id).await?, Some(cart.clone()), "the cart is unchanged");
            }
            return Ok(());
        }
        match result {
            Ok(res) => {
                prop_assert!(item != item_id(ITEMS) || qty == 0, "a line of an unknown item was accepted");
                prop_assert_eq!(res.created, makes_new);
                match &before {
                    Some(b) if !makes_new => prop_assert_eq!(res.cart.id, b.id),
                    _ => prop_assert!(!self.known.contains(&res.cart.id), "a new cart has a new id"),
                }
                let line = res.cart.lines.iter().find(|l| l.product_id == product);
                if qty == 0 {
                    prop_assert_eq!(line, None, "quantity 0 removes the line");
                } else {
                    let expected =
                        Line { product_id: product.clone(), inventory_id: item, quantity: Quantity::new(qty).unwrap() };
                    prop_assert_eq!(line, Some(&expected), "the line is set, not added to");
                }
                let others_before =
                    before.as_ref().filter(|_| !makes_new).map_or_else(Vec::new, |b| other_lines(&b.lines, &product));
                prop_assert_eq!(other_lines(&res.cart.lines, &product), others_before, "other lines are untouched");
                let expected_deadline = match &before {
                    Some(b) if !makes_new => self.deadline_after_change(b.expires_at, now),
                    _ => now.plus(Duration::from_secs(TTL_SECS)),
                };
                prop_assert_eq!(res.cart.expires_at, expected_deadline);
                prop_assert_eq!(self.live(res.cart.id).await?, Some(res.cart.clone()), "get_cart shows the change");
                self.remember(slot, res.cart.id);
            }
            Err(CartError::SessionNotFound) => {
                prop_assert!(matches!(target, Target::Existing(_)) && before.is_none(), "only Existing of a gone cart");
            }
            Err(CartError::UnknownItem) => {
                prop_assert!(item == item_id(ITEMS) && qty > 0);
                if untouched_unless_ok {
                    prop_assert_eq!(self.svc.inventory().snapshot(), levels_before, "nothing moved");
                }
            }
            Err(CartError::TooManyLines { max }) => {
                prop_assert_eq!(max, MAX_LINES);
                let b = before.as_ref().filter(|_| !makes_new);
                prop_assert!(b.is_some(), "a new cart cannot have too many lines");
                let b = b.unwrap();
                prop_assert_eq!(b.lines.len(), usize::from(MAX_LINES));
                prop_assert!(b.lines.iter().all(|l| l.product_id != product), "changing a line adds none");
                if untouched_unless_ok {
                    prop_assert_eq!(self.svc.inventory().snapshot(), levels_before, "nothing moved");
                }
            }
            Err(CartError::InsufficientStock { available }) => {
                prop_assert_eq!(available, self.level(&item).await.available, "reports what is free");
                let already = before
                    .as_ref()
                    .filter(|_| !makes_new)
                    .and_then(|b| b.lines.iter().find(|l| l.product_id == product && l.inventory_id == item))
                    .map_or(0, |l| i64::from(l.quantity.get()));
                prop_assert!(i64::from(qty) - already > available, "refused although {} were free", available);
                if let Some(cart) = before.as_ref().filter(|_| !makes_new) {
                    prop_assert_eq!(self.live(cart.id).await?, Some(cart.clone()), "the cart is unchanged");
                }
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
        }
        Ok(())
    }

    async fn remove_line(&mut self, slot: usize, product: usize) -> Result<(), TestCaseError> {
        let product = product_id(product);
        let id = self.cart_of(slot);
        let before = self.live(id).await?;
        let now = self.clock.now();
        let result = self.svc.remove_line(id, product.clone()).await;
        match (before, result) {
            (Some(b), Ok(cart)) => {
                prop_assert_eq!(&cart.lines, &other_lines(&b.lines, &product));
                prop_assert_eq!(cart.expires_at, self.deadline_after_change(b.expires_at, now));
            }
            (None, Err(CartError::SessionNotFound)) => {}
            (b, r) => return Err(TestCaseError::fail(format!("remove_line on {b:?} gave {r:?}"))),
        }
        Ok(())
    }

    async fn abandon(&mut self, slot: usize) -> Result<(), TestCaseError> {
        let id = self.cart_of(slot);
        let before = self.live(id).await?;
        let result = self.svc.abandon(id).await;
        match (&before, result) {
            (Some(b), Ok(released)) => prop_assert_eq!(released.units, units(&b.lines), "all held units go back"),
            (None, Err(CartError::SessionNotFound)) => {}
            (b, r) => return Err(TestCaseError::fail(format!("abandon of {b:?} gave {r:?}"))),
        }
        prop_assert_eq!(self.live(id).await?, None);
        prop_assert_eq!(self.holds(id), vec![], "an abandoned cart holds nothing");
        Ok(())
    }

    async fn sweep(&mut self, limit: u32) -> Result<(), TestCaseError> {
        let mut live = HashMap::new();
        for &id in &self.known {
            if let Some(cart) = self.live(id).await? {
                live.insert(id, cart);
            }
        }
        let held_before = self.held_units();
        let released = self.svc.release_expired(limit).await.unwrap();
        prop_assert!(released.carts <= u64::from(limit));
        prop_assert_eq!(released.units, held_before - self.held_units(), "reports the units it returned");
        for &id in &self.known {
            match live.get(&id) {
                Some(cart) => prop_assert_eq!(&self.holds(id), &cart.lines, "a live cart is never swept"),
                None if released.carts < u64::from(limit) => {
                    prop_assert_eq!(self.holds(id), vec![], "a drained sweep leaves no ended cart holding");
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn checkout(&mut self, slot: usize) -> Result<(), TestCaseError> {
        let id = self.cart_of(slot);
        let before = self.live(id).await?;
        let result = self.svc.checkout(id).await;
        match (self.orders.get(&id).cloned(), &before, result) {
            (Some(first), _, Ok(res)) => {
                prop_assert!(!res.created, "a retry creates no order");
                prop_assert_eq!(&res.order, &first, "a retry returns the first order");
            }
            (None, Some(b), Ok(res)) if !b.lines.is_empty() => {
                prop_assert!(res.created);
                prop_assert_eq!(res.order.cart_id, id);
                prop_assert_eq!(&res.order.lines, &b.lines, "the order is what the cart showed");
                for l in &b.lines {
                    *self.sold.get_mut(&l.inventory_id).expect("a known item") += i64::from(l.quantity.get());
                }
                self.orders.insert(id, res.order.clone());
                let retry = self.svc.checkout(id).await;
                prop_assert!(
                    matches!(&retry, Ok(r) if !r.created && r.order == res.order),
                    "an immediate retry returns the same order: {:?}",
                    retry
                );
            }
            (None, Some(b), Err(CartError::CartEmpty)) if b.lines.is_empty() => {
                prop_assert_eq!(self.live(id).await?, Some(b.clone()), "an empty cart stays open");
                return Ok(());
            }
            (None, None, Err(CartError::SessionNotFound)) => {}
            (o, b, r) => return Err(TestCaseError::fail(format!("checkout of {b:?} (order {o:?}) gave {r:?}"))),
        }
        prop_assert_eq!(self.live(id).await?, None, "checkout closes the session");
        prop_assert_eq!(self.holds(id), vec![], "and leaves no hold");
        Ok(())
    }

    async fn merge(&mut self, into: usize, from: usize, max: bool) -> Result<(), TestCaseError> {
        let (into_id, from_id) = (self.cart_of(into), self.cart_of(from));
        let (target, source) = (self.live(into_id).await?, self.live(from_id).await?);
        let strategy = if max { MergeStrategy::Max } else { MergeStrategy::Sum };
        let result = self.svc.merge(into_id, from_id, strategy).await;
        match (&target, &source, result) {
            (_, _, Err(CartError::MergeIntoItself)) if into_id == from_id => return Ok(()),
            (Some(t), Some(s), Ok(r)) if into_id != from_id => {
                prop_assert!(!r.replayed);
                prop_assert_eq!(&r.cart.lines, &self.holds(into_id), "the session shows what the ledger holds");
                for l in &t.lines {
                    let kept = r.cart.lines.iter().find(|m| m.product_id == l.product_id);
                    prop_assert!(kept.is_some_and(|m| m.inventory_id == l.inventory_id), "the target keeps {:?}", l);
                    if !s.lines.iter().any(|m| m.product_id == l.product_id) {
                        prop_assert_eq!(kept, Some(l), "a line only the target has is left alone");
                    }
                }
                for l in &s.lines {
                    let merged = r.cart.lines.iter().any(|m| m.product_id == l.product_id);
                    let told = r.shortfalls.iter().any(|f| f.product_id == l.product_id);
                    prop_assert!(merged || told, "a source line is merged or reported: {:?}", l);
                }
                prop_assert_eq!(self.live(from_id).await?, None, "the source's session is closed");
                prop_assert_eq!(self.holds(from_id), vec![], "and its ledger entry is gone");
                let again = self.svc.merge(into_id, from_id, strategy).await;
                prop_assert!(
                    matches!(&again, Ok(a) if a.replayed && a.cart.lines == r.cart.lines && a.shortfalls == r.shortfalls),
                    "a retry answers the same and moves nothing: {:?}",
                    again
                );
            }
            (Some(t), None, Ok(r)) if r.replayed => {
                prop_assert_eq!(&r.cart, t, "a replay answers the target as it is");
            }
            (None, _, Err(CartError::SessionNotFound)) | (_, None, Err(CartError::SessionNotFound)) => {}
            (t, s, r) => return Err(TestCaseError::fail(format!("merge of {s:?} into {t:?} gave {r:?}"))),
        }
        Ok(())
    }

    /// The invariants that hold after every operation.
    async fn check(&self) -> Result<(), TestCaseError> {
        let snapshot = self.svc.inventory().snapshot();
        let items: Vec<_> = snapshot.iter().map(|(i, _)| i.clone()).collect();
        let expected_items: Vec<_> = self.totals.keys().cloned().collect();
        prop_assert_eq!(items, expected_items, "no item appears by itself");

        let mut reserved: BTreeMap<InventoryId, i64> = BTreeMap::new();
        let now = self.clock.now();
        for &id in &self.known {
            let holds = self.holds(id);
            for l in &holds {
                *reserved.entry(l.inventory_id.clone()).or_default() += i64::from(l.quantity.get());
            }
            if let Some(cart) = self.live(id).await? {
                prop_assert_eq!(&holds, &cart.lines, "session and ledger disagree on cart {}", id);
                prop_assert!(cart.expires_at > now);
                prop_assert!(cart.lines.len() <= usize::from(MAX_LINES));
                prop_assert!(cart.lines.iter().all(|l| l.quantity.get() <= MAX_QTY));
            }
        }
        for (item, level) in &snapshot {
            prop_assert!(level.available >= 0 && level.reserved >= 0 && level.sold >= 0, "{}: {:?}", item, level);
            prop_assert_eq!(level.total(), self.totals[item], "conservation of {}: {:?}", item, level);
            prop_assert_eq!(level.sold, self.sold[item], "sold units of {}", item);
            prop_assert_eq!(level.reserved, reserved.get(item).copied().unwrap_or(0), "reserved {} vs holds", item);
        }
        Ok(())
    }
}

fn run(mode: ExpiryMode, stock: &[u32], ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
    rt.block_on(async {
        let mut h = Harness::new(mode, stock).await?;
        h.check().await?;
        for (n, op) in ops.iter().enumerate() {
            let outcome = match h.step(op).await {
                Ok(()) => h.check().await,
                Err(e) => Err(e),
            };
            outcome.map_err(|e| TestCaseError::fail(format!("at step {n}, {op:?}: {e}")))?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fixed_expiry_keeps_the_invariants(
        stock in prop::collection::vec(0..=8u32, ITEMS),
        ops in prop::collection::vec(op(), 1..=60),
    ) {
        run(ExpiryMode::Fixed, &stock, &ops)?;
    }

    #[test]
    fn sliding_expiry_keeps_the_invariants(
        stock in prop::collection::vec(0..=8u32, ITEMS),
        ops in prop::collection::vec(op(), 1..=60),
    ) {
        run(ExpiryMode::Sliding, &stock, &ops)?;
    }
}
