//! Live stock: `GET /v1/inventory/events`, a Server-Sent Events stream of the
//! counts of the items a page shows.
//!
//! One [`StockHub`] per instance keeps the latest counts of every item (up to
//! [`LiveSettings::max_items`]) and a set of items marked as changed. Changes
//! are marked by the in-memory inventory itself (memory backend) or by the
//! PostgreSQL stock listener, which hears the one notice every committed batch
//! of holds, release, checkout or restock sends (Redis + PostgreSQL backend),
//! whichever instance made it. Every tick (200 ms) the hub re-reads the marked
//! items in one query and broadcasts the counts that differ; so a page gets at
//! most a few events a second, whatever the rate of holds. A full re-read
//! every `resync` interval covers notices lost while a listener reconnects.
//!
//! A stream starts with a `snapshot` event, then `stock` events with the items
//! that changed; a client too slow to keep up gets a fresh snapshot instead of
//! the events it missed. Streams are capped (`503 too_many_streams` beyond)
//! and end when the server shuts down.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::{InventoryId, StockLevel, error_chain};
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::http::extract::parse_id;
use crate::http::handlers::MAX_STOCK_IDS;
use crate::http::wire::{ErrorBody, StockBody};
use crate::metrics::Metrics;
use crate::settings;
use crate::shutdown::Shutdown;
use crate::state::{AppState, Backend};

/// Tuning of the live stock streams: the `[live]` section of the settings
/// (all but `max_items`, which is fixed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// Streams open at once; more get `503`.
    #[serde(deserialize_with = "settings::within::<_, _, 1, 100_000>")]
    pub max_streams: usize,
    /// How often changes are gathered into one event.
    #[serde(
        rename = "tick_ms",
        deserialize_with = "settings::millis_within::<_, 10, 10_000>",
        serialize_with = "settings::as_millis"
    )]
    pub tick: Duration,
    /// How often every item is re-read, whatever was announced; at least `tick`.
    #[serde(rename = "resync_ms", deserialize_with = "settings::millis", serialize_with = "settings::as_millis")]
    pub resync: Duration,
    /// The comment sent on an idle stream, so proxies keep it open.
    #[serde(
        rename = "keep_alive_ms",
        deserialize_with = "settings::millis_within::<_, 1000, 300_000>",
        serialize_with = "settings::as_millis"
    )]
    pub keep_alive: Duration,
    /// Most items the hub follows (and a stream without `ids` shows).
    #[serde(skip)]
    pub max_items: u32,
}

impl settings::CrossCheck for LiveSettings {
    fn check(&self) -> Result<(), settings::Refusal> {
        if self.resync < self.tick {
            return Err(settings::Refusal::at("resync_ms", "must be at least live.tick_ms"));
        }
        Ok(())
    }
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            max_streams: 2000,
            tick: Duration::from_millis(200),
            resync: Duration::from_secs(2),
            keep_alive: Duration::from_secs(15),
            max_items: 10_000,
        }
    }
}

/// Items a page lists in one read.
const PAGE: u32 = 1000;
/// Stock events kept for slow streams before they get a snapshot instead.
const BACKLOG: usize = 64;

/// What changed in one tick.
#[derive(Debug)]
struct Delta {
    version: u64,
    items: Vec<(String, StockLevel)>,
    /// The whole `stock` event for all of `items`, encoded once for every
    /// stream that wants them all (the usual case: a tick changes few items),
    /// so a stream's share of a tick is a reference count and a write.
    frame: Bytes,
}

#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    items: BTreeSet<String>,
}

/// The latest counts and their version.
#[derive(Debug, Default)]
struct Current {
    version: u64,
    items: BTreeMap<String, StockLevel>,
}

