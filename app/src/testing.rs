//! The real HTTP API in-process, for other teams' tests: [`TestServer`] serves
//! cartd's router on `127.0.0.1:0` inside the caller's test, over the
//! in-memory adapters, with a [`ManualClock`] the test moves and a release
//! (sweep) it runs when it chooses. Nothing here sleeps or runs on its own
//! timer, so a test of "the hold ends at the deadline" is deterministic.
//!
//! Both stores are wrapped in [`Faulty`], unarmed, so a test can also make
//! the server answer `503` with `Retry-After` (see
//! [`TestServer::inventory_faults`]) and check that its client retries.
//!
//! The guide `docs/testing-with-fakes.md` shows it in use; `app/tests/fakes.rs`
//! drives it from outside the crate as a client team would.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use adapters::{Faults, Faulty, ManualClock, MemoryInventory, MemorySessions};
use domain::ports::Released;
use domain::{CartError, CartId, CartService, ExpiryPolicy, Limits};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::http::{RouterOptions, router};
use crate::metrics::Metrics;
use crate::server::{ServeOptions, serve};
use crate::settings::{Secret, Settings};
use crate::state::{AppState, Backend};

/// The use cases as a [`TestServer`] runs them: in-memory stores that can be
/// made to fail, and a manual clock.
pub type TestService = CartService<Faulty<MemorySessions>, Faulty<MemoryInventory>, ManualClock>;

/// The admin token a [`TestServer`] accepts unless told otherwise
/// ([`TestServerBuilder::admin_token`]).
pub const TEST_ADMIN_TOKEN: &str = "cartd-test-admin-token";

/// Carts released per batch by [`TestServer::sweep`].
const SWEEP_BATCH: u32 = 1_000;

/// The in-memory adapters behind [`Faulty`], on a [`ManualClock`].
#[derive(Debug)]
pub struct TestBackend;

impl Backend for TestBackend {
    type Sessions = Faulty<MemorySessions>;
    type Inventory = Faulty<MemoryInventory>;
    type Clock = ManualClock;

    async fn ready(&self, _service: &TestService) -> bool {
        true
    }
}

/// Options for a [`TestServer`]; start with [`TestServer::builder`].
#[derive(Debug)]
#[must_use]
pub struct TestServerBuilder {
    clock: ManualClock,
    settings: Settings,
    admin_token: String,
}

impl TestServerBuilder {
    /// Sessions live `policy.ttl`, fixed or sliding (default: the service's
    /// default, 900 s fixed).
    pub fn expiry(mut self, policy: ExpiryPolicy) -> Self {
        self.settings.expiry = policy;
        self
    }

    /// Cart size limits (default: 100 units a line, 50 lines).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// Client quotas (default: off, since every request of a test comes
    /// from one loopback address).
    pub fn quotas(mut self, quotas: crate::settings::QuotaSettings) -> Self {
        self.settings.quotas = quotas;
        self
    }

    /// The bearer token the admin routes (`PUT /v1/inventory/{id}`) accept
    /// (default [`TEST_ADMIN_TOKEN`]).
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = token.into();
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the caller's tokio runtime.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(self) -> io::Result<TestServer> {
        let Self { clock, settings, admin_token } = self;
        let metrics = Arc::new(Metrics::new());
        let service = CartService::new(
            Faulty::new(MemorySessions::new()),
            Faulty::new(MemoryInventory::new()),
            clock,
            settings.expiry,
            settings.limits,
        )
        .with_events(metrics.clone());
        let quotas = Arc::new(crate::quotas::ClientQuotas::new(
            &settings.quotas,
            Arc::new(adapters::MemoryQuotas::new()),
            metrics.clone(),
        ));
        let state = Arc::new(AppState {
            service,
            backend: TestBackend,
            admin_token: Secret::new(admin_token.clone()),
            metrics,
            quotas,
        });
        let options = RouterOptions {
            max_body_bytes: settings.http.max_body_bytes,
            cors_allowed_origins: settings.cors.allowed_origins.clone(),
            request_timeout: settings.http.request_timeout,
            // No page, and no live stock: its hub runs on a timer, and
            // nothing here may.
            storefront: None,
            live: None,
        };
        let app = router(state.clone(), &options);
        let serve_options = ServeOptions::from(&settings.http);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        // Dropping `stop` (with the TestServer) completes this future too.
        let task = tokio::spawn(serve(listener, app, serve_options, async move {
            let _ = stopped.await;
        }));
        Ok(TestServer { addr, state, admin_token, stop: Some(stop), task: Some(task) })
    }
}

