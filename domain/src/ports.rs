//! The ports: what the use cases need from the outside world, as traits.
//!
//! Two stores sit behind them. The [`SessionStore`] keeps carts as short-lived
//! sessions (Redis in production) and answers reads in one round trip. The
//! [`Inventory`] keeps stock, the hold ledger and orders (PostgreSQL in
//! production) and is the authority on what is held: every hold is taken there
//! first and only then shown in the session, so the session never shows a line
//! whose units are not held, and a hold the session lost is released by the
//! ledger's deadline.
//!
//! Every adapter, real or in-memory, must pass the same contract tests.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;

use crate::cart::{Cart, Line, Order, StockLevel};
use crate::error::CartError;
use crate::idempotency::{IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
use crate::ids::{CartId, InventoryId, OrderId, ProductId};
use crate::merge::{MergeCall, MergePlan, Shortfall};
use crate::quantity::{Quantity, StockCount};
use crate::time::Timestamp;

/// A backing store could not do its work (connection lost, timeout, pool
/// exhausted...). Retrying later may succeed; the cause is kept for the logs.
///
/// Invariant: names the store that failed and keeps the driver's error as its `source()`; the HTTP
/// layer answers it with 503 and `Retry-After`. Proved by
/// `a_store_whose_redis_is_unreachable_fails_quickly_with_a_port_error`
/// (`adapters/tests/redis_store.rs`), `an_unreachable_server_fails_fast_with_a_port_error`
/// (`adapters/tests/postgres_store.rs`) and
/// `an_inventory_outage_answers_503_with_retry_after_and_the_retry_succeeds`
/// (`app/tests/fakes.rs`).
#[derive(Debug, thiserror::Error)]
#[error("{store} unavailable")]
pub struct PortError {
    store: &'static str,
    #[source]
    source: Box<dyn StdError + Send + Sync>,
}

impl PortError {
    /// Wraps a driver error raised by the adapter for `store` (e.g. `"redis"`).
    pub fn new(store: &'static str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self { store, source: source.into() }
    }

    /// Which store failed.
    #[must_use]
    pub fn store(&self) -> &'static str {
        self.store
    }
}

/// The current wall-clock time. Production uses the system clock; tests use a
/// clock they can move.
///
/// Invariant: the only source of `now` for the use cases, so a test that owns the clock owns every
/// deadline. `manual_clock_moves_only_when_told_and_clones_share_it`
/// (`adapters/tests/memory_contract.rs`) proves the test clock.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// A change to one line of a cart: set it to `quantity` units of `inventory_id`,
/// or remove it (`line: None`).
///
/// Proved applied with set (not add) semantics by `apply_replaces_a_line_rather_than_adding_to_it`
/// (`test-support/src/contract/sessions.rs`) and `set_hold_moves_only_the_difference`
/// (`test-support/src/contract/inventory.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineChange {
    /// The line's product.
    pub product_id: ProductId,
    /// The new content of the line, or `None` to remove it.
    pub line: Option<(InventoryId, Quantity)>,
}

/// A hold the inventory ledger took, to be mirrored in the session store.
///
/// Invariant: versions increase with every change to a cart, and `taken`/`released` are the units
/// that moved. Proved by `receipt_versions_increase_with_every_change` and
/// `set_hold_reports_the_units_it_moved` (`test-support/src/contract/inventory.rs`),
/// `apply_ignores_older_versions_of_a_line` (`test-support/src/contract/sessions.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldReceipt {
    /// Increases with every change to the cart's ledger. The session store keeps
    /// the highest version seen per line and ignores older ones, so concurrent
    /// changes to one line cannot leave the session disagreeing with the ledger.
    pub version: u64,
    /// The cart's deadline after this change.
    pub expires_at: Timestamp,
    /// Units this change moved from `available` to `reserved`.
    pub taken: u32,
    /// Units this change moved from `reserved` back to `available`.
    pub released: u32,
}

