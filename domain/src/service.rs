//! The use cases, written against the ports.
//!
//! Order of effects is what keeps the two stores in agreement: a hold is taken
//! in the [`Inventory`] ledger before the [`SessionStore`] shows the line, and a
//! session is closed before its holds are released. When a step fails, what is
//! left is a hold the session does not show (given back by the ledger's
//! deadline and the sweeper) or, when a line was lowered or removed, a session
//! line larger than its hold until the line is set again; checkout sells what
//! the ledger holds, never what the session shows. Nothing is oversold and
//! nothing stays held past the cart's deadline.

use crate::cart::{Cart, Order, StockLevel};
use crate::error::CartError;
use crate::ids::{CartId, InventoryId, OrderId, ProductId};
use crate::policy::{ExpiryPolicy, Limits};
use std::sync::Arc;

use crate::idempotency::{IN_FLIGHT, IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
use crate::merge::{MergeCall, MergeLimits, MergeStrategy, Shortfall};
use crate::ports::{
    Clock, HoldReceipt, Inventory, LineChange, NoEvents, PortError, ReleaseCause, Released, SessionStore, StockEvents,
};
use crate::quantity::{Quantity, QuantityError, StockCount};
use crate::time::Timestamp;

/// Which session a change applies to.
///
/// Proved by `existing_or_new_makes_a_new_session_for_an_unknown_id`,
/// `existing_or_new_replaces_an_expired_cart_and_frees_its_holds` and
/// `existing_target_of_an_unknown_id_is_session_not_found` (`adapters/tests/service.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A new session.
    New,
    /// This session; [`CartError::SessionNotFound`] if it does not exist.
    Existing(CartId),
    /// This session, or a new one if it does not exist (the tutorial's routes).
    ExistingOrNew(CartId),
}

/// The outcome of setting a line.
///
/// Invariant: `cart` is what the session store holds after the change, and its lines equal the
/// ledger's holds. Proved by the property tests of `adapters/tests/props.rs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetLineResult {
    /// The cart after the change.
    pub cart: Cart,
    /// Whether a new session was created for it.
    pub created: bool,
}

/// The outcome of [`CartService::add_line`]: the line is set, in this session.
///
/// Proved to report the same change as [`SetLineResult`] by
/// `add_line_makes_the_same_change_as_set_line_without_the_cart` (`adapters/tests/service.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineAdded {
    /// The session the line is in.
    pub id: CartId,
    /// Whether a new session was created for it.
    pub created: bool,
}

/// The outcome of a checkout.
///
/// Invariant: `created` is `true` for exactly one call per cart. Proved by
/// `checkout_closes_the_session_and_a_retry_returns_the_same_order` and
/// `a_checkout_that_times_out_after_the_commit_is_not_sold_twice` (`adapters/tests/service.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutResult {
    /// The order.
    pub order: Order,
    /// `false` when this is a retry that found the order made earlier.
    pub created: bool,
}

/// The result of merging one cart into another.
///
/// Proved by `adapters/tests/merge.rs` on both backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeResult {
    /// The merged cart (the target).
    pub cart: Cart,
    /// Lines that got less than the strategy asked for.
    pub shortfalls: Vec<Shortfall>,
    /// `true` when this is a retry of a merge made earlier: nothing moved now.
    pub replayed: bool,
}

/// A request that may be a retry: its idempotency key, and what it asks for
/// (a retry must ask for the same).
#[derive(Clone, Copy, Debug)]
pub struct Once<'a> {
    /// The client's key.
    pub key: &'a IdempotencyKey,
    /// The request's content, as the caller reduces it (route and body).
    pub fingerprint: &'a str,
}

/// An answer, and whether it replays the one an earlier request with the
/// same idempotency key got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed<T> {
    /// The answer.
    pub value: T,
    /// `true` when nothing was done now: an earlier request did it.
    pub replayed: bool,
}

/// What claiming an idempotency key came to.
enum Claim {
    /// The key is this request's: make this cart.
    Fresh(CartId),
    /// An earlier request with the key made this cart.
    Replay(CartId),
}

/// How a change reaches the session store, and what comes back from it:
/// `None` when the session does not exist.
trait ApplyStep<S: SessionStore> {
    type Out: Send;

