//! Stock, the hold ledger and orders in memory. One mutex makes every method a
//! transaction, which is what the PostgreSQL adapter gets from its own
//! transactions and row locks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use domain::hold::{self, HoldDecision, HoldRequest, Refusal};
use domain::merge::{self, MergeCall, Shortfall};
use domain::ports::{HoldReceipt, Inventory, LineChange, MergeReceipt, PortError, Released};
use domain::{
    CartError, CartId, InventoryId, Line, Order, OrderId, ProductId, Quantity, StockCount, StockLevel, Timestamp,
};

use super::lock;

#[derive(Debug)]
struct LedgerCart {
    deadline: Timestamp,
    version: u64,
    lines: BTreeMap<ProductId, (InventoryId, Quantity)>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Ordered by id, so listing pages by id cost no sort.
    items: BTreeMap<InventoryId, StockLevel>,
    carts: HashMap<CartId, LedgerCart>,
    by_deadline: BTreeSet<(Timestamp, CartId)>,
    orders: HashMap<CartId, Order>,
    /// Carts merged away: into which cart, and what the merge reported.
    merges: HashMap<CartId, (CartId, Vec<Shortfall>)>,
    /// Items whose counts changed since [`MemoryInventory::take_changed`]
    /// last ran (at most every item once).
    changed: BTreeSet<InventoryId>,
}

impl Inner {
    /// Removes `id` from the ledger and returns its units to `available`.
    fn release(&mut self, id: CartId) -> Released {
        let Some(cart) = self.carts.remove(&id) else { return Released::default() };
        self.by_deadline.remove(&(cart.deadline, id));
        let mut units = 0;
        for (inv, q) in cart.lines.values() {
            self.unhold(inv, q.get());
            units += u64::from(q.get());
        }
        Released { carts: 1, units, deadlines: vec![cart.deadline] }
    }

    fn unhold(&mut self, inv: &InventoryId, q: u32) {
        self.reserve(inv, -i64::from(q));
    }

