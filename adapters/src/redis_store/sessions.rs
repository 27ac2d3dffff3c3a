//! [`RedisSessions`]: the session store over a bb8 pool of multiplexed
//! connections to one server, or over one cluster connection (the `redis`
//! crate's, which keeps a multiplexed connection per node and is cloned per
//! request). Each port call is one round trip: a script for the mutations,
//! `HGETALL` for `load`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bb8::{ManageConnection, Pool, RunError};
use bb8_redis::RedisConnectionManager;
use domain::idempotency::{IdempotencyKey, KeyClaim, KeyRecord, KeyScope};
use domain::ports::{HoldReceipt, LineChange, PortError, SessionStore};
use domain::{Cart, CartId, Timestamp};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, ServerErrorKind};

use super::cluster::{self, NodeAddr, Role, Seeds, Topology};
use super::layout::{cart_from_hash, idempotency_key, line_value, product_field, record_of, record_value, session_key};
use super::scripts::Call;
use super::{Error, RedisSettings, check_prefix, redacted, scripts};
use domain::error_chain as chain;

/// The Redis [`SessionStore`]. Cheap to share behind an `Arc`; all methods
/// take `&self`.
///
/// Invariant: the session-store contract, every change one atomic script, every key of a session
/// expiring with it. Proved by `adapters/tests/redis_contract.rs` and by
/// `a_session_is_one_hash_whose_ttl_matches_its_deadline`,
/// `concurrent_applies_to_one_line_leave_the_highest_version` and
/// `scripts_are_loaded_again_after_the_server_forgets_them` (`adapters/tests/redis_store.rs`);
/// on a Redis Cluster by the same contract and
/// `scripts_a_node_forgot_run_again_even_while_another_node_is_unreachable`
/// (`adapters/tests/redis_cluster.rs`).
#[derive(Clone)]
pub struct RedisSessions {
    conn: Conn,
    prefix: String,
    op_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .field("conn", &self.conn)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSessions {
    /// Builds the pool and checks that Redis answers, so a wrong URL or an
    /// unreachable server is reported at start rather than on the first
    /// request.
    ///
    /// With [`RedisSettings::cluster_nodes`], connects to the cluster
    /// through its seeds instead, and checks that the cluster serves every
    /// slot.
    ///
    /// # Errors
    /// [`PortError`] when the URL or the settings are invalid (empty pool,
    /// braces in the prefix), or Redis does not answer a `PING` within
    /// `connect_timeout + op_timeout` (a cluster: no seed answers, or the
    /// cluster does not serve every slot).
    pub async fn connect(settings: &RedisSettings) -> Result<Self, PortError> {
        check_prefix(&settings.key_prefix)?;
        if !settings.cluster_nodes.is_empty() {
            return Self::connect_cluster(settings).await;
        }
        if settings.pool_size == 0 {
            return Err(Error::Settings("pool_size must be at least 1").into());
        }
        let manager = RedisConnectionManager::new(settings.url.as_str())
            .map_err(|source| Error::Url { url: redacted(&settings.url), source })?;
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            // A PING before every checkout would double the round trips; a
            // connection that fails is marked broken instead (see `Tracked`).
            .test_on_check_out(false)
            // Fail a request at once when Redis refuses connections, with the
            // real cause, instead of retrying until the timeout.
            .retry_connection(false)
            .connection_timeout(settings.connect_timeout)
            .build_unchecked(Manager(manager));
        let store = Self {
            conn: Conn::Single(pool),
            prefix: settings.key_prefix.clone(),
            op_timeout: settings.op_timeout,
            connect_timeout: settings.connect_timeout,
        };
        store.exec::<String>("ping", Request::Cmd(&redis::cmd("PING"))).await?;
        Ok(store)
    }

    async fn connect_cluster(settings: &RedisSettings) -> Result<Self, PortError> {
        let seeds = Seeds::parse(&settings.cluster_nodes)?;
        let conn = cluster::connect(&seeds, settings.connect_timeout, settings.op_timeout).await?;
        let store = Self {
            conn: Conn::Cluster(Box::new(ClusterConn {
                conn,
                known: Arc::new(std::sync::Mutex::new(seeds.addrs())),
                seeds,
            })),
            prefix: settings.key_prefix.clone(),
            op_timeout: settings.op_timeout,
            connect_timeout: settings.connect_timeout,
        };
        store.usable_topology("").await?;
        Ok(store)
    }

    /// Whether this store talks to a Redis Cluster.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// [`RedisSessions::topology`], refused unless every slot is served;
    /// `context` starts the refusal's message.
    async fn usable_topology(&self, context: &str) -> Result<Topology, PortError> {
        let topology = self.topology().await?;
        if !topology.is_usable() {
            return Err(Error::Protocol(format!(
                "{context}the cluster serves {} of {} slots",
                topology.slots_assigned,
                cluster::SLOTS
            ))
            .into());
        }
        Ok(topology)
    }

    /// The cluster's topology, read from the first node that answers (seeds
    /// and the nodes learnt from earlier answers).
    ///
    /// # Errors
    /// [`PortError`] when this store is not on a cluster, or no node answers.
    pub async fn topology(&self) -> Result<Topology, PortError> {
        let Conn::Cluster(c) = &self.conn else {
            return Err(Error::Settings("not a cluster").into());
        };
        let candidates = c.known.lock().expect("never poisoned: no panics while held").clone();
        let topology = cluster::read_topology(&c.seeds, &candidates, self.connect_timeout, self.op_timeout).await?;
        if topology.is_usable() {
            let mut learnt: Vec<NodeAddr> = topology.nodes.iter().map(|n| n.addr.clone()).collect();
            learnt.extend(c.seeds.addrs());
            *c.known.lock().expect("never poisoned: no panics while held") = learnt;
        }
        Ok(topology)
    }

    /// Whether Redis answers a `PING` within the timeouts, for readiness
    /// probes. On a cluster: whether a node answers `CLUSTER SHARDS` with
    /// every slot served (a `PING` through the cluster client would go to
    /// every primary and fail while any one is down).
    pub async fn ping(&self) -> bool {
        if self.is_cluster() {
            return match self.topology().await {
                Ok(t) if t.is_usable() => true,
                Ok(t) => {
                    tracing::debug!(slots = t.slots_assigned, "redis cluster does not serve every slot");
                    false
                }
                Err(e) => {
                    tracing::debug!(error = %chain(&e), "redis cluster topology unknown");
                    false
                }
            };
        }
        match self.exec::<String>("ping", Request::Cmd(&redis::cmd("PING"))).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %chain(&e), "redis ping failed");
                false
            }
        }
    }

    /// The key prefix this store writes under.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of session `id` (for tests and operators).
    #[must_use]
    pub fn key_of(&self, id: CartId) -> String {
        session_key(&self.prefix, id)
    }

    /// Runs one request, bounded by the timeouts: on a pooled connection, or
    /// on a clone of the cluster connection.
    ///
    /// The pooled connection is multiplexed: the request runs on a clone of
    /// it and the pool gets it back at once, so concurrent requests share a
    /// few connections and are pipelined on them instead of each waiting for a
    /// connection of its own.
    pub(super) async fn exec<T: FromRedisValue>(&self, op: &'static str, req: Request<'_>) -> Result<T, Error> {
        let pool = match &self.conn {
            Conn::Single(pool) => pool,
            Conn::Cluster(c) => {
                let mut conn = c.conn.clone();
                // The client bounds the request itself (`op_timeout`, retries
                // included); this bound only guards against a bug there.
                return match tokio::time::timeout(self.op_timeout, req.run(&mut conn)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(source)) if source.is_timeout() => Err(Error::Timeout { op, after: self.op_timeout }),
                    Ok(Err(source)) => Err(Error::Command { op, source }),
                    Err(_) => Err(Error::Timeout { op, after: self.op_timeout }),
                };
            }
        };
        let (mut conn, broken) = loop {
            let pooled = pool.get().await.map_err(|e| match e {
                RunError::User(e) => Error::Connect(e),
                RunError::TimedOut => Error::ConnectTimeout(self.connect_timeout),
            })?;
            // A request on a clone found this connection dead after it went
            // back to the pool: dropping the guard now makes bb8 discard it
            // (it asks `has_broken`), and the next `get` opens a fresh one.
            if !pooled.broken.load(Ordering::Relaxed) {
                break (pooled.conn.clone(), Arc::clone(&pooled.broken));
            }
        };
        let mark_broken = || broken.store(true, Ordering::Relaxed);
        let outcome = tokio::time::timeout(self.op_timeout, req.run(&mut conn)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => {
                if source.is_unrecoverable_error() || source.is_io_error() || source.is_connection_dropped() {
                    mark_broken();
                }
                Err(Error::Command { op, source })
            }
            Err(_) => {
                // The reply may still come, or the socket may be dead without
                // anyone having noticed: replace the connection either way.
                mark_broken();
                Err(Error::Timeout { op, after: self.op_timeout })
            }
        }
    }

    /// The keys matching `pattern`, each once: one `SCAN` walk on one
    /// server; on a cluster, one walk per primary of the topology (`SCAN` is
    /// node-local), each on a connection of its own. A primary the cluster
    /// marks as failed is skipped: its keys are unreachable until its replica
    /// takes over, and a primary that lost its slots to a replica stays listed
    /// as failed until it returns. For admin views, not for request paths.
    ///
    /// # Errors
    /// [`PortError`] when a node does not answer, or the cluster does not
    /// serve every slot (some keys would be missed).
    pub(super) async fn scan_keys(&self, op: &'static str, pattern: &str) -> Result<BTreeSet<String>, PortError> {
        let Conn::Cluster(c) = &self.conn else {
            let mut keys = BTreeSet::new();
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(cluster::SCAN_COUNT);
                let (next, page): (u64, Vec<String>) = self.exec(op, Request::Cmd(&scan)).await?;
                keys.extend(page);
                if next == 0 {
                    return Ok(keys);
                }
                cursor = next;
            }
        };
        let topology = self.usable_topology(&format!("{op}: ")).await?;
        let mut keys = BTreeSet::new();
        for node in topology.nodes.iter().filter(|n| n.role == Role::Primary) {
            if node.is_failed() {
                tracing::warn!(node = %node.addr, "{op}: skipping a primary marked failed");
                continue;
            }
            keys.extend(
                cluster::scan_node(&c.seeds, &node.addr, pattern, self.connect_timeout, self.op_timeout).await?,
            );
        }
        Ok(keys)
    }

    /// The pool's connections: `(open, idle)`; the others are in use. For
    /// metrics. A cluster connection counts as one open connection in use.
    #[must_use]
    pub fn pool_connections(&self) -> (u32, u32) {
        match &self.conn {
            Conn::Single(pool) => {
                let state = pool.state();
                (state.connections, state.idle_connections)
            }
            Conn::Cluster(_) => (1, 0),
        }
    }
    /// The `APPLY` script's call for this change; `quiet` makes it answer 1
    /// instead of the whole hash.
    fn apply_invocation(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
        quiet: bool,
    ) -> Call {
        let mut inv = scripts::APPLY.call();
        inv.key(session_key(&self.prefix, id))
            .arg(now.as_millis())
            .arg(receipt.version)
            .arg(receipt.expires_at.as_millis())
            .arg(product_field(&change.product_id))
            .arg(line_value(receipt.version, change.line.as_ref()))
            .arg(u8::from(quiet));
        inv
    }
}