    fn apply(
        sessions: &S,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Self::Out>, PortError>> + Send;
}

/// [`SessionStore::apply`]: the cart after the change.
struct WithCart;

impl<S: SessionStore> ApplyStep<S> for WithCart {
    type Out = Cart;

    fn apply(
        sessions: &S,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Cart>, PortError>> + Send {
        sessions.apply(id, change, receipt, now)
    }
}

/// [`SessionStore::apply_only`]: nothing read back but the session's id.
struct WithoutCart;

impl<S: SessionStore> ApplyStep<S> for WithoutCart {
    type Out = CartId;

    async fn apply(
        sessions: &S,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> Result<Option<CartId>, PortError> {
        Ok(sessions.apply_only(id, change, receipt, now).await?.then_some(id))
    }
}

/// The cart use cases over a session store `S`, an inventory `I` and a clock `C`.
///
/// Invariants (those of the design): conservation, no oversell, exactly-once release, atomic
/// checkout, and agreement between the session store and the ledger after every success; after a
/// failure, nothing the sweeper does not repair. Proved over the in-memory adapters by
/// `fixed_expiry_keeps_the_invariants` and `sliding_expiry_keeps_the_invariants`
/// (`adapters/tests/props.rs`) and the tests of `adapters/tests/service.rs` (with failing stores in
/// its `outages` module), and over Redis and PostgreSQL by `app/tests/real.rs`.
pub struct CartService<S, I, C> {
    sessions: S,
    inventory: I,
    clock: C,
    policy: ExpiryPolicy,
    limits: Limits,
    events: Arc<dyn StockEvents>,
}

impl<S: SessionStore, I: Inventory, C: Clock> CartService<S, I, C> {
    /// Assembles the service.
    pub fn new(sessions: S, inventory: I, clock: C, policy: ExpiryPolicy, limits: Limits) -> Self {
        Self { sessions, inventory, clock, policy, limits, events: Arc::new(NoEvents) }
    }

    /// Reports what happens to stock to `events` (metrics).
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn StockEvents>) -> Self {
        self.events = events;
        self
    }

    /// The session store.
    pub fn sessions(&self) -> &S {
        &self.sessions
    }