    /// Releases carts past their deadline at `now` that hold `inv`, so that
    /// expired holds never block a live cart.
    fn release_expired_holding(&mut self, inv: &InventoryId, now: Timestamp) {
        let expired: Vec<CartId> = self
            .by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|&(_, id)| id)
            .filter(|id| self.carts.get(id).is_some_and(|c| c.lines.values().any(|(i, _)| i == inv)))
            .collect();
        for id in expired {
            self.release(id);
        }
    }

    /// The ledger's view of cart `id`, for the hold rule.
    fn view(&self, id: CartId) -> Option<hold::LedgerCart> {
        self.carts.get(&id).map(|c| hold::LedgerCart {
            deadline: c.deadline,
            version: c.version,
            lines: u32::try_from(c.lines.len()).unwrap_or(u32::MAX),
        })
    }

    /// Applies the hold rule ([`domain::hold`]) to one call, under the lock.
    fn set_hold(
        &mut self,
        id: CartId,
        change: &LineChange,
        new_deadline: Option<Timestamp>,
        max_lines: u16,
        now: Timestamp,
    ) -> Result<HoldReceipt, CartError> {
        let old = self.carts.get(&id).and_then(|c| c.lines.get(&change.product_id)).cloned();
        let request = HoldRequest {
            old: old.as_ref().map(|(item, q)| (item, q.get())),
            new: change.line.as_ref().map(|(item, q)| (item, q.get())),
            new_deadline,
            max_lines,
            now,
        };
        let mut decision = hold::decide(self.view(id), &request, |item| self.available(item));
        if let (HoldDecision::Refused { refusal: Refusal::InsufficientStock { .. }, .. }, Some((item, _))) =
            (&decision, &change.line)
        {
            // Holds of carts past their deadline never block: give them back
            // and decide again.
            self.release_expired_holding(item, now);
            decision = hold::decide(self.view(id), &request, |item| self.available(item));
        }
        let grant = match decision {
            HoldDecision::NoCart => return Err(CartError::SessionNotFound),
            HoldDecision::Expired => {
                self.release(id);
                return Err(CartError::SessionNotFound);
            }
            HoldDecision::Refused { version, refusal } => {
                self.carts.get_mut(&id).expect("the rule saw the cart").version = version;
                return Err(match refusal {
                    Refusal::UnknownItem => CartError::UnknownItem,
                    Refusal::TooManyLines => CartError::TooManyLines { max: max_lines },
                    Refusal::InsufficientStock { available } => CartError::InsufficientStock { available },
                });
            }
            HoldDecision::Granted(grant) => grant,
        };
        if let Some((item, units)) = grant.reserve {
            self.reserve(item, units);
        }
        if let Some((item, units)) = grant.give_back {
            self.reserve(item, -i64::from(units));
        }
        let cart = self.carts.get_mut(&id).expect("the rule saw the cart");
        match &change.line {
            Some(line) => cart.lines.insert(change.product_id.clone(), line.clone()),
            None => cart.lines.remove(&change.product_id),
        };
        cart.version = grant.version;
        if grant.deadline != cart.deadline {
            let old_deadline = std::mem::replace(&mut cart.deadline, grant.deadline);
            self.by_deadline.remove(&(old_deadline, id));
            self.by_deadline.insert((grant.deadline, id));
        }
        Ok(HoldReceipt {
            version: grant.version,
            expires_at: grant.deadline,
            taken: grant.taken,
            released: grant.released,
        })
    }

    /// Units of `item` free now; `None` when it does not exist.
    fn available(&self, item: &InventoryId) -> Option<i64> {
        self.items.get(item).map(|level| level.available)
    }

    /// Moves `units` of `item` from `available` to `reserved` (negative: back).
    fn reserve(&mut self, item: &InventoryId, units: i64) {
        self.changed.insert(item.clone());
        // The rule only moves units of items that exist, and items are never
        // deleted.
        let level = self.items.entry(item.clone()).or_default();
        level.available -= units;
        level.reserved += units;
    }

    /// The lines of open cart `id`, in product order.
    fn lines_of(&self, id: CartId) -> Vec<Line> {
        self.carts.get(&id).map_or_else(Vec::new, |c| {
            c.lines
                .iter()
                .map(|(p, (i, q))| Line { product_id: p.clone(), inventory_id: i.clone(), quantity: *q })
                .collect()
        })
    }

    /// Cart `id` if it is open and live at `now`; one past its deadline is
    /// released.
    fn live(&mut self, id: CartId, now: Timestamp) -> Result<(), CartError> {
        match self.carts.get(&id) {
            None => Err(CartError::SessionNotFound),
            Some(c) if c.deadline <= now => {
                self.release(id);
                Err(CartError::SessionNotFound)
            }
            Some(_) => Ok(()),
        }
    }

    /// Applies the merge rule ([`domain::merge`]) under the lock.
    fn merge(&mut self, call: &MergeCall) -> Result<MergeReceipt, CartError> {
        let MergeCall { from, into, strategy, limits, new_deadline, now } = *call;
        self.live(into, now)?;
        if !self.carts.contains_key(&from)
            && let Some((target, shortfalls)) = self.merges.get(&from)
            && *target == into
        {
            let cart = &self.carts[&into];
            let lines = self.lines_of(into);
            return Ok(MergeReceipt {
                version: cart.version,
                expires_at: cart.deadline,
                changed: lines.clone(),
                lines,
                shortfalls: shortfalls.clone(),
                taken: 0,
                released: 0,
                replayed: true,
            });
        }
        self.live(from, now)?;
        let plan = merge::plan_merge(&self.lines_of(into), &self.lines_of(from), strategy, limits, |item| {
            self.items.get(item).map_or(0, |level| level.available)
        });
        for (item, units) in &plan.reserve {
            self.reserve(item, *units);
        }
        let source = self.carts.remove(&from).expect("checked live above");
        self.by_deadline.remove(&(source.deadline, from));
        let cart = self.carts.get_mut(&into).expect("checked live above");
        cart.lines = plan.lines.iter().map(|l| (l.product_id.clone(), (l.inventory_id.clone(), l.quantity))).collect();
        cart.version += 1;
        if let Some(deadline) = new_deadline.filter(|d| *d > cart.deadline) {
            let old = std::mem::replace(&mut cart.deadline, deadline);
            self.by_deadline.remove(&(old, into));
            self.by_deadline.insert((deadline, into));
        }
        let (version, expires_at) = (cart.version, cart.deadline);
        self.merges.insert(from, (into, plan.shortfalls.clone()));
        Ok(MergeReceipt::made(plan, version, expires_at))
    }

    fn checkout(&mut self, id: CartId, order_id: OrderId, now: Timestamp) -> Result<(Order, bool), CartError> {
        if let Some(order) = self.orders.get(&id) {
            return Ok((order.clone(), false));
        }
        let cart = match self.carts.get(&id) {
            None => return Err(CartError::SessionNotFound),
            Some(c) if c.deadline <= now => {
                self.release(id);
                return Err(CartError::SessionNotFound);
            }
            Some(c) if c.lines.is_empty() => return Err(CartError::CartEmpty),
            Some(_) => self.carts.remove(&id).expect("matched above"),
        };
        self.by_deadline.remove(&(cart.deadline, id));
        let mut lines = Vec::with_capacity(cart.lines.len());
        for (product_id, (inventory_id, quantity)) in cart.lines {
            self.changed.insert(inventory_id.clone());
            let level = self.items.entry(inventory_id.clone()).or_default();
            level.reserved -= i64::from(quantity.get());
            level.sold += i64::from(quantity.get());
            lines.push(Line { product_id, inventory_id, quantity });
        }
        let order = Order { id: order_id, cart_id: id, lines };
        self.orders.insert(id, order.clone());
        Ok((order, true))
    }
}