/// cartd's real router served in-process on the in-memory backend.
///
/// Invariant: the server's only clock is the [`ManualClock`] it was given,
/// and nothing is released unless the test calls [`TestServer::sweep`] or
/// [`TestServer::notify_expired`], so what a test sees depends on what it did
/// and never on how fast the machine is. The stores behind it are the
/// in-memory adapters, which pass the same contract suites as Redis and
/// PostgreSQL (`adapters/tests/memory_contract.rs`, `adapters/tests/faulty.rs`).
/// Proved in use by `app/tests/fakes.rs`.
///
/// Dropping it shuts the server down (requests in flight get the usual grace
/// period); [`TestServer::shutdown`] also waits for that.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<AppState<TestBackend>>,
    admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Options, starting from the service's defaults, over `clock`.
    pub fn builder(clock: ManualClock) -> TestServerBuilder {
        let mut settings = Settings::default();
        // A test's requests all come from loopback: client quotas off unless
        // the test asks for them.
        settings.quotas.enabled = false;
        TestServerBuilder { clock, settings, admin_token: TEST_ADMIN_TOKEN.to_owned() }
    }

    /// Starts a server with the default options over `clock`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(clock: ManualClock) -> io::Result<Self> {
        Self::builder(clock).start().await
    }

    /// The address it listens on (`127.0.0.1` and the port it was given).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` followed by `path` (e.g. `"/v1/carts"`).
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The bearer token of the admin routes.
    #[must_use]
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The server's clock (a clone of the one it was given shares its time).
    #[must_use]
    pub fn clock(&self) -> &ManualClock {
        self.state.service.clock()
    }

    /// The use cases behind the API, to set up stock or inspect the stores
    /// directly (e.g. `service().inventory().inner().holds(cart)`).
    #[must_use]
    pub fn service(&self) -> &TestService {
        &self.state.service
    }

    /// The faults of the session store (Redis in production).
    #[must_use]
    pub fn session_faults(&self) -> &Faults {
        self.state.service.sessions().faults()
    }

    /// The faults of the inventory (PostgreSQL in production). An armed fault
    /// makes the requests that reach it answer `503` with `Retry-After`.
    #[must_use]
    pub fn inventory_faults(&self) -> &Faults {
        self.state.service.inventory().faults()
    }

    /// Runs the sweeper now: releases every cart whose deadline is at or
    /// before the clock's time, and returns what came back.
    ///
    /// # Errors
    /// [`CartError::Unavailable`] when an armed fault fails a batch (the
    /// carts that batch would have released stay held for the next sweep).
    pub async fn sweep(&self) -> Result<Released, CartError> {
        let mut total = Released::default();
        loop {
            let batch = self.state.service.release_expired(SWEEP_BATCH).await?;
            let done = batch.carts < u64::from(SWEEP_BATCH);
            total.carts += batch.carts;
            total.units += batch.units;
            total.deadlines.extend(batch.deadlines);
            if done {
                return Ok(total);
            }
        }
    }

    /// What the expiry listener does when the session store announces that
    /// `cart`'s session ended: releases its holds now (once; later calls and
    /// sweeps find nothing).
    ///
    /// # Errors
    /// [`CartError::Unavailable`] when an armed fault fails the release.
    pub async fn notify_expired(&self, cart: CartId) -> Result<Released, CartError> {
        self.state.service.release_cart(cart).await
    }

    /// Stops accepting, lets requests in flight finish, and waits until the
    /// server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}
