//! The OpenAPI 3 document of the HTTP API, generated from the handlers' and
//! wire types' annotations so it cannot drift from the code unnoticed (a test
//! also checks every route is in it).

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::header;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::handlers;
use super::storefront;
use super::wire;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cartd",
        description = "Shopping carts as short-lived sessions, with the stock in them held exactly once.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        handlers::add_to_cart,
        handlers::get_cart_tutorial,
        handlers::create_cart,
        handlers::get_cart,
        handlers::set_line,
        handlers::remove_line,
        handlers::abandon_cart,
        handlers::checkout,
        handlers::merge_carts,
        handlers::list_stock,
        crate::live::events,
        handlers::get_stock,
        handlers::set_stock,
        handlers::admin_limits,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        storefront::index,
        storefront::script,
        storefront::style,
        storefront::catalog,
    ),
    components(schemas(
        wire::AddToCartRequest, wire::AddToCartResponse, wire::GetCartResponse, wire::LineBody, wire::CartBody,
        wire::SetLineRequest, wire::MergeRequest, wire::MergeStrategyBody, wire::MergeBody, wire::ShortfallBody, wire::OrderBody, wire::StockBody, wire::StockPage, crate::live::StockEventBody, crate::live::StockEvent, wire::SetStockRequest, wire::ErrorBody,
        wire::LimitsBody, wire::QuotaPolicyBody, wire::RefusedClientBody, wire::ItemHoldersBody, wire::HolderBody,
        wire::StatusBody, crate::catalog::Catalog, crate::catalog::Product,
    )),
    modifiers(&AdminToken),
    tags(
        (name = "tutorial", description = "The tutorial's routes, same requests and responses, with real holds"),
        (name = "carts", description = "The versioned cart API"),
        (name = "inventory", description = "Stock levels"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "storefront", description = "The shopper's page and its catalogue (see docs/storefront.md)"),
    )
)]
pub struct ApiDoc;

struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().expect("the OpenAPI document serializes to JSON"));

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}
