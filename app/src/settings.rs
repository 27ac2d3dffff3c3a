//! Configuration: built-in defaults, then an optional TOML file, then
//! `CART__<SECTION>__<KEY>` environment variables, parsed into typed settings
//! before any socket is bound. An invalid value stops the binary at start with
//! a message that names the key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat, Source};
use domain::{ExpiryMode, ExpiryPolicy, Limits, SessionTtl};
use serde::Deserialize;

/// Defaults, as the TOML a file would contain. Every key is documented in
/// `docs/configuration.md`.
pub const DEFAULTS: &str = r#"
backend = "memory"

[http]
addr = "127.0.0.1:8080"
max_body_bytes = 16384
header_read_timeout_ms = 10000
request_timeout_ms = 10000
max_header_bytes = 16384
max_headers = 100
max_connections = 10000
shutdown_grace_ms = 10000

[redis]
url = "redis://127.0.0.1:6379"
key_prefix = "cartd:"
pool_size = 8
timeout_ms = 500
configure_notifications = true

[postgres]
url = "postgres://cartd:cartd@127.0.0.1:5432/cartd"
schema = ""
pool_size = 16
timeout_ms = 2000
migrate_on_start = true
hold_batch_max = 256
hold_batches_in_flight = 1
hold_batch_mode = "planned"

[listener]
enabled = true

[session]
ttl_secs = 900
sliding = false

[sweeper]
interval_ms = 200
batch = 10000
concurrency = 2

[limits]
max_quantity = 100
max_lines = 50

[admin]
token = ""

[cors]
allowed_origins = []

[log]
format = "human"
filter = "info"

[storefront]
enabled = true
catalog = ""

[live]
max_streams = 2000
tick_ms = 200
resync_ms = 2000
keep_alive_ms = 15000

[demo]
seed = true
items = 100
units = 1000
"#;

/// The longest `http.request_timeout_ms`: one hour.
const MAX_REQUEST_TIMEOUT_MS: u64 = 3_600_000;

/// Which adapters back the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-memory adapters: nothing else to run, nothing persisted.
    Memory,
    /// Redis for sessions, PostgreSQL for stock and holds.
    Redis,
}

/// How a batch of holds runs in PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldBatchMode {
    /// Lock and read what the batch touches, replay its holds in memory, write
    /// the net changes: a few statements per batch. The default.
    Planned,
    /// The PL/pgSQL loop: one `cartd_set_hold` call (several statements) per
    /// hold. Slower; kept to compare against.
    Reference,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    backend: Backend,
    http: RawHttp,
    redis: RawRedis,
    postgres: RawPostgres,
    listener: RawListener,
    session: RawSession,
    sweeper: RawSweeper,
    limits: RawLimits,
    admin: RawAdmin,
    cors: RawCors,
    log: RawLog,
    demo: Demo,
    storefront: RawStorefront,
    live: RawLive,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLive {
    max_streams: usize,
    tick_ms: u64,
    resync_ms: u64,
    keep_alive_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorefront {
    enabled: bool,
    catalog: String,
}

/// The storefront page (`GET /`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorefrontSettings {
    /// Whether `/`, its assets and `/v1/catalog` are served.
    pub enabled: bool,
    /// A JSON catalogue file; `None` means the built-in demo catalogue.
    pub catalog: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    addr: SocketAddr,
    max_body_bytes: usize,
    header_read_timeout_ms: u64,
    request_timeout_ms: u64,
    max_header_bytes: usize,
    max_headers: usize,
    max_connections: usize,
    shutdown_grace_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Secret,
    key_prefix: String,
    pool_size: u32,
    timeout_ms: u64,
    configure_notifications: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    url: Secret,
    schema: String,
    pool_size: usize,
    timeout_ms: u64,
    migrate_on_start: bool,
    hold_batch_max: usize,
    hold_batches_in_flight: usize,
    hold_batch_mode: HoldBatchMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    ttl_secs: u64,
    sliding: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweeper {
    interval_ms: u64,
    batch: u32,
    concurrency: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_quantity: u32,
    max_lines: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token: Secret,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    allowed_origins: Origins,
}

/// A list in a file, or one comma-separated string in the environment.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Origins {
    List(Vec<String>),
    Text(String),
}

