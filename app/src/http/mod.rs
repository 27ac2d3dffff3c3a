//! The inbound HTTP adapter: routes, extraction, errors, the OpenAPI document.
//!
//! Handlers are generic over a [`Backend`], so the same code serves the
//! in-memory adapters and the Redis + PostgreSQL ones without dynamic dispatch.
//! This layer knows the domain and the [`AppState`] it is handed, never an
//! adapter: which backend runs is decided in [`crate::compose`].

pub mod error;
pub mod extract;
pub mod handlers;
pub mod observe;
pub mod openapi;
pub mod storefront;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::state::{AppState, Backend};
use extract::SESSION_HEADER;
use handlers::*;

/// Router options that come from configuration (`[http]`, `[cors]`; the
/// defaults are the settings').
#[derive(Clone, Debug)]
pub struct RouterOptions {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// CORS origins (`*` for any); empty turns CORS off.
    pub cors_allowed_origins: Vec<String>,
    /// Longest time one request may take, reading its body included.
    pub request_timeout: Duration,
    /// The storefront page and its catalogue; `None` when turned off.
    pub storefront: Option<Arc<storefront::Storefront>>,
    /// Live stock (`GET /v1/inventory/events`); `None` leaves the route out.
    pub live: Option<Arc<crate::live::StockHub>>,
}

/// The complete router.
///
/// One middleware layer runs after routing (so it sees the matched route
/// template), around CORS when CORS is on: request id, span, log line,
/// metrics, timeout, body cap and the 405 body ([`observe`]).
pub fn router<B: Backend>(state: Arc<AppState<B>>, options: &RouterOptions) -> Router {
    let around = Arc::new(observe::Around {
        metrics: state.metrics.clone(),
        timeout: options.request_timeout,
        max_body_bytes: options.max_body_bytes,
    });
    let router = Router::new()
        .route("/add-to-cart", post(add_to_cart::<B>))
        .route("/get-cart", get(get_cart_tutorial::<B>))
        .route("/v1/carts", post(create_cart::<B>))
        .route("/v1/cart", get(get_cart::<B>).delete(abandon_cart::<B>))
        .route("/v1/cart/items/{product_id}", put(set_line::<B>).delete(remove_line::<B>))
        .route("/v1/cart/checkout", post(checkout::<B>))
        .route("/v1/cart/merge", post(merge_carts::<B>))
        .route("/v1/inventory", get(list_stock::<B>))
        .route("/v1/inventory/{inventory_id}", get(get_stock::<B>).put(set_stock::<B>))
        .route("/v1/admin/limits", get(admin_limits::<B>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<B>))
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::<B>))
        .fallback(no_route)
        .with_state(state);
    let router = match &options.storefront {
        Some(page) => router.merge(storefront::routes(page.clone())),
        None => router,
    };
    let router = match &options.live {
        Some(hub) => router.merge(crate::live::routes(hub.clone())),
        None => router,
    };
    let router = match cors(&options.cors_allowed_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    router.layer(axum::middleware::from_fn_with_state(around, observe::observe))
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let session = HeaderName::from_static(SESSION_HEADER);
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Settings validation has checked every origin is a valid header value.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                session.clone(),
                HeaderName::from_static(extract::IDEMPOTENCY_HEADER),
            ])
            .expose_headers([session, HeaderName::from_static(extract::REPLAYED_HEADER)])
            .max_age(Duration::from_secs(600)),
    )
}