/// One instance's live stock: the latest counts, the changes still to read,
/// the streams' fan-out.
#[derive(Debug)]
pub struct StockHub {
    settings: LiveSettings,
    /// Distinguishes this instance's event ids from another's behind the same
    /// load balancer, so a `Last-Event-ID` from elsewhere is never trusted.
    instance: String,
    dirty: Mutex<Dirty>,
    current: RwLock<Current>,
    tx: broadcast::Sender<Arc<Delta>>,
    slots: Arc<Semaphore>,
    closing: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

/// The body of `snapshot` and `stock` events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockEventBody {
    /// Increases with every change this instance publishes.
    pub version: u64,
    /// `snapshot`: every item asked for that exists; `stock`: those that changed.
    pub items: Vec<StockBody>,
}

/// One event of the stream, as the OpenAPI document describes it (the
/// stream itself is `text/event-stream`, not JSON).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct StockEvent {
    /// `snapshot` or `stock`.
    #[schema(pattern = "^(snapshot|stock)$")]
    event: String,
    /// `<instance>-<version>`.
    id: String,
    /// A [`StockEventBody`] as JSON.
    data: String,
    /// Milliseconds a browser waits before reconnecting (on snapshots).
    retry: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StockHub {
    /// A hub with nothing read yet (the first tick reads every item).
    #[must_use]
    pub fn new(settings: LiveSettings, metrics: Arc<Metrics>) -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        let (closing, _) = watch::channel(false);
        Self {
            settings,
            instance: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            dirty: Mutex::new(Dirty { all: true, items: BTreeSet::new() }),
            current: RwLock::new(Current::default()),
            tx,
            slots: Arc::new(Semaphore::new(settings.max_streams)),
            closing,
            metrics,
        }
    }

    /// Marks `items` as changed.
    pub fn mark(&self, items: impl IntoIterator<Item = InventoryId>) {
        let mut dirty = lock(&self.dirty);
        dirty.items.extend(items.into_iter().map(|i| i.to_string()));
    }

    /// Marks every item as changed.
    pub fn mark_all(&self) {
        lock(&self.dirty).all = true;
    }

    /// Ends every stream (graceful shutdown: they would otherwise keep their
    /// connections open until the grace period runs out).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Streams open now.
    #[must_use]
    pub fn open_streams(&self) -> usize {
        self.settings.max_streams - self.slots.available_permits()
    }

    fn event_id(&self, version: u64) -> String {
        format!("{}-{version}", self.instance)
    }

    /// Re-reads what was marked and publishes what differs.
    async fn refresh<B: Backend>(&self, app: &AppState<B>) -> Result<(), domain::CartError> {
        let taken = std::mem::take(&mut *lock(&self.dirty));
        let read = if taken.all {
            self.read_all(app).await
        } else if taken.items.is_empty() {
            return Ok(());
        } else {
            self.read_some(app, &taken.items).await
        };
        let levels = match read {
            Ok(levels) => levels,
            Err(e) => {
                // Read again next tick.
                let mut dirty = lock(&self.dirty);
                dirty.all |= taken.all;
                dirty.items.extend(taken.items);
                return Err(e);
            }
        };
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed = Vec::new();
        for (id, level) in levels {
            let followed = current.items.len() < self.settings.max_items as usize || current.items.contains_key(&id);
            if followed && current.items.get(&id) != Some(&level) {
                current.items.insert(id.clone(), level);
                changed.push((id, level));
            }
        }
        if !changed.is_empty() {
            current.version += 1;
            let version = current.version;
            let items = changed.iter().map(|(id, l)| body(id, *l)).collect();
            let frame = data_frame("stock", &self.event_id(version), version, items, None);
            // No receiver is fine: nobody is watching.
            let _ = self.tx.send(Arc::new(Delta { version, items: changed, frame }));
        }
        Ok(())
    }

    async fn read_all<B: Backend>(&self, app: &AppState<B>) -> Result<Vec<(String, StockLevel)>, domain::CartError> {
        // One query: a re-read of everything may come every tick while the
        // sweeper releases carts.
        let all = app.service.list_stock(None, self.settings.max_items).await?;
        Ok(all.into_iter().map(|(id, l)| (id.to_string(), l)).collect())
    }

    async fn read_some<B: Backend>(
        &self,
        app: &AppState<B>,
        items: &BTreeSet<String>,
    ) -> Result<Vec<(String, StockLevel)>, domain::CartError> {
        let ids: Vec<InventoryId> = items.iter().filter_map(|s| InventoryId::parse(s).ok()).collect();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(PAGE as usize) {
            out.extend(app.service.stock_of(chunk).await?.into_iter().map(|(id, l)| (id.to_string(), l)));
        }
        Ok(out)
    }

    /// The `snapshot` event for `filter`.
    fn snapshot_event(&self, filter: &Filter) -> (u64, Bytes) {
        let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let items = match filter {
            Filter::All => current.items.iter().map(|(id, l)| body(id, *l)).collect(),
            Filter::Ids(ids) => {
                ids.iter().filter_map(|id| current.items.get(id).map(|l| body(id, *l))).collect::<Vec<_>>()
            }
        };
        let event = data_frame("snapshot", &self.event_id(current.version), current.version, items, Some(RETRY));
        (current.version, event)
    }
}

