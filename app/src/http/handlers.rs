//! Route handlers: parse the request into domain types, call one use case,
//! shape the answer. No status decision lives here beyond the success code;
//! failures are [`ApiError`]s.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use domain::ports::Clock;
use domain::service::Target;
use domain::{CartError, CartId, ClientKey, InventoryId, Once, ProductId, StockCount};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::error::{ApiError, error_chain};
use super::extract::{
    JsonBody, Peer, REPLAYED_HEADER, SESSION_HEADER, idempotency_key, parse_id, require_admin, required_session,
    session_header,
};
use super::wire::{
    AddToCartRequest, AddToCartResponse, CartBody, ErrorBody, GetCartResponse, HolderBody, ItemHoldersBody, LimitsBody,
    LimitsQuery, MergeBody, MergeRequest, OrderBody, QuotaPolicyBody, RefusedClientBody, SetLineRequest,
    SetStockRequest, StatusBody, StockBody, StockPage, StockQuery, view,
};
use crate::metrics::ScrapeState;
use crate::state::{AppState, Backend};

type AppS<B> = State<Arc<AppState<B>>>;

/// The client of a request, when a quota is on (see [`crate::quotas`]).
fn client_of<B: Backend>(app: &AppState<B>, peer: Peer, headers: &HeaderMap) -> Option<ClientKey> {
    if app.quotas.limits_carts() || app.quotas.limits_holds() { app.quotas.client(peer.0, headers) } else { None }
}

fn now_of<B: Backend>(app: &AppState<B>) -> domain::Timestamp {
    app.service.clock().now()
}

/// Counts the new cart `id` (a fresh random id) for `client`, before it is
/// made.
async fn admit_new_cart<B: Backend>(app: &AppState<B>, client: Option<&ClientKey>, id: CartId) -> Result<(), ApiError> {
    match client {
        Some(client) if app.quotas.limits_carts() => {
            let now = now_of(app);
            app.quotas.admit_cart(client, id, app.service.policy().initial_deadline(now), now).await
        }
        _ => Ok(()),
    }
}

/// Runs `change` (setting `cart`'s line of `item` to `units`) with those
/// units counted for `client` first; a change that fails is uncounted, so
/// a refusal of either kind leaves nothing changed.
async fn counted<B: Backend, T>(
    app: &AppState<B>,
    client: Option<&ClientKey>,
    cart: CartId,
    item: &InventoryId,
    units: u32,
    change: impl Future<Output = Result<T, CartError>>,
) -> Result<T, ApiError> {
    let counted = match client {
        // A quantity over the line limit is refused by the change itself.
        Some(client) if app.quotas.limits_holds() && units <= app.service.limits().max_quantity() => {
            let now = now_of(app);
            let policy = app.service.policy();
            let (deadline, moves) = match policy.deadline_on_change(now) {
                Some(d) => (d, true),
                // Fixed expiry: the cart ends no later than this; a cart the
                // quotas know ends at its own deadline.
                None => (policy.initial_deadline(now), false),
            };
            let stock = || async {
                match app.service.stock(item).await {
                    Ok(level) => Ok(Some(level)),
                    Err(CartError::UnknownItem) => Ok(None),
                    Err(e) => Err(e),
                }
            };
            app.quotas.admit_hold(client, cart, item, units, deadline, moves, now, stock).await?
        }
        _ => None,
    };
    match change.await {
        Ok(v) => Ok(v),
        Err(e) => {
            app.quotas.undo(counted, now_of(app)).await;
            Err(e.into())
        }
    }
}

