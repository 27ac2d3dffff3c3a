//! Redis session store and keyspace-expiry listener: the production
//! [`SessionStore`](domain::ports::SessionStore) and
//! [`ExpiryEvents`](domain::ports::ExpiryEvents).
//!
//! Redis keeps each cart as one hash whose key expires with the session, so no
//! cart data can outlive its session (the tutorial's cart hash had no TTL), and
//! every mutation is one Lua script, so a session cannot expire between a check
//! and a write. Every key of a session carries the session id as a Redis Cluster
//! hash tag (`{<uuid>}`), so every key of a session lives in one slot of a
//! Redis Cluster and every script touches one slot. The store talks to one
//! server over a bb8 pool, or to a cluster over the `redis` crate's cluster
//! client when [`RedisSettings::cluster_nodes`] names seed nodes (its
//! timeouts are set in the private `cluster` module).
//!
//! The listener turns keyspace `expired` events into cart ids. Those events are
//! late, lost while disconnected and absent when the server has notifications
//! off, so they are only the fast path: the ledger's deadline and the sweeper
//! are what release stock.
//!
//! # Key layout
//!
//! One hash per session, `{prefix}cart:{<uuid>}`:
//!
//! | field | value |
//! |---|---|
//! | `@` | the deadline, milliseconds since the Unix epoch, in decimal |
//! | a product id | `"<version> <quantity> <inventory_id>"`, or `"<version>"` for a removed line (a tombstone, so an older change arriving late cannot bring the line back) |
//!
//! A product id that is a UUID in its canonical form (lowercase, hyphenated) is
//! stored as `#` followed by the UUID's 16 bytes rather than its 36 characters:
//! product ids make up most of a cart's memory, and this is what brings a cart
//! to less than half the memory of the tutorial's layout. `#` is outside the
//! product-id alphabet, so the two forms cannot be confused. The key expires at
//! the deadline (`PEXPIREAT`), and the stored deadline is also compared with the
//! caller's `now`, so a session is over at its deadline even before Redis has
//! deleted the key.

mod cluster;
mod layout;
mod listener;
mod quotas;
mod scripts;
mod sessions;

use std::fmt;
use std::time::Duration;

use domain::ports::PortError;

pub use cluster::{Node, NodeAddr, Role, Topology};
pub use listener::{ListenerSettings, ListenerStatus, Notifications, RedisExpiryListener};
pub use quotas::RedisQuotas;
pub use sessions::RedisSessions;

/// Where and how the session store reaches Redis.
///
/// Invariant: never shows the password. Proved by `settings_do_not_show_the_password`
/// (`adapters/tests/redis_store.rs`).
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`. May carry a password: it is
    /// never logged (the `Debug` output hides it).
    pub url: String,
    /// Prepended to every key, so several deployments (or tests) can share one
    /// server. Must not contain `{` or `}`: the braces after it are the
    /// session's hash tag.
    pub key_prefix: String,
    /// Most pooled connections. Each is multiplexed, so a few serve many
    /// concurrent requests.
    pub pool_size: u32,
    /// Longest wait for one command's reply. Note that bb8-redis opens its
    /// connections with the `redis` crate's own 500 ms response timeout, so
    /// values above that do not lengthen the wait.
    pub op_timeout: Duration,
    /// Longest wait for a connection (from the pool, or a new one).
    pub connect_timeout: Duration,
    /// Redis Cluster seed nodes (`redis://host:port` each, same credentials
    /// for all). Empty: one server at `url`. Otherwise `url` is not used:
    /// the store speaks to the cluster through the `redis` crate's cluster
    /// client, which learns every node from the seeds, and `op_timeout`
    /// bounds each request including its retries and redirections.
    pub cluster_nodes: Vec<String>,
}

impl RedisSettings {
    /// Settings for `url` with the defaults: prefix `cartd:`, 8 connections,
    /// 500 ms per command, 1 s to connect.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "cartd:".to_owned(),
            pool_size: 8,
            op_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            cluster_nodes: Vec::new(),
        }
    }

    /// Settings for a cluster reached through `seeds`, with the defaults.
    #[must_use]
    pub fn cluster(seeds: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let cluster_nodes: Vec<String> = seeds.into_iter().map(Into::into).collect();
        Self { cluster_nodes, ..Self::new(String::new()) }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redacted(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("cluster_nodes", &self.cluster_nodes.iter().map(|u| redacted(u)).collect::<Vec<_>>())
            .finish()
    }
}

/// `url` with any user and password replaced by `***`, for logs.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => "<unparseable url>".to_owned(),
    }
}

/// What went wrong talking to Redis. Private: callers see [`PortError`], which
/// keeps this as its source so logs show the cause.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("invalid redis url {url}")]
    Url {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("invalid settings: {0}")]
    Settings(&'static str),
    #[error("cannot connect")]
    Connect(#[source] redis::RedisError),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("{op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    #[error("{op} failed")]
    Command {
        op: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("unexpected answer from redis: {0}")]
    Protocol(String),
}

impl From<Error> for PortError {
    fn from(e: Error) -> Self {
        PortError::new("redis", e)
    }
}

/// Checks the parts of the settings the listener and the store share.
fn check_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.contains(['{', '}']) {
        return Err(Error::Settings("key_prefix must not contain `{` or `}`"));
    }
    Ok(())
}

/// Opens a client for `url` without connecting.
fn client(url: &str) -> Result<redis::Client, Error> {
    redis::Client::open(url).map_err(|source| Error::Url { url: redacted(url), source })
}
