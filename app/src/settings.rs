//! Configuration: built-in defaults, then an optional TOML file, then
//! `CART__<SECTION>__<KEY>` environment variables, parsed into typed settings
//! before any socket is bound. An invalid value stops the binary at start with
//! a message that names the key.
//!
//! Each section is one struct, read straight from the sources: its fields
//! are the keys (a `_ms` or `_secs` key is a [`Duration`] field), its
//! `Default` holds the defaults, and the rules on its values sit on its
//! fields (`deserialize_with`), so a key is spelled once in code and once in
//! `docs/configuration.md`; `every_documented_key_exists_and_every_key_is_documented`
//! keeps the two equal. The PostgreSQL and Redis defaults are the adapters'
//! own (`PgSettings::new`, `RedisSettings::new`), and `hold_batch_mode` is the
//! adapter's enum.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use adapters::postgres_store::{HoldBatchMode, PgSettings};
use adapters::redis_store::{ListenerSettings, RedisSettings as StoreSettings};
use config::{Config, ConfigError, Environment, File, FileFormat, Source};
use domain::{ExpiryMode, ExpiryPolicy, Limits, PolicyError, SessionTtl};
use serde::Deserialize;
use serde::de::{self, Deserializer};
#[cfg(test)]
use serde::{Serialize, Serializer};

use crate::live::LiveSettings;

/// The default `redis.url`.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The default `postgres.url`.
const DEFAULT_POSTGRES_URL: &str = "postgres://cartd:cartd@127.0.0.1:5432/cartd";

/// Which adapters back the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-memory adapters: nothing else to run, nothing persisted.
    #[default]
    Memory,
    /// Redis for sessions, PostgreSQL for stock and holds.
    Redis,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    #[must_use]
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret itself; call only where it is used.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Typed, validated settings: one field per section (`backend` is a key of
/// its own).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Which adapters back the service.
    pub backend: Backend,
    /// HTTP server settings.
    pub http: HttpSettings,
    /// Redis settings.
    pub redis: RedisSettings,
    /// PostgreSQL settings.
    #[serde(deserialize_with = "checked")]
    pub postgres: PostgresSettings,
    /// The Redis keyspace-expiry listener.
    pub listener: ListenerSection,
    /// Session TTL and mode (the `[session]` section).
    #[serde(rename = "session", with = "session")]
    pub expiry: ExpiryPolicy,
    /// The sweeper.
    pub sweeper: SweeperSettings,
    /// Cart size limits.
    #[serde(with = "limits")]
    pub limits: Limits,
    /// The admin API.
    pub admin: AdminSettings,
    /// CORS.
    pub cors: CorsSettings,
    /// Logging.
    pub log: LogSettings,
    /// Demo catalogue.
    pub demo: Demo,
    /// The storefront page.
    pub storefront: StorefrontSettings,
    /// Live stock streams.
    #[serde(deserialize_with = "checked")]
    pub live: LiveSettings,
    /// Client quotas (issue 14).
    pub quotas: QuotaSettings,
}

impl Default for Settings {
    /// The embedded service: in-memory backend on `127.0.0.1:8080`, with
    /// the demo catalogue and the storefront.
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            http: HttpSettings::default(),
            redis: RedisSettings::default(),
            postgres: PostgresSettings::default(),
            listener: ListenerSection::default(),
            expiry: session::default(),
            sweeper: SweeperSettings::default(),
            limits: Limits::default(),
            admin: AdminSettings::default(),
            cors: CorsSettings::default(),
            log: LogSettings::default(),
            demo: Demo::default(),
            storefront: StorefrontSettings::default(),
            live: LiveSettings::default(),
            quotas: QuotaSettings::default(),
        }
    }
}

