//! The composition root: builds the adapters the settings ask for, wires them
//! into the use cases and the router, binds the listener, and runs the server
//! and the background tasks until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use adapters::{MemoryInventory, MemorySessions};
use anyhow::Context;
use axum::Router;
use domain::{CartService, InventoryId, StockCount};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::background::{Shutdown, shutdown_pair, sweeper};
use crate::clock::TokioClock;
use crate::http::{AppState, Backend, RouterOptions, router};
use crate::server::{ServeOptions, serve};
use crate::settings::{Backend as BackendKind, Secret, Settings};

/// The in-memory adapters: the embedded default.
#[derive(Debug, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    type Sessions = MemorySessions;
    type Inventory = MemoryInventory;
    type Clock = TokioClock;

    async fn ready(&self) -> bool {
        true
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
        let (router, spawn_background) = match settings.backend {
            BackendKind::Memory => {
                let service = CartService::new(
                    MemorySessions::new(),
                    MemoryInventory::new(),
                    TokioClock::new(),
                    settings.expiry,
                    settings.limits,
                );
                let state = Arc::new(AppState { service, backend: MemoryBackend, admin_token: admin_token.clone() });
                if settings.demo.seed {
                    seed_demo(&state, &settings).await?;
                }
                wire(state, &settings)
            }
            BackendKind::Redis => {
                anyhow::bail!("backend `redis` is not available in this build yet; use CART__BACKEND=memory")
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
                shutdown_grace: settings.http.shutdown_grace,
            },
            admin_token,
            admin_token_generated,
            spawn_background,
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
        serve(self.listener, self.router, self.serve_options, shutdown).await;
        trigger.fire();
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!("cartd stopped");
    }
}

fn wire<B: Backend>(state: Arc<AppState<B>>, settings: &Settings) -> (Router, Spawner) {
    let options = RouterOptions {
        max_body_bytes: settings.http.max_body_bytes,
        cors_allowed_origins: settings.cors_allowed_origins.clone(),
    };
    let router = router(state.clone(), &options);
    let (interval, batch) = (settings.sweeper_interval, settings.sweeper_batch);
    let spawner: Spawner = Box::new(move |shutdown| vec![tokio::spawn(sweeper(state, interval, batch, shutdown))]);
    (router, spawner)
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
