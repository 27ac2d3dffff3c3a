//! Faults on demand: [`Faulty`] wraps any port and fails, delays or loses its
//! calls when a test says so, the way a Redis or PostgreSQL outage would.
//!
//! The in-memory adapters never fail, so on their own they cannot show how a
//! caller copes with an outage. Wrapped in [`Faulty`], the same adapter answers
//! exactly as before until the test arms a [`Fault`]; then the chosen calls
//! return the [`PortError`] a real outage gives (for the two calls that return a
//! [`CartError`], [`CartError::Unavailable`] wrapping it), which the HTTP layer
//! turns into `503 Service Unavailable` with `Retry-After`. The error names the
//! store that would fail in production (`"redis"` for the session store,
//! `"postgres"` for the inventory), so logs and metrics label it the same way.
//!
//! Two kinds of failure matter, and a [`Fault`] picks one:
//! - **before the call** (the default): the store is never reached, nothing
//!   changes: a refused connection;
//! - **after the call** ([`Fault::after_call`]): the store does the work and
//!   commits, then the answer is lost: a timeout after the commit. This is the
//!   one that double-sells if a retry is not idempotent.
//!
//! [`Faulty`] passes the same contract tests as the adapter it wraps while no
//! fault is armed (`adapters/tests/faulty.rs`, modules `session_store` and
//! `inventory`), and its own behaviour is pinned by the tests in that file's
//! `wrapper` module; `adapters/tests/service.rs` (module `outages`) uses it to
//! prove the use cases lose no stock and sell nothing twice when a store fails
//! midway.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use cartd_adapters::{Fault, Faulty, MemoryInventory, Op};
//! use domain::ports::Inventory;
//!
//! let inventory = Faulty::new(MemoryInventory::new());
//! inventory.faults().inject(Fault::on(Op::ReservedTotal).times(1));
//! let err = inventory.reserved_total().await.unwrap_err();
//! assert_eq!(err.store(), "postgres");
//! assert_eq!(inventory.reserved_total().await.unwrap(), 0, "only the next call failed");
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domain::idempotency::{IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
use domain::merge::MergeCall;
use domain::ports::{
    ExpiryEvents, HoldReceipt, Inventory, LineChange, MergeReceipt, PortError, Released, SessionStore,
};
use domain::{Cart, CartError, CartId, InventoryId, Order, OrderId, StockCount, StockLevel, Timestamp};

/// One operation of a port, to aim a [`Fault`] or a delay at.
///
/// [`Clock`](domain::ports::Clock) and [`StockEvents`](domain::ports::StockEvents)
/// have no operation here: they cannot fail. Move time with
/// [`ManualClock`](crate::ManualClock) instead.
///
/// Invariant: [`Op::store`] is the store a real outage of that operation names. Proved by
/// `fail_next_fails_exactly_the_next_n_calls_of_any_operation` and
/// `a_fault_on_one_operation_leaves_the_others_alone_until_healed` (`adapters/tests/faulty.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`SessionStore::create`].
    Create,
    /// [`SessionStore::load`].
    Load,
    /// [`SessionStore::apply`].
    Apply,
    /// [`SessionStore::apply_only`] (what `CartService::add_line` calls).
    ApplyOnly,
    /// [`SessionStore::close`].
    Close,
    /// [`SessionStore::claim_key`].
    ClaimKey,
    /// [`SessionStore::settle_key`].
    SettleKey,
    /// [`Inventory::open_cart`].
    OpenCart,
    /// [`Inventory::set_hold`].
    SetHold,
    /// [`Inventory::release`].
    Release,
    /// [`Inventory::checkout`].
    Checkout,
    /// [`Inventory::merge`].
    Merge,
    /// [`Inventory::order_of`].
    OrderOf,
    /// [`Inventory::merged_into`].
    MergedInto,
    /// [`Inventory::release_expired`] (one sweep batch).
    ReleaseExpired,
    /// [`Inventory::stock`].
    Stock,
    /// [`Inventory::reserved_total`].
    ReservedTotal,
    /// [`Inventory::set_available`].
    SetAvailable,
    /// [`Inventory::list_stock`].
    ListStock,
    /// [`Inventory::stock_of`].
    StockOf,
    /// [`ExpiryEvents::next_expired`]: a failed notice is lost, as keyspace
    /// notifications are when the listener is disconnected.
    NextExpired,
}

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: [Op; 21] = [
        Op::Create,
        Op::Load,
        Op::Apply,
        Op::ApplyOnly,
        Op::Close,
        Op::ClaimKey,
        Op::SettleKey,
        Op::OpenCart,
        Op::SetHold,
        Op::Release,
        Op::Checkout,
        Op::Merge,
        Op::OrderOf,
        Op::MergedInto,
        Op::ReleaseExpired,
        Op::Stock,
        Op::ReservedTotal,
        Op::SetAvailable,
        Op::ListStock,
        Op::StockOf,
        Op::NextExpired,
    ];

    /// The port and method, e.g. `"inventory.checkout"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Op::Create => "session_store.create",
            Op::Load => "session_store.load",
            Op::Apply => "session_store.apply",
            Op::ApplyOnly => "session_store.apply_only",
            Op::Close => "session_store.close",
            Op::ClaimKey => "session_store.claim_key",
            Op::SettleKey => "session_store.settle_key",
            Op::OpenCart => "inventory.open_cart",
            Op::SetHold => "inventory.set_hold",
            Op::Release => "inventory.release",
            Op::Checkout => "inventory.checkout",
            Op::Merge => "inventory.merge",
            Op::OrderOf => "inventory.order_of",
            Op::MergedInto => "inventory.merged_into",
            Op::ReleaseExpired => "inventory.release_expired",
            Op::Stock => "inventory.stock",
            Op::ReservedTotal => "inventory.reserved_total",
            Op::SetAvailable => "inventory.set_available",
            Op::ListStock => "inventory.list_stock",
            Op::StockOf => "inventory.stock_of",
            Op::NextExpired => "expiry_events.next_expired",
        }
    }

    /// The store that serves this operation in production, as its adapter
    /// names it in a [`PortError`]: `"redis"` or `"postgres"`.
    #[must_use]
    pub const fn store(self) -> &'static str {
        match self {
            Op::Create
            | Op::Load
            | Op::Apply
            | Op::ApplyOnly
            | Op::Close
            | Op::ClaimKey
            | Op::SettleKey
            | Op::NextExpired => "redis",
            Op::OpenCart
            | Op::SetHold
            | Op::Release
            | Op::Checkout
            | Op::Merge
            | Op::OrderOf
            | Op::MergedInto
            | Op::ReleaseExpired
            | Op::Stock
            | Op::ReservedTotal
            | Op::SetAvailable
            | Op::ListStock
            | Op::StockOf => "postgres",
        }
    }
}