/// What a merge did in the ledger (see [`Inventory::merge`]).
///
/// Invariant: nothing oversold, no unit held twice, every unit accounted for. Proved by
/// `merges_never_oversell_and_account_for_every_unit` (`domain/src/merge.rs`) and
/// `merge_moves_the_source_into_the_target_once` (`test-support/src/contract/inventory.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeReceipt {
    /// The target's version after the merge; the lines it changed carry it
    /// into the session store.
    pub version: u64,
    /// The target's deadline after the merge.
    pub expires_at: Timestamp,
    /// The target's lines after the merge, in product order.
    pub lines: Vec<Line>,
    /// The lines of `lines` the merge added or changed (all of them, on a
    /// replay, so a retry can bring the session store up to date).
    pub changed: Vec<Line>,
    /// Lines that got less than the strategy asked for.
    pub shortfalls: Vec<Shortfall>,
    /// Units taken from `available` by this call.
    pub taken: u64,
    /// Units this call gave back to `available`.
    pub released: u64,
    /// The same merge had already been made (a retry): nothing moved now.
    pub replayed: bool,
}

impl MergeReceipt {
    /// The receipt of a merge the ledger just made by `plan`, leaving the
    /// target at `version` and `expires_at`.
    #[must_use]
    pub fn made(plan: MergePlan, version: u64, expires_at: Timestamp) -> Self {
        Self {
            version,
            expires_at,
            taken: plan.taken(),
            released: plan.released(),
            lines: plan.lines,
            changed: plan.changed,
            shortfalls: plan.shortfalls,
            replayed: false,
        }
    }
}

/// Stock given back by releasing carts.
///
/// Invariant: a unit is counted in exactly one `Released`, whoever races to release it. Proved by
/// `release_returns_units_exactly_once` and
/// `releases_report_the_deadlines_of_the_carts_they_released`
/// (`test-support/src/contract/inventory.rs`), `racing_releases_of_one_cart_return_its_units_once`
/// and `three_sweepers_release_a_thousand_expired_carts_exactly_once`
/// (`adapters/tests/postgres_store.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Released {
    /// Carts whose ledger entries were removed.
    pub carts: u64,
    /// Units that went back to `available`.
    pub units: u64,
    /// The deadline each released cart had, so callers can tell how late the
    /// release came.
    pub deadlines: Vec<Timestamp>,
}

