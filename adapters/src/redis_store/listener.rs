//! [`RedisExpiryListener`]: keyspace `expired` events as cart ids.
//!
//! A background task owns a dedicated pub/sub connection (a multiplexed or
//! pooled connection cannot subscribe), subscribes to
//! `__keyevent@<db>__:expired`, and forwards the ids of this store's session
//! keys through a channel; [`ExpiryEvents::next_expired`] only receives from
//! that channel, which is what makes it cancel-safe. When the connection drops
//! the task reconnects with exponential back-off. Events raised while it is
//! away are lost for good, which is acceptable only because the sweeper
//! releases every cart past its deadline anyway.
//!
//! At every (re)connect the task makes sure the server raises expired events
//! (`notify-keyspace-events` needs `E` and `x`, or `A`), switching them on when
//! allowed. Managed Redis often refuses `CONFIG`; the task then says once per
//! process that only the sweeper releases expired carts.
//!
//! On a Redis Cluster ([`ListenerSettings::cluster_nodes`]) expired events are
//! node-local: each primary publishes only the expiries of its own keys, on
//! its own connection. A supervisor reads the topology (`CLUSTER SHARDS`) at
//! start, every `topology_interval`, and soon after any node's subscription
//! drops, and runs one such task per node, primaries and replicas alike (a
//! replica publishes nothing, but once promoted it is already heard), all
//! feeding the same channel. Nodes that leave the topology lose their task;
//! nodes that join get one. With `configure_notifications` off, each node's
//! setting is still read (`CONFIG GET`) and a node without expired events is
//! warned about once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::CartId;
use domain::ports::{ExpiryEvents, PortError};
use futures_util::StreamExt;
use redis::aio::PubSub;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::cluster::{NodeAddr, Seeds, Topology, read_topology};
use super::layout::session_of_key;
use super::{Error, RedisSettings, check_prefix, client, redacted};
use crate::backoff::Backoff;
use domain::error_chain as chain;

/// Notices waiting for [`ExpiryEvents::next_expired`]; when full the task
/// stops reading until the consumer catches up.
const QUEUE: usize = 1024;

/// Whether the "notifications are off" warning was logged by this process.
static WARNED_OFF: AtomicBool = AtomicBool::new(false);

/// How the listener reaches Redis and how it behaves when the connection
/// drops.
///
/// Invariant: never shows the password. Proved by `settings_do_not_show_the_password` and, for
/// `configure_notifications`, `a_listener_that_may_not_use_config_reports_notifications_off`
/// (`adapters/tests/redis_store.rs`).
#[derive(Clone)]
pub struct ListenerSettings {
    /// The same server (and database) the session store writes to. The
    /// database number in the URL (default 0) picks the event channel.
    pub url: String,
    /// The session store's key prefix: only its keys produce notices.
    pub key_prefix: String,
    /// Whether to read `notify-keyspace-events` and switch expired events on
    /// when they are off. `false` leaves `CONFIG` alone (for servers that
    /// forbid it and are configured by their operator);
    /// [`ListenerStatus::notifications`] then stays [`Notifications::Unknown`].
    pub configure_notifications: bool,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for one command's reply (subscribe, `CONFIG`, `PING`).
    pub op_timeout: Duration,
    /// First pause after a failed connection attempt; it doubles with every
    /// further failure up to `backoff_max`, and starts over after a success.
    pub backoff_min: Duration,
    /// Longest pause between connection attempts.
    pub backoff_max: Duration,
    /// How often an idle subscription is checked with a `PING`, so a
    /// connection that died silently (no reset from the peer) is noticed.
    pub health_check_interval: Duration,
    /// Redis Cluster seed nodes (the session store's). Empty: one server at
    /// `url`; otherwise one subscription per node of the cluster.
    pub cluster_nodes: Vec<String>,
    /// On a cluster, how often the topology is read again (it is also read
    /// soon after any node's subscription drops).
    pub topology_interval: Duration,
}