    /// The inventory.
    pub fn inventory(&self) -> &I {
        &self.inventory
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The expiry policy.
    pub fn policy(&self) -> ExpiryPolicy {
        self.policy
    }

    /// The size limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Opens a new, empty cart.
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn create_cart(&self) -> Result<Cart, CartError> {
        self.create_cart_with(CartId::random()).await
    }

    /// [`CartService::create_cart`] naming the new cart `id`, which must be a
    /// fresh random id ([`CartId::random`]): the caller may then count the
    /// cart before it exists (the client quotas do).
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn create_cart_as(&self, id: CartId) -> Result<Cart, CartError> {
        self.create_cart_with(id).await
    }

    /// [`CartService::set_line`] on a new cart named `id` (a fresh random
    /// id, see [`CartService::create_cart_as`]).
    ///
    /// # Errors
    /// As [`CartService::set_line`].
    pub async fn set_line_new(
        &self,
        id: CartId,
        product: ProductId,
        item: InventoryId,
        quantity: u32,
    ) -> Result<SetLineResult, CartError> {
        let line = self.line_of(item, quantity)?;
        let (cart, created) = self.change_new::<WithCart>(id, &LineChange { product_id: product, line }).await?;
        Ok(SetLineResult { cart, created })
    }

    /// [`CartService::add_line`] on a new cart named `id` (a fresh random
    /// id, see [`CartService::create_cart_as`]).
    ///
    /// # Errors
    /// As [`CartService::add_line`].
    pub async fn add_line_new(
        &self,
        id: CartId,
        product: ProductId,
        item: InventoryId,
        quantity: u32,
    ) -> Result<LineAdded, CartError> {
        let line = self.line_of(item, quantity)?;
        let (id, created) = self.change_new::<WithoutCart>(id, &LineChange { product_id: product, line }).await?;
        Ok(LineAdded { id, created })
    }

    /// Opens cart `id` (a fresh random id).
    async fn create_cart_with(&self, id: CartId) -> Result<Cart, CartError> {
        let now = self.clock.now();
        let expires_at = self.policy.initial_deadline(now);
        // Ledger first: a ledger entry without a session is empty and expires;
        // a session without a ledger entry could not take holds.
        self.inventory.open_cart(id, expires_at).await?;
        self.sessions.create(id, expires_at, now).await?;
        Ok(Cart { id, expires_at, lines: Vec::new() })
    }

    /// The cart `id`.
    ///
    /// # Errors
    /// [`CartError::SessionNotFound`], [`CartError::Unavailable`].
    pub async fn get_cart(&self, id: CartId) -> Result<Cart, CartError> {
        self.sessions.load(id, self.clock.now()).await?.ok_or(CartError::SessionNotFound)
    }

    /// Sets the line for `product` to `quantity` units of `item` (0 removes it),
    /// holding or releasing the difference.
    ///
    /// # Errors
    /// [`CartError::QuantityOverLimit`], [`CartError::SessionNotFound`] (only for
    /// [`Target::Existing`]), [`CartError::InsufficientStock`],
    /// [`CartError::UnknownItem`], [`CartError::TooManyLines`],
    /// [`CartError::Unavailable`].
    pub async fn set_line(
        &self,
        target: Target,
        product: ProductId,
        item: InventoryId,
        quantity: u32,
    ) -> Result<SetLineResult, CartError> {
        let line = self.line_of(item, quantity)?;
        let (cart, created) = self.change::<WithCart>(target, LineChange { product_id: product, line }).await?;
        Ok(SetLineResult { cart, created })
    }

    /// [`CartService::set_line`] for callers that need only the session id
    /// (the tutorial's `add-to-cart`): the same change, without reading the
    /// cart back from the session store, so its cost does not grow with the
    /// cart.
    ///
    /// # Errors
    /// As [`CartService::set_line`].
    pub async fn add_line(
        &self,
        target: Target,
        product: ProductId,
        item: InventoryId,
        quantity: u32,
    ) -> Result<LineAdded, CartError> {
        let line = self.line_of(item, quantity)?;
        let (id, created) = self.change::<WithoutCart>(target, LineChange { product_id: product, line }).await?;
        Ok(LineAdded { id, created })
    }

    /// [`CartService::create_cart`], safe to retry: the same key (with the
    /// same request) answers the cart the first request made, while its
    /// first deadline lasts (see [`crate::idempotency`]).
    ///
    /// # Errors
    /// As [`CartService::create_cart`], and [`CartError::IdempotencyKeyReused`],
    /// [`CartError::IdempotencyKeyInUse`]; a replay whose cart has ended since
    /// is [`CartError::SessionNotFound`].
    pub async fn create_cart_once(&self, once: &Once<'_>) -> Result<Replayed<Cart>, CartError> {
        self.create_cart_once_as(once, CartId::random()).await
    }

    /// [`CartService::create_cart_once`], naming the cart it makes if the key
    /// is fresh `id` (a fresh random id, which the caller may count before
    /// the cart exists, as the client quotas do).
    ///
    /// # Errors
    /// As [`CartService::create_cart_once`].
    pub async fn create_cart_once_as(&self, once: &Once<'_>, id: CartId) -> Result<Replayed<Cart>, CartError> {
        let now = self.clock.now();
        match self.claim(KeyScope::CreateCart, once, id, now).await? {
            Claim::Replay(id) => Ok(Replayed { value: self.get_cart(id).await?, replayed: true }),
            Claim::Fresh(id) => {
                let result = self.create_cart_with(id).await;
                let until = result.as_ref().ok().map(|cart| cart.expires_at);
                self.settle(KeyScope::CreateCart, once, id, until).await;
                Ok(Replayed { value: result?, replayed: false })
            }
        }
    }

    /// [`CartService::add_line`] on a new cart, safe to retry: the same key
    /// (with the same line) answers the cart the first request made and adds
    /// nothing, while that cart's first deadline lasts.
    ///
    /// # Errors
    /// As [`CartService::add_line`], and [`CartError::IdempotencyKeyReused`],
    /// [`CartError::IdempotencyKeyInUse`].
    pub async fn add_line_once(
        &self,
        product: ProductId,
        item: InventoryId,
        quantity: u32,
        once: &Once<'_>,
    ) -> Result<Replayed<LineAdded>, CartError> {
        self.add_line_once_as(product, item, quantity, once, CartId::random()).await
    }

    /// [`CartService::add_line_once`], naming the cart it makes if the key is
    /// fresh `id` (a fresh random id).
    ///
    /// # Errors
    /// As [`CartService::add_line_once`].
    pub async fn add_line_once_as(
        &self,
        product: ProductId,
        item: InventoryId,
        quantity: u32,
        once: &Once<'_>,
        id: CartId,
    ) -> Result<Replayed<LineAdded>, CartError> {
        let line = self.line_of(item, quantity)?;
        let now = self.clock.now();
        match self.claim(KeyScope::AddToCart, once, id, now).await? {
            Claim::Replay(id) => Ok(Replayed { value: LineAdded { id, created: false }, replayed: true }),
            Claim::Fresh(id) => {
                let change = LineChange { product_id: product, line };
                let result = self.change_new::<WithoutCart>(id, &change).await;
                let until = result.is_ok().then(|| self.policy.initial_deadline(now));
                self.settle(KeyScope::AddToCart, once, id, until).await;
                let (id, created) = result?;
                Ok(Replayed { value: LineAdded { id, created }, replayed: false })
            }
        }
    }

    /// Claims `once`'s key for a fresh cart id, or says which cart an
    /// earlier request with it made.
    async fn claim(&self, scope: KeyScope, once: &Once<'_>, id: CartId, now: Timestamp) -> Result<Claim, CartError> {
        let record = KeyRecord { cart: id, fingerprint: once.fingerprint.to_owned(), done: false };
        match self.sessions.claim_key(scope, once.key, &record, now.plus(IN_FLIGHT), now).await? {
            KeyClaim::Claimed => Ok(Claim::Fresh(id)),
            KeyClaim::Taken(held) if held.fingerprint != once.fingerprint => Err(CartError::IdempotencyKeyReused),
            KeyClaim::Taken(held) if !held.done => Err(CartError::IdempotencyKeyInUse),
            KeyClaim::Taken(held) => Ok(Claim::Replay(held.cart)),
        }
    }

    /// Marks `once`'s key done until `until`, or drops it (`None`: the request
    /// failed, so a retry runs afresh). Best effort: if the store cannot be
    /// reached, the claim ends by itself after [`IN_FLIGHT`], and the
    /// request's own answer stands.
    async fn settle(&self, scope: KeyScope, once: &Once<'_>, id: CartId, until: Option<Timestamp>) {
        let _ = self.sessions.settle_key(scope, once.key, id, until, self.clock.now()).await;
    }

    /// The line `quantity` units of `item` make: `None` for 0 (remove it).
    fn line_of(&self, item: InventoryId, quantity: u32) -> Result<Option<(InventoryId, Quantity)>, CartError> {
        match Quantity::new(quantity) {
            Ok(q) if q.get() > self.limits.max_quantity() => {
                Err(CartError::QuantityOverLimit { max: self.limits.max_quantity() })
            }
            Ok(q) => Ok(Some((item, q))),
            Err(QuantityError::Zero) => Ok(None),
            Err(QuantityError::TooLarge { .. }) => {
                Err(CartError::QuantityOverLimit { max: self.limits.max_quantity() })
            }
        }
    }

    /// Removes the line for `product`, releasing its hold.
    ///
    /// # Errors
    /// [`CartError::SessionNotFound`], [`CartError::Unavailable`].
    pub async fn remove_line(&self, id: CartId, product: ProductId) -> Result<Cart, CartError> {
        let change = LineChange { product_id: product, line: None };
        Ok(self.change::<WithCart>(Target::Existing(id), change).await?.0)
    }

    /// What the session step `A` gave back, and whether the session is new.
    async fn change<A: ApplyStep<S>>(&self, target: Target, change: LineChange) -> Result<(A::Out, bool), CartError> {
        match target {
            Target::Existing(id) => Ok((self.change_existing::<A>(id, &change).await?, false)),
            Target::ExistingOrNew(id) => match self.change_existing::<A>(id, &change).await {
                Err(CartError::SessionNotFound) => self.change_new::<A>(CartId::random(), &change).await,
                other => Ok((other?, false)),
            },
            Target::New => self.change_new::<A>(CartId::random(), &change).await,
        }
    }

    async fn change_new<A: ApplyStep<S>>(&self, id: CartId, change: &LineChange) -> Result<(A::Out, bool), CartError> {
        let id = self.create_cart_with(id).await?.id;
        match self.change_existing::<A>(id, change).await {
            Ok(out) => Ok((out, true)),
            Err(e) => {
                // The client never learns this cart's id: do not leave it behind.
                // Best effort; its deadline removes it otherwise. It holds
                // nothing, since its first change failed.
                let _ = self.sessions.close(id, self.clock.now()).await;
                let _ = self.inventory.release(id).await;
                Err(e)
            }
        }
    }

    /// The change on an existing session: the ledger's hold, then the session.
    async fn change_existing<A: ApplyStep<S>>(&self, id: CartId, change: &LineChange) -> Result<A::Out, CartError> {
        let now = self.clock.now();
        let deadline = self.policy.deadline_on_change(now);
        let receipt = self.inventory.set_hold(id, change, deadline, self.limits.max_lines(), now).await?;
        self.events.line_changed(receipt.taken, receipt.released);
        match A::apply(&self.sessions, id, change, receipt, now).await? {
            Some(out) => Ok(out),
            None => {
                // The ledger knew the cart but the session is gone (expired at
                // the same moment, or the session store lost it): its holds
                // must not outlive it.
                let released = self.inventory.release(id).await?;
                self.events.released(ReleaseCause::SessionLost, &released, now);
                Err(CartError::SessionNotFound)
            }
        }
    }

    /// Closes the cart and releases all its holds.
    ///
    /// Against a checkout of the same cart, exactly one of the two succeeds:
    /// the one the ledger saw first (a cart that became an order was not
    /// abandoned; a cart whose session this call closed is not sold).
    ///
    /// # Errors
    /// [`CartError::SessionNotFound`] when no such open cart existed, or a
    /// racing checkout turned it into an order first;
    /// [`CartError::Unavailable`].
    pub async fn abandon(&self, id: CartId) -> Result<Released, CartError> {
        let now = self.clock.now();
        let existed = self.sessions.close(id, now).await?;
        // Released even when the session was already gone: a retry after a
        // failure between the two steps must still give the stock back.
        let released = self.inventory.release(id).await?;
        self.events.released(ReleaseCause::Abandon, &released, now);
        if !existed {
            return Err(CartError::SessionNotFound);
        }
        // The ledger decides between an abandon and a checkout or merge
        // racing it: if the cart left the ledger as an order, or merged into
        // another cart, that request won and this abandon must not also
        // report success.
        if released.carts == 0
            && (self.inventory.order_of(id).await?.is_some() || self.inventory.merged_into(id).await?.is_some())
        {
            return Err(CartError::SessionNotFound);
        }
        Ok(released)
    }

    /// Merges cart `from` into cart `into` (the shopper's current cart): by
    /// the merge rule ([`crate::merge`]), in one step of the ledger, which
    /// then closes `from`; the lines the merge changed are written to
    /// `into`'s session and `from`'s session is closed. Retrying the same
    /// merge returns the merged cart and moves nothing. Under sliding expiry
    /// `into`'s deadline moves as for any change; under fixed expiry it stays.
    ///
    /// # Errors
    /// [`CartError::MergeIntoItself`]; [`CartError::SessionNotFound`] when
    /// either cart is not open (or `from` was merged into another cart, or
    /// checked out, or expired: then `into` is unchanged);
    /// [`CartError::Unavailable`].
    pub async fn merge(&self, into: CartId, from: CartId, strategy: MergeStrategy) -> Result<MergeResult, CartError> {
        if into == from {
            return Err(CartError::MergeIntoItself);
        }
        let now = self.clock.now();
        let limits = MergeLimits { max_quantity: self.limits.max_quantity(), max_lines: self.limits.max_lines() };
        let deadline = self.policy.deadline_on_change(now);
        let call = MergeCall { from, into, strategy, limits, new_deadline: deadline, now };
        let receipt = self.inventory.merge(&call).await?;
        if !receipt.replayed {
            let units = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
            self.events.line_changed(units(receipt.taken), units(receipt.released));
        }
        let hold = HoldReceipt { version: receipt.version, expires_at: receipt.expires_at, taken: 0, released: 0 };
        let mut cart = None;
        for line in &receipt.changed {
            let change = LineChange {
                product_id: line.product_id.clone(),
                line: Some((line.inventory_id.clone(), line.quantity)),
            };
            cart = self.sessions.apply(into, &change, hold, now).await?;
            if cart.is_none() {
                break;
            }
        }
        let cart = match (cart, receipt.changed.is_empty()) {
            (Some(cart), _) => Some(cart),
            (None, true) => self.sessions.load(into, now).await?,
            (None, false) => None,
        };
        let Some(cart) = cart else {
            // The ledger merged into a cart whose session is gone: its holds
            // must not outlive it.
            let released = self.inventory.release(into).await?;
            self.events.released(ReleaseCause::SessionLost, &released, now);
            return Err(CartError::SessionNotFound);
        };
        // The source's session ends with it; closing twice is harmless, and a
        // failure here leaves a session whose cart the ledger no longer holds
        // (a change to it is refused; it ends with its TTL).
        self.sessions.close(from, now).await?;
        Ok(MergeResult { cart, shortfalls: receipt.shortfalls, replayed: receipt.replayed })
    }

    /// Releases the holds of a cart whose session has ended (expiry event).
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn release_cart(&self, id: CartId) -> Result<Released, CartError> {
        let released = self.inventory.release(id).await?;
        self.events.released(ReleaseCause::ExpiryEvent, &released, self.clock.now());
        Ok(released)
    }

    /// Turns the cart's holds into an order and closes the session. A retry
    /// returns the same order with `created: false`.
    ///
    /// # Errors
    /// [`CartError::SessionNotFound`], [`CartError::CartEmpty`],
    /// [`CartError::Unavailable`].
    pub async fn checkout(&self, id: CartId) -> Result<CheckoutResult, CartError> {
        let now = self.clock.now();
        if self.sessions.load(id, now).await?.is_none() {
            // The shopper's session is gone (expired, closed, or lost by the
            // session store) while the ledger may still hold its stock: give
            // that back rather than sell a cart nobody can see. A retry of a
            // checkout that succeeded finds its order below all the same.
            let released = self.inventory.release(id).await?;
            self.events.released(ReleaseCause::SessionLost, &released, now);
        }
        let (order, created) = self.inventory.checkout(id, OrderId::random(), now).await?;
        if created {
            self.events.sold(order.lines.iter().map(|l| u64::from(l.quantity.get())).sum());
        }
        // Closing twice is harmless, and a failure here leaves a session whose
        // checkout retry answers with the same order.
        self.sessions.close(id, now).await?;
        Ok(CheckoutResult { order, created })
    }

    /// The counts of `item`.
    ///
    /// # Errors
    /// [`CartError::UnknownItem`], [`CartError::Unavailable`].
    pub async fn stock(&self, item: &InventoryId) -> Result<StockLevel, CartError> {
        self.inventory.stock(item).await?.ok_or(CartError::UnknownItem)
    }

    /// Up to `limit` items with their counts, in `inventory_id` order, after
    /// `after` (see [`Inventory::list_stock`]).
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn list_stock(
        &self,
        after: Option<&InventoryId>,
        limit: u32,
    ) -> Result<Vec<(InventoryId, StockLevel)>, CartError> {
        Ok(self.inventory.list_stock(after, limit).await?)
    }

    /// The counts of those of `items` that exist, in `inventory_id` order.
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn stock_of(&self, items: &[InventoryId]) -> Result<Vec<(InventoryId, StockLevel)>, CartError> {
        Ok(self.inventory.stock_of(items).await?)
    }

    /// Creates `item` or sets its available count.
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn set_stock(&self, item: &InventoryId, available: StockCount) -> Result<StockLevel, CartError> {
        Ok(self.inventory.set_available(item, available).await?)
    }

    /// Releases up to `limit` carts past their deadline (one sweep batch).
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn release_expired(&self, limit: u32) -> Result<Released, CartError> {
        let now = self.clock.now();
        let released = self.inventory.release_expired(now, limit).await?;
        self.events.released(ReleaseCause::Sweeper, &released, now);
        Ok(released)
    }

    /// Units held by all open carts together.
    ///
    /// # Errors
    /// [`CartError::Unavailable`].
    pub async fn reserved_total(&self) -> Result<i64, CartError> {
        Ok(self.inventory.reserved_total().await?)
    }
}
