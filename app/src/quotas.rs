//! Client quotas at the edge (issue 14): who the client is, and the checks the
//! handlers run before a change, on whichever [`Quotas`] store the backend
//! has (in process, or Redis across instances).
//!
//! **Who is a client.** The peer address of the connection. Only when that
//! peer is a configured trusted proxy are `X-Forwarded-For` / `Forwarded`
//! read, and then the client is the right-most address in them that is not
//! itself a trusted proxy (the left-most entries are whatever the client
//! wrote, so they prove nothing). IPv6 addresses are grouped by a prefix
//! (a host usually has a whole /64 to pick addresses from).
//!
//! **When the store fails.** Per quota kind, `open` lets the request through
//! unchecked (logged, counted in `cartd_limit_unchecked_total`) and `closed`
//! answers 503 with `Retry-After`; holds default to closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::ports::{PortError, Quotas};
use domain::quota::{CartAdmission, ClientKey, HoldAdmission, LimitKind, QuotaPolicy, Standing};
use domain::{CartError, CartId, InventoryId, StockLevel, Timestamp};
use futures_util::future::BoxFuture;
use http::HeaderMap;
use ipnet::IpNet;

use crate::http::error::ApiError;
use crate::metrics::Metrics;
use crate::settings::{FailMode, QuotaSettings};

/// How long an item's stock is taken as known for the share quota: the
/// total (available + reserved + sold) moves only with restocks, and reading
/// it on every hold would add a PostgreSQL round trip to each. A restock on
/// another instance changes the cap here within this long (on this instance,
/// at once: `PUT /v1/inventory/{id}` forgets the item).
const STOCK_FRESH: Duration = Duration::from_secs(60);

/// Most items whose stock is kept; past it the cache starts again empty
/// (a catalogue larger than this pays a read per item per `STOCK_FRESH`).
const STOCK_CACHE_MAX: usize = 100_000;

/// A [`Quotas`] store behind a trait object, so the state need not name the
/// adapter (its futures are boxed: one allocation per check).
pub trait QuotaStore: Send + Sync + 'static {
    /// [`Quotas::admit_cart`].
    fn admit_cart<'a>(
        &'a self,
        client: &'a ClientKey,
        cart: CartId,
        deadline: Timestamp,
        now: Timestamp,
        per_minute: Option<u32>,
        open: Option<u32>,
    ) -> BoxFuture<'a, Result<CartAdmission, PortError>>;
    /// [`Quotas::admit_hold`].
    #[allow(clippy::too_many_arguments)]
    fn admit_hold<'a>(
        &'a self,
        client: &'a ClientKey,
        cart: CartId,
        item: &'a InventoryId,
        units: u32,
        cap: u32,
        deadline: Timestamp,
        moves: bool,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<HoldAdmission, PortError>>;
    /// [`Quotas::forget_cart`].
    fn forget_cart(&self, cart: CartId, now: Timestamp) -> BoxFuture<'_, Result<(), PortError>>;
    /// [`Quotas::note_refusal`].
    fn note_refusal<'a>(
        &'a self,
        client: &'a ClientKey,
        limit: LimitKind,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), PortError>>;
    /// [`Quotas::standing`].
    fn standing<'a>(
        &'a self,
        item: Option<&'a InventoryId>,
        top: usize,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Standing, PortError>>;
}

impl<Q: Quotas> QuotaStore for Q {
    fn admit_cart<'a>(
        &'a self,
        client: &'a ClientKey,
        cart: CartId,
        deadline: Timestamp,
        now: Timestamp,
        per_minute: Option<u32>,
        open: Option<u32>,
    ) -> BoxFuture<'a, Result<CartAdmission, PortError>> {
        Box::pin(Quotas::admit_cart(self, client, cart, deadline, now, per_minute, open))
    }

    fn admit_hold<'a>(
        &'a self,
        client: &'a ClientKey,
        cart: CartId,
        item: &'a InventoryId,
        units: u32,
        cap: u32,
        deadline: Timestamp,
        moves: bool,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<HoldAdmission, PortError>> {
        Box::pin(Quotas::admit_hold(self, client, cart, item, units, cap, deadline, moves, now))
    }

    fn forget_cart(&self, cart: CartId, now: Timestamp) -> BoxFuture<'_, Result<(), PortError>> {
        Box::pin(Quotas::forget_cart(self, cart, now))
    }

    fn note_refusal<'a>(
        &'a self,
        client: &'a ClientKey,
        limit: LimitKind,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(Quotas::note_refusal(self, client, limit, now))
    }

    fn standing<'a>(
        &'a self,
        item: Option<&'a InventoryId>,
        top: usize,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Standing, PortError>> {
        Box::pin(Quotas::standing(self, item, top, now))
    }
}

