//! Live stock over Server-Sent Events (`GET /v1/inventory/events`): on the
//! in-memory backend, and across two instances sharing Redis + PostgreSQL.

use cartd_test_support::app as support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::{Isolation, spawn_app_with, spawn_real_app_in};

/// One event as the stream sent it.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: String,
    data: Value,
}

impl SseEvent {
    /// `inventory_id -> available` of the items in the event.
    fn available(&self) -> Vec<(String, i64)> {
        self.data["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["inventory_id"].as_str().unwrap().to_owned(), i["available"].as_i64().unwrap()))
            .collect()
    }
}

/// A stream being read.
struct Events {
    status: StatusCode,
    headers: HeaderMap,
    body: hyper::body::Incoming,
    buf: String,
}

async fn open(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Events {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(Method::GET).uri(format!("http://{addr}/v1/inventory/events{query}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client.request(req.body(Full::new(Bytes::new())).unwrap()).await.expect("server answers");
    let (parts, body) = res.into_parts();
    Events { status: parts.status, headers: parts.headers, body, buf: String::new() }
}

async fn follow(addr: SocketAddr, query: &str) -> Events {
    let events = open(addr, query, &[("accept", "text/event-stream")]).await;
    assert_eq!(events.status, StatusCode::OK);
    events
}

impl Events {
    /// The next event within `wait`; `None` when the stream ended. Panics
    /// when nothing came in time.
    async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), id: String::new(), data: Value::Null };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment or a bare `retry:`
                }
                event.data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(event);
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => panic!("no event within {wait:?}; have {:?}", self.buf),
                Ok(None) => return None,
                Ok(Some(frame)) => {
                    if let Ok(data) = frame.expect("stream reads").into_data() {
                        self.buf.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }

    async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(5)).await.expect("the stream goes on")
    }
}