impl ListenerSettings {
    /// Settings for `url` and `key_prefix` with the defaults: configure
    /// notifications, 1 s to connect, 500 ms per command, back-off from 100 ms
    /// doubling to 5 s, a health check every 30 s.
    #[must_use]
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: key_prefix.into(),
            configure_notifications: true,
            connect_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            health_check_interval: Duration::from_secs(30),
            cluster_nodes: Vec::new(),
            topology_interval: Duration::from_secs(5),
        }
    }

    /// Settings matching a session store's: same URL, prefix and timeouts.
    #[must_use]
    pub fn for_store(store: &RedisSettings) -> Self {
        Self {
            connect_timeout: store.connect_timeout,
            op_timeout: store.op_timeout,
            cluster_nodes: store.cluster_nodes.clone(),
            ..Self::new(store.url.clone(), store.key_prefix.clone())
        }
    }
}

impl std::fmt::Debug for ListenerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSettings")
            .field("url", &redacted(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("configure_notifications", &self.configure_notifications)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("health_check_interval", &self.health_check_interval)
            .field("cluster_nodes", &self.cluster_nodes.iter().map(|u| redacted(u)).collect::<Vec<_>>())
            .field("topology_interval", &self.topology_interval)
            .finish()
    }
}

/// Whether the server raises the expired events the listener needs.
///
/// Proved by `the_listener_switches_notifications_back_on_and_survives_a_killed_connection` and
/// `a_listener_that_may_not_use_config_reports_notifications_off`
/// (`adapters/tests/redis_store.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notifications {
    /// Not known: not connected yet, `CONFIG` is left alone by the settings,
    /// or the check could not complete.
    Unknown,
    /// Expired events are on.
    On,
    /// Expired events are off and could not be switched on: only the sweeper
    /// releases expired carts.
    Off,
}

impl Notifications {
    fn to_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::On => 1,
            Self::Off => 2,
        }
    }

    fn from_u8(n: u8) -> Self {
        match n {
            1 => Self::On,
            2 => Self::Off,
            _ => Self::Unknown,
        }
    }
}

/// What a listener is doing, readable from any task (readiness, metrics).
/// Clones share the same state.
///
/// Proved by `the_listener_switches_notifications_back_on_and_survives_a_killed_connection`
/// (`adapters/tests/redis_store.rs`).
#[derive(Clone, Debug)]
pub struct ListenerStatus {
    connected: watch::Receiver<bool>,
    shared: Arc<Shared>,
    /// On a cluster: every node's listener.
    cluster: Option<Arc<ClusterState>>,
}

/// What the cluster supervisor knows, shared with the status handles.
#[derive(Debug, Default)]
struct ClusterState {
    /// Whether the last topology read found every slot served.
    topology_usable: AtomicBool,
    /// One listener per node of the topology.
    nodes: Mutex<BTreeMap<NodeAddr, NodeListener>>,
}

#[derive(Debug)]
struct NodeListener {
    status: ListenerStatus,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    notifications: AtomicU8,
    notices: AtomicU64,
    reconnects: AtomicU64,
}

impl ListenerStatus {
    /// Whether the listener is subscribed right now (on a cluster: the
    /// topology is usable and every node of it is subscribed).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// On a cluster, `(subscribed, known)`: nodes whose subscription is up,
    /// and nodes in the topology. `None` on one server.
    #[must_use]
    pub fn nodes(&self) -> Option<(usize, usize)> {
        let cluster = self.cluster.as_ref()?;
        let nodes = cluster.nodes.lock().expect("never poisoned: no panics while held");
        Some((nodes.values().filter(|n| n.status.is_connected()).count(), nodes.len()))
    }

    /// On a cluster, each node and whether it is subscribed. Empty on one
    /// server.
    #[must_use]
    pub fn node_states(&self) -> Vec<(NodeAddr, bool)> {
        let Some(cluster) = &self.cluster else { return Vec::new() };
        let nodes = cluster.nodes.lock().expect("never poisoned: no panics while held");
        nodes.iter().map(|(addr, n)| (addr.clone(), n.status.is_connected())).collect()
    }