/// Who the client of a request is, by the rules of the module doc.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    trusted: Vec<IpNet>,
    ipv6_prefix: u8,
}

impl ClientIdentity {
    /// Trusting `trusted` proxies, grouping IPv6 by `ipv6_prefix` bits.
    #[must_use]
    pub fn new(trusted: Vec<IpNet>, ipv6_prefix: u8) -> Self {
        Self { trusted, ipv6_prefix: ipv6_prefix.clamp(1, 128) }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` carrying `headers`.
    #[must_use]
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        // Every hop in order, `Forwarded` first when present (RFC 7239
        // supersedes X-Forwarded-For), then walk from the right past the
        // trusted proxies. An entry that is not an address (obfuscated,
        // `unknown`) ends the walk at the last trusted hop: it cannot be
        // attributed, so the proxy itself is the client.
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.is_trusted(*ip) => client = *ip,
                Some(ip) => return *ip,
                None => return client,
            }
        }
        client
    }

    /// The quota key of a client address: the address, or its IPv6 block.
    #[must_use]
    pub fn key_of(&self, addr: IpAddr) -> ClientKey {
        let text = match canonical(addr) {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match ipnet::Ipv6Net::new(v6, self.ipv6_prefix) {
                Ok(net) => net.trunc().to_string(),
                Err(_) => v6.to_string(),
            },
        };
        ClientKey::new(text).expect("an IP address or block is printable ASCII without braces, under 64 characters")
    }

    /// The quota key of a request from `peer` carrying `headers`.
    #[must_use]
    pub fn key(&self, peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        self.key_of(self.client_addr(peer, headers))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The hops of `Forwarded: for=` (all its fields), else of
/// `X-Forwarded-For`, in order; `None` for an entry that is not an address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| parse_forwarded_for(v.trim()))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| parse_hop(hop.trim()))
        .collect()
}

/// An address as X-Forwarded-For writes it (maybe with a port).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

/// A `for=` value: `192.0.2.60`, `"192.0.2.60:47011"`, `"[2001:db8::1]:4711"`.
fn parse_forwarded_for(v: &str) -> Option<IpAddr> {
    let v = v.trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return addr.parse::<IpAddr>().ok().map(canonical);
    }
    parse_hop(v)
}

/// The quotas a running service checks: the policy, the store, who the
/// client is, what to do when the store fails.
pub struct ClientQuotas {
    policy: QuotaPolicy,
    identity: ClientIdentity,
    fail_carts: FailMode,
    fail_holds: FailMode,
    store: Arc<dyn QuotaStore>,
    metrics: Arc<Metrics>,
    stock: Mutex<HashMap<InventoryId, (u64, Instant)>>,
}

impl std::fmt::Debug for ClientQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQuotas").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// A hold the quotas counted before the ledger took it: given back by
/// [`ClientQuotas::undo`] when the change then fails.
#[derive(Debug)]
#[must_use]
pub struct Counted {
    client: ClientKey,
    cart: CartId,
    item: InventoryId,
    previous: u32,
    deadline: Timestamp,
    moves: bool,
}

impl ClientQuotas {
    /// The quotas `settings` describe, kept in `store`.
    pub fn new(settings: &QuotaSettings, store: Arc<dyn QuotaStore>, metrics: Arc<Metrics>) -> Self {
        Self {
            policy: settings.policy(),
            identity: ClientIdentity::new(settings.trusted_proxy_nets(), settings.ipv6_prefix),
            fail_carts: settings.fail_carts,
            fail_holds: settings.fail_holds,
            store,
            metrics,
            stock: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> QuotaPolicy {
        self.policy
    }

    /// Whether creating a cart is checked.
    #[must_use]
    pub fn limits_carts(&self) -> bool {
        self.policy.limits_carts()
    }

    /// Whether holding units is checked.
    #[must_use]
    pub fn limits_holds(&self) -> bool {
        self.policy.limits_holds()
    }

    /// The client of a request from `peer` (none when the connection's peer
    /// is unknown: a request that did not come through the server's accept
    /// loop, as in router-level tests) carrying `headers`.
    #[must_use]
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<ClientKey> {
        Some(self.identity.key(peer?.ip(), headers))
    }

    /// Counts cart `cart` (a fresh id) for `client`, ending at `deadline`.
    ///
    /// # Errors
    /// [`ApiError::TooManyRequests`] over a quota; a 503 when the store is
    /// down and `fail_carts` is closed.
    pub async fn admit_cart(
        &self,
        client: &ClientKey,
        cart: CartId,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let p = self.policy;
        match self.store.admit_cart(client, cart, deadline, now, p.carts_per_minute(), p.open_carts()).await {
            Ok(CartAdmission::Admitted) => Ok(()),
            Ok(CartAdmission::Refused { limit, retry_after_secs }) => {
                self.refused(client, limit, now).await;
                Err(ApiError::TooManyRequests { limit, retry_after_secs })
            }
            Err(e) => self.store_failed(e, "carts", self.fail_carts),
        }
    }

    /// Counts `units` of `item` for `cart` of `client` before the ledger
    /// holds them, until `deadline` (which moves the cart with `moves`, see
    /// [`Quotas::admit_hold`]); `None` when no hold quota is on (or the store is down and
    /// `fail_holds` is open). `stock` reads the item's total when the share
    /// quota needs it (`None` for an unknown item: then nothing is checked,
    /// and the change fails on its own).
    ///
    /// # Errors
    /// [`ApiError::HoldLimitReached`] over the cap; a 503 when the store is
    /// down and `fail_holds` is closed, or the stock cannot be read;
    /// [`CartError::InsufficientStock`] when the quota refuses a change the
    /// stock could not serve either (the stock's answer tells the shopper
    /// more, and both change nothing).
    #[allow(clippy::too_many_arguments)]
    pub async fn admit_hold<F, Fut>(
        &self,
        client: &ClientKey,
        cart: CartId,
        item: &InventoryId,
        units: u32,
        deadline: Timestamp,
        moves: bool,
        now: Timestamp,
        stock: F,
    ) -> Result<Option<Counted>, ApiError>
    where
        F: Fn() -> Fut + Send,
        Fut: Future<Output = Result<Option<StockLevel>, CartError>> + Send,
    {
        if !self.policy.limits_holds() {
            return Ok(None);
        }
        let total = if self.policy.needs_stock() {
            match self.cached_stock(item) {
                Some(total) => total,
                None => match stock().await?.map(|level| u64::try_from(level.total()).unwrap_or(0)) {
                    Some(total) => {
                        let mut cache = self.stock.lock().unwrap_or_else(PoisonError::into_inner);
                        if cache.len() >= STOCK_CACHE_MAX {
                            cache.clear();
                        }
                        cache.insert(item.clone(), (total, Instant::now()));
                        total
                    }
                    None => return Ok(None),
                },
            }
        } else {
            0
        };
        let Some(cap) = self.policy.hold_cap(total) else { return Ok(None) };
        match self.store.admit_hold(client, cart, item, units, cap, deadline, moves, now).await {
            Ok(HoldAdmission::Admitted { previous }) => {
                Ok(Some(Counted { client: client.clone(), cart, item: item.clone(), previous, deadline, moves }))
            }
            Ok(HoldAdmission::Refused { may_hold, retry_after_secs, holding }) => {
                // Rare path: one more read, to answer with the stock when it
                // is what binds.
                if let Ok(Some(level)) = stock().await
                    && i64::from(units.saturating_sub(holding)) > level.available
                {
                    return Err(ApiError::Cart(CartError::InsufficientStock { available: level.available.max(0) }));
                }
                self.refused(client, LimitKind::HeldUnits, now).await;
                Err(ApiError::HoldLimitReached { may_hold, retry_after_secs })
            }
            Err(e) => self.store_failed(e, "holds", self.fail_holds).map(|()| None),
        }
    }

    /// Forgets `item`'s stock (it was just restocked here).
    pub fn restocked(&self, item: &InventoryId) {
        self.stock.lock().unwrap_or_else(PoisonError::into_inner).remove(item);
    }

    fn cached_stock(&self, item: &InventoryId) -> Option<u64> {
        let cache = self.stock.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(item).filter(|(_, at)| at.elapsed() < STOCK_FRESH).map(|(total, _)| *total)
    }

    /// Puts back what `counted` replaced: the change it was counted for
    /// failed. Best effort: what is left counts until the cart's deadline.
    pub async fn undo(&self, counted: Option<Counted>, now: Timestamp) {
        let Some(c) = counted else { return };
        if let Err(e) =
            self.store.admit_hold(&c.client, c.cart, &c.item, c.previous, u32::MAX, c.deadline, c.moves, now).await
        {
            tracing::warn!(error = %domain::error_chain(&e), cart = %c.cart, "could not uncount a failed hold; it counts until the cart's deadline");
        }
    }

    /// Stops counting `cart` (checked out, abandoned, merged away, expired).
    /// Best effort: otherwise it counts until its deadline.
    pub async fn forget(&self, cart: CartId, now: Timestamp) {
        if !self.policy.limits_carts() && !self.policy.limits_holds() {
            return;
        }
        if let Err(e) = self.store.forget_cart(cart, now).await {
            tracing::warn!(error = %domain::error_chain(&e), cart = %cart, "could not free a cart's quota; it counts until its deadline");
        }
    }

    /// The admin view.
    ///
    /// # Errors
    /// 503 when the store cannot be reached.
    pub async fn standing(&self, item: Option<&InventoryId>, top: usize, now: Timestamp) -> Result<Standing, ApiError> {
        self.store.standing(item, top, now).await.map_err(|e| ApiError::Cart(CartError::Unavailable(e)))
    }

    /// The cap on `item` for a stock of `total` (for the admin view).
    #[must_use]
    pub fn cap_for(&self, total: u64) -> Option<u32> {
        self.policy.hold_cap(total)
    }

    async fn refused(&self, client: &ClientKey, limit: LimitKind, now: Timestamp) {
        self.metrics.limit_refused(limit.as_str());
        if let Err(e) = self.store.note_refusal(client, limit, now).await {
            tracing::debug!(error = %domain::error_chain(&e), "could not note a refusal for the admin view");
        }
    }

    fn store_failed(&self, e: PortError, kind: &'static str, mode: FailMode) -> Result<(), ApiError> {
        match mode {
            FailMode::Closed => Err(ApiError::Cart(CartError::Unavailable(e))),
            FailMode::Open => {
                self.metrics.limit_unchecked(kind);
                tracing::warn!(error = %domain::error_chain(&e), quota = kind, "quota store unavailable: request let through unchecked (fail open)");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn identity(trusted: &[&str]) -> ClientIdentity {
        ClientIdentity::new(trusted.iter().map(|t| t.parse().unwrap()).collect(), 64)
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_are_ignored() {
        let id = identity(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(id.client_addr(ip("192.0.2.9"), &h), ip("192.0.2.9"));
        assert_eq!(identity(&[]).client_addr(ip("10.1.1.1"), &h), ip("10.1.1.1"), "nothing trusted by default");
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
        let id = identity(&["10.0.0.0/8"]);
        // The client wrote "6.6.6.6" itself; its real address is what the
        // first trusted proxy appended.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(id.client_addr(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.7:5555")]);
        assert_eq!(id.client_addr(ip("10.0.0.1"), &h), ip("198.51.100.7"), "several fields, a port");
        let h = headers(&[("forwarded", "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(id.client_addr(ip("10.0.0.1"), &h), ip("2001:db8::1"));
        let h = headers(&[("forwarded", "for=unknown"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            id.client_addr(ip("10.0.0.1"), &h),
            ip("10.0.0.1"),
            "an unattributable hop: the proxy is the client"
        );
        assert_eq!(id.client_addr(ip("10.0.0.1"), &headers(&[])), ip("10.0.0.1"), "no header: the proxy");
        let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(id.client_addr(ip("10.0.0.1"), &h), ip("10.0.0.3"), "only proxies: the farthest one");
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix_and_mapped_ipv4_is_ipv4() {
        let id = identity(&[]);
        let a = id.key(ip("2001:db8:1:2:aaaa::1"), &HeaderMap::new());
        let b = id.key(ip("2001:db8:1:2:bbbb::9"), &HeaderMap::new());
        let c = id.key(ip("2001:db8:1:3::1"), &HeaderMap::new());
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "2001:db8:1:2::/64");
        assert_ne!(a, c);
        assert_eq!(id.key(ip("::ffff:127.0.1.5"), &HeaderMap::new()).as_str(), "127.0.1.5");
        assert_ne!(id.key(ip("127.0.1.5"), &HeaderMap::new()), id.key(ip("127.0.1.6"), &HeaderMap::new()));
    }
}