/// The text given to [`Op::from_str`](std::str::FromStr::from_str) is not
/// the name of an operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no port operation is named {0:?}")]
pub struct UnknownOp(pub String);

impl std::str::FromStr for Op {
    type Err = UnknownOp;

    /// The operation named `s`, as [`Op::name`] spells it (e.g.
    /// `"inventory.checkout"`), so a fault can be chosen by name, from a
    /// test's parameters or a configuration file.
    fn from_str(s: &str) -> Result<Self, UnknownOp> {
        Op::ALL.into_iter().find(|op| op.name() == s).ok_or_else(|| UnknownOp(s.to_owned()))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The cause inside the [`PortError`] of an injected failure, so logs say the
/// outage was made on purpose.
///
/// Proved to be the `source()` of every injected failure by
/// `fail_next_fails_exactly_the_next_n_calls_of_any_operation` and
/// `a_fault_after_the_call_lets_the_store_commit_and_loses_the_answer`
/// (`adapters/tests/faulty.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("injected fault in {op} ({})", if *.after_call { "after the call, answer lost" } else { "before the call" })]
pub struct InjectedFault {
    /// The operation that failed.
    pub op: Op,
    /// Whether the wrapped store had done the work before the answer was lost.
    pub after_call: bool,
}

/// What to fail: which calls, how many, and whether the store does the work
/// first. Arm it with [`Faults::inject`].
///
/// Invariant: fails only the calls it matches, as many times as it was told, before or after the
/// call as chosen. Proved by `a_fault_on_one_operation_leaves_the_others_alone_until_healed`,
/// `operations_that_return_a_cart_error_fail_with_unavailable` and
/// `a_fault_after_the_call_lets_the_store_commit_and_loses_the_answer`
/// (`adapters/tests/faulty.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Fault {
    op: Option<Op>,
    remaining: Option<u32>,
    after_call: bool,
}

impl Fault {
    /// Fails every call of `op`, until [`Fault::times`] runs out or
    /// [`Faults::heal`] is called.
    pub const fn on(op: Op) -> Self {
        Self { op: Some(op), remaining: None, after_call: false }
    }

