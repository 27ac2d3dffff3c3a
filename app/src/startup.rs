//! The composition root: builds the adapters the settings ask for, wires them
//! into the use cases and the router, binds the listener, and runs the server
//! and the background tasks until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use adapters::postgres_store::{
    HoldBatchMode as PgHoldBatchMode, HoldBatchStats, PgInventory, PgSettings, StockListener, StockNotice,
};
use adapters::redis_store::{
    ListenerSettings, ListenerStatus, RedisExpiryListener, RedisSessions, RedisSettings as StoreSettings,
};
use adapters::{MemoryInventory, MemorySessions};
use anyhow::Context;
use axum::Router;
use domain::{CartService, InventoryId, StockCount};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::background::{Shutdown, expiry_listener, shutdown_pair, sweeper};
use crate::catalog::Catalog;
use crate::clock::TokioClock;
use crate::http::storefront::Storefront;
use crate::http::{AppState, Backend, RouterOptions, router};
use crate::live::StockHub;
use crate::metrics::{Metrics, PoolUse};
use crate::server::{ServeOptions, serve};
use crate::settings::{Backend as BackendKind, HoldBatchMode, Secret, Settings};

/// The in-memory adapters: the embedded default.
#[derive(Debug, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    type Sessions = MemorySessions;
    type Inventory = MemoryInventory;
    type Clock = TokioClock;

    async fn ready(&self, _service: &CartService<MemorySessions, MemoryInventory, TokioClock>) -> bool {
        true
    }

    fn take_stock_changes(
        &self,
        service: &CartService<MemorySessions, MemoryInventory, TokioClock>,
    ) -> Vec<InventoryId> {
        service.inventory().take_changed()
    }
}

/// Redis for sessions, PostgreSQL for stock, holds and orders.
#[derive(Debug)]
pub struct RedisBackend {
    /// `redis.pool_size` (bb8 does not report its maximum).
    redis_pool_max: u32,
    /// Whether the expiry listener is meant to run.
    listener_enabled: bool,
    /// The listener's status, once it has been started.
    listener: OnceLock<ListenerStatus>,
}

impl Backend for RedisBackend {
    type Sessions = RedisSessions;
    type Inventory = PgInventory;
    type Clock = TokioClock;

    async fn ready(&self, service: &CartService<RedisSessions, PgInventory, TokioClock>) -> bool {
        let (redis, postgres) = tokio::join!(service.sessions().ping(), service.inventory().ready());
        redis && postgres
    }

    fn pools(&self, service: &CartService<RedisSessions, PgInventory, TokioClock>) -> Vec<PoolUse> {
        let (open, idle) = service.sessions().pool_connections();
        let redis = PoolUse {
            store: "redis",
            idle: u64::from(idle),
            in_use: u64::from(open.saturating_sub(idle)),
            max: u64::from(self.redis_pool_max),
        };
        let (open, idle, max) = service.inventory().pool_connections();
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let postgres = PoolUse {
            store: "postgres",
            idle: as_u64(idle),
            in_use: as_u64(open.saturating_sub(idle)),
            max: as_u64(max),
        };
        vec![redis, postgres]
    }

    fn listener_connected(&self) -> Option<bool> {
        // Enabled but not (yet) started counts as disconnected, so an
        // alert on 0 also catches a listener that failed to start.
        self.listener_enabled.then(|| self.listener.get().is_some_and(ListenerStatus::is_connected))
    }

    fn hold_batches(&self, service: &CartService<RedisSessions, PgInventory, TokioClock>) -> Option<HoldBatchStats> {
        Some(service.inventory().hold_batch_stats())
    }
}

type Spawner = Box<dyn FnOnce(Shutdown) -> Vec<JoinHandle<()>> + Send>;

/// A built, bound, not yet running service.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    serve_options: ServeOptions,
    admin_token: Secret,
    admin_token_generated: bool,
    spawn_background: Spawner,
    live: Arc<StockHub>,
}