/// HTTP server settings (`[http]`).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on (port 0 picks a free one).
    pub addr: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    #[serde(deserialize_with = "within::<_, _, 256, 16_777_216>")]
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers.
    #[serde(rename = "header_read_timeout_ms", deserialize_with = "millis_at_least_one", serialize_with = "as_millis")]
    pub header_read_timeout: Duration,
    /// How long one request may take, from its headers to the response
    /// (reading a slow body included); longer is `408 request_timeout`.
    #[serde(
        rename = "request_timeout_ms",
        deserialize_with = "millis_within::<_, 1, 3_600_000>",
        serialize_with = "as_millis"
    )]
    pub request_timeout: Duration,
    /// Largest request head (request line and headers); larger is 431.
    #[serde(deserialize_with = "within::<_, _, 1024, 1_048_576>")]
    pub max_header_bytes: usize,
    /// Most header fields in one request; more is 431.
    #[serde(deserialize_with = "within::<_, _, 8, 1000>")]
    pub max_headers: usize,
    /// Connections served at once; more wait in the accept queue.
    #[serde(deserialize_with = "at_least_one")]
    pub max_connections: usize,
    /// How long in-flight requests may run on after shutdown is asked for.
    #[serde(rename = "shutdown_grace_ms", deserialize_with = "millis", serialize_with = "as_millis")]
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Redis settings (`[redis]`, the `redis` backend). The session store's and
/// the expiry listener's settings are made from it (`crate::compose`).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]`.
    #[serde(deserialize_with = "redis_url")]
    pub url: Secret,
    /// Prefix of every key cartd writes, so several deployments (or tests) can
    /// share one server.
    #[serde(deserialize_with = "key_prefix")]
    pub key_prefix: String,
    /// Connections in the pool (each is multiplexed).
    #[serde(deserialize_with = "at_least_one")]
    pub pool_size: u32,
    /// Longest time one Redis operation may take before the request gets 503.
    #[serde(rename = "timeout_ms", deserialize_with = "millis_at_least_one", serialize_with = "as_millis")]
    pub timeout: Duration,
    /// Whether cartd may `CONFIG SET notify-keyspace-events` to get expiry events.
    pub configure_notifications: bool,
    /// Redis Cluster seed nodes, comma-separated `redis://host:port` URLs;
    /// empty for one server at `url`.
    #[serde(deserialize_with = "cluster_nodes")]
    pub cluster_nodes: Secret,
}

impl RedisSettings {
    /// The cluster's seed URLs; empty on one server.
    #[must_use]
    pub fn cluster_seeds(&self) -> Vec<String> {
        seed_list(self.cluster_nodes.expose())
    }
}

fn seed_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Default for RedisSettings {
    /// The session store's and the listener's own defaults.
    fn default() -> Self {
        let store = StoreSettings::new(DEFAULT_REDIS_URL);
        let listener = ListenerSettings::for_store(&store);
        Self {
            url: Secret::new(store.url),
            key_prefix: store.key_prefix,
            pool_size: store.pool_size,
            timeout: store.op_timeout,
            configure_notifications: listener.configure_notifications,
            cluster_nodes: Secret::new(store.cluster_nodes.join(",")),
        }
    }
}

/// PostgreSQL settings (`[postgres]`, the `redis` backend). The adapter's
/// [`PgSettings`] are made from it (`crate::compose`).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`.
    #[serde(deserialize_with = "postgres_url")]
    pub url: Secret,
    /// Schema to use instead of `public` (created when missing); empty is `None`.
    #[serde(deserialize_with = "schema", serialize_with = "empty_if_none")]
    pub schema: Option<String>,
    /// Connections in the pool.
    #[serde(deserialize_with = "at_least_one")]
    pub pool_size: usize,
    /// Longest time one operation may take before the request gets 503.
    #[serde(rename = "timeout_ms", deserialize_with = "millis_at_least_one", serialize_with = "as_millis")]
    pub timeout: Duration,
    /// Apply pending migrations at start.
    pub migrate_on_start: bool,
    /// Most holds grouped into one transaction.
    #[serde(deserialize_with = "within::<_, _, 1, 10_000>")]
    pub hold_batch_max: usize,
    /// Batches of holds running at once (each on its own connection); at
    /// most `pool_size`.
    pub hold_batches_in_flight: usize,
    /// How a batch of holds runs.
    #[serde(with = "HoldBatchModeKey")]
    pub hold_batch_mode: HoldBatchMode,
}

impl Default for PostgresSettings {
    /// The adapter's own defaults.
    fn default() -> Self {
        let pg = PgSettings::new(DEFAULT_POSTGRES_URL);
        Self {
            url: Secret::new(pg.url),
            schema: pg.schema,
            pool_size: pg.pool_size,
            timeout: pg.op_timeout,
            migrate_on_start: true,
            hold_batch_max: pg.hold_batch_max,
            hold_batches_in_flight: pg.hold_batches_in_flight,
            hold_batch_mode: pg.hold_batch_mode,
        }
    }
}

impl CrossCheck for PostgresSettings {
    fn check(&self) -> Result<(), Refusal> {
        if self.hold_batches_in_flight == 0 || self.hold_batches_in_flight > self.pool_size {
            return Err(Refusal::at("hold_batches_in_flight", "must be between 1 and postgres.pool_size"));
        }
        Ok(())
    }
}

/// The adapter's [`HoldBatchMode`], as `planned` or `reference` (serde's
/// mirror of a foreign enum: it must list exactly the adapter's variants).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(remote = "HoldBatchMode", rename = "HoldBatchMode", rename_all = "lowercase")]
enum HoldBatchModeKey {
    Planned,
    Reference,
}

/// The Redis keyspace-expiry listener (`[listener]`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct ListenerSection {
    /// Whether to run it (the sweeper always runs).
    pub enabled: bool,
}

