//! The composition root: which backend the settings ask for, the use cases
//! and the router over it, which background tasks run beside the server, and
//! how all of it starts and stops. The only module that names both the HTTP
//! layer and the adapters.
//!
//! - [`backends`]: the in-memory and the Redis + PostgreSQL [`Backend`]s,
//!   and the adapters' settings made from the service's;
//! - [`tasks`]: the sweeper, the expiry listener, the migrations at start;
//! - [`retry`]: waiting, with back-off and an ear for shutdown, for a store
//!   that does not answer yet.

pub mod backends;
pub mod retry;
pub mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use adapters::postgres_store::{PgInventory, StockListener, StockNotice};
use adapters::redis_store::RedisExpiryListener;
use adapters::{MemoryInventory, MemorySessions};
use anyhow::Context;
use axum::Router;
use domain::ports::PortError;
use domain::{CartService, InventoryId, StockCount, error_chain};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use backends::{MemoryBackend, RedisBackend, pg_settings};

use crate::catalog::Catalog;
use crate::clock::TokioClock;
use crate::http::storefront::Storefront;
use crate::http::{RouterOptions, router};
use crate::live::StockHub;
use crate::metrics::Metrics;
use crate::quotas::ClientQuotas;
use crate::server::{ServeOptions, serve};
use crate::settings::{Backend as BackendKind, Secret, Settings};
use crate::shutdown::{Shutdown, shutdown_pair};
use crate::state::{AppState, Backend};

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
        let (trigger, never) = shutdown_pair();
        let app = Self::build_until(settings, never).await;
        drop(trigger);
        Ok(app?.expect("the trigger is neither fired nor dropped before the build returns"))
    }

    /// [`Application::build`], giving up when `shutdown` comes first: the
    /// `redis` backend waits for Redis before it binds its port, and a
    /// SIGTERM during that wait must end it. `Ok(None)` then.
    ///
    /// # Errors
    /// When the address cannot be bound or a backing store cannot be set up.
    pub async fn build_until(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Option<Self>> {
        let (admin_token, admin_token_generated) = match &settings.admin.token {
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
                let quotas = Arc::new(ClientQuotas::new(
                    &settings.quotas,
                    Arc::new(adapters::MemoryQuotas::new()),
                    metrics.clone(),
                ));
                let state = Arc::new(AppState {
                    service,
                    backend: MemoryBackend,
                    admin_token: admin_token.clone(),
                    metrics: metrics.clone(),
                    quotas,
                });
                if settings.demo.seed {
                    seed_demo(&state, &settings).await?;
                }
                wire(state, &settings, storefront, live.clone())
            }
            BackendKind::Redis => {
                let inventory = PgInventory::connect(&pg_settings(&settings)).context("postgres settings")?;
                let Some(sessions) = backends::connect_redis(&backends::redis_settings(&settings), shutdown).await
                else {
                    return Ok(None);
                };
                // The quotas share the session store's connections: one pool,
                // one outage.
                let quotas = Arc::new(ClientQuotas::new(
                    &settings.quotas,
                    Arc::new(adapters::redis_store::RedisQuotas::new(sessions.clone())),
                    metrics.clone(),
                ));
                let service =
                    CartService::new(sessions, inventory.clone(), TokioClock::new(), settings.expiry, settings.limits)
                        .with_events(metrics.clone());
                let state = Arc::new(AppState {
                    service,
                    backend: RedisBackend::new(&settings),
                    admin_token: admin_token.clone(),
                    metrics: metrics.clone(),
                    quotas,
                });
                let (router, spawn) = wire(state.clone(), &settings, storefront, live.clone());
                (router, redis_tasks(state, inventory, &settings, live.clone(), spawn))
            }
        };
        let listener = TcpListener::bind(settings.http.addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http.addr))?;
        let addr = listener.local_addr()?;
        Ok(Some(Self {
            listener,
            addr,
            router,
            serve_options: ServeOptions::from(&settings.http),
            admin_token,
            admin_token_generated,
            spawn_background,
            live,
        }))
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

/// The router over `state`, and the tasks every backend runs: the live stock
/// hub and the sweeper.
fn wire<B: Backend>(
    state: Arc<AppState<B>>,
    settings: &Settings,
    storefront: Option<Arc<Storefront>>,
    live: Arc<StockHub>,
) -> (Router, Spawner) {
    let options = RouterOptions {
        max_body_bytes: settings.http.max_body_bytes,
        cors_allowed_origins: settings.cors.allowed_origins.clone(),
        request_timeout: settings.http.request_timeout,
        storefront,
        live: Some(live.clone()),
    };
    let router = router(state.clone(), &options);
    let (interval, batch, concurrency) =
        (settings.sweeper.interval, settings.sweeper.batch, settings.sweeper.concurrency);
    let spawner: Spawner = Box::new(move |shutdown: Shutdown| {
        vec![
            tokio::spawn(crate::live::run(live, state.clone(), shutdown.clone())),
            tokio::spawn(tasks::sweeper(state, interval, batch, concurrency, shutdown)),
        ]
    });
    (router, spawner)
}

/// The Redis + PostgreSQL backend's tasks: those of [`wire`] (the sweeper
/// only once the schema is in place, when migrations run at start), the
/// PostgreSQL stock listener that feeds the live stock hub, and the Redis
/// expiry listener.
fn redis_tasks(
    state: Arc<AppState<RedisBackend>>,
    inventory: PgInventory,
    settings: &Settings,
    hub: Arc<StockHub>,
    spawn: Spawner,
) -> Spawner {
    let listener_settings = settings.listener.enabled.then(|| backends::listener_settings(settings));
    let schema = settings.postgres.schema.clone();
    let migrate = settings.postgres.migrate_on_start;
    let pg = pg_settings(settings);
    Box::new(move |shutdown: Shutdown| {
        let mut tasks = Vec::new();
        // Changes made by any instance reach this one's pages through
        // PostgreSQL's notices.
        let on_notice = move |notice| match notice {
            StockNotice::All => hub.mark_all(),
            StockNotice::Items(items) => hub.mark(items),
        };
        match StockListener::spawn(&pg, on_notice, shutdown.clone().stopped()) {
            Ok((_, task)) => tasks.push(task),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "stock listener not started; live stock relies on the periodic resync")
            }
        }
        if migrate {
            // The sweeper starts once the schema is in place: before that
            // every sweep would fail and say so.
            let after = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                tasks::migrate_until_done(inventory, schema, after.clone()).await;
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
                    state.backend.listener_started(events.status());
                    tasks.push(tokio::spawn(tasks::expiry_listener(state, events, shutdown)));
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "expiry listener not started; the sweeper releases expired carts")
                }
            }
        } else {
            tracing::info!("expiry listener disabled; the sweeper releases expired carts");
        }
        tasks
    })
}

/// Why `cartd migrate` failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The PostgreSQL settings are unusable (e.g. the URL).
    #[error("{}", error_chain(.0))]
    Settings(PortError),
    /// PostgreSQL could not be reached, or a migration failed.
    #[error("migrations failed: {}", error_chain(.0))]
    Failed(PortError),
}

/// `cartd migrate`: applies the pending migrations to `postgres.url` (and
/// `postgres.schema`) once, without waiting for PostgreSQL, and returns the
/// names of those applied.
///
/// # Errors
/// [`MigrateError`].
pub async fn migrate(settings: &Settings) -> Result<Vec<String>, MigrateError> {
    let inventory = PgInventory::connect(&pg_settings(settings)).map_err(MigrateError::Settings)?;
    inventory.migrate(settings.postgres.schema.as_deref()).await.map_err(MigrateError::Failed)
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