impl Application {
    /// Builds the service described by `settings` and binds its listener.
    ///
    /// # Errors
    /// When the address cannot be bound or a backing store cannot be set up.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (admin_token, admin_token_generated) = match &settings.admin_token {
            Some(token) => (token.clone(), false),
            None => (Secret::new(uuid::Uuid::new_v4().simple().to_string()), true),
        };
        let metrics = Arc::new(Metrics::new());
        // Before any store is touched: a bad catalogue stops the start at once.
        let storefront = storefront(&settings)?;
        let live = Arc::new(StockHub::new(settings.live, metrics.clone()));
        let (router, spawn_background) = match settings.backend {
            BackendKind::Memory => {
                let service = CartService::new(
                    MemorySessions::new(),
                    MemoryInventory::new(),
                    TokioClock::new(),
                    settings.expiry,
                    settings.limits,
                )
                .with_events(metrics.clone());
                let state = Arc::new(AppState {
                    service,
                    backend: MemoryBackend,
                    admin_token: admin_token.clone(),
                    metrics: metrics.clone(),
                });
                if settings.demo.seed {
                    seed_demo(&state, &settings).await?;
                }
                wire(state, &settings, storefront, live.clone())
            }
            BackendKind::Redis => {
                let inventory = PgInventory::connect(&pg_settings(&settings)).context("postgres settings")?;
                let sessions = connect_redis(&redis_settings(&settings)).await;
                let service =
                    CartService::new(sessions, inventory.clone(), TokioClock::new(), settings.expiry, settings.limits)
                        .with_events(metrics.clone());
                let backend = RedisBackend {
                    redis_pool_max: settings.redis.pool_size,
                    listener_enabled: settings.listener_enabled,
                    listener: OnceLock::new(),
                };
                let state =
                    Arc::new(AppState { service, backend, admin_token: admin_token.clone(), metrics: metrics.clone() });
                let (router, spawn) = wire(state.clone(), &settings, storefront, live.clone());
                let listener_settings = settings.listener_enabled.then(|| ListenerSettings {
                    configure_notifications: settings.redis.configure_notifications,
                    ..ListenerSettings::for_store(&redis_settings(&settings))
                });
                let schema = settings.postgres.schema.clone();
                let migrate = settings.postgres.migrate_on_start;
                let pg = pg_settings(&settings);
                let hub = live.clone();
                let spawn: Spawner = Box::new(move |shutdown: Shutdown| {
                    let mut tasks = Vec::new();
                    // Changes made by any instance reach this one's pages
                    // through PostgreSQL's notices.
                    let mut stop = shutdown.clone();
                    let on_notice = move |notice| match notice {
                        StockNotice::All => hub.mark_all(),
                        StockNotice::Items(items) => hub.mark(items),
                    };
                    match StockListener::spawn(&pg, on_notice, async move { stop.wait().await }) {
                        Ok((_, task)) => tasks.push(task),
                        Err(e) => {
                            tracing::error!(error = %crate::http::error::error_chain(&e), "stock listener not started; live stock relies on the periodic resync")
                        }
                    }
                    if migrate {
                        // The sweeper starts once the schema is in place:
                        // before that every sweep would fail and say so.
                        let after = shutdown.clone();
                        tasks.push(tokio::spawn(async move {
                            migrate_until_done(inventory, schema, after.clone()).await;
                            for task in spawn(after) {
                                let _ = task.await;
                            }
                        }));
                    } else {
                        tasks.extend(spawn(shutdown.clone()));
                    }
                    if let Some(listener_settings) = listener_settings {
                        match RedisExpiryListener::spawn(&listener_settings) {
                            Ok(events) => {
                                let _ = state.backend.listener.set(events.status());
                                tasks.push(tokio::spawn(expiry_listener(state, events, shutdown)));
                            }
                            Err(e) => {
                                tracing::error!(error = %crate::http::error::error_chain(&e), "expiry listener not started; the sweeper releases expired carts")
                            }
                        }
                    } else {
                        tracing::info!("expiry listener disabled; the sweeper releases expired carts");
                    }
                    tasks
                });
                (router, spawn)
            }
        };
        let listener = TcpListener::bind(settings.http.addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http.addr))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            router,
            serve_options: ServeOptions {
                max_connections: settings.http.max_connections,
                header_read_timeout: settings.http.header_read_timeout,
                max_header_bytes: settings.http.max_header_bytes,
                max_headers: settings.http.max_headers,
                shutdown_grace: settings.http.shutdown_grace,
            },
            admin_token,
            admin_token_generated,
            spawn_background,
            live,
        })
    }

    /// The address the listener is bound to (the real port when 0 was asked).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin token, and whether it was generated at start (so the binary
    /// can print it once).
    #[must_use]
    pub fn admin_token(&self) -> (&Secret, bool) {
        (&self.admin_token, self.admin_token_generated)
    }

    /// Serves until `shutdown` completes, then drains requests and stops the
    /// background tasks.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) {
        let (trigger, signal) = shutdown_pair();
        let tasks = (self.spawn_background)(signal);
        tracing::info!(addr = %self.addr, "cartd listening on http://{}", self.addr);
        let live = self.live.clone();
        let shutdown = async move {
            shutdown.await;
            // Live streams never end by themselves: end them now, or the
            // drain would wait for them until the grace period is over.
            live.close();
        };
        serve(self.listener, self.router, self.serve_options, shutdown).await;
        trigger.fire();
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!("cartd stopped");
    }
}

