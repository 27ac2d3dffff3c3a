//! The shopper's side over HTTP, on the in-memory backend: listing stock
//! (`GET /v1/inventory`), the storefront page and its catalogue.

use cartd_test_support::app as support;

use http::StatusCode;
use serde_json::{Value, json};
use support::{spawn_app, spawn_app_with};

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["inventory_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn inventory_pages_with_a_cursor_until_every_item_is_seen_once() {
    let app = spawn_app().await;
    for n in [3, 1, 5, 2, 4] {
        app.set_stock(&format!("inv-{n}"), n * 10).await;
    }
    let session = app.create_cart().await;
    assert_eq!(app.set_line(&session, "p1", "inv-2", 3).await.status, StatusCode::OK);

    let res = app.get("/v1/inventory?limit=2", &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let page = res.json();
    assert_eq!(ids(&page), ["inv-1", "inv-2"]);
    assert_eq!(page["items"][1], json!({"inventory_id": "inv-2", "available": 17, "reserved": 3, "sold": 0}));
    assert_eq!(page["next_cursor"], "inv-2");
    let page = app.get("/v1/inventory?limit=2&cursor=inv-2", &[]).await.json();
    assert_eq!(ids(&page), ["inv-3", "inv-4"]);
    let page = app.get("/v1/inventory?limit=2&cursor=inv-4", &[]).await.json();
    assert_eq!(ids(&page), ["inv-5"]);
    assert!(page.get("next_cursor").is_none(), "the last page has no cursor: {page}");
    // Exactly a page's worth left: still no cursor to an empty page.
    let page = app.get("/v1/inventory?limit=1&cursor=inv-4", &[]).await.json();
    assert_eq!(ids(&page), ["inv-5"]);
    assert!(page.get("next_cursor").is_none(), "{page}");
    // Without a limit, the default page holds all five.
    assert_eq!(ids(&app.get("/v1/inventory", &[]).await.json()).len(), 5);
    app.stop().await;
}

#[tokio::test]
async fn inventory_filtered_by_ids_lists_the_known_ones_in_order() {
    let app = spawn_app().await;
    app.set_stock("inv-1", 1).await;
    app.set_stock("inv-2", 2).await;
    let page = app.get("/v1/inventory?ids=inv-2,nope,inv-1,inv-2", &[]).await.json();
    assert_eq!(ids(&page), ["inv-1", "inv-2"]);
    assert_eq!(page["items"][1]["available"], 2);
    assert!(page.get("next_cursor").is_none());
    // limit and cursor page through the ids too.
    let page = app.get("/v1/inventory?ids=inv-2,inv-1&limit=1", &[]).await.json();
    assert_eq!((ids(&page), page["next_cursor"].as_str()), (vec!["inv-1".to_owned()], Some("inv-1")));
    let page = app.get("/v1/inventory?ids=inv-2,inv-1&limit=1&cursor=inv-1", &[]).await.json();
    assert_eq!(ids(&page), ["inv-2"]);
    assert!(page.get("next_cursor").is_none(), "{page}");
    // Percent-encoded commas mean the same.
    assert_eq!(ids(&app.get("/v1/inventory?ids=inv-1%2Cinv-2", &[]).await.json()), ["inv-1", "inv-2"]);
    app.stop().await;
}

#[tokio::test]
async fn inventory_refuses_bad_parameters_with_400() {
    let app = spawn_app().await;
    let hundred_and_one = (0..101).map(|n| format!("i{n}")).collect::<Vec<_>>().join(",");
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "limit=",
        "cursor=bad%20id",
        "cursor=",
        "ids=",
        "ids=inv-1,,inv-2",
        "ids=inv-1,bad%20id",
        &format!("ids={hundred_and_one}"),
        "limit=5&limit=6",
        "colour=red",
    ] {
        let res = app.get(&format!("/v1/inventory?{query}"), &[]).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {}", String::from_utf8_lossy(&res.body));
        res.assert_error(400, "invalid_request");
    }
    app.stop().await;
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types_and_a_strict_csp() {
    let app = spawn_app().await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<script type=\"module\" src=\"/assets/app.js\">"),
        ("/assets/app.js", "text/javascript; charset=utf-8", "EventSource"),
        ("/assets/app.css", "text/css; charset=utf-8", ".cart"),
        ("/v1/catalog", "application/json", "\"products\""),
    ] {
        let res = app.get(path, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert_eq!(res.header("content-type"), Some(content_type), "{path}");
        assert_eq!(res.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(res.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(res.header("cache-control"), Some("no-cache"), "{path}");
        assert!(String::from_utf8_lossy(&res.body).contains(needle), "{path} lacks {needle}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unchanged_file_is_304_for_its_etag_and_200_for_any_other() {
    let app = spawn_app().await;
    for path in ["/", "/assets/app.js", "/assets/app.css", "/v1/catalog"] {
        let first = app.get(path, &[]).await;
        let etag = first.header("etag").expect("an etag").to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34, "{etag}");
        let again = app.get(path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let weak = format!("\"other\", W/{etag}");
        assert_eq!(app.get(path, &[("if-none-match", &weak)]).await.status, StatusCode::NOT_MODIFIED, "{path}");
        let stale = app.get(path, &[("if-none-match", "\"0123\"")]).await;
        assert_eq!(stale.status, StatusCode::OK, "{path}");
        assert_eq!(stale.body, first.body);
    }
    let js = app.get("/assets/app.js", &[]).await.header("etag").unwrap().to_owned();
    let css = app.get("/assets/app.css", &[]).await.header("etag").unwrap().to_owned();
    assert_ne!(js, css, "the tag follows the content");
    app.stop().await;
}

#[tokio::test]
async fn the_built_in_catalogue_names_the_demo_items() {
    let app = spawn_app_with(&[("CART__DEMO__SEED", "true"), ("CART__DEMO__ITEMS", "12")]).await;
    let catalog = app.get("/v1/catalog", &[]).await.json();
    let products = catalog["products"].as_array().unwrap();
    assert!(!products.is_empty());
    let wanted: Vec<&str> = products.iter().map(|p| p["inventory_id"].as_str().unwrap()).collect();
    let page = app.get(&format!("/v1/inventory?ids={}", wanted.join(",")), &[]).await.json();
    assert_eq!(ids(&page).len(), wanted.len(), "every catalogue item exists in the demo stock: {page}");
    for p in products {
        assert!(p["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(p["price"].as_u64().is_some());
    }
    app.stop().await;
}

#[tokio::test]
async fn with_the_storefront_turned_off_the_page_is_404_as_before() {
    let app = spawn_app_with(&[("CART__STOREFRONT__ENABLED", "false")]).await;
    for path in ["/", "/assets/app.js", "/assets/app.css", "/v1/catalog"] {
        app.get(path, &[]).await.assert_error(404, "not_found");
    }
    assert_eq!(app.get("/v1/inventory", &[]).await.status, StatusCode::OK, "the API stays");
    app.stop().await;
}

#[tokio::test]
async fn a_catalogue_file_is_served_as_given() {
    let dir = tempdir("good");
    let path = dir.join("catalog.json");
    let text = r#"{"currency": "JPY", "products": [{"product_id": "mug", "name": "Mug", "price": 900, "inventory_id": "sku-9"}]}"#;
    std::fs::write(&path, text).unwrap();
    let app = spawn_app_with(&[("CART__STOREFRONT__CATALOG", path.to_str().unwrap())]).await;
    let served = app.get("/v1/catalog", &[]).await.json();
    assert_eq!(served, serde_json::from_str::<Value>(text).unwrap());
    app.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_bad_catalogue_stops_the_start_with_an_error_naming_the_entry() {
    let dir = tempdir("bad");
    let path = dir.join("catalog.json");
    std::fs::write(
        &path,
        r#"{"currency": "EUR", "products": [
            {"product_id": "mug", "name": "Mug", "price": 900, "inventory_id": "sku-9"},
            {"product_id": "cup", "name": "Cup", "price": 500, "inventory_id": "not valid"}]}"#,
    )
    .unwrap();
    let err = build_error(&[("CART__STOREFRONT__CATALOG", path.to_str().unwrap())]).await;
    assert!(err.contains("storefront.catalog"), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains(r#"products[1] (product_id "cup"): inventory_id"#), "{err}");

    let missing = dir.join("missing.json");
    let err = build_error(&[("CART__STOREFRONT__CATALOG", missing.to_str().unwrap())]).await;
    assert!(err.contains("cannot read catalogue") && err.contains("missing.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cartd-storefront-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The error `Application::build` stops with, as the binary prints it.
async fn build_error(vars: &[(&str, &str)]) -> String {
    let mut map = config::Map::new();
    for (k, v) in [("CART__HTTP__ADDR", "127.0.0.1:0"), ("CART__DEMO__SEED", "false")].iter().chain(vars) {
        map.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = cartd::Settings::from_sources(None, cartd::Settings::environment().source(Some(map))).unwrap();
    match cartd::Application::build(settings).await {
        Ok(_) => panic!("the application started with {vars:?}"),
        Err(e) => format!("{e:#}"),
    }
}
