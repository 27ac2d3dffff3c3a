//! Route handlers: parse the request into domain types, call one use case,
//! shape the answer. No status decision lives here beyond the success code;
//! failures are [`ApiError`]s.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::service::Target;
use domain::{CartError, CartId, InventoryId, Once, ProductId, StockCount};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::error::{ApiError, error_chain};
use super::extract::{
    JsonBody, REPLAYED_HEADER, SESSION_HEADER, idempotency_key, parse_id, require_admin, required_session,
    session_header,
};
use super::wire::{
    AddToCartRequest, AddToCartResponse, CartBody, ErrorBody, GetCartResponse, LineBody, MergeBody, MergeRequest,
    OrderBody, SetLineRequest, SetStockRequest, StatusBody, StockBody, StockPage, StockQuery,
};
use crate::metrics::ScrapeState;
use crate::state::{AppState, Backend};

type AppS<B> = State<Arc<AppState<B>>>;

/// Adds the `cart-session-id` header to `response`.
fn with_session(id: CartId, mut response: Response) -> Response {
    let value = HeaderValue::from_str(&id.to_string()).expect("a hyphenated UUID is a valid header value");
    response.headers_mut().insert(SESSION_HEADER, value);
    response
}

fn path_text(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s).map_err(|e| ApiError::invalid(format!("invalid path: {e}")))
}