    /// On a cluster, whether the last topology read found every slot
    /// served. `None` on one server.
    #[must_use]
    pub fn topology_usable(&self) -> Option<bool> {
        self.cluster.as_ref().map(|c| c.topology_usable.load(Ordering::Relaxed))
    }

    /// Calls `f` with every node's status (none on one server).
    fn each_node<T>(&self, f: impl Fn(&ListenerStatus) -> T) -> Vec<T> {
        let Some(cluster) = &self.cluster else { return Vec::new() };
        let nodes = cluster.nodes.lock().expect("never poisoned: no panics while held");
        nodes.values().map(|n| f(&n.status)).collect()
    }

    /// Waits until the listener is subscribed. Returns `false` if it stopped
    /// (its [`RedisExpiryListener`] was dropped) instead.
    pub async fn wait_connected(&self) -> bool {
        let mut rx = self.connected.clone();
        rx.wait_for(|connected| *connected).await.is_ok()
    }

    /// What the last check of `notify-keyspace-events` found. On a cluster:
    /// [`Notifications::Off`] if any node has them off, [`Notifications::On`]
    /// if every node has them on, else unknown.
    #[must_use]
    pub fn notifications(&self) -> Notifications {
        if self.cluster.is_some() {
            let states = self.each_node(ListenerStatus::notifications);
            return if states.contains(&Notifications::Off) {
                Notifications::Off
            } else if !states.is_empty() && states.iter().all(|n| *n == Notifications::On) {
                Notifications::On
            } else {
                Notifications::Unknown
            };
        }
        Notifications::from_u8(self.shared.notifications.load(Ordering::Relaxed))
    }

    /// Session-expired notices received so far (on a cluster, from every
    /// node, including nodes no longer in the topology).
    #[must_use]
    pub fn notices(&self) -> u64 {
        self.shared.notices.load(Ordering::Relaxed) + self.each_node(ListenerStatus::notices).iter().sum::<u64>()
    }

    /// Times the subscription was re-established after being lost (on a
    /// cluster, summed over the nodes).
    #[must_use]
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed) + self.each_node(ListenerStatus::reconnects).iter().sum::<u64>()
    }
}

/// The Redis [`ExpiryEvents`]. Dropping it stops its background task.
///
/// Invariant: reconnects by itself and delivers only this deployment's sessions. Proved by
/// `the_expiry_listener_delivers_a_session_that_expires_and_ignores_other_prefixes` and
/// `the_listener_switches_notifications_back_on_and_survives_a_killed_connection`
/// (`adapters/tests/redis_store.rs`);
/// on a cluster, hears every node: proved by
/// `sessions_spread_over_every_primary_and_each_expiry_is_heard_from_its_node_within_a_second`
/// (`adapters/tests/redis_cluster.rs`) and, across a failover,
/// `a_primary_killed_under_load_gives_503_only_until_its_replica_takes_over` (`app/tests/cluster.rs`).
#[derive(Debug)]
pub struct RedisExpiryListener {
    rx: mpsc::Receiver<CartId>,
    status: ListenerStatus,
}

impl RedisExpiryListener {
    /// Starts the background task, which connects, subscribes and reconnects
    /// by itself: an unreachable server is not an error here, it shows in
    /// [`ListenerStatus::is_connected`].
    ///
    /// # Errors
    /// [`PortError`] when the URL is invalid or the prefix contains braces.
    ///
    /// # Panics
    /// When called outside a Tokio runtime.
    pub fn spawn(settings: &ListenerSettings) -> Result<Self, PortError> {
        check_prefix(&settings.key_prefix)?;
        if !settings.cluster_nodes.is_empty() {
            return Self::spawn_cluster(settings);
        }
        let client = client(&settings.url)?;
        let db = client.get_connection_info().redis_settings().db();
        let (tx, rx) = mpsc::channel(QUEUE);
        let (connected_tx, connected) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let task = Task {
            client,
            channel: format!("__keyevent@{db}__:expired"),
            settings: settings.clone(),
            tx,
            connected: connected_tx,
            shared: Arc::clone(&shared),
            node: None,
        };
        tokio::spawn(task.run());
        Ok(Self { rx, status: ListenerStatus { connected, shared, cluster: None } })
    }

