//! Prometheus metrics: one explicit [`Registry`] per [`Application`](crate::Application)
//! (no global recorder, so tests running side by side do not mix their
//! numbers), fed by the HTTP middleware, the use cases (through the
//! [`StockEvents`] port) and the background tasks, and encoded in the
//! Prometheus text format by `GET /metrics`.
//!
//! Label values come from small closed sets only (route templates, a few
//! methods, status codes, causes, store names), never from ids or paths a
//! client chose, so a client cannot grow the number of series.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use domain::Timestamp;
use domain::ports::{ReleaseCause, Released, StockEvents};
use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Labels of the HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: u16,
}

/// Labels of `cartd_hold_units_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HoldLabels {
    change: &'static str,
    cause: &'static str,
}

/// Labels of `cartd_release_lag_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// Labels of `cartd_store_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

/// Labels of `cartd_pool_connections`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    store: &'static str,
    state: &'static str,
}

/// One connection pool's use at scrape time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    /// `redis` or `postgres`.
    pub store: &'static str,
    /// Open connections nobody is using.
    pub idle: u64,
    /// Connections checked out by a request or task.
    pub in_use: u64,
    /// The most connections the pool may open.
    pub max: u64,
}

/// Running totals of the batches of holds an inventory groups into
/// transactions, as the metrics show them. The composition fills it from the
/// PostgreSQL adapter's own counters; the metrics know no adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HoldBatchTotals {
    /// Batches run (each one transaction, retries included).
    pub batches: u64,
    /// Holds in those batches.
    pub holds: u64,
    /// Time from a batch's start to its last row, summed.
    pub busy_seconds: f64,
    /// Batches that failed (their holds got 503s).
    pub failed: u64,
    /// Planned batches that met a cart past its deadline and ran the
    /// reference loop instead.
    pub reference_fallbacks: u64,
}

/// What `GET /metrics` reads from the backend at scrape time.
#[derive(Debug, Default)]
pub struct ScrapeState {
    /// Units held by all open carts; `None` when the store could not say.
    pub held_units: Option<i64>,
    /// Pool use per store.
    pub pools: Vec<PoolUse>,
    /// Whether the expiry listener is connected; `None` when there is no
    /// listener (memory backend, or disabled).
    pub listener_connected: Option<bool>,
    /// On a Redis Cluster, the expiry listener's `(subscribed, known)`
    /// nodes; `None` on one server or without a listener.
    pub listener_nodes: Option<(usize, usize)>,
    /// Running totals of the batches of holds; `None` when holds are not
    /// batched (memory backend).
    pub hold_batches: Option<HoldBatchTotals>,
}

/// The request duration buckets: 0.5 ms to about 16 s.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The release lag buckets: 10 ms to about 11 minutes (a sweeper interval of
/// a second, and an outage of several minutes, both fall inside).
fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// The series of one (route, method, status): handles on the families' own
/// metrics (a clone shares the value).
#[derive(Debug)]
struct Handles {
    route: Box<str>,
    requests: Counter,
    duration: Histogram,
}

/// Route text address, method text address, status.
type HandleKey = (usize, usize, u16);

/// Every metric cartd keeps between scrapes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    durations: HistogramFamily<HttpLabels>,
    hold_units: Family<HoldLabels, Counter>,
    release_lag: HistogramFamily<CauseLabels>,
    store_errors: Family<StoreLabels, Counter>,
    live_streams: Gauge,
    live_rejected: Counter,
    handles: RwLock<HashMap<HandleKey, Handles>>,
    limit_refusals: Family<LimitLabels, Counter>,
    limit_unchecked: Family<LimitLabels, Counter>,
}