    /// Fails every call of any operation of the wrapped port, until
    /// [`Fault::times`] runs out or [`Faults::heal`] is called.
    pub const fn any() -> Self {
        Self { op: None, remaining: None, after_call: false }
    }

    /// Fails only the next `n` matching calls.
    pub const fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Lets the wrapped store do the work (and commit it), then loses the
    /// answer: what a timeout after a commit looks like to the caller.
    pub const fn after_call(mut self) -> Self {
        self.after_call = true;
        self
    }

    fn matches(&self, op: Op) -> bool {
        self.remaining != Some(0) && self.op.is_none_or(|o| o == op)
    }
}

#[derive(Debug, Default)]
struct State {
    faults: Vec<Fault>,
    delay_all: Option<Duration>,
    delays: HashMap<Op, Duration>,
    calls: HashMap<Op, u64>,
    injected: HashMap<Op, u64>,
}

/// What one call is to suffer.
struct Plan {
    delay: Option<Duration>,
    fault: Option<InjectedFault>,
}

/// The faults armed for one or more [`Faulty`] ports, and what they have done.
///
/// A cheap handle: clones share the same plan, so a test keeps one while the
/// port moves into a `CartService` or a server. One `Faults` may be shared by
/// several ports ([`Faulty::with_faults`]), so that e.g. [`Faults::fail_next`]
/// counts calls to both stores.
///
/// Invariant: armed faults fire in the order they were armed, each for exactly its count, and the
/// counts of calls and injected failures are exact. Proved by
/// `fail_next_fails_exactly_the_next_n_calls_of_any_operation`,
/// `faults_are_used_in_the_order_they_were_armed_and_run_out`, `one_plan_can_drive_several_ports`
/// and `latency_delays_calls_on_tokios_clock` (`adapters/tests/faulty.rs`).
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Mutex<State>>);

impl Faults {
    /// A plan with nothing armed.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; the state is whole after each call.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms `fault`. Faults are tried in the order they were armed; a call is
    /// failed by the first that matches it, and that fault's count goes down.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Fails the next `n` calls, whatever their operation.
    pub fn fail_next(&self, n: u32) {
        self.inject(Fault::any().times(n));
    }

    /// Fails every call of `op` until [`Faults::heal`].
    pub fn fail(&self, op: Op) {
        self.inject(Fault::on(op));
    }

    /// Delays every call by `d` before it reaches the store (with tokio's
    /// clock: a test that pauses time does not really wait). A delay set for
    /// one operation with [`Faults::delay_op`] takes precedence.
    pub fn delay(&self, d: Duration) {
        self.state().delay_all = Some(d);
    }

    /// Delays every call of `op` by `d`.
    pub fn delay_op(&self, op: Op, d: Duration) {
        self.state().delays.insert(op, d);
    }

