//! The one place that decides HTTP status codes: every failure a handler can
//! return is an [`ApiError`], turned into a response by an exhaustive match.
//! 5xx bodies say nothing about the cause; the cause is logged instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use domain::CartError;
use http::{HeaderValue, StatusCode, header};

use super::wire::ErrorBody;

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Set on a 503 response (as an extension, never sent) to name the store that
/// failed, so the metrics middleware can count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedStore(pub &'static str);

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: bad JSON, a missing or invalid field, header or path id.
    #[error("{0}")]
    InvalidRequest(String),
    /// The admin bearer token is missing or wrong.
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    /// No route matches the path.
    #[error("no such route")]
    NoRoute,
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than the configured cap.
    #[error("request body is larger than {max} bytes")]
    PayloadTooLarge {
        /// The cap.
        max: usize,
    },
    /// The body is not declared as `application/json`.
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    /// The request took longer than `http.request_timeout_ms` (a slow body
    /// counts too).
    #[error("the request took too long")]
    RequestTimeout,
    /// The cap on open live stock streams is reached.
    #[error("too many live stock streams are open; retry later")]
    TooManyStreams,
    /// A client quota refused a new cart (issue 14).
    #[error("too many carts from this client ({}): retry in {retry_after_secs} s", limit.as_str())]
    TooManyRequests {
        /// Which quota.
        limit: domain::LimitKind,
        /// Seconds until a retry may pass.
        retry_after_secs: u32,
    },
    /// The held-units quota refused a change (issue 14).
    #[error(
        "this client holds as many units of this item as it may; this cart may hold at most {may_hold} (retry in {retry_after_secs} s)"
    )]
    HoldLimitReached {
        /// Units of the item this cart may still hold.
        may_hold: u32,
        /// Seconds until one of the client's other carts ends.
        retry_after_secs: u32,
    },
    /// A use case failed.
    #[error(transparent)]
    Cart(#[from] CartError),
}

impl ApiError {
    /// An [`ApiError::InvalidRequest`] with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest(message.into())
    }

    /// The status and the stable error code.
    #[must_use]
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::TooManyStreams => (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::HoldLimitReached { .. } => (StatusCode::TOO_MANY_REQUESTS, "hold_limit_reached"),
            ApiError::Cart(e) => match e {
                CartError::SessionNotFound => (StatusCode::NOT_FOUND, "session_not_found"),
                CartError::InsufficientStock { .. } => (StatusCode::CONFLICT, "insufficient_stock"),
                CartError::UnknownItem => (StatusCode::NOT_FOUND, "inventory_not_found"),
                CartError::QuantityOverLimit { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
                CartError::TooManyLines { .. } => (StatusCode::CONFLICT, "too_many_lines"),
                CartError::CartEmpty => (StatusCode::CONFLICT, "cart_empty"),
                // The request is well-formed (no schema can say "from ≠ the header"):
                // it conflicts with itself, as a state the server cannot reach.
                CartError::MergeIntoItself => (StatusCode::CONFLICT, "merge_into_itself"),
                CartError::IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
                CartError::IdempotencyKeyInUse => (StatusCode::CONFLICT, "idempotency_key_in_use"),
                CartError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            },
        }
    }

    /// The JSON body.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        let (_, code) = self.status_and_code();
        let available = match self {
            ApiError::Cart(CartError::InsufficientStock { available }) => Some(*available),
            _ => None,
        };
        let message = match self {
            ApiError::Cart(CartError::SessionNotFound) => {
                "cart session not found: it is unknown, has expired or was checked out".to_owned()
            }
            ApiError::Cart(CartError::Unavailable(_)) => "service temporarily unavailable, retry later".to_owned(),
            ApiError::Cart(CartError::QuantityOverLimit { max }) => format!("quantity must be between 0 and {max}"),
            other => other.to_string(),
        };
        let may_hold = match self {
            ApiError::HoldLimitReached { may_hold, .. } => Some(*may_hold),
            _ => None,
        };
        ErrorBody { error: code.to_owned(), message, available, may_hold }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        let failed = match &self {
            ApiError::Cart(CartError::Unavailable(cause)) => {
                tracing::warn!(error = %error_chain(cause), "request failed: backing store unavailable");
                Some(FailedStore(cause.store()))
            }
            _ => None,
        };
        let mut response = (status, Json(self.body())).into_response();
        if let Some(failed) = failed {
            response.extensions_mut().insert(failed);
        }
        let in_use = matches!(self, ApiError::Cart(CartError::IdempotencyKeyInUse));
        let headers = response.headers_mut();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            // The first request with the key is still running: try again soon.
            StatusCode::CONFLICT if in_use => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let secs = match &self {
                    ApiError::TooManyRequests { retry_after_secs, .. }
                    | ApiError::HoldLimitReached { retry_after_secs, .. } => *retry_after_secs,
                    _ => RETRY_AFTER_SECS,
                };
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

pub use domain::error_chain;

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::PortError;

    #[test]
    fn an_unavailable_store_is_503_with_retry_after_and_an_opaque_body() {
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused to 10.1.2.3");
        let err = ApiError::Cart(CartError::Unavailable(PortError::new("redis", cause)));
        let body = err.body();
        assert_eq!(body.error, "unavailable");
        assert!(!body.message.contains("10.1.2.3"), "5xx bodies must not leak the cause");
        let res = err.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(res.extensions().get::<FailedStore>(), Some(&FailedStore("redis")));
    }

    #[test]
    fn a_timeout_is_408_request_timeout() {
        let res = ApiError::RequestTimeout.into_response();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(ApiError::RequestTimeout.body().error, "request_timeout");
    }

    #[test]
    fn every_domain_error_is_a_4xx_or_a_503() {
        // `variant` matches with no wildcard arm: a new `CartError` variant
        // does not compile here until it is named, and `VARIANTS` beside it
        // counts the arms, so the examples below must cover it too.
        const VARIANTS: usize = 10;
        fn variant(e: &CartError) -> &'static str {
            match e {
                CartError::SessionNotFound => "SessionNotFound",
                CartError::InsufficientStock { .. } => "InsufficientStock",
                CartError::UnknownItem => "UnknownItem",
                CartError::QuantityOverLimit { .. } => "QuantityOverLimit",
                CartError::TooManyLines { .. } => "TooManyLines",
                CartError::CartEmpty => "CartEmpty",
                CartError::MergeIntoItself => "MergeIntoItself",
                CartError::IdempotencyKeyReused => "IdempotencyKeyReused",
                CartError::IdempotencyKeyInUse => "IdempotencyKeyInUse",
                CartError::Unavailable(_) => "Unavailable",
            }
        }
        let examples = [
            CartError::SessionNotFound,
            CartError::InsufficientStock { available: 1 },
            CartError::UnknownItem,
            CartError::QuantityOverLimit { max: 100 },
            CartError::TooManyLines { max: 50 },
            CartError::CartEmpty,
            CartError::MergeIntoItself,
            CartError::IdempotencyKeyReused,
            CartError::IdempotencyKeyInUse,
            CartError::Unavailable(PortError::new("postgres", std::io::Error::other("down"))),
        ];
        let named: std::collections::BTreeSet<&str> = examples.iter().map(variant).collect();
        assert_eq!(named.len(), VARIANTS, "one example of every variant: {named:?}");
        for e in examples {
            let name = variant(&e);
            let (status, _) = ApiError::Cart(e).status_and_code();
            if name == "Unavailable" {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            } else {
                assert!(status.is_client_error(), "{name}: {status}");
            }
        }
    }
}