    /// The cluster supervisor (see the module's documentation).
    fn spawn_cluster(settings: &ListenerSettings) -> Result<Self, PortError> {
        let seeds = Seeds::parse(&settings.cluster_nodes)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (connected_tx, connected) = watch::channel(false);
        // Counts of nodes no longer in the topology are kept here.
        let shared = Arc::new(Shared::default());
        let state = Arc::new(ClusterState::default());
        let supervisor = Supervisor {
            seeds,
            settings: settings.clone(),
            tx,
            connected: connected_tx,
            retired: Arc::clone(&shared),
            state: Arc::clone(&state),
            changed: Arc::new(Notify::new()),
        };
        tokio::spawn(supervisor.run());
        Ok(Self { rx, status: ListenerStatus { connected, shared, cluster: Some(state) } })
    }

    /// A handle on the listener's state, usable from other tasks.
    #[must_use]
    pub fn status(&self) -> ListenerStatus {
        self.status.clone()
    }
}

impl ExpiryEvents for RedisExpiryListener {
    async fn next_expired(&mut self) -> CartId {
        match self.rx.recv().await {
            Some(id) => id,
            None => {
                // The task only ends when this receiver is dropped, or if it
                // panicked; either way no notice will ever come again.
                tracing::error!("expiry listener task ended; no more expiry notices");
                std::future::pending().await
            }
        }
    }
}

/// Why a subscription ended.
enum End {
    /// The listener was dropped.
    Stopped,
    /// The connection was lost; the text says how.
    Lost(String),
}

struct Task {
    client: Client,
    channel: String,
    settings: ListenerSettings,
    tx: mpsc::Sender<CartId>,
    connected: watch::Sender<bool>,
    shared: Arc<Shared>,
    /// On a cluster: this node, and how to tell the supervisor that its
    /// subscription came up or went down.
    node: Option<NodeTask>,
}

struct NodeTask {
    addr: NodeAddr,
    changed: Arc<Notify>,
    /// Whether this node's notifications were found off and said so.
    warned_off: AtomicBool,
}

impl Task {
    async fn run(self) {
        let mut backoff = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
        // Whether a subscription ever succeeded, so later ones are logged
        // and counted as reconnections.
        let mut subscribed_before = false;
        // Whether the current outage was logged already: one warning per
        // outage (a lost subscription, or a first attempt that failed), the
        // failed attempts after it only at debug level. Never reset: a
        // subscription only ends in a new outage, and that one is logged as
        // a disconnection.
        let mut outage_logged = false;
        loop {
            let attempt = tokio::select! {
                () = self.tx.closed() => break,
                r = self.subscribe() => r,
            };
            let pubsub = match attempt {
                Ok(pubsub) => pubsub,
                Err(e) => {
                    let error = chain(&e);
                    let pause = backoff.next_pause();
                    if outage_logged {
                        tracing::debug!(%error, retry_in = ?pause, "expiry listener could not subscribe");
                    } else {
                        outage_logged = true;
                        tracing::warn!(%error, channel = %self.channel, "expiry listener cannot subscribe; retrying with back-off");
                    }
                    tokio::select! {
                        () = self.tx.closed() => break,
                        () = sleep(pause) => {}
                    }
                    continue;
                }
            };
            backoff.reset();
            if subscribed_before {
                self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(channel = %self.channel, "expiry listener reconnected");
            } else {
                tracing::info!(channel = %self.channel, "expiry listener subscribed");
            }
            subscribed_before = true;
            self.set_connected(true);
            let end = self.forward(pubsub).await;
            self.set_connected(false);
            match end {
                End::Stopped => break,
                End::Lost(why) => {
                    outage_logged = true;
                    tracing::warn!(reason = %why, "expiry listener disconnected; reconnecting");
                }
            }
        }
        self.set_connected(false);
        tracing::info!("expiry listener stopped");
    }