/// Labels of `cartd_limit_refusals_total` and `cartd_limit_unchecked_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered, and the series of every known
    /// cause and store present at 0 (so rates work from the first scrape).
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "cartd_http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let durations: HistogramFamily<HttpLabels> = Family::new_with_constructor(request_histogram);
        registry.register(
            "cartd_http_request_duration_seconds",
            "Time from the request reaching the router to the response head, by route template, method and status",
            durations.clone(),
        );
        let hold_units = Family::<HoldLabels, Counter>::default();
        registry.register(
            "cartd_hold_units",
            "Units moved between available, reserved and sold: taken (available to reserved), released \
             (reserved to available) and sold (reserved to sold), by cause",
            hold_units.clone(),
        );
        let release_lag: HistogramFamily<CauseLabels> = Family::new_with_constructor(lag_histogram);
        registry.register(
            "cartd_release_lag_seconds",
            "How long after its deadline an expired cart's stock was released, per cart, by cause",
            release_lag.clone(),
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "cartd_store_errors",
            "Operations that failed because a backing store was unavailable (503 answers, sweeper and listener \
             failures, scrape-time reads)",
            store_errors.clone(),
        );
        for (change, cause) in [
            ("taken", "line_change"),
            ("released", "line_change"),
            ("released", "abandon"),
            ("released", "expiry_event"),
            ("released", "sweeper"),
            ("released", "session_lost"),
            ("sold", "checkout"),
        ] {
            drop(hold_units.get_or_create(&HoldLabels { change, cause }));
        }
        for cause in ["expiry_event", "sweeper"] {
            drop(release_lag.get_or_create(&CauseLabels { cause }));
        }
        for store in ["redis", "postgres"] {
            drop(store_errors.get_or_create(&StoreLabels { store }));
        }
        let live_streams = Gauge::default();
        registry.register(
            "cartd_live_streams",
            "Live stock streams (GET /v1/inventory/events) open now",
            live_streams.clone(),
        );
        let live_rejected = Counter::default();
        registry.register(
            "cartd_live_streams_rejected",
            "Live stock streams refused with 503 because the cap (live.max_streams) was reached",
            live_rejected.clone(),
        );
        let limit_refusals = Family::<LimitLabels, Counter>::default();
        registry.register(
            "cartd_limit_refusals",
            "Requests refused by a client quota (429), by quota: carts_per_minute, open_carts, held_units",
            limit_refusals.clone(),
        );
        for limit in domain::LimitKind::ALL {
            drop(limit_refusals.get_or_create(&LimitLabels { limit: limit.as_str() }));
        }
        let limit_unchecked = Family::<LimitLabels, Counter>::default();
        registry.register(
            "cartd_limit_unchecked",
            "Requests let through without their quota check because its store was unavailable (fail open), \
             by quota kind: carts, holds",
            limit_unchecked.clone(),
        );
        for limit in ["carts", "holds"] {
            drop(limit_unchecked.get_or_create(&LimitLabels { limit }));
        }
        Self {
            registry,
            requests,
            durations,
            hold_units,
            release_lag,
            store_errors,
            live_streams,
            live_rejected,
            handles: RwLock::default(),
            limit_refusals,
            limit_unchecked,
        }
    }

    /// Records one answered request. `route` must be a route template (or
    /// [`UNMATCHED`]), never a raw path.
    ///
    /// The series of a (route, method, status) are looked up in the families
    /// once, then found in a small cache keyed by where the route template's
    /// text lives (axum hands every request of a route the same text), so a
    /// request costs no `String` and no hashing of its labels' text.
    pub fn observe_request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let key = (route.as_ptr() as usize, method.as_ptr() as usize, status);
        let seconds = elapsed.as_secs_f64();
        {
            let cache = self.handles.read().unwrap_or_else(PoisonError::into_inner);
            // The text is compared too: the key is an address, and the
            // cache must never count a request under another route.
            if let Some(h) = cache.get(&key)
                && &*h.route == route
            {
                h.requests.inc();
                h.duration.observe(seconds);
                return;
            }
        }
        let labels = HttpLabels { route: route.to_owned(), method, status };
        let h = Handles {
            route: route.into(),
            requests: self.requests.get_or_create(&labels).clone(),
            duration: self.durations.get_or_create(&labels).clone(),
        };
        h.requests.inc();
        h.duration.observe(seconds);
        self.handles.write().unwrap_or_else(PoisonError::into_inner).insert(key, h);
    }

    /// A live stock stream opened.
    pub fn live_stream_opened(&self) {
        self.live_streams.inc();
    }

    /// A live stock stream ended.
    pub fn live_stream_closed(&self) {
        self.live_streams.dec();
    }

    /// A live stock stream was refused (cap reached).
    pub fn live_stream_rejected(&self) {
        self.live_rejected.inc();
    }

    /// Counts one request refused by quota `limit`.
    pub fn limit_refused(&self, limit: &'static str) {
        self.limit_refusals.get_or_create(&LimitLabels { limit }).inc();
    }

    /// Counts one request let through unchecked by quota kind `kind` (its
    /// store was down and the kind fails open).
    pub fn limit_unchecked(&self, kind: &'static str) {
        self.limit_unchecked.get_or_create(&LimitLabels { limit: kind }).inc();
    }

    /// Counts one failure of `store` (`redis` or `postgres`).
    pub fn store_error(&self, store: &'static str) {
        self.store_errors.get_or_create(&StoreLabels { store }).inc();
    }

    fn add_units(&self, change: &'static str, cause: &'static str, units: u64) {
        if units > 0 {
            self.hold_units.get_or_create(&HoldLabels { change, cause }).inc_by(units);
        }
    }

    /// The whole exposition: the metrics kept here, then the gauges read at
    /// scrape time from `scrape`.
    #[must_use]
    pub fn encode(&self, scrape: &ScrapeState) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail, and every metric here encodes.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scrape_registry(scrape));
        if !out.ends_with('\n') {
            let _ = writeln!(out);
        }
        out
    }
}