    /// Disarms every fault and delay (the counts are kept).
    pub fn heal(&self) {
        let mut s = self.state();
        s.faults.clear();
        s.delay_all = None;
        s.delays.clear();
    }

    /// Calls of `op` made so far, failed or not.
    #[must_use]
    pub fn calls(&self, op: Op) -> u64 {
        self.state().calls.get(&op).copied().unwrap_or(0)
    }

    /// Calls of `op` failed on purpose so far.
    #[must_use]
    pub fn injected(&self, op: Op) -> u64 {
        self.state().injected.get(&op).copied().unwrap_or(0)
    }

    /// The delay a call of `op` is to wait, if any.
    fn delay_of(&self, op: Op) -> Option<Duration> {
        let s = self.state();
        s.delays.get(&op).copied().or(s.delay_all)
    }

    /// Counts a call of `op` and says what it is to suffer.
    fn plan(&self, op: Op) -> Plan {
        let delay = self.delay_of(op);
        let mut s = self.state();
        *s.calls.entry(op).or_default() += 1;
        let fault = s.faults.iter_mut().find(|f| f.matches(op)).map(|f| {
            if let Some(n) = &mut f.remaining {
                *n -= 1;
            }
            InjectedFault { op, after_call: f.after_call }
        });
        s.faults.retain(|f| f.remaining != Some(0));
        if fault.is_some() {
            *s.injected.entry(op).or_default() += 1;
        }
        Plan { delay, fault }
    }
}

/// A port `P` whose calls fail, slow down or lose their answers when its
/// [`Faults`] say so, and otherwise behave exactly like `P`.
///
/// Invariant: with nothing armed, every call is passed to `P` unchanged and
/// its answer returned unchanged; an armed call either never reaches `P`
/// (before the call) or reaches it exactly once (after the call). Proved by
/// the port contract suites run over `Faulty<MemorySessions>` and
/// `Faulty<MemoryInventory>` and by the `wrapper` tests, in
/// `adapters/tests/faulty.rs`.
///
/// Implements [`SessionStore`], [`Inventory`] and [`ExpiryEvents`] when `P`
/// does.
#[derive(Debug, Default)]
pub struct Faulty<P> {
    inner: P,
    faults: Faults,
}

impl<P> Faulty<P> {
    /// Wraps `inner` with nothing armed.
    pub fn new(inner: P) -> Self {
        Self { inner, faults: Faults::new() }
    }

    /// Wraps `inner`, obeying the shared plan `faults`.
    pub fn with_faults(inner: P, faults: Faults) -> Self {
        Self { inner, faults }
    }

    /// The plan this port obeys; clone it to keep it.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The wrapped port, to look inside it (e.g.
    /// [`MemoryInventory::holds`](crate::MemoryInventory::holds)) without
    /// going through the faults.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped port.
    pub fn into_inner(self) -> P {
        self.inner
    }

    /// Runs `call` (a call of `op` on the inner port) as the plan says.
    async fn run<T, E: From<PortError>>(&self, op: Op, call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let plan = self.faults.plan(op);
        if let Some(d) = plan.delay {
            tokio::time::sleep(d).await;
        }
        match plan.fault {
            None => call.await,
            Some(fault) => {
                if fault.after_call {
                    // The store does the work; its answer, good or bad, is lost.
                    let _ = call.await;
                }
                Err(PortError::new(op.store(), fault).into())
            }
        }
    }
}

impl<P: SessionStore> SessionStore for Faulty<P> {
    async fn create(&self, id: CartId, expires_at: Timestamp, now: Timestamp) -> Result<(), PortError> {
        self.run(Op::Create, self.inner.create(id, expires_at, now)).await
    }

    async fn load(&self, id: CartId, now: Timestamp) -> Result<Option<Cart>, PortError> {
        self.run(Op::Load, self.inner.load(id, now)).await
    }