    /// Records whether the subscription is up, and tells the cluster
    /// supervisor when that changed.
    fn set_connected(&self, up: bool) {
        let changed = self.connected.send_if_modified(|now| std::mem::replace(now, up) != up);
        if changed && let Some(node) = &self.node {
            node.changed.notify_one();
        }
    }

    /// A fresh pub/sub connection, subscribed to the expired-events channel.
    async fn subscribe(&self) -> Result<PubSub, Error> {
        let after = self.settings.connect_timeout;
        let mut pubsub = timeout(after, self.client.get_async_pubsub())
            .await
            .map_err(|_| Error::ConnectTimeout(after))?
            .map_err(Error::Connect)?;
        let after = self.settings.op_timeout;
        timeout(after, pubsub.subscribe(&self.channel))
            .await
            .map_err(|_| Error::Timeout { op: "subscribe", after })?
            .map_err(|source| Error::Command { op: "subscribe", source })?;
        Ok(pubsub)
    }

    /// Passes notices on until the connection is lost or the listener dropped.
    /// Also checks the server's notification settings first thing, and again
    /// (with back-off) while a check could not complete.
    async fn forward(&self, pubsub: PubSub) -> End {
        let (mut sink, mut stream) = pubsub.split();
        let every = self.settings.health_check_interval;
        let mut health = tokio::time::interval_at(Instant::now() + every, every);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // On a cluster the setting is checked even when it may not be
        // changed, so a node without expired events is reported.
        let mut check_at = (self.settings.configure_notifications || self.node.is_some()).then(Instant::now);
        let mut check_delay = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
        loop {
            let check_due = async {
                match check_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.tx.closed() => return End::Stopped,
                msg = stream.next() => {
                    let Some(msg) = msg else { return End::Lost("connection closed".to_owned()) };
                    let Some(id) = session_of_key(&self.settings.key_prefix, msg.get_payload_bytes()) else {
                        continue;
                    };
                    self.shared.notices.fetch_add(1, Ordering::Relaxed);
                    if self.tx.send(id).await.is_err() {
                        return End::Stopped;
                    }
                }
                () = check_due => {
                    let state = tokio::select! {
                        () = self.tx.closed() => return End::Stopped,
                        state = self.ensure_notifications() => state,
                    };
                    self.shared.notifications.store(state.to_u8(), Ordering::Relaxed);
                    check_at = if state == Notifications::Unknown {
                        Some(Instant::now() + check_delay.next_pause())
                    } else {
                        None
                    };
                }
                _ = health.tick() => {
                    let after = self.settings.op_timeout;
                    match timeout(after, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return End::Lost(format!("health-check ping failed: {e}")),
                        Err(_) => return End::Lost(format!("health-check ping got no reply within {after:?}")),
                    }
                }
            }
        }
    }

    /// Makes sure the server raises expired events, switching them on if it
    /// may; warns once per process when they stay off.
    async fn ensure_notifications(&self) -> Notifications {
        match self.try_enable_notifications().await {
            Ok(true) => Notifications::On,
            Ok(false) if !self.settings.configure_notifications => {
                self.warn_off("notify-keyspace-events does not include expired events, and cartd may not change it");
                Notifications::Off
            }
            Ok(false) => {
                self.warn_off("notify-keyspace-events does not include expired events after CONFIG SET");
                Notifications::Off
            }
            Err(e) if is_refusal(&e) && !self.settings.configure_notifications => {
                tracing::debug!(error = %e, "CONFIG GET refused; cannot tell whether expired events are on");
                Notifications::Unknown
            }
            Err(e) if is_refusal(&e) => {
                self.warn_off(&format!("CONFIG refused: {e}"));
                Notifications::Off
            }
            Err(e) => {
                tracing::debug!(error = %chain(&e), "could not check keyspace notifications; will try again");
                Notifications::Unknown
            }
        }
    }