/// Tutorial route: set a product's line, creating a session when needed.
#[utoipa::path(
    post, path = "/add-to-cart", tag = "tutorial",
    params(("cart-session-id" = Option<String>, Header, description = "The cart session; unknown, expired, malformed or missing makes a new one"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Without a cart-session-id: makes the request safe to retry; the same key and line answer the same cart and add nothing",
            min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    request_body = AddToCartRequest,
    responses(
        (status = 200, description = "Line set; the session id is also in the `cart-session-id` header", body = AddToCartResponse,
            headers(("cart-session-id" = String, description = "The cart session id"))),
        (status = 400, body = ErrorBody), (status = 404, description = "Unknown inventory item", body = ErrorBody),
        (status = 409, description = "`insufficient_stock`, `too_many_lines`, or `idempotency_key_in_use`", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key came with another line before", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn add_to_cart<B: Backend>(
    State(app): AppS<B>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<AddToCartRequest>,
) -> Result<Response, ApiError> {
    let product = parse_id("product_id", &req.product_id, ProductId::parse)?;
    let item = parse_id("inventory_id", &req.inventory_id, InventoryId::parse)?;
    // The tutorial treats any session id it does not know as "make a new one".
    let target = match session_header(&headers) {
        Ok(Some(id)) => Target::ExistingOrNew(id),
        Ok(None) | Err(_) => Target::New,
    };
    // The answer carries only the session id: no need to read the cart back.
    // An idempotency key counts only where the request makes a new cart.
    let (id, replayed) = match (target, idempotency_key(&headers)?) {
        (Target::New, Some(key)) => {
            let fingerprint = format!("POST /add-to-cart {product} {item} {}", req.quantity);
            let once = Once { key: &key, fingerprint: &fingerprint };
            let r = app.service.add_line_once(product, item, req.quantity, &once).await?;
            (r.value.id, r.replayed)
        }
        (target, _) => (app.service.add_line(target, product, item, req.quantity).await?.id, false),
    };
    let body =
        AddToCartResponse { message: "Product added to cart successfully".to_owned(), cart_session_id: id.to_string() };
    Ok(replay_marked(with_session(id, (StatusCode::OK, Json(body)).into_response()), replayed))
}

/// Tutorial route: the cart's lines.
#[utoipa::path(
    get, path = "/get-cart", tag = "tutorial",
    params(("cart-session-id" = String, Header,
        description = "The cart session; without it the answer is 400, malformed or unknown is 404 `Cart is empty`")),
    responses(
        (status = 200, description = "The cart's lines", body = GetCartResponse),
        (status = 400, description = "No `cart-session-id` header: `{\"data\": []}`", body = GetCartResponse),
        (status = 404, description = "Unknown, expired or empty cart: `Cart is empty`", body = GetCartResponse),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_cart_tutorial<B: Backend>(State(app): AppS<B>, headers: HeaderMap) -> Result<Response, ApiError> {
    if headers.get(SESSION_HEADER).is_none() {
        return Ok((StatusCode::BAD_REQUEST, Json(GetCartResponse { message: None, data: Vec::new() })).into_response());
    }
    let cart = match session_header(&headers) {
        Ok(Some(id)) => match app.service.get_cart(id).await {
            Ok(cart) => Some(cart),
            Err(CartError::SessionNotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Ok(None) | Err(_) => None,
    };
    match cart {
        Some(cart) if !cart.lines.is_empty() => {
            let body = GetCartResponse {
                message: Some("Cart retrieved successfully".to_owned()),
                data: cart.lines.iter().map(LineBody::from).collect(),
            };
            Ok((StatusCode::OK, Json(body)).into_response())
        }
        _ => {
            let body = GetCartResponse { message: Some("Cart is empty".to_owned()), data: Vec::new() };
            Ok((StatusCode::NOT_FOUND, Json(body)).into_response())
        }
    }
}

/// Opens a new, empty cart. With an `Idempotency-Key`, a retry answers the
/// cart the first request made.
#[utoipa::path(
    post, path = "/v1/carts", tag = "carts",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes the request safe to retry: the same key answers the same cart while its first deadline lasts",
        min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    responses(
        (status = 201, description = "The new cart (or, with `idempotent-replayed: true`, the one an earlier request with the same key made)", body = CartBody,
            headers(("cart-session-id" = String, description = "The new cart session id"))),
        (status = 400, description = "A malformed `Idempotency-Key`", body = ErrorBody),
        (status = 404, description = "`session_not_found`: the key's cart has ended since", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_use`: the first request with the key is still running (`Retry-After`)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn create_cart<B: Backend>(State(app): AppS<B>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (cart, replayed) = match idempotency_key(&headers)? {
        None => (app.service.create_cart().await?, false),
        Some(key) => {
            let once = Once { key: &key, fingerprint: "POST /v1/carts" };
            let r = app.service.create_cart_once(&once).await?;
            (r.value, r.replayed)
        }
    };
    let response = with_session(cart.id, (StatusCode::CREATED, Json(CartBody::from(&cart))).into_response());
    Ok(replay_marked(response, replayed))
}

/// Marks a replayed answer with `idempotent-replayed: true`.
fn replay_marked(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// The cart.
#[utoipa::path(
    get, path = "/v1/cart", tag = "carts",
    params(("cart-session-id" = String, Header, description = "The cart session (a UUID v4)",
        format = "uuid", pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
        example = "8b6f3b84-5d1c-4e0f-9a7b-2c3d4e5f6a7b")),
    responses(
        (status = 200, description = "The cart", body = CartBody,
            headers(("cart-session-id" = String, description = "The cart session id"))),
        (status = 400, body = ErrorBody), (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_cart<B: Backend>(State(app): AppS<B>, headers: HeaderMap) -> Result<Response, ApiError> {
    let id = required_session(&headers)?;
    let cart = app.service.get_cart(id).await?;
    Ok(with_session(id, Json(CartBody::from(&cart)).into_response()))
}

/// Sets a product's line (0 removes it), holding or releasing the difference.
#[utoipa::path(
    put, path = "/v1/cart/items/{product_id}", tag = "carts",
    params(
        ("product_id" = String, Path, description = "The product (1-64 of `[A-Za-z0-9._:-]`)",
            min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$"),
        ("cart-session-id" = Option<String>, Header,
            description = "The cart session (a UUID v4); without it a new cart is made", nullable = false,
            format = "uuid", pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
            example = "8b6f3b84-5d1c-4e0f-9a7b-2c3d4e5f6a7b"),
    ),
    request_body = SetLineRequest,
    responses(
        (status = 200, description = "The cart after the change", body = CartBody,
            headers(("cart-session-id" = String, description = "The cart session id"))),
        (status = 400, body = ErrorBody),
        (status = 404, description = "`session_not_found` or `inventory_not_found`", body = ErrorBody),
        (status = 409, description = "`insufficient_stock` (nothing changed) or `too_many_lines`", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn set_line<B: Backend>(
    State(app): AppS<B>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SetLineRequest>,
) -> Result<Response, ApiError> {
    let product = parse_id("product_id", &path_text(path)?, ProductId::parse)?;
    let item = parse_id("inventory_id", &req.inventory_id, InventoryId::parse)?;
    let target = match session_header(&headers)? {
        Some(id) => Target::Existing(id),
        None => Target::New,
    };
    let result = app.service.set_line(target, product, item, req.quantity).await?;
    Ok(with_session(result.cart.id, Json(CartBody::from(&result.cart)).into_response()))
}

/// Removes a product's line and releases its hold.
#[utoipa::path(
    delete, path = "/v1/cart/items/{product_id}", tag = "carts",
    params(
        ("product_id" = String, Path, description = "The product",
            min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$"),
        ("cart-session-id" = String, Header, description = "The cart session (a UUID v4)",
            format = "uuid", pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
            example = "8b6f3b84-5d1c-4e0f-9a7b-2c3d4e5f6a7b"),
    ),
    responses(
        (status = 200, description = "The cart after the change", body = CartBody,
            headers(("cart-session-id" = String, description = "The cart session id"))),
        (status = 400, body = ErrorBody), (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn remove_line<B: Backend>(
    State(app): AppS<B>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let product = parse_id("product_id", &path_text(path)?, ProductId::parse)?;
    let id = required_session(&headers)?;
    let cart = app.service.remove_line(id, product).await?;
    Ok(with_session(id, Json(CartBody::from(&cart)).into_response()))
}

/// Closes the cart and releases all its holds.
#[utoipa::path(
    delete, path = "/v1/cart", tag = "carts",
    params(("cart-session-id" = String, Header, description = "The cart session (a UUID v4)",
        format = "uuid", pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
        example = "8b6f3b84-5d1c-4e0f-9a7b-2c3d4e5f6a7b")),
    responses(
        (status = 204, description = "Closed; its stock is available again"),
        (status = 400, body = ErrorBody), (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn abandon_cart<B: Backend>(State(app): AppS<B>, headers: HeaderMap) -> Result<Response, ApiError> {
    let id = required_session(&headers)?;
    app.service.abandon(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Checks the cart out: its holds become sold and the session closes.
#[utoipa::path(
    post, path = "/v1/cart/checkout", tag = "carts",
    params(("cart-session-id" = String, Header, description = "The cart session (a UUID v4)",
        format = "uuid", pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
        example = "8b6f3b84-5d1c-4e0f-9a7b-2c3d4e5f6a7b")),
    responses(
        (status = 201, description = "The order", body = OrderBody),
        (status = 200, description = "A retry: the order made earlier for this cart", body = OrderBody),
        (status = 400, body = ErrorBody), (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`cart_empty`", body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn checkout<B: Backend>(State(app): AppS<B>, headers: HeaderMap) -> Result<Response, ApiError> {
    let id = required_session(&headers)?;
    let result = app.service.checkout(id).await?;
    let status = if result.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(OrderBody::from(&result.order))).into_response())
}

/// Merges another cart into this one: the other cart's lines move in with
/// the units they hold, only what merged lines need beyond that is taken
/// (clamped to stock and the limits), and the other cart's session closes.
#[utoipa::path(
    post, path = "/v1/cart/merge", tag = "carts",
    params(("cart-session-id" = String, Header, description = "The cart to merge into (a UUID v4)",
        format = "uuid", pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-4[0-9A-Fa-f]{3}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
        example = "8b6f3b84-5d1c-4e0f-9a7b-2c3d4e5f6a7b")),
    request_body = MergeRequest,
    responses(
        (status = 200, description = "The merged cart, and every line that got less than asked", body = MergeBody,
            headers(("cart-session-id" = String, description = "The merged cart's session id"))),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 404, description = "`session_not_found`: either cart is not open (nothing changed)", body = ErrorBody),
        (status = 409, description = "`merge_into_itself`: the body names the header's cart", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn merge_carts<B: Backend>(
    State(app): AppS<B>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<MergeRequest>,
) -> Result<Response, ApiError> {
    let into = required_session(&headers)?;
    // The id is a secret: the message names the field, never the value.
    let from = CartId::parse(req.from_cart_session_id.trim())
        .map_err(|_| ApiError::invalid("from_cart_session_id must be a UUID v4"))?;
    let merged = app.service.merge(into, from, req.strategy.into()).await?;
    Ok(with_session(into, Json(MergeBody::from(&merged)).into_response()))
}

/// Most items one `GET /v1/inventory` answer lists, and the default page size.
pub const MAX_STOCK_PAGE: u32 = 1000;
/// Page size when `limit` is not given.
pub const DEFAULT_STOCK_PAGE: u32 = 100;
/// Most ids one `ids=` filter may name.
pub const MAX_STOCK_IDS: usize = 100;

/// Items with their counts: one page in `inventory_id` order, or the items
/// named by `ids`.
#[utoipa::path(
    get, path = "/v1/inventory", tag = "inventory",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page (1-1000, default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page",
            min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$"),
        ("ids" = Option<String>, Query,
            description = "Only these items: 1-100 comma-separated ids (unknown ones are left out); `limit` and `cursor` page through them",
            min_length = 1, pattern = "^[A-Za-z0-9._:-]{1,64}(,[A-Za-z0-9._:-]{1,64}){0,99}$"),
    ),
    responses(
        (status = 200, description = "The items", body = StockPage),
        (status = 400, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn list_stock<B: Backend>(
    State(app): AppS<B>,
    query: Result<Query<StockQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    let ids = match q.ids {
        None => None,
        Some(ids) => {
            let ids =
                ids.split(',').map(|raw| parse_id("ids", raw, InventoryId::parse)).collect::<Result<Vec<_>, _>>()?;
            if ids.len() > MAX_STOCK_IDS {
                return Err(ApiError::invalid(format!("ids names more than {MAX_STOCK_IDS} items")));
            }
            Some(ids)
        }
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_STOCK_PAGE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_STOCK_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit must be an integer between 1 and {MAX_STOCK_PAGE}")))?,
    };
    let cursor = q.cursor.as_deref().map(|raw| parse_id("cursor", raw, InventoryId::parse)).transpose()?;
    // One more than asked tells whether another page follows.
    let mut levels = match ids {
        None => app.service.list_stock(cursor.as_ref(), limit + 1).await?,
        // At most 100, in id order: page through them in memory.
        Some(ids) => {
            let mut levels = app.service.stock_of(&ids).await?;
            levels.retain(|(id, _)| cursor.as_ref().is_none_or(|c| id > c));
            levels
        }
    };
    let more = levels.len() > limit as usize;
    levels.truncate(limit as usize);
    let next_cursor = if more { levels.last().map(|(id, _)| id.to_string()) } else { None };
    let items = levels.iter().map(|(id, level)| StockBody::new(id, *level)).collect();
    Ok(Json(StockPage { items, next_cursor }).into_response())
}

/// An inventory item's counts.
#[utoipa::path(
    get, path = "/v1/inventory/{inventory_id}", tag = "inventory",
    params(("inventory_id" = String, Path, description = "The item",
        min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")),
    responses(
        (status = 200, description = "The counts", body = StockBody),
        (status = 400, body = ErrorBody), (status = 404, description = "`inventory_not_found`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get_stock<B: Backend>(
    State(app): AppS<B>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let item = parse_id("inventory_id", &path_text(path)?, InventoryId::parse)?;
    let level = app.service.stock(&item).await?;
    Ok(Json(StockBody::new(&item, level)).into_response())
}

/// Creates an item or sets its available count (admin).
#[utoipa::path(
    put, path = "/v1/inventory/{inventory_id}", tag = "inventory",
    params(("inventory_id" = String, Path, description = "The item",
        min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")),
    request_body = SetStockRequest,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The counts after the change", body = StockBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn set_stock<B: Backend>(
    State(app): AppS<B>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<JsonBody<SetStockRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // Authorization comes before anything about the body, so that an anonymous
    // client learns nothing but 401.
    require_admin(&headers, app.admin_token.expose())?;
    let JsonBody(req) = body?;
    let item = parse_id("inventory_id", &path_text(path)?, InventoryId::parse)?;
    let available = StockCount::new(req.available).map_err(|e| ApiError::invalid(format!("available {e}")))?;
    let level = app.service.set_stock(&item, available).await?;
    Ok(Json(StockBody::new(&item, level)).into_response())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = StatusBody)))]
pub async fn healthz() -> Json<StatusBody> {
    Json(StatusBody { status: "ok".to_owned() })
}

/// Readiness: the backing stores answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200, body = StatusBody), (status = 503, body = StatusBody))
)]
pub async fn readyz<B: Backend>(State(app): AppS<B>) -> Response {
    if app.backend.ready(&app.service).await {
        Json(StatusBody { status: "ready".to_owned() }).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(StatusBody { status: "unavailable".to_owned() })).into_response()
    }
}

/// Prometheus metrics. Gauges read from the stores at scrape time are left
/// out when a store does not answer (and the failure is counted).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in the Prometheus text format (version 0.0.4); see docs/operations.md",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub async fn metrics<B: Backend>(State(app): AppS<B>) -> Response {
    let held_units = match app.service.reserved_total().await {
        Ok(units) => Some(units),
        Err(e) => {
            if let CartError::Unavailable(cause) = &e {
                app.metrics.store_error(cause.store());
            }
            tracing::warn!(error = %error_chain(&e), "metrics: held units unknown");
            None
        }
    };
    let scrape = ScrapeState {
        held_units,
        pools: app.backend.pools(&app.service),
        listener_connected: app.backend.listener_connected(),
        listener_nodes: app.backend.listener_nodes(),
        hold_batches: app.backend.hold_batches(&app.service),
    };
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], app.metrics.encode(&scrape)).into_response()
}

/// Handler for paths no route matches.
pub async fn no_route() -> ApiError {
    ApiError::NoRoute
}