fn avail(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_stream_starts_with_a_snapshot_then_sends_only_the_changes_it_asked_for() {
    let app = spawn_app_with(&[]).await;
    for (item, n) in [("inv-1", 10), ("inv-2", 5), ("inv-3", 7)] {
        app.set_stock(item, n).await;
    }
    let mut events = follow(app.addr, "?ids=inv-2,inv-1,nope").await;
    assert_eq!(events.headers["content-type"], "text/event-stream");
    assert_eq!(events.headers["cache-control"], "no-cache");
    let snapshot = events.next().await;
    assert_eq!(snapshot.event, "snapshot");
    // The hub may not have read the items yet: then a change event follows.
    let mut seen = snapshot.available();
    while seen.len() < 2 {
        let e = events.next().await;
        assert_eq!(e.event, "stock");
        for (k, v) in e.available() {
            seen.retain(|(s, _)| *s != k);
            seen.push((k, v));
        }
        seen.sort();
    }
    assert_eq!(seen, avail(&[("inv-1", 10), ("inv-2", 5)]));

    let session = app.create_cart().await;
    assert_eq!(app.set_line(&session, "p3", "inv-3", 1).await.status, StatusCode::OK);
    assert_eq!(app.set_line(&session, "p1", "inv-1", 3).await.status, StatusCode::OK);
    let change = events.next().await;
    assert_eq!(change.event, "stock");
    assert_eq!(change.available(), avail(&[("inv-1", 7)]), "inv-3 was not asked for");
    assert_eq!(change.data["items"][0]["reserved"], 3);
    assert!(change.id.ends_with(&format!("-{}", change.data["version"])), "{}", change.id);

    app.request(Method::DELETE, "/v1/cart", &[("cart-session-id", &session)], None).await;
    assert_eq!(events.next().await.available(), avail(&[("inv-1", 10)]), "an abandoned cart's stock comes back");
    app.set_stock("inv-2", 50).await;
    assert_eq!(events.next().await.available(), avail(&[("inv-2", 50)]), "a restock is a change too");
    app.stop().await;
}

#[tokio::test]
async fn many_holds_within_a_tick_reach_a_stream_as_one_event() {
    let app = spawn_app_with(&[("CART__LIVE__TICK_MS", "1000")]).await;
    app.set_stock("inv-1", 100).await;
    let mut events = follow(app.addr, "?ids=inv-1").await;
    let mut first = events.next().await;
    while first.available().is_empty() {
        first = events.next().await;
    }
    // Wait for a tick to pass, then hold ten times quickly.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let session = app.create_cart().await;
    for n in 1..=10 {
        assert_eq!(app.set_line(&session, "p1", "inv-1", n).await.status, StatusCode::OK);
    }
    let mut last = 100;
    let mut count = 0;
    while last != 90 {
        let e = events.next().await;
        last = e.available()[0].1;
        count += 1;
    }
    assert!(count <= 2, "ten holds gave {count} events: they are coalesced per tick");
    app.stop().await;
}

#[tokio::test]
async fn without_accepting_an_event_stream_a_client_gets_the_snapshot_and_the_end() {
    let app = spawn_app_with(&[]).await;
    app.set_stock("inv-1", 4).await;
    // Once the hub has read the item, the snapshot holds it.
    let mut tries = 0;
    loop {
        let mut events = open(app.addr, "?ids=inv-1", &[]).await;
        assert_eq!(events.status, StatusCode::OK);
        let snapshot = events.next().await;
        assert_eq!(snapshot.event, "snapshot");
        assert!(events.next_within(Duration::from_secs(5)).await.is_none(), "the stream ends");
        if snapshot.available() == avail(&[("inv-1", 4)]) {
            break;
        }
        tries += 1;
        assert!(tries < 50, "the hub never read inv-1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_ids_are_400() {
    let app = spawn_app_with(&[]).await;
    for query in ["?ids=", "?ids=a,,b", "?ids=bad%20id", "?colour=red"] {
        let res = app.get(&format!("/v1/inventory/events{query}"), &[]).await;
        res.assert_error(400, "invalid_request");
    }
    app.stop().await;
}

#[tokio::test]
async fn streams_beyond_the_cap_get_503_and_are_counted() {
    let app = spawn_app_with(&[("CART__LIVE__MAX_STREAMS", "1"), ("CART__LIVE__KEEP_ALIVE_MS", "1000")]).await;
    let mut first = follow(app.addr, "").await;
    first.next().await;
    let refused = app.get("/v1/inventory/events", &[("accept", "text/event-stream")]).await;
    refused.assert_error(503, "too_many_streams");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let m = app.metrics().await;
    assert_eq!(m.value("cartd_live_streams", &[]), 1.0);
    assert_eq!(m.value("cartd_live_streams_rejected_total", &[]), 1.0);
    drop(first);
    // The server notices the closed connection at the next keep-alive.
    let mut tries = 0;
    while app.metrics().await.value("cartd_live_streams", &[]) > 0.0 {
        tries += 1;
        assert!(tries < 100, "the closed stream still holds its place");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = follow(app.addr, "").await;
    assert_eq!(again.next().await.event, "snapshot");
    app.stop().await;
}

#[tokio::test]
async fn keep_alive_comments_flow_on_an_idle_stream() {
    let app = spawn_app_with(&[("CART__LIVE__KEEP_ALIVE_MS", "1000")]).await;
    app.set_stock("inv-1", 1).await;
    let mut events = follow(app.addr, "?ids=inv-1").await;
    events.next().await;
    let mut raw = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !raw.lines().any(|l| l.starts_with(':')) {
        match tokio::time::timeout_at(deadline, events.body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    raw.push_str(std::str::from_utf8(&data).unwrap());
                }
            }
            other => panic!("no keep-alive comment within 5 s: {other:?}, read {raw:?}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_reconnect_with_the_current_event_id_skips_the_snapshot() {
    let app = spawn_app_with(&[]).await;
    app.set_stock("inv-1", 5).await;
    let mut events = follow(app.addr, "?ids=inv-1").await;
    let mut last = events.next().await;
    while last.available().is_empty() {
        last = events.next().await;
    }
    let mut resumed =
        open(app.addr, "?ids=inv-1", &[("accept", "text/event-stream"), ("last-event-id", &last.id)]).await;
    let mut other =
        open(app.addr, "?ids=inv-1", &[("accept", "text/event-stream"), ("last-event-id", "elsewhere-1")]).await;
    assert_eq!(other.next().await.event, "snapshot", "an id from another instance is not trusted");
    app.set_stock("inv-1", 6).await;
    let e = resumed.next().await;
    assert_eq!((e.event.as_str(), e.available()), ("stock", avail(&[("inv-1", 6)])), "no snapshot first");
    app.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_ends_open_streams() {
    let mut app = spawn_app_with(&[("CART__HTTP__SHUTDOWN_GRACE_MS", "60000")]).await;
    let mut events = follow(app.addr, "").await;
    events.next().await;
    app.fire_stop();
    assert!(events.next_within(Duration::from_secs(10)).await.is_none(), "the stream ended");
    tokio::time::timeout(Duration::from_secs(10), app.wait_stopped())
        .await
        .expect("the server stops without waiting out the grace period");
}

#[tokio::test]
async fn a_change_through_instance_b_reaches_a_stream_on_instance_a() {
    let iso = Isolation::new();
    // No resync within the test: only PostgreSQL's notices can carry it.
    let vars = [("CART__LIVE__RESYNC_MS", "600000"), ("CART__SESSION__TTL_SECS", "2")];
    let a = spawn_real_app_in(&iso, &vars).await;
    let b = spawn_real_app_in(&iso, &vars).await;
    b.set_stock("sku-1", 10).await;
    let mut events = follow(a.addr, "?ids=sku-1").await;
    let mut seen = events.next().await.available();
    while seen.is_empty() {
        seen = events.next().await.available();
    }
    assert_eq!(seen, avail(&[("sku-1", 10)]));

    let session = b.create_cart().await;
    assert_eq!(b.set_line(&session, "p1", "sku-1", 3).await.status, StatusCode::OK);
    let e = events.next_within(Duration::from_secs(2)).await.unwrap();
    assert_eq!(e.available(), avail(&[("sku-1", 7)]), "a hold taken through B");

    // B's sweeper (or expiry listener) releases the cart after its 2 s TTL.
    let e = events.next_within(Duration::from_secs(6)).await.unwrap();
    assert_eq!(e.available(), avail(&[("sku-1", 10)]), "a release by B's background tasks");

    let session = b.create_cart().await;
    b.set_line(&session, "p1", "sku-1", 2).await;
    assert_eq!(events.next_within(Duration::from_secs(2)).await.unwrap().available(), avail(&[("sku-1", 8)]));
    let res = b.request(Method::POST, "/v1/cart/checkout", &[("cart-session-id", &session)], None).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let e = events.next_within(Duration::from_secs(2)).await.unwrap();
    assert_eq!(e.data["items"][0]["sold"], 2, "a checkout through B");
    a.stop().await;
    b.stop().await;
    iso.cleanup().await;
}

#[tokio::test]
async fn the_periodic_resync_catches_a_change_no_notice_announced() {
    let iso = Isolation::new();
    let a = spawn_real_app_in(&iso, &[("CART__LIVE__RESYNC_MS", "500")]).await;
    a.set_stock("sku-1", 10).await;
    let mut events = follow(a.addr, "?ids=sku-1").await;
    let mut seen = events.next().await.available();
    while seen.is_empty() {
        seen = events.next().await.available();
    }
    // A change written straight into the table, as a tool or a lost notice would leave it.
    let (client, connection) = tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .execute(&format!("update {}.items set available = 4 where inventory_id = 'sku-1'", iso.schema), &[])
        .await
        .unwrap();
    let e = events.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e.available(), avail(&[("sku-1", 4)]));
    a.stop().await;
    iso.cleanup().await;
}