    /// `Ok(true)` when expired events are on (already, or after switching
    /// them on).
    async fn try_enable_notifications(&self) -> Result<bool, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.op_timeout));
        let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        let flags = notify_flags(&mut conn).await?;
        if expired_events_on(&flags) || !self.settings.configure_notifications {
            return Ok(expired_events_on(&flags));
        }
        let wanted = with_expired_events(&flags);
        redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg(&wanted).query_async::<()>(&mut conn).await?;
        let now = notify_flags(&mut conn).await?;
        let on = expired_events_on(&now);
        if on {
            let node = self.node.as_ref().map(|n| n.addr.to_string());
            tracing::info!(before = %flags, after = %now, ?node, "switched on keyspace expired events");
        }
        Ok(on)
    }

    /// Logs that only the sweeper releases expired carts: once per process
    /// on one server, once per node on a cluster.
    fn warn_off(&self, reason: &str) {
        match &self.node {
            None => warn_off(reason),
            Some(node) => {
                if !node.warned_off.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        node = %node.addr,
                        reason,
                        "keyspace notifications are off on this node; its expired carts are released by the sweeper only"
                    );
                }
            }
        }
    }
}

/// The cluster supervisor: keeps one [`Task`] per node of the topology.
struct Supervisor {
    seeds: Seeds,
    settings: ListenerSettings,
    tx: mpsc::Sender<CartId>,
    /// Whether the topology is usable and every node subscribed.
    connected: watch::Sender<bool>,
    /// Where the counts of nodes that left the topology go.
    retired: Arc<Shared>,
    state: Arc<ClusterState>,
    /// Signalled by a node's task when its subscription comes up or drops.
    changed: Arc<Notify>,
}

impl Supervisor {
    async fn run(self) {
        let mut backoff = Backoff::new(self.settings.backoff_min, self.settings.backoff_max);
        let mut next_read = Instant::now();
        let mut candidates = self.seeds.addrs();
        let mut outage_logged = false;
        loop {
            tokio::select! {
                () = self.tx.closed() => break,
                () = sleep_until(next_read) => {
                    let read = tokio::select! {
                        () = self.tx.closed() => break,
                        read = read_topology(&self.seeds, &candidates, self.settings.connect_timeout, self.settings.op_timeout) => read,
                    };
                    match read {
                        Ok(topology) => {
                            let usable = topology.is_usable();
                            if usable {
                                candidates = topology.nodes.iter().map(|n| n.addr.clone()).collect();
                                candidates.extend(self.seeds.addrs());
                                backoff.reset();
                                outage_logged = false;
                                next_read = Instant::now() + self.settings.topology_interval;
                            } else {
                                next_read = Instant::now() + backoff.next_pause();
                                if !outage_logged {
                                    outage_logged = true;
                                    tracing::warn!(slots = topology.slots_assigned, "redis cluster does not serve every slot; reading its topology again");
                                }
                            }
                            self.state.topology_usable.store(usable, Ordering::Relaxed);
                            self.apply(&topology);
                        }
                        Err(e) => {
                            self.state.topology_usable.store(false, Ordering::Relaxed);
                            next_read = Instant::now() + backoff.next_pause();
                            if !outage_logged {
                                outage_logged = true;
                                tracing::warn!(error = %chain(&e), "cannot read the redis cluster topology; retrying with back-off");
                            }
                        }
                    }
                    self.update_connected();
                }
                () = self.changed.notified() => {
                    // A node's subscription came up or dropped. A drop may be
                    // a failover or a node leaving: look at the topology
                    // again soon (the replica is subscribed already).
                    let dropped = self.update_connected_and_find_drops();
                    if dropped {
                        next_read = next_read.min(Instant::now() + self.settings.backoff_min);
                    }
                }
            }
        }
        let nodes = std::mem::take(&mut *self.state.nodes.lock().expect("never poisoned: no panics while held"));
        for node in nodes.into_values() {
            node.task.abort();
        }
        self.connected.send_replace(false);
        tracing::info!("cluster expiry listener stopped");
    }

