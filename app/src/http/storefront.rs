//! The storefront page: a few static files compiled into the binary and the
//! catalogue the page reads, served with a content-hash `ETag` (a repeat visit
//! costs a `304`) and a Content-Security-Policy that allows only this origin's
//! own scripts, styles and connections (the page has no inline code).
//!
//! Turned off by `storefront.enabled = false`; then none of these routes
//! exists and `/` is `404` as before.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;

/// Every storefront answer carries it: scripts, styles, images and
/// connections (fetch, EventSource) from this origin only, nothing inline, no
/// framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX_HTML: &[u8] = include_bytes!("../../storefront/index.html");
const APP_JS: &[u8] = include_bytes!("../../storefront/app.js");
const APP_CSS: &[u8] = include_bytes!("../../storefront/app.css");

/// One file, with its type and its entity tag.
#[derive(Clone, Debug)]
struct Asset {
    body: axum::body::Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: impl Into<axum::body::Bytes>, content_type: &'static str) -> Self {
        let body = body.into();
        let digest = Sha256::digest(&body);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex in quotes is a valid header value");
        Self { body, content_type, etag }
    }

    /// `304` when the client already has this version, else the file.
    fn serve(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| matches_etag(tags, self.etag.to_str().unwrap_or_default()));
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = Response::new(Body::from(self.body.clone()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
            r
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        // Cached, but checked each time: a new release shows at once.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC
/// 9110 asks for this header), or is `*`.
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match.split(',').map(|t| t.trim()).any(|t| t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The storefront's files and catalogue, ready to serve.
#[derive(Debug)]
pub struct Storefront {
    index: Asset,
    script: Asset,
    style: Asset,
    catalog: Asset,
}

impl Storefront {
    /// The page with `catalog`.
    ///
    /// # Panics
    /// Never: a catalogue always serializes.
    #[must_use]
    pub fn new(catalog: &Catalog) -> Self {
        let json = serde_json::to_vec(catalog).expect("a catalogue serializes to JSON");
        Self {
            index: Asset::new(INDEX_HTML, "text/html; charset=utf-8"),
            script: Asset::new(APP_JS, "text/javascript; charset=utf-8"),
            style: Asset::new(APP_CSS, "text/css; charset=utf-8"),
            catalog: Asset::new(json, "application/json"),
        }
    }
}

type StoreS = State<Arc<Storefront>>;

/// The storefront page.
#[utoipa::path(
    get, path = "/", tag = "storefront",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer")),
    responses(
        (status = 200, description = "The page (404 when `storefront.enabled` is false)", content_type = "text/html; charset=utf-8", body = String,
            headers(("ETag" = String, description = "Hash of the content"), ("Content-Security-Policy" = String))),
        (status = 304, description = "Unchanged since the `ETag` given"),
    )
)]
pub async fn index(State(s): StoreS, headers: HeaderMap) -> Response {
    s.index.serve(&headers)
}

/// The page's script (an ES module).
#[utoipa::path(
    get, path = "/assets/app.js", tag = "storefront",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer")),
    responses(
        (status = 200, description = "The script", content_type = "text/javascript; charset=utf-8", body = String,
            headers(("ETag" = String, description = "Hash of the content"))),
        (status = 304, description = "Unchanged since the `ETag` given"),
    )
)]
pub async fn script(State(s): StoreS, headers: HeaderMap) -> Response {
    s.script.serve(&headers)
}

/// The page's stylesheet.
#[utoipa::path(
    get, path = "/assets/app.css", tag = "storefront",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer")),
    responses(
        (status = 200, description = "The stylesheet", content_type = "text/css; charset=utf-8", body = String,
            headers(("ETag" = String, description = "Hash of the content"))),
        (status = 304, description = "Unchanged since the `ETag` given"),
    )
)]
pub async fn style(State(s): StoreS, headers: HeaderMap) -> Response {
    s.style.serve(&headers)
}

/// The catalogue: product names, prices and the items holding their stock.
#[utoipa::path(
    get, path = "/v1/catalog", tag = "storefront",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer")),
    responses(
        (status = 200, description = "The catalogue (404 when `storefront.enabled` is false)", body = Catalog,
            headers(("ETag" = String, description = "Hash of the content"))),
        (status = 304, description = "Unchanged since the `ETag` given"),
    )
)]
pub async fn catalog(State(s): StoreS, headers: HeaderMap) -> Response {
    s.catalog.serve(&headers)
}

/// The storefront's routes.
pub fn routes(storefront: Arc<Storefront>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/v1/catalog", get(catalog))
        .with_state(storefront)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let tag = "\"abc\"";
        for yes in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*", " \"abc\" "] {
            assert!(matches_etag(yes, tag), "{yes}");
        }
        for no in ["\"abcd\"", "abc", "", "\"x\""] {
            assert!(!matches_etag(no, tag), "{no}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_loads_its_own_assets() {
        let html = std::str::from_utf8(INDEX_HTML).unwrap();
        assert!(html.contains(r#"<script type="module" src="/assets/app.js"></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="/assets/app.css">"#));
        assert_eq!(html.matches("<script").count(), 1, "the only script is the module file");
        assert!(!html.contains("<style") && !html.contains("style="), "no inline style");
        let handlers = html.split(" on").skip(1).filter(|rest| {
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest.as_bytes().get(name_len) == Some(&b'=')
        });
        assert_eq!(handlers.count(), 0, "no inline event handler");
    }
}