fn body(id: &str, l: StockLevel) -> StockBody {
    StockBody { inventory_id: id.to_owned(), available: l.available, reserved: l.reserved, sold: l.sold }
}

/// How long a browser waits before reconnecting a dropped stream.
const RETRY: Duration = Duration::from_secs(2);

/// One event as it goes on the wire:
/// `event: <kind>\nid: <id>\n[retry: <ms>\n]data: <json>\n\n`. The JSON is
/// compact (no newline), so it is one `data` line; `kind` and `id` are ours
/// and never hold a newline either.
fn data_frame(kind: &str, id: &str, version: u64, items: Vec<StockBody>, retry: Option<Duration>) -> Bytes {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(64 + 96 * items.len());
    let _ = write!(out, "event: {kind}\nid: {id}\n");
    if let Some(retry) = retry {
        let _ = writeln!(out, "retry: {}", retry.as_millis());
    }
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut out, &StockEventBody { version, items }).expect("stock events serialize");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The comment an idle stream gets, so proxies keep it open.
const KEEP_ALIVE: &[u8] = b":\n\n";

/// The items a stream shows.
#[derive(Clone, Debug)]
enum Filter {
    All,
    Ids(BTreeSet<String>),
}

impl Filter {
    fn wants(&self, id: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Ids(ids) => ids.contains(id),
        }
    }
}

/// Runs the hub until shutdown: gathers changes every tick, everything every
/// resync interval.
pub async fn run<B: Backend>(hub: Arc<StockHub>, app: Arc<AppState<B>>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(hub.settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut resync = tokio::time::interval(hub.settings.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tracing::info!(tick = ?hub.settings.tick, resync = ?hub.settings.resync, "live stock hub started");
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = resync.tick() => hub.mark_all(),
            () = shutdown.wait() => break,
        }
        hub.mark(app.backend.take_stock_changes(&app.service));
        match hub.refresh(&app).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %error_chain(&e), "live stock: cannot read counts; retrying every tick");
                }
                failing = true;
            }
        }
    }
    hub.close();
    tracing::info!("live stock hub stopped");
}

/// `GET /v1/inventory/events` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma-separated ids.
    pub ids: Option<String>,
}

/// A stream's place under the cap; gives it back (and counts) when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.live_stream_closed();
    }
}

struct StreamState {
    hub: Arc<StockHub>,
    filter: Filter,
    rx: broadcast::Receiver<Arc<Delta>>,
    closing: watch::Receiver<bool>,
    seen: u64,
    first: Option<Bytes>,
    follow: bool,
    /// Ticks every keep-alive interval; a tick with nothing sent since the
    /// last one sends a comment. (Not a timer reset per event: with a
    /// thousand streams every event counts.)
    keep_alive: tokio::time::Interval,
    sent: bool,
    _slot: Slot,
}

