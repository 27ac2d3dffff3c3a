//! The HTTP/1.1 serve loop: hyper 1 with a graceful shutdown.
//!
//! The server takes an already-bound listener (tests bind port 0) and a
//! shutdown future. It never exits on an accept error (running out of file
//! descriptors is logged and waited out), caps concurrent connections, bounds
//! how long a client may take to send its headers and how large they may be
//! (hyper answers 431 beyond the limits, with the JSON error body thanks to
//! [`refusals`]), and on shutdown stops accepting, then lets in-flight
//! requests finish within the grace period.

pub mod refusals;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::settings::HttpSettings;

/// hyper's own limit on header fields.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// Serve-loop options.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time allowed to send the request headers.
    pub header_read_timeout: Duration,
    /// Largest request head; hyper answers 431 beyond it.
    pub max_header_bytes: usize,
    /// Most header fields; hyper answers 431 beyond it.
    pub max_headers: usize,
    /// Time in-flight requests get after shutdown begins.
    pub shutdown_grace: Duration,
}

impl From<&HttpSettings> for ServeOptions {
    fn from(http: &HttpSettings) -> Self {
        Self {
            max_connections: http.max_connections,
            header_read_timeout: http.header_read_timeout,
            max_header_bytes: http.max_header_bytes,
            max_headers: http.max_headers,
            shutdown_grace: http.shutdown_grace,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(listener: TcpListener, app: Router, options: ServeOptions, shutdown: impl Future<Output = ()>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_header_size(options.max_header_bytes)
        .keep_alive(true);
    // hyper parses into a stack array of its default size (100); any explicit
    // value moves that array to the heap on every request, so set it only
    // when it differs.
    if options.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.max_headers(options.max_headers);
    }
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have
                    // and try again shortly rather than exiting.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON answers: do not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(refusals::Refusals::new(stream));
        // The peer address, for the client quotas (`crate::quotas`), as
        // axum's `ConnectInfo` so handlers read it the usual way.
        let app = tower::ServiceExt::map_request(app.clone(), move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        });
        let connection = builder.serve_connection(io, TowerToHyperService::new(app));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!(grace = ?options.shutdown_grace, "grace period over, closing remaining connections");
        }
    }
}