impl Default for ListenerSection {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The sweeper (`[sweeper]`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct SweeperSettings {
    /// How often it looks for holds past their deadline.
    #[serde(rename = "interval_ms", deserialize_with = "millis_at_least_one", serialize_with = "as_millis")]
    pub interval: Duration,
    /// Carts released per batch.
    #[serde(deserialize_with = "at_least_one")]
    pub batch: u32,
    /// Batches running at once.
    #[serde(deserialize_with = "within::<_, _, 1, 16>")]
    pub concurrency: usize,
}

impl Default for SweeperSettings {
    fn default() -> Self {
        Self { interval: Duration::from_millis(200), batch: 10_000, concurrency: 2 }
    }
}

/// The admin API (`[admin]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The bearer token; `None` (empty) means generate one at start.
    #[serde(deserialize_with = "admin_token", serialize_with = "empty_if_none")]
    pub token: Option<Secret>,
}

/// CORS (`[cors]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed (`*` for any); empty disables CORS. A list in a file,
    /// one comma-separated string in the environment.
    #[serde(deserialize_with = "origins")]
    pub allowed_origins: Vec<String>,
}

/// Logging (`[log]`).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Log format.
    pub format: LogFormat,
    /// `tracing` filter directive (e.g. `info,cartd=debug`).
    #[serde(deserialize_with = "log_filter")]
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Human, filter: "info".to_owned() }
    }
}

/// The demo catalogue seeded on the in-memory backend (`[demo]`).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct Demo {
    /// Whether to seed it.
    pub seed: bool,
    /// Items `inv-1` ..= `inv-<items>`.
    pub items: u32,
    /// Units available of each.
    pub units: u32,
}

impl Default for Demo {
    fn default() -> Self {
        Self { seed: true, items: 100, units: 1000 }
    }
}

/// The storefront page (`GET /`, `[storefront]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct StorefrontSettings {
    /// Whether `/`, its assets and `/v1/catalog` are served.
    pub enabled: bool,
    /// A JSON catalogue file; `None` (empty) means the built-in demo catalogue.
    #[serde(deserialize_with = "catalog", serialize_with = "empty_if_none")]
    pub catalog: Option<PathBuf>,
}

impl Default for StorefrontSettings {
    fn default() -> Self {
        Self { enabled: true, catalog: None }
    }
}

/// What a quota does when its store (Redis) cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Let the request through unchecked (logged and counted).
    Open,
    /// Refuse it with `503` and `Retry-After`.
    Closed,
}

/// Client quotas against denial of inventory (`[quotas]`): see
/// `docs/configuration.md` for why the defaults are what they are.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSettings {
    /// Whether any quota is checked.
    pub enabled: bool,
    /// Carts one client may open per minute (0: no limit).
    pub carts_per_minute: u32,
    /// Carts one client may have open at once (0: no limit).
    pub open_carts: u32,
    /// Units of one item one client may hold across its carts (0: no limit).
    pub held_units: u32,
    /// The same, as a percentage of the item's stock (0: no limit).
    #[serde(deserialize_with = "within::<_, _, 0, 100>")]
    pub held_share_percent: u32,
    /// The share quota never caps below this many units.
    pub held_share_floor: u32,
    /// Peers whose `X-Forwarded-For` / `Forwarded` is believed (CIDR blocks or
    /// addresses). A list in a file, one comma-separated string in the
    /// environment.
    #[serde(deserialize_with = "proxies")]
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are grouped by this prefix length.
    #[serde(deserialize_with = "within::<_, _, 1, 128>")]
    pub ipv6_prefix: u8,
    /// The cart quotas when Redis is down.
    pub fail_carts: FailMode,
    /// The held-units quotas when Redis is down.
    pub fail_holds: FailMode,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            carts_per_minute: 120,
            open_carts: 200,
            held_units: 0,
            held_share_percent: 20,
            held_share_floor: 10,
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
            fail_carts: FailMode::Open,
            fail_holds: FailMode::Closed,
        }
    }
}

impl QuotaSettings {
    /// The domain's policy: every quota off when `enabled` is false, 0 as off.
    #[must_use]
    pub fn policy(&self) -> domain::QuotaPolicy {
        if !self.enabled {
            return domain::QuotaPolicy::OFF;
        }
        let on = |v: u32| (v > 0).then_some(v);
        domain::QuotaPolicy::new(
            on(self.carts_per_minute),
            on(self.open_carts),
            on(self.held_units),
            on(self.held_share_percent),
        )
        .expect("0 is read as off and the share is range-checked, so every value is valid")
        .with_share_floor(self.held_share_floor)
    }

    /// The trusted proxies, parsed (checked when read).
    #[must_use]
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.iter().filter_map(|p| parse_net(p)).collect()
    }
}

