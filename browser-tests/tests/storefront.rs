//! The storefront page in a real headless Chromium (Debian's `chromium`,
//! driven through its `chromedriver` with WebDriver), against cartd started
//! in this process on port 0: the in-memory backend, or two instances sharing
//! Redis + PostgreSQL (the test command starts both servers and installs the
//! browser).
//!
//! Each test saves a screenshot under `<target>/tmp/browser-screenshots/`; a
//! failing test also saves one and prints the browser's console log.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cartd::{Application, Settings};
use cartd_test_support::Isolation;
use cartd_test_support::servers::{postgres_url, redis_url};
use serde_json::{Value, json};
use thirtyfour::prelude::*;
use thirtyfour::{ChromiumLikeCapabilities, LoggingPrefsLogLevel};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ADMIN_TOKEN: &str = "browser-admin-token-0123456789";
const ENDED: &str = "your hold ended; the items went back on sale";

/// One browser at a time: the machines running these have two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------- cartd ----------

struct Cartd {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Cartd {
    async fn start(vars: &[(&str, &str)]) -> Cartd {
        let mut map = config::Map::new();
        for (k, v) in [
            ("CART__HTTP__ADDR", "127.0.0.1:0"),
            ("CART__ADMIN__TOKEN", ADMIN_TOKEN),
            ("CART__SWEEPER__INTERVAL_MS", "100"),
            ("CART__LOG__FILTER", "warn"),
        ]
        .iter()
        .chain(vars)
        {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        let settings = Settings::from_sources(None, Settings::environment().source(Some(map))).expect("settings");
        let app = Application::build(settings).await.expect("cartd builds");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let cartd = Cartd { addr, stop: Some(stop), task };
        cartd.wait_ready().await;
        cartd
    }

    /// The in-memory backend with the demo catalogue's items, `units` each.
    async fn memory(units: &str, vars: &[(&str, &str)]) -> Cartd {
        let mut all = vec![("CART__DEMO__SEED", "true"), ("CART__DEMO__ITEMS", "12"), ("CART__DEMO__UNITS", units)];
        all.extend_from_slice(vars);
        Cartd::start(&all).await
    }

    /// An instance on Redis + PostgreSQL in `iso`.
    async fn real(iso: &Isolation, vars: &[(&str, &str)]) -> Cartd {
        let (redis, postgres) = (redis_url(), postgres_url());
        let mut all = vec![
            ("CART__BACKEND", "redis"),
            ("CART__REDIS__URL", redis.as_str()),
            ("CART__REDIS__KEY_PREFIX", iso.prefix.as_str()),
            ("CART__POSTGRES__URL", postgres.as_str()),
            ("CART__POSTGRES__SCHEMA", iso.schema.as_str()),
            ("CART__POSTGRES__POOL_SIZE", "4"),
        ];
        all.extend_from_slice(vars);
        Cartd::start(&all).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if client.get(self.url("/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cartd at {} not ready after 20 s (are Redis and PostgreSQL running? scripts/services.sh)", self.addr);
    }

    async fn set_stock(&self, item: &str, available: u32) {
        let res = reqwest::Client::new()
            .put(self.url(&format!("/v1/inventory/{item}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "available": available }))
            .send()
            .await
            .expect("cartd answers");
        assert_eq!(res.status(), 200);
    }

    /// `(available, reserved, sold)`.
    async fn stock(&self, item: &str) -> (i64, i64, i64) {
        let v: Value = reqwest::get(self.url(&format!("/v1/inventory/{item}"))).await.unwrap().json().await.unwrap();
        (v["available"].as_i64().unwrap(), v["reserved"].as_i64().unwrap(), v["sold"].as_i64().unwrap())
    }

    /// Holds `quantity` of `item` in a new cart, through the API.
    async fn hold(&self, product: &str, item: &str, quantity: u32) -> String {
        let res = reqwest::Client::new()
            .put(self.url(&format!("/v1/cart/items/{product}")))
            .json(&json!({ "inventory_id": item, "quantity": quantity }))
            .send()
            .await
            .expect("cartd answers");
        assert_eq!(res.status(), 200);
        res.headers()["cart-session-id"].to_str().unwrap().to_owned()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

// ---------- the browser ----------

struct Browser {
    driver: WebDriver,
    _chromedriver: tokio::process::Child,
    name: &'static str,
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// A free loopback port (a tiny race with other processes is acceptable here).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts chromedriver and a headless Chromium `width` x `height`.
async fn browser(name: &'static str, width: u32, height: u32) -> Browser {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver (scripts/services.sh does)"
    );
    let port = free_port();
    let chromedriver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(CHROMIUM).unwrap();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--hide-scrollbars",
        &format!("--window-size={},{height}", width.max(500)),
    ] {
        caps.add_arg(arg).unwrap();
    }
    if width < 500 {
        // Headless windows are at least 500 px wide: emulate a phone's screen.
        let metrics = json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "mobile": true}});
        caps.add_experimental_option("mobileEmulation", metrics).unwrap();
    }
    caps.set_browser_log_level(LoggingPrefsLogLevel::All).unwrap();
    let driver = WebDriver::new(format!("http://127.0.0.1:{port}"), caps).await.expect("a browser session");
    Browser { driver, _chromedriver: chromedriver, name }
}

impl Browser {
    /// Ends the session. On failure, saves a screenshot and prints the
    /// browser's console log before failing the test.
    async fn finish(self, result: anyhow::Result<()>) {
        if let Err(e) = &result {
            let path = screenshots().join(format!("{}-failed.png", self.name));
            let _ = self.driver.screenshot(&path).await;
            eprintln!("---- {} failed: {e:#}\n---- screenshot: {}", self.name, path.display());
            match self.driver.browser_log().await {
                Ok(entries) => {
                    eprintln!("---- browser console log ({} entries):", entries.len());
                    for entry in entries {
                        eprintln!("[{}] {}", entry.level, entry.message);
                    }
                }
                Err(log_error) => eprintln!("---- browser console log unavailable: {log_error}"),
            }
        }
        let _ = self.driver.clone().quit().await;
        if let Err(e) = result {
            panic!("{}: {e:#}", self.name);
        }
    }

    async fn screenshot(&self, suffix: &str) -> anyhow::Result<()> {
        let path = screenshots().join(format!("{}{suffix}.png", self.name));
        self.driver.screenshot(&path).await.with_context(|| format!("screenshot {}", path.display()))
    }

    /// Opens the page and waits until it has loaded the catalogue, the
    /// counts and the cart.
    async fn open(&self, cartd: &Cartd) -> anyhow::Result<()> {
        self.driver.goto(cartd.url("/")).await?;
        eventually("the page to be ready", Duration::from_secs(10), || async {
            self.attr_of_body("data-ready").await.filter(|r| r == "true")
        })
        .await?;
        Ok(())
    }

    async fn attr_of_body(&self, name: &str) -> Option<String> {
        self.driver.find(By::Tag("body")).await.ok()?.attr(name).await.ok()?
    }

    async fn text(&self, testid: &str) -> Option<String> {
        self.driver.find(By::Testid(testid)).await.ok()?.text().await.ok()
    }

    async fn value(&self, testid: &str) -> Option<String> {
        self.driver.find(By::Testid(testid)).await.ok()?.value().await.ok()?
    }

    async fn click(&self, testid: &str) -> anyhow::Result<()> {
        self.driver.find(By::Testid(testid)).await.with_context(|| format!("find {testid}"))?.click().await?;
        Ok(())
    }

    /// Waits until `testid`'s text is exactly `want`.
    async fn wait_text(&self, testid: &str, want: &str, within: Duration) -> anyhow::Result<()> {
        let waited = eventually(&format!("{testid} to read {want:?}"), within, || async {
            self.text(testid).await.filter(|t| t == want)
        })
        .await;
        if let Err(e) = waited {
            let now = self.text(testid).await;
            bail!("{e} (it reads {now:?})");
        }
        Ok(())
    }

    /// Seconds left on the countdown, from its `data-left`.
    async fn seconds_left(&self) -> Option<u64> {
        let el = self.driver.find(By::Testid("cart-timer")).await.ok()?;
        if !el.is_displayed().await.ok()? {
            return None;
        }
        el.attr("data-left").await.ok()??.parse().ok()
    }
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("waited {within:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------- the tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_to_the_cart_lowers_the_count_and_starts_the_countdown() {
    let _one = SERIAL.lock().await;
    let cartd = Cartd::memory("5", &[]).await;
    let b = browser("a-add-to-cart", 1280, 900).await;
    let result = async {
        b.open(&cartd).await?;
        b.wait_text("avail-prod-1", "5", Duration::from_secs(5)).await?;
        ensure!(b.text("cart-empty").await.as_deref() == Some("Your cart is empty."), "the cart starts empty");
        b.click("add-prod-1").await?;
        b.wait_text("avail-prod-1", "4", Duration::from_secs(5)).await?;
        ensure!(b.value("qty-prod-1").await.as_deref() == Some("1"), "one unit in the cart");
        ensure!(cartd.stock("inv-1").await == (4, 1, 0), "the server holds it");
        let first = eventually("a countdown", Duration::from_secs(5), || b.seconds_left()).await?;
        // `Date` has whole seconds, so the page's idea of the server's clock
        // is within half a second: never more than the 900 s the hold has.
        ensure!((890..=900).contains(&first), "15 minutes to go, not {first} s");
        let later = eventually("the countdown to move", Duration::from_secs(5), || async {
            b.seconds_left().await.filter(|s| *s < first)
        })
        .await?;
        ensure!(later < first);
        let total = b.text("cart-total").await.unwrap_or_default();
        ensure!(total == "€12.50", "total from the catalogue price, not {total:?}");
        b.click("inc-prod-1").await?;
        b.wait_text("avail-prod-1", "3", Duration::from_secs(5)).await?;
        b.wait_text("cart-total", "€25.00", Duration::from_secs(5)).await?;
        b.screenshot("").await?;
        Ok(())
    }
    .await;
    b.finish(result).await;
    cartd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_instance_a_sees_a_hold_taken_through_instance_b() {
    let _one = SERIAL.lock().await;
    let iso = Isolation::new();
    // A long resync: the change must come through PostgreSQL's notices.
    let vars = [("CART__LIVE__RESYNC_MS", "600000")];
    let a = Cartd::real(&iso, &vars).await;
    let bb = Cartd::real(&iso, &vars).await;
    for n in 1..=12 {
        a.set_stock(&format!("inv-{n}"), 10).await;
    }
    let b = browser("b-across-instances", 1280, 900).await;
    let result = async {
        b.open(&a).await?;
        b.wait_text("avail-prod-2", "10", Duration::from_secs(5)).await?;
        eventually("the live stream", Duration::from_secs(5), || async {
            b.attr_of_body("data-sse").await.filter(|s| s == "live")
        })
        .await?;
        bb.hold("someone-else", "inv-2", 3).await;
        b.wait_text("avail-prod-2", "7", Duration::from_secs(2)).await?;
        b.screenshot("").await?;
        Ok(())
    }
    .await;
    b.finish(result).await;
    a.stop().await;
    bb.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_hold_ends_the_cart_says_so_and_the_count_comes_back() {
    let _one = SERIAL.lock().await;
    let cartd = Cartd::memory("5", &[("CART__SESSION__TTL_SECS", "3")]).await;
    let b = browser("c-hold-ends", 1280, 900).await;
    let result = async {
        b.open(&cartd).await?;
        b.click("add-prod-3").await?;
        b.wait_text("avail-prod-3", "4", Duration::from_secs(5)).await?;
        let left = eventually("a countdown", Duration::from_secs(5), || b.seconds_left()).await?;
        ensure!(left <= 3, "a 3 s hold shows {left} s");
        b.wait_text("cart-message", ENDED, Duration::from_secs(8)).await?;
        b.wait_text("avail-prod-3", "5", Duration::from_secs(5)).await?;
        ensure!(b.driver.find_all(By::Testid("line-prod-3")).await?.is_empty(), "the line is gone");
        ensure!(b.seconds_left().await.is_none(), "no countdown without a cart");
        b.screenshot("").await?;
        Ok(())
    }
    .await;
    b.finish(result).await;
    cartd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_shows_the_order_and_the_units_are_sold() {
    let _one = SERIAL.lock().await;
    let cartd = Cartd::memory("5", &[]).await;
    let b = browser("d-checkout", 1280, 900).await;
    let result = async {
        b.open(&cartd).await?;
        b.click("add-prod-4").await?;
        b.wait_text("avail-prod-4", "4", Duration::from_secs(5)).await?;
        b.click("inc-prod-4").await?;
        b.wait_text("avail-prod-4", "3", Duration::from_secs(5)).await?;
        b.click("checkout").await?;
        let order_id = eventually("the order", Duration::from_secs(5), || async {
            b.text("order-id").await.filter(|t| !t.is_empty())
        })
        .await?;
        ensure!(order_id.len() == 36, "an order id, not {order_id:?}");
        let line = b.text("order-line-prod-4").await.unwrap_or_default();
        ensure!(line.starts_with("2 × Burr grinder"), "the order line reads {line:?}");
        ensure!(cartd.stock("inv-4").await == (3, 0, 2), "sold moved on the server");
        ensure!(
            b.text("cart-empty").await.as_deref() == Some("Your cart is empty."),
            "the cart is empty after checkout"
        );
        b.wait_text("avail-prod-4", "3", Duration::from_secs(5)).await?;
        b.screenshot("").await?;
        Ok(())
    }
    .await;
    b.finish(result).await;
    cartd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_more_than_is_left_says_how_many_and_changes_nothing() {
    let _one = SERIAL.lock().await;
    let cartd = Cartd::memory("3", &[]).await;
    // Someone else holds one of the three.
    cartd.hold("someone-else", "inv-5", 1).await;
    let b = browser("e-too-many", 1280, 900).await;
    let result = async {
        b.open(&cartd).await?;
        b.wait_text("avail-prod-5", "2", Duration::from_secs(5)).await?;
        b.click("add-prod-5").await?;
        b.wait_text("avail-prod-5", "1", Duration::from_secs(5)).await?;
        // By keyboard: type a quantity, leave the field.
        let qty = b.driver.find(By::Testid("qty-prod-5")).await?;
        qty.clear().await?;
        qty.send_keys("5" + Key::Tab).await?;
        let message = eventually("the message", Duration::from_secs(5), || async {
            b.text("cart-message").await.filter(|t| !t.is_empty())
        })
        .await?;
        ensure!(message.contains("Only 2") && message.contains("1 more left"), "message: {message:?}");
        ensure!(message.contains("unchanged"), "message: {message:?}");
        ensure!(b.value("qty-prod-5").await.as_deref() == Some("1"), "the line still shows 1");
        ensure!(cartd.stock("inv-5").await == (1, 2, 0), "nothing changed on the server");
        ensure!(b.text("avail-prod-5").await.as_deref() == Some("1"));
        b.screenshot("").await?;
        Ok(())
    }
    .await;
    b.finish(result).await;
    cartd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_cart_on_a_phone_sized_screen() {
    let _one = SERIAL.lock().await;
    let cartd = Cartd::memory("5", &[]).await;
    let b = browser("f-reload-375px", 375, 812).await;
    let result = async {
        b.open(&cartd).await?;
        let width: i64 = b.driver.execute("return document.documentElement.clientWidth", vec![]).await?.convert()?;
        ensure!(width <= 375, "the page is {width} px wide");
        let overflow: bool = b
            .driver
            .execute("return document.documentElement.scrollWidth > document.documentElement.clientWidth", vec![])
            .await?
            .convert()?;
        ensure!(!overflow, "nothing sticks out sideways at 375 px");
        b.click("add-prod-6").await?;
        b.wait_text("avail-prod-6", "4", Duration::from_secs(5)).await?;
        b.click("add-prod-2").await?;
        b.wait_text("avail-prod-2", "4", Duration::from_secs(5)).await?;
        let before = eventually("a countdown", Duration::from_secs(5), || b.seconds_left()).await?;
        b.driver.refresh().await?;
        eventually("the page to be ready again", Duration::from_secs(10), || async {
            b.attr_of_body("data-ready").await.filter(|r| r == "true")
        })
        .await?;
        ensure!(b.value("qty-prod-6").await.as_deref() == Some("1"), "prod-6 kept");
        ensure!(b.value("qty-prod-2").await.as_deref() == Some("1"), "prod-2 kept");
        let after = eventually("a countdown", Duration::from_secs(5), || b.seconds_left()).await?;
        ensure!(after <= before && after + 30 > before, "the same deadline: {before} s then {after} s");
        b.screenshot("").await?;
        Ok(())
    }
    .await;
    b.finish(result).await;
    cartd.stop().await;
}