/// Sessions: the carts as shoppers see them, kept for a limited time.
///
/// Contract: `test-support/src/contract/sessions.rs` (the list in `session_store_contract!`), run
/// against every implementation by `adapters/tests/memory_contract.rs`,
/// `adapters/tests/redis_contract.rs` and `adapters/tests/faulty.rs`.
pub trait SessionStore: Send + Sync + 'static {
    /// Opens an empty session `id` that ends at `expires_at` (`now` lets stores
    /// that expire by themselves reclaim ended sessions).
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn create(
        &self,
        id: CartId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// The cart, or `None` when the session is unknown or has ended by `now`.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn load(&self, id: CartId, now: Timestamp) -> impl Future<Output = Result<Option<Cart>, PortError>> + Send;

    /// In one atomic step: if the session exists, apply `change` unless the line
    /// already carries a version at least `receipt.version`, move the session's
    /// deadline to `receipt.expires_at` if that is later (deadlines never move
    /// back, so changes applied out of order cannot shorten a session), and
    /// return the cart. `None` when the session does not exist (nothing is
    /// changed then).
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn apply(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Cart>, PortError>> + Send;

    /// [`SessionStore::apply`] for callers that do not need the cart back:
    /// `true` when the session exists (the change is then applied, or was
    /// already superseded), `false` when it does not. The default calls
    /// `apply`; a store that would otherwise read the whole cart back should
    /// override it, so that the cost of a change does not grow with the cart.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn apply_only(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, PortError>> + Send {
        async move { Ok(self.apply(id, change, receipt, now).await?.is_some()) }
    }

    /// Ends the session and removes everything kept for it. Returns whether it
    /// was live at `now`.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn close(&self, id: CartId, now: Timestamp) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Claims idempotency key `key` of `scope` for a request making
    /// `record.cart`, in one atomic step: if no live record has the key, keeps
    /// `record` (in flight) until `until` and answers [`KeyClaim::Claimed`];
    /// otherwise answers the record that has it.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn claim_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        record: &KeyRecord,
        until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<KeyClaim, PortError>> + Send;

    /// Settles a key this caller claimed for `cart`: with `Some(until)` its
    /// request succeeded, and the record is kept, done, until `until`; with
    /// `None` it failed, and the record is dropped so that a retry runs
    /// afresh. A key another cart's request has now is left alone.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn settle_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        cart: CartId,
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Stock, the ledger of holds per cart, and orders.
///
/// Contract: `test-support/src/contract/inventory.rs` (the list in `inventory_contract!`), run
/// against every implementation by `adapters/tests/memory_contract.rs`,
/// `adapters/tests/postgres_contract.rs` and `adapters/tests/faulty.rs`.
pub trait Inventory: Send + Sync + 'static {
    /// Records cart `id` in the ledger with its deadline, so holds can be taken
    /// for it. Doing it again for the same id changes nothing.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn open_cart(&self, id: CartId, deadline: Timestamp) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Sets the hold of `cart` for `change.product_id` to the given line in one
    /// atomic step, by the hold rule ([`crate::hold`], one implementation for
    /// every adapter): only the difference moves between `available` and
    /// `reserved`; a line moved to another item releases the old hold and takes
    /// the new one; removing a line releases its hold; a new line must fit
    /// `max_lines`. When `new_deadline` is given and later than the cart's
    /// deadline, the deadline moves to it. Holds of carts already past their
    /// deadline never block: they are released first when stock is short.
    ///
    /// Versions: every call on a cart open in the ledger takes the cart's next
    /// version, whether it is granted or refused (a refused call leaves a gap
    /// in the versions the receipts show); calls on carts not open take none.
    /// Proved on every adapter by
    /// `every_call_on_a_live_cart_takes_a_version_granted_or_refused`
    /// (`test-support/src/contract/inventory.rs`).
    ///
    /// # Errors
    /// - [`CartError::SessionNotFound`]: the cart is not open in the ledger or
    ///   its deadline has passed at `now`;
    /// - [`CartError::UnknownItem`]: the item does not exist;
    /// - [`CartError::InsufficientStock`]: not enough units free (nothing changed);
    /// - [`CartError::TooManyLines`]: a new line beyond `max_lines`;
    /// - [`CartError::Unavailable`]: the store cannot be reached.
    fn set_hold(
        &self,
        cart: CartId,
        change: &LineChange,
        new_deadline: Option<Timestamp>,
        max_lines: u16,
        now: Timestamp,
    ) -> impl Future<Output = Result<HoldReceipt, CartError>> + Send;

    /// Merges cart `call.from` into cart `call.into` in one step, by the
    /// merge rule ([`crate::merge`]): `from`'s lines move into `into` with
    /// the units they hold; only what merged lines need beyond that is taken,
    /// clamped to stock and `call.limits`; what is not kept goes back; `from`
    /// leaves the ledger. `into` takes its next version; `call.new_deadline`
    /// moves its deadline when later. The ledger remembers the merge: the same call
    /// again answers the same lines with `replayed` set and moves nothing.
    ///
    /// # Errors
    /// - [`CartError::SessionNotFound`]: either cart is not open in the
    ///   ledger or is past its deadline at `now` (it is released then), or
    ///   `from` was merged into another cart;
    /// - [`CartError::Unavailable`]: the store cannot be reached.
    fn merge(&self, call: &MergeCall) -> impl Future<Output = Result<MergeReceipt, CartError>> + Send;

    /// Removes the cart from the ledger and returns all its held units to
    /// `available`, in one transaction. Idempotent: only the call that removed
    /// the cart returns anything; later calls (and calls for unknown carts)
    /// return [`Released::default`].
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn release(&self, cart: CartId) -> impl Future<Output = Result<Released, PortError>> + Send;

    /// Turns all holds of `cart` into sales and records the order, in one
    /// transaction that races safely with [`Inventory::release`]. If the cart
    /// was already checked out, returns that order and `false`.
    ///
    /// # Errors
    /// - [`CartError::SessionNotFound`]: the cart is unknown, released, or past
    ///   its deadline at `now` (it is released then);
    /// - [`CartError::CartEmpty`]: the cart holds nothing;
    /// - [`CartError::Unavailable`]: the store cannot be reached.
    fn checkout(
        &self,
        cart: CartId,
        order_id: OrderId,
        now: Timestamp,
    ) -> impl Future<Output = Result<(Order, bool), CartError>> + Send;

    /// The order `cart` was checked out into, if it was: what tells a cart
    /// that was sold from one that was released, once the ledger no longer
    /// holds it. A read; changes nothing.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn order_of(&self, cart: CartId) -> impl Future<Output = Result<Option<Order>, PortError>> + Send;

    /// The cart `cart` was merged into, if it was merged away: with
    /// [`Inventory::order_of`], what tells a cart that left the ledger by a
    /// merge from one that was released. A read; changes nothing.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn merged_into(&self, cart: CartId) -> impl Future<Output = Result<Option<CartId>, PortError>> + Send;

    /// Releases up to `limit` carts whose deadline is at or before `now`. Safe to
    /// run on many instances at once: each cart is released by exactly one call.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn release_expired(&self, now: Timestamp, limit: u32) -> impl Future<Output = Result<Released, PortError>> + Send;

    /// The counts of `item`, or `None` if it does not exist.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn stock(&self, item: &InventoryId) -> impl Future<Output = Result<Option<StockLevel>, PortError>> + Send;

    /// Items with their counts, in `inventory_id` order (byte order of the
    /// ids): those after `after` (from the first when `None`), at most `limit`.
    /// A caller pages through every item by passing the last id it got as the
    /// next `after`; items created meanwhile after that id are seen, none is
    /// seen twice.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn list_stock(
        &self,
        after: Option<&InventoryId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(InventoryId, StockLevel)>, PortError>> + Send;

    /// The counts of each of `items` that exists, in `inventory_id` order,
    /// each item once; unknown ids are left out.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn stock_of(
        &self,
        items: &[InventoryId],
    ) -> impl Future<Output = Result<Vec<(InventoryId, StockLevel)>, PortError>> + Send;

    /// Units held by all open carts together (the sum of `reserved`).
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn reserved_total(&self) -> impl Future<Output = Result<i64, PortError>> + Send;

    /// Creates `item` or sets its `available` count; `reserved` and `sold` are
    /// left as they are.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn set_available(
        &self,
        item: &InventoryId,
        available: StockCount,
    ) -> impl Future<Output = Result<StockLevel, PortError>> + Send;
}