/// A CIDR block, or one address (as a /32 or /128).
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn proxies<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Proxies {
        List(Vec<String>),
        Text(String),
    }
    let proxies = match Proxies::deserialize(d)? {
        Proxies::List(v) => v,
        Proxies::Text(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    };
    for proxy in &proxies {
        if parse_net(proxy).is_none() {
            return Err(Refusal::new(format_args!("{proxy:?} is not an IP address or a CIDR block")).into_error());
        }
    }
    Ok(proxies)
}

/// A configuration error, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The sources could not be read or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Load(#[from] ConfigError),
    /// A value has the right type but is out of range.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The key, e.g. `session.ttl_secs`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Settings {
    /// Loads settings from the defaults, the optional file and the process
    /// environment.
    ///
    /// # Errors
    /// [`SettingsError`] naming the key at fault.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::from_sources(file, Self::environment())
    }

    /// The `CART__SECTION__KEY` environment source.
    pub fn environment() -> Environment {
        // No `try_parsing`: it would turn a token made of digits into a number
        // (losing leading zeros). Typed fields parse their strings themselves.
        Environment::with_prefix("CART").prefix_separator("__").separator("__")
    }

    /// Loads settings from the defaults, the optional file and `overrides` (the
    /// environment in production, a map in tests).
    ///
    /// # Errors
    /// [`SettingsError`] naming the key at fault.
    pub fn from_sources(
        file: Option<&Path>,
        overrides: impl Source + Send + Sync + 'static,
    ) -> Result<Self, SettingsError> {
        // The defaults are the sections' `Default`s (`#[serde(default)]`).
        let mut builder = Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let read = builder.add_source(overrides).build()?.try_deserialize();
        read.map_err(SettingsError::from_config)
    }
}

impl SettingsError {
    /// A refusal raised by a rule below comes back from `config` as a
    /// message at the key it was reading: put the key first, as
    /// `invalid configuration: <key>: <reason>`. Any other error is `config`'s own.
    fn from_config(e: ConfigError) -> Self {
        if let ConfigError::At { error, key: Some(key), .. } = &e
            && let ConfigError::Message(message) = error.as_ref()
            && let Some((below, reason)) = Refusal::parse(message)
        {
            let key = if below.is_empty() { key.clone() } else { format!("{key}.{below}") };
            return Self::Invalid { key, reason: reason.to_owned() };
        }
        Self::Load(e)
    }
}

// ---------------------------------------------------------------------------
// Rules on values. Each runs while its key is read, so the key at fault is
// the one `config` was reading; a refusal travels through serde as a marked
// message, which `SettingsError::from_config` turns back into a key and a
// reason.

/// A value of the right type that a rule refuses.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The key below the one being read that is at fault (a section's rules
    /// that span keys); empty for that key itself.
    below: &'static str,
    reason: String,
}

/// Marks a refusal's message, so that it cannot be taken for `config`'s own.
const REFUSAL: char = '\u{1}';

impl Refusal {
    fn new(reason: impl Display) -> Self {
        Self { below: "", reason: reason.to_string() }
    }

    pub(crate) fn at(below: &'static str, reason: impl Display) -> Self {
        Self { below, reason: reason.to_string() }
    }

    fn into_error<E: de::Error>(self) -> E {
        E::custom(format_args!("{REFUSAL}{}{REFUSAL}{}", self.below, self.reason))
    }

    /// The key below and the reason of a marked message.
    fn parse(message: &str) -> Option<(&str, &str)> {
        message.strip_prefix(REFUSAL)?.split_once(REFUSAL)
    }
}

/// Rules of a section that span several of its keys, checked once it is read.
pub(crate) trait CrossCheck {
    /// The first rule broken, if any.
    fn check(&self) -> Result<(), Refusal>;
}

/// Reads a section, then applies its [`CrossCheck`].
fn checked<'de, D: Deserializer<'de>, T: Deserialize<'de> + CrossCheck>(d: D) -> Result<T, D::Error> {
    let section = T::deserialize(d)?;
    section.check().map_err(Refusal::into_error)?;
    Ok(section)
}

/// A count in `MIN ..= MAX` (`MAX = u64::MAX`: no upper bound).
pub(crate) fn within<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Copy + TryInto<u64>,
{
    let value = T::deserialize(d)?;
    let n: u64 = value.try_into().unwrap_or(u64::MAX);
    if (MIN..=MAX).contains(&n) {
        Ok(value)
    } else if MAX == u64::MAX {
        Err(Refusal::new(format_args!("must be at least {MIN}")).into_error())
    } else {
        Err(Refusal::new(format_args!("must be between {MIN} and {MAX}")).into_error())
    }
}

/// A count of at least 1.
fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Copy + TryInto<u64>,
{
    within::<D, T, 1, { u64::MAX }>(d)
}

/// A duration written in milliseconds (`_ms` keys).
pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// Milliseconds in `MIN ..= MAX`.
pub(crate) fn millis_within<'de, D: Deserializer<'de>, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<Duration, D::Error> {
    within::<D, u64, MIN, MAX>(d).map(Duration::from_millis)
}