impl Origins {
    fn into_vec(self) -> Vec<String> {
        match self {
            Origins::List(v) => v,
            Origins::Text(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: LogFormat,
    filter: String,
}

/// The demo catalogue seeded on the in-memory backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demo {
    /// Whether to seed it.
    pub seed: bool,
    /// Items `inv-1` ..= `inv-<items>`.
    pub items: u32,
    /// Units available of each.
    pub units: u32,
}

/// HTTP server settings.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Address to listen on (port 0 picks a free one).
    pub addr: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// How long one request may take, from its headers to the response
    /// (reading a slow body included); longer is `408 request_timeout`.
    pub request_timeout: Duration,
    /// Largest request head (request line and headers); larger is 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more is 431.
    pub max_headers: usize,
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: usize,
    /// How long in-flight requests may run on after shutdown is asked for.
    pub shutdown_grace: Duration,
}

/// Redis settings (the `redis` backend).
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]`.
    pub url: Secret,
    /// Prefix of every key cartd writes, so several deployments (or tests) can
    /// share one server.
    pub key_prefix: String,
    /// Connections in the pool (each is multiplexed).
    pub pool_size: u32,
    /// Longest time one Redis operation may take before the request gets 503.
    pub timeout: Duration,
    /// Whether cartd may `CONFIG SET notify-keyspace-events` to get expiry events.
    pub configure_notifications: bool,
}

/// PostgreSQL settings (the `redis` backend).
#[derive(Clone, Debug)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: Secret,
    /// Schema to use instead of `public` (created when missing).
    pub schema: Option<String>,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Longest time one operation may take before the request gets 503.
    pub timeout: Duration,
    /// Apply pending migrations at start.
    pub migrate_on_start: bool,
    /// Most holds grouped into one transaction.
    pub hold_batch_max: usize,
    /// Batches of holds running at once (each on its own connection).
    pub hold_batches_in_flight: usize,
    /// How a batch of holds runs.
    pub hold_batch_mode: HoldBatchMode,
}

/// Typed, validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Which adapters back the service.
    pub backend: Backend,
    /// HTTP server settings.
    pub http: HttpSettings,
    /// Redis settings.
    pub redis: RedisSettings,
    /// PostgreSQL settings.
    pub postgres: PostgresSettings,
    /// Whether to run the keyspace-expiry listener (the sweeper always runs).
    pub listener_enabled: bool,
    /// Session TTL and mode.
    pub expiry: ExpiryPolicy,
    /// How often the sweeper looks for holds past their deadline.
    pub sweeper_interval: Duration,
    /// Carts released per sweeper batch.
    pub sweeper_batch: u32,
    /// Sweeper batches running at once.
    pub sweeper_concurrency: usize,
    /// Cart size limits.
    pub limits: Limits,
    /// The admin bearer token; `None` means generate one at start.
    pub admin_token: Option<Secret>,
    /// Origins allowed by CORS (`*` for any); empty disables CORS.
    pub cors_allowed_origins: Vec<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directive (e.g. `info,cartd=debug`).
    pub log_filter: String,
    /// Demo catalogue.
    pub demo: Demo,
    /// The storefront page.
    pub storefront: StorefrontSettings,
    /// Live stock streams.
    pub live: crate::live::LiveSettings,
}

/// A configuration error, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The sources could not be read or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value has the right type but is out of range.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The key, e.g. `session.ttl_secs`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl ToString) -> SettingsError {
    SettingsError::Invalid { key, reason: reason.to_string() }
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
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let raw: Raw = builder.add_source(overrides).build()?.try_deserialize()?;
        Self::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Self, SettingsError> {
        let ttl =
            SessionTtl::new(Duration::from_secs(raw.session.ttl_secs)).map_err(|e| invalid("session.ttl_secs", e))?;
        let mode = if raw.session.sliding { ExpiryMode::Sliding } else { ExpiryMode::Fixed };
        let limits = Limits::new(raw.limits.max_quantity, raw.limits.max_lines).map_err(|e| match e {
            domain::PolicyError::MaxLines => invalid("limits.max_lines", e),
            _ => invalid("limits.max_quantity", e),
        })?;
        if raw.sweeper.interval_ms == 0 {
            return Err(invalid("sweeper.interval_ms", "must be at least 1"));
        }
        if raw.sweeper.batch == 0 {
            return Err(invalid("sweeper.batch", "must be at least 1"));
        }
        if !(1..=16).contains(&raw.sweeper.concurrency) {
            return Err(invalid("sweeper.concurrency", "must be between 1 and 16"));
        }
        if !(256..=16 * 1024 * 1024).contains(&raw.http.max_body_bytes) {
            return Err(invalid("http.max_body_bytes", "must be between 256 and 16777216"));
        }
        if raw.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if raw.http.header_read_timeout_ms == 0 {
            return Err(invalid("http.header_read_timeout_ms", "must be at least 1"));
        }
        if !(1..=MAX_REQUEST_TIMEOUT_MS).contains(&raw.http.request_timeout_ms) {
            return Err(invalid("http.request_timeout_ms", format!("must be between 1 and {MAX_REQUEST_TIMEOUT_MS}")));
        }
        if !(1024..=1024 * 1024).contains(&raw.http.max_header_bytes) {
            return Err(invalid("http.max_header_bytes", "must be between 1024 and 1048576"));
        }
        if !(8..=1000).contains(&raw.http.max_headers) {
            return Err(invalid("http.max_headers", "must be between 8 and 1000"));
        }
        let cors_allowed_origins = raw.cors.allowed_origins.into_vec();
        for origin in &cors_allowed_origins {
            let ok = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && http::HeaderValue::from_str(origin).is_ok());
            if !ok {
                return Err(invalid("cors.allowed_origins", format!("{origin:?} is not `*` or an http(s) origin")));
            }
        }
        let token = raw.admin.token;
        let admin_token = if token.expose().is_empty() {
            None
        } else if token.expose().len() < 16 {
            return Err(invalid("admin.token", "must be at least 16 characters"));
        } else {
            Some(token)
        };
        if !raw.redis.url.expose().starts_with("redis://") {
            return Err(invalid("redis.url", "must start with redis://"));
        }
        if raw.redis.pool_size == 0 {
            return Err(invalid("redis.pool_size", "must be at least 1"));
        }
        if raw.redis.timeout_ms == 0 {
            return Err(invalid("redis.timeout_ms", "must be at least 1"));
        }
        if raw.redis.key_prefix.contains(['{', '}', ' ']) {
            return Err(invalid("redis.key_prefix", "must not contain braces or spaces"));
        }
        let pg_url = raw.postgres.url.expose();
        if !(pg_url.starts_with("postgres://") || pg_url.starts_with("postgresql://")) {
            return Err(invalid("postgres.url", "must start with postgres://"));
        }
        if raw.postgres.pool_size == 0 {
            return Err(invalid("postgres.pool_size", "must be at least 1"));
        }
        if raw.postgres.timeout_ms == 0 {
            return Err(invalid("postgres.timeout_ms", "must be at least 1"));
        }
        if !(1..=10_000).contains(&raw.postgres.hold_batch_max) {
            return Err(invalid("postgres.hold_batch_max", "must be between 1 and 10000"));
        }
        if raw.postgres.hold_batches_in_flight == 0 || raw.postgres.hold_batches_in_flight > raw.postgres.pool_size {
            return Err(invalid("postgres.hold_batches_in_flight", "must be between 1 and postgres.pool_size"));
        }
        let schema = raw.postgres.schema;
        let schema_ok = schema.is_empty()
            || (schema.len() <= 63
                && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !schema.as_bytes()[0].is_ascii_digit());
        if !schema_ok {
            return Err(invalid("postgres.schema", "must be a lowercase identifier"));
        }
        if !(1..=100_000).contains(&raw.live.max_streams) {
            return Err(invalid("live.max_streams", "must be between 1 and 100000"));
        }
        if !(10..=10_000).contains(&raw.live.tick_ms) {
            return Err(invalid("live.tick_ms", "must be between 10 and 10000"));
        }
        if raw.live.resync_ms < raw.live.tick_ms {
            return Err(invalid("live.resync_ms", "must be at least live.tick_ms"));
        }
        if !(1000..=300_000).contains(&raw.live.keep_alive_ms) {
            return Err(invalid("live.keep_alive_ms", "must be between 1000 and 300000"));
        }
        tracing_subscriber::EnvFilter::try_new(&raw.log.filter).map_err(|e| invalid("log.filter", e))?;
        Ok(Self {
            backend: raw.backend,
            http: HttpSettings {
                addr: raw.http.addr,
                max_body_bytes: raw.http.max_body_bytes,
                header_read_timeout: Duration::from_millis(raw.http.header_read_timeout_ms),
                request_timeout: Duration::from_millis(raw.http.request_timeout_ms),
                max_header_bytes: raw.http.max_header_bytes,
                max_headers: raw.http.max_headers,
                max_connections: raw.http.max_connections,
                shutdown_grace: Duration::from_millis(raw.http.shutdown_grace_ms),
            },
            redis: RedisSettings {
                url: raw.redis.url,
                key_prefix: raw.redis.key_prefix,
                pool_size: raw.redis.pool_size,
                timeout: Duration::from_millis(raw.redis.timeout_ms),
                configure_notifications: raw.redis.configure_notifications,
            },
            postgres: PostgresSettings {
                url: raw.postgres.url,
                schema: if schema.is_empty() { None } else { Some(schema) },
                pool_size: raw.postgres.pool_size,
                timeout: Duration::from_millis(raw.postgres.timeout_ms),
                migrate_on_start: raw.postgres.migrate_on_start,
                hold_batch_max: raw.postgres.hold_batch_max,
                hold_batches_in_flight: raw.postgres.hold_batches_in_flight,
                hold_batch_mode: raw.postgres.hold_batch_mode,
            },
            listener_enabled: raw.listener.enabled,
            expiry: ExpiryPolicy { ttl, mode },
            sweeper_interval: Duration::from_millis(raw.sweeper.interval_ms),
            sweeper_batch: raw.sweeper.batch,
            sweeper_concurrency: raw.sweeper.concurrency,
            limits,
            admin_token,
            cors_allowed_origins,
            log_format: raw.log.format,
            log_filter: raw.log.filter,
            demo: raw.demo,
            live: crate::live::LiveSettings {
                max_streams: raw.live.max_streams,
                tick: Duration::from_millis(raw.live.tick_ms),
                resync: Duration::from_millis(raw.live.resync_ms),
                keep_alive: Duration::from_millis(raw.live.keep_alive_ms),
                ..crate::live::LiveSettings::default()
            },
            storefront: StorefrontSettings {
                enabled: raw.storefront.enabled,
                catalog: (!raw.storefront.catalog.is_empty()).then(|| raw.storefront.catalog.into()),
            },
        })
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
        assert!(s.admin_token.is_none());
        assert!(s.cors_allowed_origins.is_empty());
        assert_eq!(s.http.request_timeout, Duration::from_secs(10));
        assert_eq!((s.http.max_header_bytes, s.http.max_headers), (16384, 100));
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
        assert_eq!(s.sweeper_interval, Duration::from_millis(250));
        assert_eq!(s.admin_token.unwrap().expose(), "0123456789abcdef0123");
        assert_eq!(s.cors_allowed_origins, vec!["https://shop.example", "http://localhost:5173"]);
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
        assert_eq!(s.admin_token.unwrap().expose(), "0000000000000000001");
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let s = load(vec![("CART__ADMIN__TOKEN", "0123456789abcdef-secret")]).unwrap();
        assert!(!format!("{s:?}").contains("secret"));
    }
}
