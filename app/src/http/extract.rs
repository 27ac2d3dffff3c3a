//! Request extraction with the API's own error answers: JSON bodies (415 on a
//! wrong content type, 413 over the cap, 400 on anything malformed), the
//! session header, path ids and the admin bearer token.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use domain::CartId;
use domain::idempotency::IdempotencyKey;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The header that carries the cart session id, both ways.
pub const SESSION_HEADER: &str = "cart-session-id";

/// The body cap, set once by the router as a request extension.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A JSON body deserialized into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let max = req.extensions().get::<BodyLimit>().map_or(16 * 1024, |l| l.0);
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(ApiError::PayloadTooLarge { max });
        }
        let bytes = read_limited(req.into_body(), max).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

async fn read_limited(body: Body, max: usize) -> Result<axum::body::Bytes, ApiError> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge { max }),
        Err(e) => Err(ApiError::invalid(format!("could not read the request body: {e}"))),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The session header: `None` when absent, an error when present but not a
/// UUID v4 (or given more than once).
///
/// # Errors
/// [`ApiError::InvalidRequest`].
pub fn session_header(headers: &HeaderMap) -> Result<Option<CartId>, ApiError> {
    let mut values = headers.get_all(SESSION_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::invalid("cart-session-id header must be given once"));
    }
    let id = value
        .to_str()
        .ok()
        .and_then(|s| CartId::parse(s.trim()).ok())
        .ok_or_else(|| ApiError::invalid("cart-session-id header must be a UUID v4"))?;
    Ok(Some(id))
}

/// The `Idempotency-Key` header, if given (see [`domain::idempotency`]).
///
/// # Errors
/// [`ApiError::InvalidRequest`] when it is repeated or not 1 to 255 visible ASCII
/// characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::invalid("Idempotency-Key header must be given once"));
    }
    value
        .to_str()
        .ok()
        .and_then(|s| IdempotencyKey::parse(s).ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key header must be 1 to 255 visible ASCII characters"))
}

/// The header that makes cart creation safe to retry.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Marks an answer that replays the one an earlier request with the same
/// idempotency key got.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The session header, required.
///
/// # Errors
/// [`ApiError::InvalidRequest`] when absent or malformed.
pub fn required_session(headers: &HeaderMap) -> Result<CartId, ApiError> {
    session_header(headers)?.ok_or_else(|| ApiError::invalid("cart-session-id header is required"))
}

/// Checks `Authorization: Bearer <token>` against `expected`, in constant time.
///
/// # Errors
/// [`ApiError::Unauthorized`].
pub fn require_admin(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) && !expected.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Parses a path or body id with `parse`, naming `field` in the error.
///
/// # Errors
/// [`ApiError::InvalidRequest`].
pub fn parse_id<T>(field: &str, raw: &str, parse: impl Fn(&str) -> Result<T, domain::IdError>) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::invalid(format!("{field} {e}")))
}

/// The connection's peer address, when the request came through the
/// server's accept loop (router-level tests have none).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let info = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Peer(info.map(|c| c.0)))
    }
}