/// Milliseconds, at least 1.
fn millis_at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    millis_within::<D, 1, { u64::MAX }>(d)
}

/// A duration as the milliseconds of a `_ms` key.
#[cfg(test)]
pub(crate) fn as_millis<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(value.as_millis()).map_err(serde::ser::Error::custom)?)
}

/// Text where empty means "not set".
fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.is_empty()).then_some(text))
}

#[cfg(test)]
fn empty_if_none<S: Serializer, T: Serialize>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => v.serialize(s),
        None => s.serialize_str(""),
    }
}

#[cfg(test)]
impl Serialize for Secret {
    /// The secret itself: only tests serialize settings.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

fn redis_url<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let url = Secret::deserialize(d)?;
    if !url.expose().starts_with("redis://") {
        return Err(Refusal::new("must start with redis://").into_error());
    }
    Ok(url)
}

fn cluster_nodes<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let list = Secret::deserialize(d)?;
    if seed_list(list.expose()).iter().any(|url| !url.starts_with("redis://")) {
        return Err(Refusal::new("every seed must start with redis://").into_error());
    }
    Ok(list)
}

fn key_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let prefix = String::deserialize(d)?;
    if prefix.contains(['{', '}', ' ']) {
        return Err(Refusal::new("must not contain braces or spaces").into_error());
    }
    Ok(prefix)
}

fn postgres_url<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let url = Secret::deserialize(d)?;
    if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://")) {
        return Err(Refusal::new("must start with postgres://").into_error());
    }
    Ok(url)
}

/// Empty, or a lowercase identifier of at most 63 bytes.
fn schema<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let schema = optional_text(d)?;
    if let Some(s) = &schema {
        let ok = s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !s.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(Refusal::new("must be a lowercase identifier").into_error());
        }
    }
    Ok(schema)
}

/// Empty (generate one at start), or at least 16 characters.
fn admin_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let token = Secret::deserialize(d)?;
    match token.expose().len() {
        0 => Ok(None),
        1..16 => Err(Refusal::new("must be at least 16 characters").into_error()),
        _ => Ok(Some(token)),
    }
}

/// A list in a file, or one comma-separated string in the environment; each
/// `*` or an http(s) origin that is a valid header value.
fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Origins {
        List(Vec<String>),
        Text(String),
    }
    let origins = match Origins::deserialize(d)? {
        Origins::List(v) => v,
        Origins::Text(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    };
    for origin in &origins {
        let ok = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && http::HeaderValue::from_str(origin).is_ok());
        if !ok {
            return Err(Refusal::new(format_args!("{origin:?} is not `*` or an http(s) origin")).into_error());
        }
    }
    Ok(origins)
}

fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let filter = String::deserialize(d)?;
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| Refusal::new(e).into_error::<D::Error>())?;
    Ok(filter)
}

fn catalog<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(optional_text(d)?.map(PathBuf::from))
}

/// `[session]`: the domain's [`ExpiryPolicy`], as `ttl_secs` and `sliding`.
mod session {
    use super::*;

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    #[serde(default, deny_unknown_fields)]
    struct Keys {
        ttl_secs: u64,
        sliding: bool,
    }

    impl From<&ExpiryPolicy> for Keys {
        fn from(p: &ExpiryPolicy) -> Self {
            Self { ttl_secs: p.ttl.get().as_secs(), sliding: p.mode == ExpiryMode::Sliding }
        }
    }

    impl Default for Keys {
        fn default() -> Self {
            Self::from(&default())
        }
    }

    /// 900 s, fixed.
    pub(super) fn default() -> ExpiryPolicy {
        let ttl = SessionTtl::new(Duration::from_secs(900)).expect("900 s is a valid session ttl");
        ExpiryPolicy { ttl, mode: ExpiryMode::Fixed }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ExpiryPolicy, D::Error> {
        let keys = Keys::deserialize(d)?;
        let ttl = SessionTtl::new(Duration::from_secs(keys.ttl_secs))
            .map_err(|e| Refusal::at("ttl_secs", e).into_error::<D::Error>())?;
        Ok(ExpiryPolicy { ttl, mode: if keys.sliding { ExpiryMode::Sliding } else { ExpiryMode::Fixed } })
    }

    #[cfg(test)]
    pub(super) fn serialize<S: Serializer>(value: &ExpiryPolicy, s: S) -> Result<S::Ok, S::Error> {
        Keys::from(value).serialize(s)
    }
}

/// `[limits]`: the domain's [`Limits`], as `max_quantity` and `max_lines`.
mod limits {
    use super::*;

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    #[serde(default, deny_unknown_fields)]
    struct Keys {
        max_quantity: u32,
        max_lines: u16,
    }

