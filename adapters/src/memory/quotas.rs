//! [`MemoryQuotas`]: the client quotas in process, for the embedded default
//! and tests. One mutex makes each call one atomic step, as the Redis
//! scripts are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::ports::{PortError, Quotas};
use domain::quota::{CartAdmission, ClientCount, ClientKey, HoldAdmission, LimitKind, RECENT_REFUSALS_SECS, Standing};
use domain::{CartId, InventoryId, Timestamp};

use super::lock;

/// The in-memory [`Quotas`]. Clones share the counts.
///
/// Invariant: the quotas contract (`adapters/tests/memory_contract.rs`).
#[derive(Clone, Debug, Default)]
pub struct MemoryQuotas {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per client: carts opened in the current minute, by minute number.
    opened: HashMap<ClientKey, (i64, u32)>,
    /// Per client: open carts and their deadlines.
    open: HashMap<ClientKey, HashMap<CartId, Timestamp>>,
    /// Per (client, item): units per cart, with the cart's deadline.
    held: HashMap<(ClientKey, InventoryId), HashMap<CartId, (u32, Timestamp)>>,
    /// Which client each cart is counted for.
    owner: HashMap<CartId, ClientKey>,
    /// Recent refusals: client and quota, with when.
    refused: HashMap<(ClientKey, LimitKind), Timestamp>,
}

impl MemoryQuotas {
    /// No counts.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

/// Seconds from `now` until `then`, at least 1.
fn secs_until(then: Timestamp, now: Timestamp) -> u32 {
    let ms = then.as_millis().saturating_sub(now.as_millis()).max(0);
    u32::try_from(ms.saturating_add(999) / 1000).unwrap_or(u32::MAX).max(1)
}

impl Quotas for MemoryQuotas {
    async fn admit_cart(
        &self,
        client: &ClientKey,
        cart: CartId,
        deadline: Timestamp,
        now: Timestamp,
        per_minute: Option<u32>,
        open: Option<u32>,
    ) -> Result<CartAdmission, PortError> {
        let mut inner = lock(&self.inner);
        let minute = now.as_millis().div_euclid(60_000);
        let opened = match inner.opened.get(client) {
            Some(&(m, n)) if m == minute => n,
            _ => 0,
        };
        if per_minute.is_some_and(|max| opened >= max) {
            let next = Timestamp::from_millis((minute + 1) * 60_000);
            return Ok(CartAdmission::Refused {
                limit: LimitKind::CartsPerMinute,
                retry_after_secs: secs_until(next, now),
            });
        }
        let carts = inner.open.entry(client.clone()).or_default();
        carts.retain(|_, d| *d > now);
        if let Some(max) = open
            && carts.len() >= max as usize
        {
            let first = carts.values().min().copied().unwrap_or(now);
            return Ok(CartAdmission::Refused {
                limit: LimitKind::OpenCarts,
                retry_after_secs: secs_until(first, now),
            });
        }
        carts.insert(cart, deadline);
        inner.opened.insert(client.clone(), (minute, opened + 1));
        inner.owner.insert(cart, client.clone());
        Ok(CartAdmission::Admitted)
    }

    async fn admit_hold(
        &self,
        client: &ClientKey,
        cart: CartId,
        item: &InventoryId,
        units: u32,
        cap: u32,
        deadline: Timestamp,
        moves: bool,
        now: Timestamp,
    ) -> Result<HoldAdmission, PortError> {
        let mut inner = lock(&self.inner);
        let known = inner.open.get(client).and_then(|open| open.get(&cart)).copied().filter(|d| *d > now);
        let deadline = match known {
            Some(d) if !moves => d,
            _ => deadline,
        };
        let entries = inner.held.entry((client.clone(), item.clone())).or_default();
        entries.retain(|_, (_, d)| *d > now);
        let previous = entries.get(&cart).map_or(0, |(u, _)| *u);
        let others: u64 = entries.iter().filter(|(c, _)| **c != cart).map(|(_, (u, _))| u64::from(*u)).sum();
        if units > previous && others + u64::from(units) > u64::from(cap) {
            let may_hold = u32::try_from(u64::from(cap).saturating_sub(others)).unwrap_or(u32::MAX);
            let first = entries.iter().filter(|(c, _)| **c != cart).map(|(_, (_, d))| *d).min().unwrap_or(now);
            return Ok(HoldAdmission::Refused {
                may_hold,
                retry_after_secs: secs_until(first, now),
                holding: previous,
            });
        }
        if units == 0 {
            entries.remove(&cart);
        } else {
            entries.insert(cart, (units, deadline));
        }
        if moves {
            // Sliding expiry: the whole cart lives on, so do its counts of
            // other items.
            for ((c, _), entries) in &mut inner.held {
                if c == client
                    && let Some((_, d)) = entries.get_mut(&cart)
                {
                    *d = (*d).max(deadline);
                }
            }
        }
        if let Some(open) = inner.open.get_mut(client)
            && let Some(d) = open.get_mut(&cart)
        {
            *d = (*d).max(deadline);
        }
        inner.owner.entry(cart).or_insert_with(|| client.clone());
        Ok(HoldAdmission::Admitted { previous })
    }

    async fn forget_cart(&self, cart: CartId, _now: Timestamp) -> Result<(), PortError> {
        let mut inner = lock(&self.inner);
        let Some(client) = inner.owner.remove(&cart) else { return Ok(()) };
        if let Some(open) = inner.open.get_mut(&client) {
            open.remove(&cart);
        }
        for ((c, _), entries) in &mut inner.held {
            if *c == client {
                entries.remove(&cart);
            }
        }
        Ok(())
    }

    async fn note_refusal(&self, client: &ClientKey, limit: LimitKind, now: Timestamp) -> Result<(), PortError> {
        lock(&self.inner).refused.insert((client.clone(), limit), now);
        Ok(())
    }

    async fn standing(&self, item: Option<&InventoryId>, top: usize, now: Timestamp) -> Result<Standing, PortError> {
        let mut inner = lock(&self.inner);
        let since = now.as_millis() - i64::from(RECENT_REFUSALS_SECS) * 1000;
        inner.refused.retain(|_, at| at.as_millis() > since);
        let mut refused: Vec<_> = inner.refused.iter().map(|(k, at)| (k.clone(), *at)).collect();
        refused.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.0.as_str().cmp(b.0.0.as_str())));
        let mut top_holders: Vec<ClientCount> = match item {
            None => Vec::new(),
            Some(item) => inner
                .held
                .iter()
                .filter(|((_, i), _)| i == item)
                .map(|((client, _), entries)| ClientCount {
                    client: client.clone(),
                    count: entries.values().filter(|(_, d)| *d > now).map(|(u, _)| u64::from(*u)).sum(),
                })
                .filter(|c| c.count > 0)
                .collect(),
        };
        top_holders.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.client.cmp(&b.client)));
        top_holders.truncate(top);
        Ok(Standing { refused: refused.into_iter().map(|(k, _)| k).collect(), top_holders })
    }
}