/// Why held units went back to `available`.
///
/// Proved to label each release by its cause by
/// `metrics_count_requests_and_every_kind_of_stock_movement` (`app/tests/api.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseCause {
    /// The shopper closed the cart.
    Abandon,
    /// An expiry notice from the session store.
    ExpiryEvent,
    /// The sweeper found the cart past its deadline.
    Sweeper,
    /// The session store no longer had the session the ledger still held for.
    SessionLost,
}

impl ReleaseCause {
    /// A short, stable name (for metric labels and logs).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseCause::Abandon => "abandon",
            ReleaseCause::ExpiryEvent => "expiry_event",
            ReleaseCause::Sweeper => "sweeper",
            ReleaseCause::SessionLost => "session_lost",
        }
    }
}

/// Where the use cases report what they did to stock, for metrics. Methods
/// are called after the change is committed; they must be cheap and cannot
/// fail. Every method does nothing by default.
///
/// Invariant: called only after a change is committed, once per change. Proved by
/// `metrics_count_requests_and_every_kind_of_stock_movement` (`app/tests/api.rs`).
pub trait StockEvents: Send + Sync + 'static {
    /// A line change took and released units.
    fn line_changed(&self, _taken: u32, _released: u32) {}
    /// Carts were released at `now` for `cause`.
    fn released(&self, _cause: ReleaseCause, _released: &Released, _now: Timestamp) {}
    /// A checkout sold `units`.
    fn sold(&self, _units: u64) {}
}

/// A [`StockEvents`] that ignores everything.
///
/// Keeps nothing and so has nothing to prove.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl StockEvents for NoEvents {}

