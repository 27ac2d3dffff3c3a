//! Sessions in memory, expiring like Redis keys: an ended session is invisible
//! at once and its memory is reclaimed by later calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use domain::idempotency::{IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
use domain::ports::{HoldReceipt, LineChange, PortError, SessionStore};
use domain::{Cart, CartId, InventoryId, Line, ProductId, Quantity, Timestamp};

use super::lock;

/// Most expired sessions reclaimed by one call, so no call pays for a backlog.
const PURGE_BATCH: usize = 256;

#[derive(Debug)]
struct Slot {
    version: u64,
    /// `None` is a tombstone: the line was removed at `version`, and older
    /// changes arriving late must not bring it back.
    line: Option<(InventoryId, Quantity)>,
}

#[derive(Debug)]
struct Session {
    expires_at: Timestamp,
    slots: BTreeMap<ProductId, Slot>,
}

impl Session {
    fn to_cart(&self, id: CartId) -> Cart {
        let lines = self
            .slots
            .iter()
            .filter_map(|(p, s)| {
                s.line.as_ref().map(|(inv, q)| Line { product_id: p.clone(), inventory_id: inv.clone(), quantity: *q })
            })
            .collect();
        Cart { id, expires_at: self.expires_at, lines }
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<CartId, Session>,
    by_deadline: BTreeSet<(Timestamp, CartId)>,
    /// Idempotency keys: the record and when it ends. Ended ones are
    /// replaced when claimed again, and few enough not to need a purge.
    keys: HashMap<(KeyScope, IdempotencyKey), (KeyRecord, Timestamp)>,
}

impl Inner {
    /// Drops a bounded number of sessions that ended by `now`.
    fn purge(&mut self, now: Timestamp) {
        for _ in 0..PURGE_BATCH {
            match self.by_deadline.first() {
                Some(&(deadline, id)) if deadline <= now => {
                    self.by_deadline.pop_first();
                    self.sessions.remove(&id);
                }
                _ => break,
            }
        }
    }

    /// The live session `id` at `now`.
    fn live(&mut self, id: CartId, now: Timestamp) -> Option<&mut Session> {
        self.sessions.get_mut(&id).filter(|s| s.expires_at > now)
    }
}

/// The in-memory [`SessionStore`].
///
/// Invariant: the session-store contract, like Redis: proved by `adapters/tests/memory_contract.rs`
/// (module `session_store`), plus bounded reclaiming of ended sessions by
/// `ended_sessions_are_reclaimed_by_later_calls`,
/// `an_ended_session_left_by_a_bounded_purge_is_still_invisible` and
/// `a_moved_deadline_is_honoured_when_reclaiming` (module `memory_only`).
#[derive(Debug, Default)]
pub struct MemorySessions {
    inner: Mutex<Inner>,
}

impl MemorySessions {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sessions still kept in memory (live or not yet reclaimed).
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.inner).sessions.len()
    }

    /// Whether no session is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessions {
    async fn create(&self, id: CartId, expires_at: Timestamp, now: Timestamp) -> Result<(), PortError> {
        let mut inner = lock(&self.inner);
        inner.purge(now);
        if let Some(old) = inner.sessions.insert(id, Session { expires_at, slots: BTreeMap::new() }) {
            inner.by_deadline.remove(&(old.expires_at, id));
        }
        inner.by_deadline.insert((expires_at, id));
        Ok(())
    }

    async fn load(&self, id: CartId, now: Timestamp) -> Result<Option<Cart>, PortError> {
        let mut inner = lock(&self.inner);
        inner.purge(now);
        Ok(inner.live(id, now).map(|s| s.to_cart(id)))
    }

    async fn apply(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> Result<Option<Cart>, PortError> {
        let mut inner = lock(&self.inner);
        inner.purge(now);
        let Some(session) = inner.live(id, now) else { return Ok(None) };
        let newer_seen = session.slots.get(&change.product_id).is_some_and(|s| s.version >= receipt.version);
        if !newer_seen {
            session
                .slots
                .insert(change.product_id.clone(), Slot { version: receipt.version, line: change.line.clone() });
        }
        let old_deadline = session.expires_at;
        session.expires_at = old_deadline.max(receipt.expires_at);
        let new_deadline = session.expires_at;
        let cart = session.to_cart(id);
        if old_deadline != new_deadline {
            inner.by_deadline.remove(&(old_deadline, id));
            inner.by_deadline.insert((new_deadline, id));
        }
        Ok(Some(cart))
    }

    async fn close(&self, id: CartId, now: Timestamp) -> Result<bool, PortError> {
        let mut inner = lock(&self.inner);
        inner.purge(now);
        match inner.sessions.remove(&id) {
            Some(s) => {
                inner.by_deadline.remove(&(s.expires_at, id));
                Ok(s.expires_at > now)
            }
            None => Ok(false),
        }
    }

    async fn claim_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        record: &KeyRecord,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<KeyClaim, PortError> {
        let mut inner = lock(&self.inner);
        let slot = (scope, key.clone());
        if let Some((held, ends)) = inner.keys.get(&slot)
            && *ends > now
        {
            return Ok(KeyClaim::Taken(held.clone()));
        }
        inner.keys.insert(slot, (record.clone(), until));
        Ok(KeyClaim::Claimed)
    }

    async fn settle_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        cart: CartId,
        until: Option<Timestamp>,
        _now: Timestamp,
    ) -> Result<(), PortError> {
        let mut inner = lock(&self.inner);
        let slot = (scope, key.clone());
        if inner.keys.get(&slot).is_some_and(|(held, _)| held.cart == cart) {
            match until {
                Some(until) => {
                    let entry = inner.keys.get_mut(&slot).expect("checked above");
                    entry.0.done = true;
                    entry.1 = until;
                }
                None => {
                    inner.keys.remove(&slot);
                }
            }
        }
        Ok(())
    }
}