    async fn apply(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> Result<Option<Cart>, PortError> {
        self.run(Op::Apply, self.inner.apply(id, change, receipt, now)).await
    }

    async fn apply_only(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> Result<bool, PortError> {
        self.run(Op::ApplyOnly, self.inner.apply_only(id, change, receipt, now)).await
    }

    async fn close(&self, id: CartId, now: Timestamp) -> Result<bool, PortError> {
        self.run(Op::Close, self.inner.close(id, now)).await
    }

    async fn claim_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        record: &KeyRecord,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<KeyClaim, PortError> {
        self.run(Op::ClaimKey, self.inner.claim_key(scope, key, record, until, now)).await
    }

    async fn settle_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        cart: CartId,
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), PortError> {
        self.run(Op::SettleKey, self.inner.settle_key(scope, key, cart, until, now)).await
    }
}

impl<P: Inventory> Inventory for Faulty<P> {
    async fn open_cart(&self, id: CartId, deadline: Timestamp) -> Result<(), PortError> {
        self.run(Op::OpenCart, self.inner.open_cart(id, deadline)).await
    }

    async fn set_hold(
        &self,
        cart: CartId,
        change: &LineChange,
        new_deadline: Option<Timestamp>,
        max_lines: u16,
        now: Timestamp,
    ) -> Result<HoldReceipt, CartError> {
        self.run(Op::SetHold, self.inner.set_hold(cart, change, new_deadline, max_lines, now)).await
    }

    async fn release(&self, cart: CartId) -> Result<Released, PortError> {
        self.run(Op::Release, self.inner.release(cart)).await
    }

    async fn checkout(&self, cart: CartId, order_id: OrderId, now: Timestamp) -> Result<(Order, bool), CartError> {
        self.run(Op::Checkout, self.inner.checkout(cart, order_id, now)).await
    }

    async fn merge(&self, call: &MergeCall) -> Result<MergeReceipt, CartError> {
        self.run(Op::Merge, self.inner.merge(call)).await
    }

    async fn merged_into(&self, cart: CartId) -> Result<Option<CartId>, PortError> {
        self.run(Op::MergedInto, self.inner.merged_into(cart)).await
    }

    async fn order_of(&self, cart: CartId) -> Result<Option<Order>, PortError> {
        self.run(Op::OrderOf, self.inner.order_of(cart)).await
    }

    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Released, PortError> {
        self.run(Op::ReleaseExpired, self.inner.release_expired(now, limit)).await
    }

    async fn stock(&self, item: &InventoryId) -> Result<Option<StockLevel>, PortError> {
        self.run(Op::Stock, self.inner.stock(item)).await
    }

    async fn reserved_total(&self) -> Result<i64, PortError> {
        self.run(Op::ReservedTotal, self.inner.reserved_total()).await
    }

    async fn set_available(&self, item: &InventoryId, available: StockCount) -> Result<StockLevel, PortError> {
        self.run(Op::SetAvailable, self.inner.set_available(item, available)).await
    }

    async fn list_stock(
        &self,
        after: Option<&InventoryId>,
        limit: u32,
    ) -> Result<Vec<(InventoryId, StockLevel)>, PortError> {
        self.run(Op::ListStock, self.inner.list_stock(after, limit)).await
    }

    async fn stock_of(&self, items: &[InventoryId]) -> Result<Vec<(InventoryId, StockLevel)>, PortError> {
        self.run(Op::StockOf, self.inner.stock_of(items)).await
    }
}

impl<P: ExpiryEvents> ExpiryEvents for Faulty<P> {
    /// The next notice that is not lost: a failed [`Op::NextExpired`] drops
    /// the notice it received and waits for the next one. A delay is served
    /// before waiting, so cancelling during it loses nothing.
    async fn next_expired(&mut self) -> CartId {
        loop {
            let delay = self.faults.delay_of(Op::NextExpired);
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let id = self.inner.next_expired().await;
            // Counted once a notice is in hand, so a wait that is cancelled
            // neither counts as a call nor uses up a fault.
            if self.faults.plan(Op::NextExpired).fault.is_none() {
                return id;
            }
        }
    }
}