/// Notices that sessions have ended (Redis keyspace `expired` events in
/// production). Notices may be late, duplicated or lost altogether: they are
/// the fast path only, and the ledger's deadline with the sweeper is the
/// guarantee. Implementations reconnect by themselves.
///
/// Proved by `the_expiry_listener_delivers_a_session_that_expires_and_ignores_other_prefixes`
/// (`adapters/tests/redis_store.rs`); that lost notices cost nothing but time, by
/// `a_release_on_an_expiry_event_that_fails_is_left_to_the_sweeper` (`adapters/tests/service.rs`)
/// and `without_the_listener_the_sweeper_returns_stock_within_one_interval_of_the_deadline`
/// (`app/tests/real.rs`).
pub trait ExpiryEvents: Send + 'static {
    /// Waits for the next ended session. Cancel-safe: dropping the future loses
    /// no notice that was already received.
    fn next_expired(&mut self) -> impl Future<Output = CartId> + Send;
}

impl fmt::Display for LineChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.line {
            Some((inv, q)) => write!(f, "{} := {} x {}", self.product_id, q, inv),
            None => write!(f, "{} removed", self.product_id),
        }
    }
}

/// Client quotas (see [`crate::quota`]): the counts behind them, in process
/// or shared by every instance. Every count carries the deadline of the cart
/// it counts and is ignored after it, so a cart that ends without anyone
/// telling the store (expiry, the sweeper) frees its client's quota at its
/// deadline all the same.
///
/// Contract: `test-support/src/contract/quotas.rs` (the list in `quotas_contract!`), run against
/// the in-memory store by `adapters/tests/memory_contract.rs` and the Redis one by
/// `adapters/tests/redis_contract.rs`.
pub trait Quotas: Send + Sync + 'static {
    /// In one atomic step: unless `client` opened `per_minute` carts this
    /// minute already, or has `open` carts open at `now`, counts `cart` as
    /// opened by it and open until `deadline`. A `None` limit is not checked.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn admit_cart(
        &self,
        client: &crate::quota::ClientKey,
        cart: CartId,
        deadline: Timestamp,
        now: Timestamp,
        per_minute: Option<u32>,
        open: Option<u32>,
    ) -> impl Future<Output = Result<crate::quota::CartAdmission, PortError>> + Send;

    /// In one atomic step: unless `client`'s other carts live at `now` hold
    /// more than `cap - units` of `item`, counts `units` of it for `cart`
    /// until `deadline` (0 stops counting them). With `moves` (sliding
    /// expiry) the cart's counts of other items and, if known as open, the
    /// cart itself get `deadline` as their new deadline;
    /// without, a cart known as open keeps its deadline and the count ends
    /// with it (`deadline` is then only the bound for a cart not known as
    /// open). Lowering a count is always admitted.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    #[allow(clippy::too_many_arguments)]
    fn admit_hold(
        &self,
        client: &crate::quota::ClientKey,
        cart: CartId,
        item: &InventoryId,
        units: u32,
        cap: u32,
        deadline: Timestamp,
        moves: bool,
        now: Timestamp,
    ) -> impl Future<Output = Result<crate::quota::HoldAdmission, PortError>> + Send;

    /// Stops counting `cart` (its open slot and its units) for whichever
    /// client it was counted for: the cart was checked out, abandoned,
    /// merged away or released. Unknown carts are ignored.
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn forget_cart(&self, cart: CartId, now: Timestamp) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Notes that `client` was refused by `limit` at `now`, for
    /// [`Quotas::standing`].
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn note_refusal(
        &self,
        client: &crate::quota::ClientKey,
        limit: crate::quota::LimitKind,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// The clients refused lately and the `top` clients holding most of `item`
    /// at `now` (none without an item).
    ///
    /// # Errors
    /// [`PortError`] when the store cannot be reached.
    fn standing(
        &self,
        item: Option<&InventoryId>,
        top: usize,
        now: Timestamp,
    ) -> impl Future<Output = Result<crate::quota::Standing, PortError>> + Send;
}