/// Live counts as Server-Sent Events.
#[utoipa::path(
    get, path = "/v1/inventory/events", tag = "inventory",
    params(
        ("ids" = Option<String>, Query,
            description = "Only these items: 1-100 comma-separated ids; without it, every item (up to 10,000)",
            min_length = 1, pattern = "^[A-Za-z0-9._:-]{1,64}(,[A-Za-z0-9._:-]{1,64}){0,99}$"),
        ("Last-Event-ID" = Option<String>, Header, description = "Sent by browsers on reconnecting; the snapshot is skipped when it names this instance's current version"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: a `snapshot` event, then `stock` events with the items that changed \
            (each data line a `StockEventBody`), `:` comments to keep the connection open. A request without \
            `Accept: text/event-stream` gets the snapshot only and the stream ends (see docs/storefront.md)",
            content_type = "text/event-stream", body = StockEvent),
        (status = 400, body = ErrorBody),
        (status = 503, description = "`too_many_streams`: the cap on open streams is reached", body = ErrorBody),
    )
)]
pub async fn events(
    State(hub): State<Arc<StockHub>>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    let filter = match q.ids {
        None => Filter::All,
        Some(ids) => {
            let ids =
                ids.split(',').map(|raw| parse_id("ids", raw, InventoryId::parse)).collect::<Result<Vec<_>, _>>()?;
            if ids.len() > MAX_STOCK_IDS {
                return Err(ApiError::invalid(format!("ids names more than {MAX_STOCK_IDS} items")));
            }
            Filter::Ids(ids.into_iter().map(|i| i.to_string()).collect())
        }
    };
    let Ok(permit) = hub.slots.clone().try_acquire_owned() else {
        hub.metrics.live_stream_rejected();
        return Err(ApiError::TooManyStreams);
    };
    hub.metrics.live_stream_opened();
    let slot = Slot { _permit: permit, metrics: hub.metrics.clone() };
    let follow = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/event-stream")));
    // Subscribe before reading the snapshot, so no change falls in between.
    let rx = hub.tx.subscribe();
    let (version, snapshot) = hub.snapshot_event(&filter);
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|last| follow && version > 0 && last == hub.event_id(version));
    let state = StreamState {
        hub: hub.clone(),
        filter,
        rx,
        closing: hub.closing.subscribe(),
        seen: version,
        first: (!resumed).then_some(snapshot),
        follow,
        keep_alive: {
            let period = hub.settings.keep_alive;
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every
        },
        sent: true,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(state, next_event);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) would hold the events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

async fn next_event(mut st: StreamState) -> Option<(Result<Bytes, Infallible>, StreamState)> {
    if let Some(first) = st.first.take() {
        return Some((Ok(first), st));
    }
    if !st.follow {
        return None;
    }
    loop {
        if *st.closing.borrow() {
            return None;
        }
        tokio::select! {
            changed = st.closing.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            _ = st.keep_alive.tick() => {
                if !std::mem::replace(&mut st.sent, false) {
                    return Some((Ok(Bytes::from_static(KEEP_ALIVE)), st));
                }
            }
            message = st.rx.recv() => match message {
                Ok(delta) => {
                    if delta.version <= st.seen {
                        continue;
                    }
                    st.seen = delta.version;
                    if delta.items.iter().all(|(item, _)| st.filter.wants(item)) {
                        st.sent = true;
                        return Some((Ok(delta.frame.clone()), st));
                    }
                    let items: Vec<StockBody> =
                        delta.items.iter().filter(|(id, _)| st.filter.wants(id)).map(|(id, l)| body(id, *l)).collect();
                    if items.is_empty() {
                        continue;
                    }
                    let id = st.hub.event_id(delta.version);
                    st.sent = true;
                    return Some((Ok(data_frame("stock", &id, delta.version, items, None)), st));
                }
                Err(RecvError::Lagged(_)) => {
                    // Too slow for the backlog: start again from the latest counts.
                    let (version, snapshot) = st.hub.snapshot_event(&st.filter);
                    st.seen = version;
                    st.sent = true;
                    return Some((Ok(snapshot), st));
                }
                Err(RecvError::Closed) => return None,
            },
        }
    }
}

/// The live stock route.
pub fn routes(hub: Arc<StockHub>) -> Router {
    Router::new().route("/v1/inventory/events", get(events)).with_state(hub)
}