    impl From<&Limits> for Keys {
        fn from(l: &Limits) -> Self {
            Self { max_quantity: l.max_quantity(), max_lines: l.max_lines() }
        }
    }

    impl Default for Keys {
        fn default() -> Self {
            Self::from(&Limits::default())
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Limits, D::Error> {
        let keys = Keys::deserialize(d)?;
        Limits::new(keys.max_quantity, keys.max_lines).map_err(|e| {
            let key = if matches!(e, PolicyError::MaxLines) { "max_lines" } else { "max_quantity" };
            Refusal::at(key, e).into_error()
        })
    }

    #[cfg(test)]
    pub(super) fn serialize<S: Serializer>(value: &Limits, s: S) -> Result<S::Ok, S::Error> {
        Keys::from(value).serialize(s)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use config::Map;

    /// The environment source, fed from a map instead of the process
    /// environment.
    fn vars(vars: Vec<(&'static str, &'static str)>) -> Environment {
        Settings::environment()
            .source(Some(vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Map<_, _>>()))
    }

    fn load(v: Vec<(&'static str, &'static str)>) -> Result<Settings, SettingsError> {
        Settings::from_sources(None, vars(v))
    }

    #[test]
    fn defaults_describe_the_embedded_service() {
        let s = load(vec![]).unwrap();
        assert_eq!(s.backend, Backend::Memory);
        assert_eq!(s.http.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.expiry.ttl.get(), Duration::from_secs(900));
        assert_eq!(s.expiry.mode, ExpiryMode::Fixed);
        assert_eq!((s.limits.max_quantity(), s.limits.max_lines()), (100, 50));
        assert!(s.admin.token.is_none());
        assert!(s.cors.allowed_origins.is_empty());
        assert_eq!(s.http.request_timeout, Duration::from_secs(10));
        assert_eq!((s.http.max_header_bytes, s.http.max_headers), (16384, 100));
    }

    #[test]
    fn quotas_are_read_checked_and_turned_off_by_zero_or_enabled_false() {
        let s = load(vec![
            ("CART__QUOTAS__CARTS_PER_MINUTE", "0"),
            ("CART__QUOTAS__HELD_UNITS", "30"),
            ("CART__QUOTAS__TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("CART__QUOTAS__FAIL_HOLDS", "open"),
        ])
        .unwrap();
        let p = s.quotas.policy();
        assert_eq!(
            (p.carts_per_minute(), p.open_carts(), p.held_units(), p.held_share_percent()),
            (None, Some(200), Some(30), Some(20))
        );
        assert_eq!(s.quotas.trusted_proxy_nets().len(), 2);
        assert_eq!(s.quotas.fail_holds, FailMode::Open);
        let off = load(vec![("CART__QUOTAS__ENABLED", "false")]).unwrap();
        assert_eq!(off.quotas.policy(), domain::QuotaPolicy::OFF);
        for (vars, key) in [
            (vec![("CART__QUOTAS__HELD_SHARE_PERCENT", "101")], "quotas.held_share_percent"),
            (vec![("CART__QUOTAS__TRUSTED_PROXIES", "10.0.0.0/8,proxy.example")], "quotas.trusted_proxies"),
            (vec![("CART__QUOTAS__IPV6_PREFIX", "0")], "quotas.ipv6_prefix"),
        ] {
            match load(vars) {
                Err(SettingsError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn request_limits_can_be_set() {
        let s = load(vec![
            ("CART__HTTP__REQUEST_TIMEOUT_MS", "250"),
            ("CART__HTTP__MAX_HEADER_BYTES", "8192"),
            ("CART__HTTP__MAX_HEADERS", "32"),
        ])
        .unwrap();
        assert_eq!(s.http.request_timeout, Duration::from_millis(250));
        assert_eq!((s.http.max_header_bytes, s.http.max_headers), (8192, 32));
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = load(vec![
            ("CART__HTTP__ADDR", "127.0.0.1:0"),
            ("CART__BACKEND", "redis"),
            ("CART__SESSION__TTL_SECS", "2"),
            ("CART__SESSION__SLIDING", "true"),
            ("CART__SWEEPER__INTERVAL_MS", "250"),
            ("CART__ADMIN__TOKEN", "0123456789abcdef0123"),
            ("CART__CORS__ALLOWED_ORIGINS", "https://shop.example,http://localhost:5173"),
        ])
        .unwrap();
        assert_eq!(s.backend, Backend::Redis);
        assert_eq!(s.http.addr.port(), 0);
        assert_eq!(s.expiry.ttl.get(), Duration::from_secs(2));
        assert_eq!(s.expiry.mode, ExpiryMode::Sliding);
        assert_eq!(s.sweeper.interval, Duration::from_millis(250));
        assert_eq!(s.admin.token.unwrap().expose(), "0123456789abcdef0123");
        assert_eq!(s.cors.allowed_origins, vec!["https://shop.example", "http://localhost:5173"]);
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (vars, key) in [
            (vec![("CART__SESSION__TTL_SECS", "0")], "session.ttl_secs"),
            (vec![("CART__SESSION__TTL_SECS", "abc")], "ttl_secs"),
            (vec![("CART__HTTP__ADDR", "nowhere")], "addr"),
            (vec![("CART__BACKEND", "mongo")], "backend"),
            (vec![("CART__LIMITS__MAX_LINES", "0")], "limits.max_lines"),
            (vec![("CART__ADMIN__TOKEN", "short")], "admin.token"),
            (vec![("CART__CORS__ALLOWED_ORIGINS", "not an origin")], "cors.allowed_origins"),
            (vec![("CART__SWEEPER__INTERVAL_MS", "0")], "sweeper.interval_ms"),
            (vec![("CART__REDIS__URL", "http://x")], "redis.url"),
            (vec![("CART__POSTGRES__URL", "mysql://x")], "postgres.url"),
            (vec![("CART__POSTGRES__SCHEMA", "Bad-Name")], "postgres.schema"),
            (vec![("CART__POSTGRES__HOLD_BATCHES_IN_FLIGHT", "0")], "postgres.hold_batches_in_flight"),
            (vec![("CART__POSTGRES__HOLD_BATCH_MAX", "0")], "postgres.hold_batch_max"),
            (vec![("CART__HTTP__REQUEST_TIMEOUT_MS", "0")], "http.request_timeout_ms"),
            (vec![("CART__HTTP__REQUEST_TIMEOUT_MS", "3600001")], "http.request_timeout_ms"),
            (vec![("CART__HTTP__MAX_HEADER_BYTES", "1023")], "http.max_header_bytes"),
            (vec![("CART__HTTP__MAX_HEADER_BYTES", "1048577")], "http.max_header_bytes"),
            (vec![("CART__HTTP__MAX_HEADERS", "7")], "http.max_headers"),
            (vec![("CART__HTTP__MAX_HEADERS", "1001")], "http.max_headers"),
            (vec![("CART__LIVE__MAX_STREAMS", "0")], "live.max_streams"),
            (vec![("CART__LIVE__TICK_MS", "5")], "live.tick_ms"),
            (vec![("CART__LIVE__RESYNC_MS", "100")], "live.resync_ms"),
            (vec![("CART__LIVE__KEEP_ALIVE_MS", "10")], "live.keep_alive_ms"),
        ] {
            let err = load(vars.clone()).unwrap_err().to_string();
            assert!(err.contains(key), "{vars:?}: {err}");
        }
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("cartd-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cartd.toml");
        std::fs::write(&path, "[session]\nttl_secs = 60\n[limits]\nmax_lines = 7\n").unwrap();
        let s = Settings::from_sources(Some(&path), vars(vec![("CART__LIMITS__MAX_LINES", "9")])).unwrap();
        assert_eq!(s.expiry.ttl.get(), Duration::from_secs(60));
        assert_eq!(s.limits.max_lines(), 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_storefront_is_on_with_the_demo_catalogue_unless_configured() {
        let s = load(vec![]).unwrap();
        assert_eq!(s.storefront, StorefrontSettings { enabled: true, catalog: None });
        let s = load(vec![
            ("CART__STOREFRONT__ENABLED", "false"),
            ("CART__STOREFRONT__CATALOG", "/etc/cartd/catalog.json"),
        ])
        .unwrap();
        assert_eq!(
            s.storefront,
            StorefrontSettings { enabled: false, catalog: Some("/etc/cartd/catalog.json".into()) }
        );
    }

    #[test]
    fn a_token_of_digits_is_kept_as_written() {
        let s = load(vec![("CART__ADMIN__TOKEN", "0000000000000000001")]).unwrap();
        assert_eq!(s.admin.token.unwrap().expose(), "0000000000000000001");
    }

    /// A serialized default as the doc's Default column writes it.
    fn as_documented(v: &serde_json::Value) -> String {
        use serde_json::Value;
        match v {
            Value::Null => "empty".to_owned(),
            Value::String(s) if s.is_empty() => "empty".to_owned(),
            Value::Array(a) if a.is_empty() => "empty".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Every key the settings accept (`backend`, `section.key`), with its
    /// default, read from the types by serializing `Settings::default()`.
    fn keys_in_code(settings: &Settings) -> std::collections::BTreeMap<String, String> {
        let value = serde_json::to_value(settings).unwrap();
        let mut keys = std::collections::BTreeMap::new();
        for (name, v) in value.as_object().unwrap() {
            match v.as_object() {
                Some(section) => {
                    for (key, v) in section {
                        keys.insert(format!("{name}.{key}"), as_documented(v));
                    }
                }
                None => {
                    keys.insert(name.clone(), as_documented(v));
                }
            }
        }
        keys
    }

    /// The rows of the table of keys in `docs/configuration.md`: key ->
    /// (environment variable, default).
    fn keys_in_doc() -> std::collections::BTreeMap<String, (String, String)> {
        let code = |cell: &str| {
            let cell = cell.trim();
            cell.split('`').nth(1).unwrap_or(cell).to_owned()
        };
        include_str!("../../docs/configuration.md")
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                (code(cells[1]), (code(cells[2]), code(cells[3])))
            })
            .collect()
    }

    #[test]
    fn every_documented_key_exists_and_every_key_is_documented() {
        let code = keys_in_code(&Settings::default());
        let doc = keys_in_doc();
        let missing_in_doc: Vec<_> = code.keys().filter(|k| !doc.contains_key(*k)).collect();
        let missing_in_code: Vec<_> = doc.keys().filter(|k| !code.contains_key(*k)).collect();
        assert!(
            missing_in_doc.is_empty() && missing_in_code.is_empty(),
            "keys in code but not in docs/configuration.md: {missing_in_doc:?}; \
             documented but not in code: {missing_in_code:?}"
        );
        for (key, (variable, default)) in &doc {
            assert_eq!(*variable, format!("CART__{}", key.to_uppercase().replace('.', "__")), "{key}");
            assert_eq!(*default, code[key], "the documented default of {key}");
        }
    }

    #[test]
    fn the_keys_written_out_read_back_as_the_same_settings() {
        // Every key the types write is one they read (unknown keys are
        // errors), and reading nothing gives the `Default`s.
        let defaults = Settings::default();
        let written = Config::try_from(&defaults).unwrap();
        let read = Settings::from_sources(None, written).unwrap();
        assert_eq!(keys_in_code(&read), keys_in_code(&defaults));
        assert_eq!(keys_in_code(&load(vec![]).unwrap()), keys_in_code(&defaults));
    }

    #[test]
    fn a_value_out_of_range_is_reported_as_before() {
        for (vars, message) in [
            (
                vec![("CART__SESSION__TTL_SECS", "0")],
                "invalid configuration: session.ttl_secs: session ttl must be between 1 second and 30 days",
            ),
            (
                vec![("CART__SESSION__TTL_SECS", "abc")],
                "invalid configuration: invalid type: string \"abc\", expected an integer for key `session.ttl_secs` in the environment",
            ),
            (
                vec![("CART__BACKEND", "mongo")],
                "invalid configuration: enum Backend does not have variant constructor mongo for key `backend`",
            ),
            (
                vec![("CART__HTTP__MAX_BODY_BYTES", "255")],
                "invalid configuration: http.max_body_bytes: must be between 256 and 16777216",
            ),
            (vec![("CART__REDIS__POOL_SIZE", "0")], "invalid configuration: redis.pool_size: must be at least 1"),
            (
                vec![("CART__REDIS__CLUSTER_NODES", "redis://127.0.0.1:7000,127.0.0.1:7001")],
                "invalid configuration: redis.cluster_nodes: every seed must start with redis://",
            ),
            (
                vec![("CART__POSTGRES__HOLD_BATCHES_IN_FLIGHT", "17")],
                "invalid configuration: postgres.hold_batches_in_flight: must be between 1 and postgres.pool_size",
            ),
            (
                vec![("CART__POSTGRES__HOLD_BATCH_MODE", "fast")],
                "invalid configuration: enum HoldBatchMode does not have variant constructor fast for key `postgres.hold_batch_mode`",
            ),
            (
                vec![("CART__LIVE__RESYNC_MS", "100")],
                "invalid configuration: live.resync_ms: must be at least live.tick_ms",
            ),
            (
                vec![("CART__SESSION__TTL", "5")],
                "invalid configuration: unknown field `ttl`, expected `ttl_secs` or `sliding` for key `session`",
            ),
        ] {
            assert_eq!(load(vars.clone()).unwrap_err().to_string(), message, "{vars:?}");
        }
    }

    #[test]
    fn cluster_seeds_are_read_from_a_comma_separated_list() {
        let s = load(vec![("CART__REDIS__CLUSTER_NODES", " redis://127.0.0.1:7000, redis://a:b@127.0.0.1:7001 ,")])
            .unwrap();
        assert_eq!(s.redis.cluster_seeds(), vec!["redis://127.0.0.1:7000", "redis://a:b@127.0.0.1:7001"]);
        assert!(!format!("{s:?}").contains("a:b@"), "seed credentials are not printed");
        assert!(load(vec![]).unwrap().redis.cluster_seeds().is_empty());
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let s = load(vec![("CART__ADMIN__TOKEN", "0123456789abcdef-secret")]).unwrap();
        assert!(!format!("{s:?}").contains("secret"));
    }
}