/// Adds the `cart-session-id` header to `response`.
fn with_session(id: CartId, mut response: Response) -> Response {
    let mut buf = uuid::Uuid::encode_buffer();
    let value = HeaderValue::from_str(id.as_uuid().hyphenated().encode_lower(&mut buf))
        .expect("a hyphenated UUID is a valid header value");
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
        (status = 429, description = "A client quota: `too_many_requests` (carts opened per minute, carts open at once) or `hold_limit_reached` (units of the item held across the client's carts; `may_hold` says how many this cart may hold); nothing changed", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds until the quota may allow it"))),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn add_to_cart<B: Backend>(
    State(app): AppS<B>,
    peer: Peer,
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
    let client = client_of(&app, peer, &headers);
    let client = client.as_ref();
    let q = req.quantity;
    let (id, replayed) = match (target, idempotency_key(&headers)?) {
        (Target::New, Some(key)) => {
            let fingerprint = format!("POST /add-to-cart {product} {item} {q}");
            let once = Once { key: &key, fingerprint: &fingerprint };
            let id = CartId::random();
            admit_new_cart(&app, client, id).await?;
            let r =
                counted(&app, client, id, &item, q, app.service.add_line_once_as(product, item.clone(), q, &once, id))
                    .await;
            match r {
                // The key's cart was made by an earlier request: the one
                // counted here was never made.
                Ok(r) if r.replayed => {
                    app.quotas.forget(id, now_of(&app)).await;
                    (r.value.id, true)
                }
                Ok(r) => (r.value.id, false),
                Err(e) => {
                    app.quotas.forget(id, now_of(&app)).await;
                    return Err(e);
                }
            }
        }
        (Target::ExistingOrNew(existing), _) => {
            let change = app.service.add_line(Target::Existing(existing), product.clone(), item.clone(), q);
            match counted(&app, client, existing, &item, q, change).await {
                Ok(added) => (added.id, false),
                // The tutorial makes a new cart for a session it does not know.
                Err(ApiError::Cart(CartError::SessionNotFound)) => {
                    (add_new(&app, client, product, item, q).await?, false)
                }
                Err(e) => return Err(e),
            }
        }
        (_, _) => (add_new(&app, client, product, item, q).await?, false),
    };
    let body =
        AddToCartResponse { message: "Product added to cart successfully".to_owned(), cart_session_id: id.to_string() };
    Ok(replay_marked(with_session(id, (StatusCode::OK, Json(body)).into_response()), replayed))
}

/// `add-to-cart` on a new cart, counted for `client`.
async fn add_new<B: Backend>(
    app: &AppState<B>,
    client: Option<&ClientKey>,
    product: ProductId,
    item: InventoryId,
    quantity: u32,
) -> Result<CartId, ApiError> {
    let id = CartId::random();
    admit_new_cart(app, client, id).await?;
    let result =
        counted(app, client, id, &item, quantity, app.service.add_line_new(id, product, item.clone(), quantity)).await;
    if result.is_err() {
        app.quotas.forget(id, now_of(app)).await;
    }
    Ok(result?.id)
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
        Some(cart) if !cart.lines.is_empty() => Ok((StatusCode::OK, view::TutorialCartView(&cart)).into_response()),
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
        (status = 429, description = "`too_many_requests`: a client quota (carts opened per minute, carts open at once); nothing changed", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds until the quota may allow it"))),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn create_cart<B: Backend>(
    State(app): AppS<B>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let client = client_of(&app, peer, &headers);
    let id = CartId::random();
    admit_new_cart(&app, client.as_ref(), id).await?;
    let made = match key {
        None => app.service.create_cart_as(id).await.map(|cart| (cart, false)),
        Some(key) => {
            let once = Once { key: &key, fingerprint: "POST /v1/carts" };
            app.service.create_cart_once_as(&once, id).await.map(|r| (r.value, r.replayed))
        }
    };
    // Not made (a failure, or the key's cart made earlier): `id` never existed.
    if !matches!(&made, Ok((cart, _)) if cart.id == id) {
        app.quotas.forget(id, now_of(&app)).await;
    }
    let (cart, replayed) = made?;
    let response = with_session(cart.id, (StatusCode::CREATED, view::CartView(&cart)).into_response());
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
    Ok(with_session(id, view::CartView(&cart).into_response()))
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
        (status = 429, description = "A client quota: `too_many_requests` (carts opened per minute, carts open at once) or `hold_limit_reached` (units of the item held across the client's carts; `may_hold` says how many this cart may hold); nothing changed", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds until the quota may allow it"))),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn set_line<B: Backend>(
    State(app): AppS<B>,
    peer: Peer,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SetLineRequest>,
) -> Result<Response, ApiError> {
    let product = parse_id("product_id", &path_text(path)?, ProductId::parse)?;
    let item = parse_id("inventory_id", &req.inventory_id, InventoryId::parse)?;
    let client = client_of(&app, peer, &headers);
    let client = client.as_ref();
    let q = req.quantity;
    let result = match session_header(&headers)? {
        Some(id) => {
            counted(&app, client, id, &item, q, app.service.set_line(Target::Existing(id), product, item.clone(), q))
                .await?
        }
        None => {
            let id = CartId::random();
            admit_new_cart(&app, client, id).await?;
            let result =
                counted(&app, client, id, &item, q, app.service.set_line_new(id, product, item.clone(), q)).await;
            if result.is_err() {
                app.quotas.forget(id, now_of(&app)).await;
            }
            result?
        }
    };
    Ok(with_session(result.cart.id, view::CartView(&result.cart).into_response()))
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
    peer: Peer,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let product = parse_id("product_id", &path_text(path)?, ProductId::parse)?;
    let id = required_session(&headers)?;
    let client = client_of(&app, peer, &headers).filter(|_| app.quotas.limits_holds());
    // The route names the product, the quota counts the item: read the line
    // (one more session read, only with a hold quota on) to uncount it.
    let item = match &client {
        Some(_) => {
            app.service.get_cart(id).await?.lines.into_iter().find(|l| l.product_id == product).map(|l| l.inventory_id)
        }
        None => None,
    };
    let cart = match item {
        Some(item) => counted(&app, client.as_ref(), id, &item, 0, app.service.remove_line(id, product)).await?,
        None => app.service.remove_line(id, product).await?,
    };
    Ok(with_session(id, view::CartView(&cart).into_response()))
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
    app.quotas.forget(id, now_of(&app)).await;
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
    app.quotas.forget(id, now_of(&app)).await;
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
    // The source's counts are kept until its deadline: forgetting them would
    // let a client launder held units through merges. Its units then count
    // twice once the target's line changes: stricter, never looser.
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
    app.quotas.restocked(&item);
    Ok(Json(StockBody::new(&item, level)).into_response())
}

/// Most top holders one `GET /v1/admin/limits` lists.
pub const MAX_TOP_HOLDERS: usize = 100;

/// The client quotas, the clients refused lately, and the top holders of an
/// item (admin): what an operator watches during a sale.
#[utoipa::path(
    get, path = "/v1/admin/limits", tag = "operations",
    params(
        ("inventory_id" = Option<String>, Query, description = "List the clients holding most of this item",
            min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$"),
        ("top" = Option<u32>, Query, description = "How many top holders (1-100, default 10)", minimum = 1, maximum = 100),
    ),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The quotas and who is at them", body = LimitsBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "`inventory_not_found`", body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn admin_limits<B: Backend>(
    State(app): AppS<B>,
    headers: HeaderMap,
    query: Result<Query<LimitsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&headers, app.admin_token.expose())?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))?;
    let item = q.inventory_id.as_deref().map(|raw| parse_id("inventory_id", raw, InventoryId::parse)).transpose()?;
    let top = match q.top.as_deref() {
        None => 10,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP_HOLDERS).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("top must be between 1 and {MAX_TOP_HOLDERS}")))?,
    };
    let stock = match &item {
        Some(item) => Some(app.service.stock(item).await?),
        None => None,
    };
    let standing = app.quotas.standing(item.as_ref(), top, now_of(&app)).await?;
    let p = app.quotas.policy();
    let body = LimitsBody {
        policy: QuotaPolicyBody {
            carts_per_minute: p.carts_per_minute(),
            open_carts: p.open_carts(),
            held_units: p.held_units(),
            held_share_percent: p.held_share_percent(),
            held_share_floor: p.held_share_floor(),
        },
        refused: standing
            .refused
            .iter()
            .map(|(client, limit)| RefusedClientBody { client: client.to_string(), limit: limit.as_str().to_owned() })
            .collect(),
        item: item.zip(stock).map(|(item, level)| ItemHoldersBody {
            inventory_id: item.to_string(),
            stock: level.total(),
            cap: app.quotas.cap_for(u64::try_from(level.total()).unwrap_or(0)),
            top_holders: standing
                .top_holders
                .iter()
                .map(|h| HolderBody { client: h.client.to_string(), held: h.count })
                .collect(),
        }),
    };
    Ok(Json(body).into_response())
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