fn wire<B: Backend>(
    state: Arc<AppState<B>>,
    settings: &Settings,
    storefront: Option<Arc<Storefront>>,
    live: Arc<StockHub>,
) -> (Router, Spawner) {
    let options = RouterOptions {
        max_body_bytes: settings.http.max_body_bytes,
        cors_allowed_origins: settings.cors_allowed_origins.clone(),
        request_timeout: settings.http.request_timeout,
        storefront,
        live: Some(live.clone()),
    };
    let router = router(state.clone(), &options);
    let (interval, batch, concurrency) =
        (settings.sweeper_interval, settings.sweeper_batch, settings.sweeper_concurrency);
    let spawner: Spawner = Box::new(move |shutdown: Shutdown| {
        vec![
            tokio::spawn(crate::live::run(live, state.clone(), shutdown.clone())),
            tokio::spawn(sweeper(state, interval, batch, concurrency, shutdown)),
        ]
    });
    (router, spawner)
}

/// The storefront page with its catalogue (validated here), when enabled.
fn storefront(settings: &Settings) -> anyhow::Result<Option<Arc<Storefront>>> {
    if !settings.storefront.enabled {
        return Ok(None);
    }
    let catalog = match &settings.storefront.catalog {
        Some(path) => Catalog::load(path).context("storefront.catalog")?,
        None => Catalog::demo(),
    };
    tracing::info!(products = catalog.products.len(), "storefront enabled at /");
    Ok(Some(Arc::new(Storefront::new(&catalog))))
}

/// Items `inv-1` ..= `inv-N`, each with the configured units available.
async fn seed_demo<B: Backend>(state: &AppState<B>, settings: &Settings) -> anyhow::Result<()> {
    let units = StockCount::new(settings.demo.units).context("demo.units")?;
    for n in 1..=settings.demo.items {
        let item = InventoryId::parse(&format!("inv-{n}")).context("demo item id")?;
        state.service.set_stock(&item, units).await?;
    }
    tracing::info!(items = settings.demo.items, units = settings.demo.units, "seeded the demo catalogue");
    Ok(())
}

/// The PostgreSQL adapter's settings.
#[must_use]
pub fn pg_settings(settings: &Settings) -> PgSettings {
    PgSettings {
        url: settings.postgres.url.expose().to_owned(),
        schema: settings.postgres.schema.clone(),
        pool_size: settings.postgres.pool_size,
        hold_batch_max: settings.postgres.hold_batch_max,
        hold_batches_in_flight: settings.postgres.hold_batches_in_flight,
        hold_batch_mode: match settings.postgres.hold_batch_mode {
            HoldBatchMode::Planned => PgHoldBatchMode::Planned,
            HoldBatchMode::Reference => PgHoldBatchMode::Reference,
        },
        op_timeout: settings.postgres.timeout,
        connect_timeout: settings.postgres.timeout,
    }
}

fn redis_settings(settings: &Settings) -> StoreSettings {
    StoreSettings {
        url: settings.redis.url.expose().to_owned(),
        key_prefix: settings.redis.key_prefix.clone(),
        pool_size: settings.redis.pool_size,
        op_timeout: settings.redis.timeout,
        connect_timeout: settings.redis.timeout.max(std::time::Duration::from_secs(1)),
    }
}

/// Connects to Redis, waiting (with back-off) while it does not answer, so a
/// service started before its Redis comes up by itself.
async fn connect_redis(settings: &StoreSettings) -> RedisSessions {
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match RedisSessions::connect(settings).await {
            Ok(sessions) => return sessions,
            Err(e) => {
                tracing::warn!(error = %crate::http::error::error_chain(&e), retry_in = ?pause, "redis not reachable yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// Applies migrations, retrying while PostgreSQL is unreachable. Until it
/// succeeds `/readyz` answers 503 and stock requests get 503.
async fn migrate_until_done(inventory: PgInventory, schema: Option<String>, mut shutdown: Shutdown) {
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match inventory.migrate(schema.as_deref()).await {
            Ok(applied) => {
                if applied.is_empty() {
                    tracing::info!("database schema is up to date");
                } else {
                    tracing::info!(?applied, "applied database migrations");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %crate::http::error::error_chain(&e), retry_in = ?pause, "migrations not applied yet");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.wait() => return,
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
}