    /// Starts a listener for every node not heard yet; when the topology is
    /// usable, also stops those of nodes no longer in it (a partial answer,
    /// from a node that lost touch with the others, removes nothing).
    fn apply(&self, topology: &Topology) {
        let mut nodes = self.state.nodes.lock().expect("never poisoned: no panics while held");
        if topology.is_usable() {
            let keep: std::collections::BTreeSet<&NodeAddr> = topology.nodes.iter().map(|n| &n.addr).collect();
            let gone: Vec<NodeAddr> = nodes.keys().filter(|a| !keep.contains(a)).cloned().collect();
            for addr in gone {
                if let Some(node) = nodes.remove(&addr) {
                    node.task.abort();
                    self.retired.notices.fetch_add(node.status.notices(), Ordering::Relaxed);
                    self.retired.reconnects.fetch_add(node.status.reconnects(), Ordering::Relaxed);
                    tracing::info!(node = %addr, "node left the redis cluster; its expiry listener stopped");
                }
            }
        }
        for node in &topology.nodes {
            if nodes.contains_key(&node.addr) {
                continue;
            }
            match self.spawn_node(&node.addr) {
                Ok(listener) => {
                    tracing::info!(node = %node.addr, role = ?node.role, "listening for expired events on a cluster node");
                    nodes.insert(node.addr.clone(), listener);
                }
                Err(e) => tracing::warn!(node = %node.addr, error = %chain(&e), "cannot listen to a cluster node"),
            }
        }
    }

    fn spawn_node(&self, addr: &NodeAddr) -> Result<NodeListener, Error> {
        let client = self.seeds.client_for(addr)?;
        let (connected_tx, connected) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let task = Task {
            client,
            // A cluster has only database 0.
            channel: "__keyevent@0__:expired".to_owned(),
            settings: self.settings.clone(),
            tx: self.tx.clone(),
            connected: connected_tx,
            shared: Arc::clone(&shared),
            node: Some(NodeTask {
                addr: addr.clone(),
                changed: Arc::clone(&self.changed),
                warned_off: AtomicBool::new(false),
            }),
        };
        let task = tokio::spawn(task.run());
        Ok(NodeListener { status: ListenerStatus { connected, shared, cluster: None }, task })
    }

    /// Recomputes [`ListenerStatus::is_connected`].
    fn update_connected(&self) {
        self.update_connected_and_find_drops();
    }

    /// Recomputes [`ListenerStatus::is_connected`]; whether some node is not
    /// subscribed.
    fn update_connected_and_find_drops(&self) -> bool {
        let nodes = self.state.nodes.lock().expect("never poisoned: no panics while held");
        let down = nodes.values().any(|n| !n.status.is_connected());
        let up = self.state.topology_usable.load(Ordering::Relaxed) && !nodes.is_empty() && !down;
        self.connected.send_replace(up);
        down
    }
}

/// The server's `notify-keyspace-events` flags.
async fn notify_flags(conn: &mut redis::aio::MultiplexedConnection) -> Result<String, RedisError> {
    let reply: std::collections::HashMap<String, String> =
        redis::cmd("CONFIG").arg("GET").arg("notify-keyspace-events").query_async(conn).await?;
    reply
        .get("notify-keyspace-events")
        .cloned()
        .ok_or_else(|| RedisError::from((ErrorKind::Extension, "CONFIG GET returned no notify-keyspace-events")))
}

/// Whether `flags` make Redis publish `__keyevent@<db>__:expired`.
fn expired_events_on(flags: &str) -> bool {
    flags.contains('E') && (flags.contains('x') || flags.contains('A'))
}

/// `flags` plus what expired key events need, keeping every flag already set.
fn with_expired_events(flags: &str) -> String {
    let mut wanted = flags.to_owned();
    if !wanted.contains('E') {
        wanted.push('E');
    }
    if !(wanted.contains('x') || wanted.contains('A')) {
        wanted.push('x');
    }
    wanted
}

/// Whether `e` is the server saying no (unknown or forbidden command), as
/// opposed to the connection failing.
fn is_refusal(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// Logs, once per process, that only the sweeper releases expired carts.
fn warn_off(reason: &str) {
    if !WARNED_OFF.swap(true, Ordering::Relaxed) {
        tracing::warn!(reason, "keyspace notifications are off; expired carts are released by the sweeper only");
    }
}