/// A request [`RedisSessions::exec`] can send.
#[derive(Clone, Copy)]
pub(super) enum Request<'a> {
    Cmd(&'a Cmd),
    Script(&'a Call),
}

impl Request<'_> {
    /// Sends the request on `conn`; a script by its SHA-1, and again with
    /// its source when the node does not know it.
    async fn run<T: FromRedisValue, C: ConnectionLike + Send>(self, conn: &mut C) -> Result<T, RedisError> {
        match self {
            Request::Cmd(cmd) => cmd.query_async(conn).await,
            Request::Script(call) => match call.evalsha().query_async(conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    call.eval().query_async(conn).await
                }
                other => other,
            },
        }
    }
}

/// How the store reaches Redis.
#[derive(Clone)]
enum Conn {
    /// One server, through a pool of multiplexed connections.
    Single(Pool<Manager>),
    /// A cluster, through one cloneable connection.
    Cluster(Box<ClusterConn>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Single(pool) => f.debug_tuple("Single").field(&pool.state()).finish(),
            Conn::Cluster(c) => f.debug_tuple("Cluster").field(&c.seeds).finish(),
        }
    }
}

/// The cluster connection and what is needed to read the topology.
#[derive(Clone)]
struct ClusterConn {
    conn: ClusterConnection,
    seeds: Seeds,
    /// Nodes to ask for the topology: the last usable topology's, then the
    /// seeds.
    known: Arc<std::sync::Mutex<Vec<NodeAddr>>>,
}

