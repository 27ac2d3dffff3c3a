//! Stock notices on real PostgreSQL: every transaction that changes counts
//! sends one notice at commit, on its deployment's channel only, and the
//! listener asks for a full re-read after (re)connecting.

use std::time::Duration;

use cartd_adapters::postgres_store::{PgSettings, StockListener, StockNotice};
use cartd_test_support::fixtures::{item, set};
use cartd_test_support::servers::postgres_url;
use cartd_test_support::stores;
use domain::ports::Inventory;
use domain::{CartId, OrderId, StockCount, Timestamp};
use tokio::sync::{mpsc, oneshot};

fn items(v: &[&str]) -> StockNotice {
    StockNotice::Items(v.iter().map(|s| item(s)).collect())
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    Timestamp::from_millis(i64::try_from(ms).unwrap())
}

struct Listening {
    notices: mpsc::UnboundedReceiver<StockNotice>,
    listener: StockListener,
    _stop: oneshot::Sender<()>,
}

async fn listen(schema: &str) -> Listening {
    let mut settings = PgSettings::new(postgres_url());
    settings.schema = Some(schema.to_owned());
    let (tx, notices) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let (listener, _task) = StockListener::spawn(
        &settings,
        move |n| {
            let _ = tx.send(n);
        },
        async move {
            let _ = stopped.await;
        },
    )
    .unwrap();
    let mut l = Listening { notices, listener, _stop: stop };
    assert_eq!(l.next().await, StockNotice::All, "a fresh connection asks for a full re-read");
    assert!(l.listener.is_connected());
    l
}

impl Listening {
    async fn next(&mut self) -> StockNotice {
        tokio::time::timeout(Duration::from_secs(5), self.notices.recv())
            .await
            .expect("a notice within 5 s")
            .expect("the listener runs")
    }

    async fn nothing_more(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(300), self.notices.recv()).await;
        assert!(got.is_err(), "unexpected notice {got:?}");
    }
}

#[tokio::test]
async fn every_committed_change_of_counts_sends_one_notice_naming_what_changed() {
    let (inv, schema) = stores::pg_inventory_with_schema().await;
    let mut l = listen(&schema).await;
    let t0 = now();

    inv.set_available(&item("sku-a"), StockCount::new(10).unwrap()).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-a"]));
    inv.set_available(&item("sku-b"), StockCount::new(10).unwrap()).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-b"]));

    let cart = CartId::random();
    inv.open_cart(cart, t0.plus(Duration::from_secs(60))).await.unwrap();
    inv.set_hold(cart, &set("p1", "sku-a", 2), None, 10, t0).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-a"]), "a batch of holds names its items");
    assert!(inv.set_hold(cart, &set("p2", "sku-b", 99), None, 10, t0).await.is_err());
    l.nothing_more().await;

    inv.checkout(cart, OrderId::random(), t0).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-a"]), "checkout names what it sold");
    inv.checkout(cart, OrderId::random(), t0).await.unwrap();
    l.nothing_more().await;

    let abandoned = CartId::random();
    inv.open_cart(abandoned, t0.plus(Duration::from_secs(60))).await.unwrap();
    inv.set_hold(abandoned, &set("p1", "sku-b", 1), None, 10, t0).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-b"]));
    inv.release(abandoned).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-b"]), "a release names the items the cart held");
    inv.release(abandoned).await.unwrap();
    l.nothing_more().await;

    let expiring = CartId::random();
    inv.open_cart(expiring, t0.plus(Duration::from_secs(1))).await.unwrap();
    inv.set_hold(expiring, &set("p1", "sku-b", 1), None, 10, t0).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-b"]));
    inv.release_expired(t0.plus(Duration::from_secs(2)), 10).await.unwrap();
    assert_eq!(l.next().await, StockNotice::All, "the sweeper's batches do not say which items");
    inv.release_expired(t0.plus(Duration::from_secs(2)), 10).await.unwrap();
    l.nothing_more().await;
}

#[tokio::test]
async fn a_deployment_hears_only_its_own_schema() {
    let (inv, _schema) = stores::pg_inventory_with_schema().await;
    let (_other_inv, other_schema) = stores::pg_inventory_with_schema().await;
    let mut l = listen(&other_schema).await;
    inv.set_available(&item("sku-a"), StockCount::new(1).unwrap()).await.unwrap();
    l.nothing_more().await;
}

#[tokio::test]
async fn after_its_connection_is_killed_the_listener_reconnects_and_asks_for_a_full_re_read() {
    let (inv, schema) = stores::pg_inventory_with_schema().await;
    let mut l = listen(&schema).await;
    let (admin, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let killed = admin
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = 'cartd-stock-listener' and query = $1",
            &[&format!("listen cartd_stock_{schema}")],
        )
        .await
        .unwrap();
    assert_eq!(killed.get::<_, i64>(0), 1, "this test's listener connection was found");
    assert_eq!(l.next().await, StockNotice::All, "resynchronise after reconnecting");
    assert!(l.listener.is_connected());
    inv.set_available(&item("sku-a"), StockCount::new(1).unwrap()).await.unwrap();
    assert_eq!(l.next().await, items(&["sku-a"]), "listening again");
}