/// A throw-away registry for the gauges whose values are read at scrape time,
/// so that a value that could not be read is left out rather than stale.
fn scrape_registry(scrape: &ScrapeState) -> Registry {
    let mut registry = Registry::default();
    if let Some(units) = scrape.held_units {
        let gauge = Gauge::<i64>::default();
        gauge.set(units);
        registry.register("cartd_held_units", "Units currently held by open carts (sum of reserved)", gauge);
    }
    if !scrape.pools.is_empty() {
        let pools = Family::<PoolLabels, Gauge>::default();
        for p in &scrape.pools {
            for (state, n) in [("idle", p.idle), ("in_use", p.in_use), ("max", p.max)] {
                pools.get_or_create(&PoolLabels { store: p.store, state }).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        registry.register(
            "cartd_pool_connections",
            "Connections of each store's pool: idle, in use, and the maximum",
            pools,
        );
    }
    if let Some(b) = scrape.hold_batches {
        registry.register(
            "cartd_hold_batches",
            "Batches of holds run in PostgreSQL, each one transaction",
            ConstCounter::new(b.batches),
        );
        registry.register("cartd_hold_batch_holds", "Holds in those batches", ConstCounter::new(b.holds));
        registry.register(
            "cartd_hold_batch_busy_seconds",
            "Time the batches took, summed (the rate is the share of time a batch was running)",
            ConstCounter::new(b.busy_seconds),
        );
        registry.register("cartd_hold_batch_failures", "Batches that failed", ConstCounter::new(b.failed));
        registry.register(
            "cartd_hold_batch_reference_fallbacks",
            "Planned batches that met a cart past its deadline and ran the PL/pgSQL loop instead",
            ConstCounter::new(b.reference_fallbacks),
        );
    }
    if let Some(connected) = scrape.listener_connected {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::from(connected));
        registry.register(
            "cartd_expiry_listener_connected",
            "1 while the Redis expiry listener holds a subscribed connection, else 0",
            gauge,
        );
    }
    if let Some((subscribed, known)) = scrape.listener_nodes {
        let as_gauge = |n: usize| {
            let gauge = Gauge::<i64>::default();
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
            gauge
        };
        registry.register(
            "cartd_expiry_listener_subscribed_nodes",
            "Redis Cluster nodes whose expired events the listener is subscribed to",
            as_gauge(subscribed),
        );
        registry.register(
            "cartd_expiry_listener_known_nodes",
            "Redis Cluster nodes in the topology the listener last read",
            as_gauge(known),
        );
    }
    registry
}

/// The method label: the standard methods by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Seconds from `deadline` to `now`, never negative.
fn lag_seconds(deadline: Timestamp, now: Timestamp) -> f64 {
    let ms = now.as_millis().saturating_sub(deadline.as_millis()).max(0);
    // Lags are far below 2^52 ms, where f64 stops being exact.
    #[allow(clippy::cast_precision_loss)]
    let secs = ms as f64 / 1000.0;
    secs
}

impl StockEvents for Metrics {
    fn line_changed(&self, taken: u32, released: u32) {
        self.add_units("taken", "line_change", u64::from(taken));
        self.add_units("released", "line_change", u64::from(released));
    }

    fn released(&self, cause: ReleaseCause, released: &Released, now: Timestamp) {
        self.add_units("released", cause.as_str(), released.units);
        if matches!(cause, ReleaseCause::ExpiryEvent | ReleaseCause::Sweeper) {
            let lag = self.release_lag.get_or_create(&CauseLabels { cause: cause.as_str() });
            for deadline in &released.deadlines {
                lag.observe(lag_seconds(*deadline, now));
            }
        }
    }

    fn sold(&self, units: u64) {
        self.add_units("sold", "checkout", units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
    }

    #[test]
    fn each_request_counts_under_its_own_route_whatever_the_address_of_its_text() {
        let m = Metrics::new();
        // Texts made and dropped one after the other often share an address:
        // the handle cache must tell them apart by content.
        for route in ["/a", "/b", "/a", "/c", "/b", "/a"] {
            let owned = route.to_owned();
            m.observe_request(&owned, &Method::GET, 200, Duration::from_millis(2));
        }
        m.observe_request("/a", &Method::PUT, 200, Duration::from_millis(2));
        m.observe_request("/a", &Method::GET, 404, Duration::from_millis(2));
        let text = m.encode(&ScrapeState::default());
        for (series, want) in [
            (r#"cartd_http_requests_total{route="/a",method="GET",status="200"}"#, 3.0),
            (r#"cartd_http_requests_total{route="/b",method="GET",status="200"}"#, 2.0),
            (r#"cartd_http_requests_total{route="/c",method="GET",status="200"}"#, 1.0),
            (r#"cartd_http_requests_total{route="/a",method="PUT",status="200"}"#, 1.0),
            (r#"cartd_http_requests_total{route="/a",method="GET",status="404"}"#, 1.0),
            (r#"cartd_http_request_duration_seconds_count{route="/a",method="GET",status="200"}"#, 3.0),
        ] {
            assert_eq!(sample(&text, series), Some(want), "{series}\n{text}");
        }
    }

    #[test]
    fn stock_events_become_unit_counters_and_lag_observations() {
        let m = Metrics::new();
        m.line_changed(3, 1);
        m.sold(2);
        let t = Timestamp::from_millis(10_000);
        let released = Released { carts: 2, units: 5, deadlines: vec![Timestamp::from_millis(9_500), t] };
        m.released(ReleaseCause::Sweeper, &released, t);
        m.released(ReleaseCause::Abandon, &Released { carts: 1, units: 4, deadlines: vec![t] }, t);
        let text = m.encode(&ScrapeState::default());
        assert_eq!(sample(&text, r#"cartd_hold_units_total{change="taken",cause="line_change"}"#), Some(3.0));
        assert_eq!(sample(&text, r#"cartd_hold_units_total{change="released",cause="line_change"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"cartd_hold_units_total{change="sold",cause="checkout"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"cartd_hold_units_total{change="released",cause="sweeper"}"#), Some(5.0));
        assert_eq!(sample(&text, r#"cartd_hold_units_total{change="released",cause="abandon"}"#), Some(4.0));
        assert_eq!(sample(&text, r#"cartd_release_lag_seconds_count{cause="sweeper"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"cartd_release_lag_seconds_sum{cause="sweeper"}"#), Some(0.5));
        // Abandoned carts were not late: no lag recorded for them.
        assert!(!text.contains(r#"cartd_release_lag_seconds_count{cause="abandon"}"#));
    }

    #[test]
    fn hold_batch_totals_are_counters_read_at_scrape_time() {
        let m = Metrics::new();
        assert!(!m.encode(&ScrapeState::default()).contains("cartd_hold_batches"), "none without batches");
        let stats = HoldBatchTotals { batches: 4, holds: 90, busy_seconds: 0.25, failed: 1, reference_fallbacks: 2 };
        let text = m.encode(&ScrapeState { hold_batches: Some(stats), ..ScrapeState::default() });
        assert_eq!(sample(&text, "cartd_hold_batches_total"), Some(4.0));
        assert_eq!(sample(&text, "cartd_hold_batch_holds_total"), Some(90.0));
        assert_eq!(sample(&text, "cartd_hold_batch_busy_seconds_total"), Some(0.25));
        assert_eq!(sample(&text, "cartd_hold_batch_failures_total"), Some(1.0));
        assert_eq!(sample(&text, "cartd_hold_batch_reference_fallbacks_total"), Some(2.0));
        assert!(text.contains("# TYPE cartd_hold_batches_total counter"), "{text}");
    }

    #[test]
    fn scrape_gauges_are_left_out_when_unknown() {
        let m = Metrics::new();
        let text = m.encode(&ScrapeState { held_units: None, ..ScrapeState::default() });
        assert!(!text.contains("cartd_held_units"));
        assert!(!text.contains("cartd_pool_connections"));
        assert!(!text.contains("cartd_expiry_listener_connected"));
        assert!(!text.contains("cartd_expiry_listener_subscribed_nodes"));
        let text = m.encode(&ScrapeState {
            held_units: Some(7),
            pools: vec![PoolUse { store: "postgres", idle: 2, in_use: 1, max: 16 }],
            listener_connected: Some(true),
            listener_nodes: Some((5, 6)),
            hold_batches: None,
        });
        assert_eq!(sample(&text, "cartd_held_units"), Some(7.0));
        assert_eq!(sample(&text, r#"cartd_pool_connections{store="postgres",state="max"}"#), Some(16.0));
        assert_eq!(sample(&text, "cartd_expiry_listener_connected"), Some(1.0));
        assert_eq!(sample(&text, "cartd_expiry_listener_subscribed_nodes"), Some(5.0));
        assert_eq!(sample(&text, "cartd_expiry_listener_known_nodes"), Some(6.0));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let m = Metrics::new();
        m.observe_request("/healthz", &Method::from_bytes(b"BREW").unwrap(), 405, Duration::from_millis(1));
        let text = m.encode(&ScrapeState::default());
        assert!(
            text.contains(r#"cartd_http_requests_total{route="/healthz",method="other",status="405"} 1"#),
            "{text}"
        );
    }
}