/// The in-memory [`Inventory`].
///
/// Invariant: the inventory contract, like PostgreSQL (conservation, no oversell, exactly-once
/// release, atomic checkout): proved by `adapters/tests/memory_contract.rs` (module `inventory`,
/// and `holds_snapshot_and_open_carts_report_the_ledger`) and by the property tests of
/// `adapters/tests/props.rs`.
#[derive(Debug, Default)]
pub struct MemoryInventory {
    inner: Mutex<Inner>,
}

impl MemoryInventory {
    /// An empty inventory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// All items with their counts, for tests and invariant checks.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(InventoryId, StockLevel)> {
        lock(&self.inner).items.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The lines the ledger holds for `cart` (empty when it holds nothing).
    #[must_use]
    pub fn holds(&self, cart: CartId) -> Vec<Line> {
        lock(&self.inner).lines_of(cart)
    }

    /// The items whose counts changed since the last call (each once, in id
    /// order): what live stock pages need to hear about.
    #[must_use]
    pub fn take_changed(&self) -> Vec<InventoryId> {
        std::mem::take(&mut lock(&self.inner).changed).into_iter().collect()
    }

    /// Number of carts open in the ledger.
    #[must_use]
    pub fn open_carts(&self) -> usize {
        lock(&self.inner).carts.len()
    }
}

impl Inventory for MemoryInventory {
    async fn open_cart(&self, id: CartId, deadline: Timestamp) -> Result<(), PortError> {
        let mut inner = lock(&self.inner);
        if let std::collections::hash_map::Entry::Vacant(e) = inner.carts.entry(id) {
            e.insert(LedgerCart { deadline, version: 0, lines: BTreeMap::new() });
            inner.by_deadline.insert((deadline, id));
        }
        Ok(())
    }

    async fn set_hold(
        &self,
        cart: CartId,
        change: &LineChange,
        new_deadline: Option<Timestamp>,
        max_lines: u16,
        now: Timestamp,
    ) -> Result<HoldReceipt, CartError> {
        lock(&self.inner).set_hold(cart, change, new_deadline, max_lines, now)
    }

    async fn merge(&self, call: &MergeCall) -> Result<MergeReceipt, CartError> {
        lock(&self.inner).merge(call)
    }

    async fn release(&self, cart: CartId) -> Result<Released, PortError> {
        Ok(lock(&self.inner).release(cart))
    }

    async fn checkout(&self, cart: CartId, order_id: OrderId, now: Timestamp) -> Result<(Order, bool), CartError> {
        lock(&self.inner).checkout(cart, order_id, now)
    }

    async fn merged_into(&self, cart: CartId) -> Result<Option<CartId>, PortError> {
        Ok(lock(&self.inner).merges.get(&cart).map(|(into, _)| *into))
    }

    async fn order_of(&self, cart: CartId) -> Result<Option<Order>, PortError> {
        Ok(lock(&self.inner).orders.get(&cart).cloned())
    }

    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Released, PortError> {
        let mut inner = lock(&self.inner);
        let mut out = Released::default();
        for _ in 0..limit {
            match inner.by_deadline.first() {
                Some(&(deadline, id)) if deadline <= now => {
                    let r = inner.release(id);
                    out.units += r.units;
                    out.carts += r.carts;
                    out.deadlines.extend(r.deadlines);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    async fn reserved_total(&self) -> Result<i64, PortError> {
        Ok(lock(&self.inner).items.values().map(|l| l.reserved).sum())
    }

    async fn stock(&self, item: &InventoryId) -> Result<Option<StockLevel>, PortError> {
        Ok(lock(&self.inner).items.get(item).copied())
    }

    async fn list_stock(
        &self,
        after: Option<&InventoryId>,
        limit: u32,
    ) -> Result<Vec<(InventoryId, StockLevel)>, PortError> {
        let inner = lock(&self.inner);
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(inner.items.range((from, Bound::Unbounded)).take(limit).map(|(k, v)| (k.clone(), *v)).collect())
    }

    async fn stock_of(&self, items: &[InventoryId]) -> Result<Vec<(InventoryId, StockLevel)>, PortError> {
        let inner = lock(&self.inner);
        let wanted: BTreeSet<&InventoryId> = items.iter().collect();
        Ok(wanted.into_iter().filter_map(|id| inner.items.get(id).map(|l| (id.clone(), *l))).collect())
    }

    async fn set_available(&self, item: &InventoryId, available: StockCount) -> Result<StockLevel, PortError> {
        let mut inner = lock(&self.inner);
        inner.changed.insert(item.clone());
        let level = inner.items.entry(item.clone()).or_default();
        level.available = i64::from(available.get());
        Ok(*level)
    }
}