impl SessionStore for RedisSessions {
    async fn create(&self, id: CartId, expires_at: Timestamp, _now: Timestamp) -> Result<(), PortError> {
        let mut inv = scripts::CREATE.call();
        inv.key(session_key(&self.prefix, id)).arg(expires_at.as_millis());
        self.exec::<i64>("create", Request::Script(&inv)).await?;
        Ok(())
    }

    async fn load(&self, id: CartId, now: Timestamp) -> Result<Option<Cart>, PortError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(session_key(&self.prefix, id));
        let fields: Vec<Vec<u8>> = self.exec("load", Request::Cmd(&cmd)).await?;
        Ok(cart_from_hash(id, &fields, Some(now)))
    }

    async fn apply(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> Result<Option<Cart>, PortError> {
        let inv = self.apply_invocation(id, change, receipt, now, false);
        let fields: Option<Vec<Vec<u8>>> = self.exec("apply", Request::Script(&inv)).await?;
        // The script found the session live at `now` and never moves its
        // deadline back, so the cart it returns needs no second check.
        Ok(fields.and_then(|fields| cart_from_hash(id, &fields, None)))
    }

    async fn apply_only(
        &self,
        id: CartId,
        change: &LineChange,
        receipt: HoldReceipt,
        now: Timestamp,
    ) -> Result<bool, PortError> {
        let inv = self.apply_invocation(id, change, receipt, now, true);
        let applied: Option<i64> = self.exec("apply", Request::Script(&inv)).await?;
        Ok(applied.is_some())
    }

    async fn close(&self, id: CartId, now: Timestamp) -> Result<bool, PortError> {
        let mut inv = scripts::CLOSE.call();
        inv.key(session_key(&self.prefix, id)).arg(now.as_millis());
        let live: i64 = self.exec("close", Request::Script(&inv)).await?;
        Ok(live == 1)
    }

    async fn claim_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        record: &KeyRecord,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<KeyClaim, PortError> {
        let mut inv = scripts::CLAIM_KEY.call();
        inv.key(idempotency_key(&self.prefix, scope, key))
            .arg(record_value(record, until))
            .arg(until.as_millis())
            .arg(now.as_millis());
        let held: Option<String> = self.exec("claim_key", Request::Script(&inv)).await?;
        match held {
            None => Ok(KeyClaim::Claimed),
            Some(value) => record_of(&value).map(KeyClaim::Taken).ok_or_else(|| {
                PortError::new("redis", Error::Protocol(format!("unreadable idempotency record {value:?}")))
            }),
        }
    }

    async fn settle_key(
        &self,
        scope: KeyScope,
        key: &IdempotencyKey,
        cart: CartId,
        until: Option<Timestamp>,
        _now: Timestamp,
    ) -> Result<(), PortError> {
        let mut inv = scripts::SETTLE_KEY.call();
        let until = until.map_or_else(String::new, |t| t.as_millis().to_string());
        inv.key(idempotency_key(&self.prefix, scope, key)).arg(cart.to_string()).arg(until);
        let _: i64 = self.exec("settle_key", Request::Script(&inv)).await?;
        Ok(())
    }
}

/// A pooled connection and whether a request on it failed in a way that
/// leaves it unusable.
///
/// bb8-redis never reports its multiplexed connections as broken, and with
/// `test_on_check_out` off nothing else would notice a dead one: after a Redis
/// restart every pooled connection would keep failing until its lifetime ran
/// out. Marking a connection broken when a request on it fails with an I/O
/// error or a timeout makes bb8 drop it and open a fresh one.
struct Tracked {
    conn: MultiplexedConnection,
    /// Shared with the clones requests run on, which may fail after the
    /// pooled connection went back to the pool.
    broken: Arc<AtomicBool>,
}

/// bb8-redis's manager, with broken connections reported (see [`Tracked`]).
struct Manager(RedisConnectionManager);

impl ManageConnection for Manager {
    type Connection = Tracked;
    type Error = RedisError;

    async fn connect(&self) -> Result<Tracked, RedisError> {
        self.0.connect().await.map(|conn| Tracked { conn, broken: Arc::new(AtomicBool::new(false)) })
    }

    async fn is_valid(&self, conn: &mut Tracked) -> Result<(), RedisError> {
        self.0.is_valid(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut Tracked) -> bool {
        conn.broken.load(Ordering::Relaxed)
    }
}
