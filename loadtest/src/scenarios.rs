//! The five scenarios. Each user walks a small state machine kept in its goose
//! session data (with its own `cart-session-id`): every transaction run is one
//! step, and goose's wait time between transactions is the think time, so a
//! user stops promptly when the run ends and think time can be switched off
//! (`CARTD_LOADTEST_THINK=0`).
//!
//! - **shopper**: creates a cart (`POST /v1/carts`), sets 1–5 lines
//!   (`PUT /v1/cart/items/{product_id}`), views it (`GET /v1/cart`), then checks
//!   out (30%), abandons (`DELETE /v1/cart`, 30%) or walks away (40%, the cart
//!   expires by itself).
//! - **browser**: makes a cart with one line, then mostly reads it
//!   (`GET /v1/cart` and `GET /get-cart`, 45% each) and now and then changes the
//!   line (10%); when the cart has expired it makes another.
//! - **tutorial**: only the tutorial's two routes: `POST /add-to-cart` then
//!   `GET /get-cart`, keeping the `cart-session-id` the server hands back
//!   (header, or `cartSessionId` in the body), 1–5 lines per cart. Any
//!   implementation of the tutorial can be measured with it.
//! - **flashsale**: every user races for one unit of `flash-1` (product
//!   `flash`), which has limited stock; `409 insufficient_stock` is an expected
//!   answer and the user tries again after its think time. A user who got a
//!   unit checks out (50%), abandons (25%) or walks away (25%).
//! - **expirystorm**: in waves every `CARTD_LOADTEST_STORM_PERIOD` seconds (on
//!   the same clock for every user), each user creates a cart with one line and
//!   leaves it, so the carts of a wave share one deadline.
//!
//! Product `prod-K` always refers to item `inv-K`, K in `1 ..= CARTD_LOADTEST_ITEMS`.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use goose::prelude::*;
use serde_json::json;

use crate::client::{Answer, CART_EMPTY, CREATED, Expect, GONE, NO_CONTENT, NO_STOCK, OK, Rng, TUTORIAL_EMPTY, call};
use crate::settings::{SCENARIOS, Settings};
use crate::tally;

/// The flash-sale item and the product that refers to it.
pub const FLASH_ITEM: &str = "flash-1";
const FLASH_PRODUCT: &str = "flash";

/// Request names, as they show in the reports (goose puts the method first).
mod names {
    pub const CARTS: &str = "/v1/carts";
    pub const CART: &str = "/v1/cart";
    pub const ITEM: &str = "/v1/cart/items/{product_id}";
    pub const FLASH_ITEM: &str = "/v1/cart/items/{product_id} [flash-1]";
    pub const CHECKOUT: &str = "/v1/cart/checkout";
    pub const ADD_TO_CART: &str = "/add-to-cart";
    pub const GET_CART: &str = "/get-cart";
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();
static STORM_EPOCH: OnceLock<Instant> = OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get().expect("scenarios::all stores the settings before any user starts")
}

/// The scenarios with a weight above 0, ready to register.
///
/// # Errors
/// When goose refuses a weight or a wait time.
pub fn all(settings: &Settings) -> Result<Vec<Scenario>, GooseError> {
    let _ = SETTINGS.set(settings.clone());
    let _ = STORM_EPOCH.set(Instant::now());
    let mut out = Vec::new();
    for (index, name) in SCENARIOS.iter().enumerate() {
        let weight = settings.weights[index];
        if weight == 0 {
            continue;
        }
        let step = match *name {
            "shopper" => transaction!(shopper_step),
            "browser" => transaction!(browser_step),
            "tutorial" => transaction!(tutorial_step),
            "flashsale" => transaction!(flashsale_step),
            _ => transaction!(expirystorm_step),
        };
        let mut scenario = Scenario::new(name).set_weight(weight)?;
        // The storm paces itself on its waves; the others think between steps.
        if *name != "expirystorm"
            && let Some((low, high)) = settings.think
        {
            scenario = scenario.set_wait_time(low, high)?;
        }
        if settings.shared_pool.is_some() {
            scenario = scenario.register_transaction(transaction!(share_client).set_on_start());
        }
        out.push(scenario.register_transaction(step.set_name("step")));
    }
    Ok(out)
}

/// Replaces the user's own HTTP client with the one all users share
/// (`CARTD_LOADTEST_SHARED_POOL`): reqwest's client is a handle on one pool.
async fn share_client(user: &mut GooseUser) -> TransactionResult {
    static SHARED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let idle = settings().shared_pool.unwrap_or(64);
    let client = SHARED.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent("cartd-loadtest")
            .pool_max_idle_per_host(idle)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client without TLS or proxies builds")
    });
    user.client = client.clone();
    Ok(())
}

fn item_body(item: u32, quantity: u32) -> serde_json::Value {
    json!({ "inventory_id": format!("inv-{item}"), "quantity": quantity })
}

fn item_path(product: &str) -> String {
    format!("/v1/cart/items/{product}")
}

/// The user's state (a new one on its first step).
fn load<S: Clone + Default + Send + Sync + 'static>(user: &GooseUser) -> S {
    user.get_session_data::<S>().cloned().unwrap_or_default()
}

/// Stores the state back; when the step failed the user starts over, with no
/// cart.
fn save<S: Clone + Send + Sync + 'static + Restart>(user: &mut GooseUser, mut state: S, result: &TransactionResult) {
    if result.is_err() {
        state.restart();
    }
    user.set_session_data(state);
}

/// Forgets the cart, so the next step starts a new one.
trait Restart {
    fn restart(&mut self);
}

/// Keeps the latest deadline the server stated for the user's cart.
fn note_deadline(deadline: &mut Option<SystemTime>, answer: &Answer) {
    if let Some(at) = answer.expires_at() {
        *deadline = Some(at);
    }
}

/// Records `answer` (a `404`) as a cart that vanished early when it was sent
/// clearly before the cart's deadline.
fn judge_early(answer: &Answer, deadline: Option<SystemTime>, name: &str) {
    if let Some(at) = deadline
        && answer.sent_before(at)
    {
        tally::record_early_gone(name, answer.sent_at, at);
    }
}

/// Judges a `404 session_not_found`: expected once the cart's deadline has
/// passed, a violation before it (the cart vanished early). Returns whether
/// the answer was that 404.
fn gone(answer: &Answer, deadline: Option<SystemTime>, name: &str) -> bool {
    if !answer.is(GONE) {
        return false;
    }
    judge_early(answer, deadline, name);
    true
}

fn session_of(answer: &Answer, name: &str) -> Result<String, Box<TransactionError>> {
    answer.session.clone().ok_or_else(|| {
        Box::new(TransactionError::Custom(format!("{name}: {} without a cart-session-id", answer.status)))
    })
}

// ---- shopper ---------------------------------------------------------------

#[derive(Clone, Debug, Default)]
enum ShopStep {
    #[default]
    Create,
    SetLine,
    View,
    Finish,
}

#[derive(Clone, Debug)]
struct Shopper {
    rng: Rng,
    cart: Option<String>,
    deadline: Option<SystemTime>,
    to_set: Vec<u32>,
    step: ShopStep,
}

impl Default for Shopper {
    fn default() -> Self {
        Self { rng: Rng::new(), cart: None, deadline: None, to_set: Vec::new(), step: ShopStep::Create }
    }
}

impl Restart for Shopper {
    fn restart(&mut self) {
        self.cart = None;
        self.deadline = None;
        self.step = ShopStep::Create;
    }
}

async fn shopper_step(user: &mut GooseUser) -> TransactionResult {
    let mut state = load::<Shopper>(user);
    let result = shopper_run(user, &mut state).await;
    save(user, state, &result);
    result
}

async fn shopper_run(user: &mut GooseUser, s: &mut Shopper) -> TransactionResult {
    let items = settings().items;
    match (s.step.clone(), s.cart.clone()) {
        (ShopStep::Create, _) | (_, None) => {
            let answer = call(user, GooseMethod::Post, names::CARTS, names::CARTS, None, None, &[CREATED]).await?;
            s.cart = Some(session_of(&answer, names::CARTS)?);
            note_deadline(&mut s.deadline, &answer);
            let lines = s.rng.between(1, 5);
            s.to_set = s.rng.distinct(lines, items);
            s.step = ShopStep::SetLine;
        }
        (ShopStep::SetLine, Some(cart)) => {
            let item = s.to_set.pop().unwrap_or(1);
            let quantity = s.rng.between(1, 3);
            let answer = call(
                user,
                GooseMethod::Put,
                &item_path(&format!("prod-{item}")),
                names::ITEM,
                Some(&cart),
                Some(&item_body(item, quantity)),
                &[OK, NO_STOCK, GONE],
            )
            .await?;
            note_deadline(&mut s.deadline, &answer);
            s.step = if gone(&answer, s.deadline, names::ITEM) {
                s.restart();
                ShopStep::Create
            } else if s.to_set.is_empty() {
                ShopStep::View
            } else {
                ShopStep::SetLine
            };
        }
        (ShopStep::View, Some(cart)) => {
            let answer = call(user, GooseMethod::Get, names::CART, names::CART, Some(&cart), None, &[OK, GONE]).await?;
            note_deadline(&mut s.deadline, &answer);
            if gone(&answer, s.deadline, names::CART) {
                s.restart();
            } else {
                s.step = ShopStep::Finish;
            }
        }
        (ShopStep::Finish, Some(cart)) => {
            let roll = s.rng.percent();
            if roll < 30 {
                checkout(user, &cart, s.deadline).await?;
            } else if roll < 60 {
                abandon(user, &cart, s.deadline).await?;
            }
            // Otherwise the shopper walks away: the cart expires by itself.
            s.restart();
        }
    }
    Ok(())
}

async fn checkout(user: &mut GooseUser, cart: &str, deadline: Option<SystemTime>) -> TransactionResult {
    let answer =
        call(user, GooseMethod::Post, names::CHECKOUT, names::CHECKOUT, Some(cart), None, &[CREATED, GONE, CART_EMPTY])
            .await?;
    if answer.is(CREATED) {
        tally::record_order(&answer.json(names::CHECKOUT)?)?;
    }
    gone(&answer, deadline, names::CHECKOUT);
    Ok(())
}

async fn abandon(user: &mut GooseUser, cart: &str, deadline: Option<SystemTime>) -> TransactionResult {
    let answer =
        call(user, GooseMethod::Delete, names::CART, names::CART, Some(cart), None, &[NO_CONTENT, GONE]).await?;
    gone(&answer, deadline, names::CART);
    Ok(())
}

// ---- browser ---------------------------------------------------------------

#[derive(Clone, Debug, Default)]
enum BrowseStep {
    #[default]
    Create,
    Fill,
    Browse,
}

#[derive(Clone, Debug)]
struct Browser {
    rng: Rng,
    cart: Option<String>,
    deadline: Option<SystemTime>,
    /// Whether the cart holds its line (a set was answered 200).
    lined: bool,
    item: u32,
    step: BrowseStep,
}

impl Default for Browser {
    fn default() -> Self {
        Self { rng: Rng::new(), cart: None, deadline: None, lined: false, item: 1, step: BrowseStep::Create }
    }
}

impl Restart for Browser {
    fn restart(&mut self) {
        self.cart = None;
        self.deadline = None;
        self.lined = false;
        self.step = BrowseStep::Create;
    }
}

async fn browser_step(user: &mut GooseUser) -> TransactionResult {
    let mut state = load::<Browser>(user);
    let result = browser_run(user, &mut state).await;
    save(user, state, &result);
    result
}

async fn browser_run(user: &mut GooseUser, s: &mut Browser) -> TransactionResult {
    let items = settings().items;
    match (s.step.clone(), s.cart.clone()) {
        (BrowseStep::Create, _) | (_, None) => {
            let answer = call(user, GooseMethod::Post, names::CARTS, names::CARTS, None, None, &[CREATED]).await?;
            s.cart = Some(session_of(&answer, names::CARTS)?);
            note_deadline(&mut s.deadline, &answer);
            s.item = s.rng.between(1, items);
            s.step = BrowseStep::Fill;
        }
        (BrowseStep::Fill, Some(cart)) => {
            let answer = set_browser_line(user, s, &cart).await?;
            note_deadline(&mut s.deadline, &answer);
            if gone(&answer, s.deadline, names::ITEM) {
                s.restart();
            } else {
                s.step = BrowseStep::Browse;
            }
        }
        (BrowseStep::Browse, Some(cart)) => {
            let roll = s.rng.percent();
            let ended = if roll < 45 {
                let expect = [OK, GONE];
                let answer = call(user, GooseMethod::Get, names::CART, names::CART, Some(&cart), None, &expect).await?;
                note_deadline(&mut s.deadline, &answer);
                gone(&answer, s.deadline, names::CART)
            } else if roll < 90 {
                let expect = [OK, TUTORIAL_EMPTY];
                let answer =
                    call(user, GooseMethod::Get, names::GET_CART, names::GET_CART, Some(&cart), None, &expect).await?;
                // A cart that holds its line answers the tutorial's 404 only
                // once it has expired.
                if answer.status == 404 && s.lined {
                    judge_early(&answer, s.deadline, names::GET_CART);
                }
                answer.status == 404
            } else {
                let answer = set_browser_line(user, s, &cart).await?;
                note_deadline(&mut s.deadline, &answer);
                gone(&answer, s.deadline, names::ITEM)
            };
            if ended {
                s.restart();
            }
        }
    }
    Ok(())
}

async fn set_browser_line(user: &mut GooseUser, s: &mut Browser, cart: &str) -> Result<Answer, Box<TransactionError>> {
    let quantity = s.rng.between(1, 3);
    let answer = call(
        user,
        GooseMethod::Put,
        &item_path(&format!("prod-{}", s.item)),
        names::ITEM,
        Some(cart),
        Some(&item_body(s.item, quantity)),
        &[OK, NO_STOCK, GONE],
    )
    .await?;
    s.lined |= answer.is(OK);
    Ok(answer)
}

// ---- tutorial --------------------------------------------------------------

#[derive(Clone, Debug)]
struct Tutorial {
    rng: Rng,
    cart: Option<String>,
    /// A lower bound of the cart's deadline: when the add that made it was
    /// sent, plus the session TTL (when the run knows it).
    deadline: Option<SystemTime>,
    adds_left: u32,
    view_next: bool,
}

impl Default for Tutorial {
    fn default() -> Self {
        Self { rng: Rng::new(), cart: None, deadline: None, adds_left: 0, view_next: false }
    }
}

impl Restart for Tutorial {
    fn restart(&mut self) {
        self.cart = None;
        self.deadline = None;
        self.adds_left = 0;
        self.view_next = false;
    }
}

async fn tutorial_step(user: &mut GooseUser) -> TransactionResult {
    let mut state = load::<Tutorial>(user);
    let result = tutorial_run(user, &mut state).await;
    save(user, state, &result);
    result
}

async fn tutorial_run(user: &mut GooseUser, s: &mut Tutorial) -> TransactionResult {
    if s.view_next
        && let Some(cart) = s.cart.clone()
    {
        let expect = [OK, TUTORIAL_EMPTY];
        let answer = call(user, GooseMethod::Get, names::GET_CART, names::GET_CART, Some(&cart), None, &expect).await?;
        if answer.status == 404 {
            // Expired: the next add makes a new cart. (The cart has a line:
            // only an add that succeeded made it.)
            judge_early(&answer, s.deadline, names::GET_CART);
            s.restart();
        }
        s.view_next = false;
        return Ok(());
    }
    if s.adds_left == 0 {
        // Start a new cart of 1-5 lines; the old one is left to expire.
        s.cart = None;
        s.deadline = None;
        s.adds_left = s.rng.between(1, 5);
    }
    let item = s.rng.between(1, settings().items);
    let body = json!({
        "product_id": format!("prod-{item}"),
        "inventory_id": format!("inv-{item}"),
        "quantity": s.rng.between(1, 3),
    });
    let expect = [OK, NO_STOCK];
    let answer =
        call(user, GooseMethod::Post, names::ADD_TO_CART, names::ADD_TO_CART, s.cart.as_deref(), Some(&body), &expect)
            .await?;
    if answer.is(OK) {
        // The tutorial sends the header only with a new session; the body
        // always names it.
        let from_body = || answer.json(names::ADD_TO_CART).ok()?.get("cartSessionId")?.as_str().map(str::to_owned);
        let id = answer.session.clone().or_else(from_body).ok_or_else(|| {
            Box::new(TransactionError::Custom("add-to-cart: 200 without a cart session id".to_owned()))
        })?;
        if s.cart.as_deref() != Some(id.as_str()) {
            // A new cart: it lives at least the TTL from this request on.
            s.deadline = settings().session_ttl.map(|ttl| answer.sent_at + ttl);
        }
        s.cart = Some(id);
    }
    s.adds_left -= 1;
    s.view_next = s.cart.is_some();
    Ok(())
}

// ---- flashsale -------------------------------------------------------------

#[derive(Clone, Debug, Default)]
enum FlashStep {
    #[default]
    Create,
    Grab,
    Finish,
}

#[derive(Clone, Debug)]
struct Flash {
    rng: Rng,
    cart: Option<String>,
    deadline: Option<SystemTime>,
    step: FlashStep,
}

impl Default for Flash {
    fn default() -> Self {
        Self { rng: Rng::new(), cart: None, deadline: None, step: FlashStep::Create }
    }
}

impl Restart for Flash {
    fn restart(&mut self) {
        self.cart = None;
        self.deadline = None;
        self.step = FlashStep::Create;
    }
}

async fn flashsale_step(user: &mut GooseUser) -> TransactionResult {
    let mut state = load::<Flash>(user);
    let result = flashsale_run(user, &mut state).await;
    save(user, state, &result);
    result
}

async fn flashsale_run(user: &mut GooseUser, s: &mut Flash) -> TransactionResult {
    match (s.step.clone(), s.cart.clone()) {
        (FlashStep::Create, _) | (_, None) => {
            let answer = call(user, GooseMethod::Post, names::CARTS, names::CARTS, None, None, &[CREATED]).await?;
            s.cart = Some(session_of(&answer, names::CARTS)?);
            note_deadline(&mut s.deadline, &answer);
            s.step = FlashStep::Grab;
        }
        (FlashStep::Grab, Some(cart)) => {
            let body = json!({ "inventory_id": FLASH_ITEM, "quantity": 1 });
            let expect: [Expect; 3] = [OK, NO_STOCK, GONE];
            let path = item_path(FLASH_PRODUCT);
            let answer =
                call(user, GooseMethod::Put, &path, names::FLASH_ITEM, Some(&cart), Some(&body), &expect).await?;
            note_deadline(&mut s.deadline, &answer);
            if answer.is(OK) {
                s.step = FlashStep::Finish;
            } else if gone(&answer, s.deadline, names::FLASH_ITEM) {
                s.restart();
            }
            // Sold out for now: try again after thinking.
        }
        (FlashStep::Finish, Some(cart)) => {
            let roll = s.rng.percent();
            if roll < 50 {
                checkout(user, &cart, s.deadline).await?;
            } else if roll < 75 {
                abandon(user, &cart, s.deadline).await?;
            }
            s.restart();
        }
    }
    Ok(())
}

// ---- expirystorm -----------------------------------------------------------

async fn expirystorm_step(user: &mut GooseUser) -> TransactionResult {
    let period = settings().storm_period;
    let epoch = *STORM_EPOCH.get_or_init(Instant::now);
    let elapsed = epoch.elapsed();
    let waves = (elapsed.as_secs_f64() / period.as_secs_f64()).floor() + 1.0;
    let next = Duration::from_secs_f64(waves * period.as_secs_f64());
    tokio::time::sleep(next.saturating_sub(elapsed)).await;

    let mut rng = user.get_session_data::<Rng>().cloned().unwrap_or_else(Rng::new);
    let item = rng.between(1, settings().items);
    user.set_session_data(rng);
    let answer = call(user, GooseMethod::Post, names::CARTS, names::CARTS, None, None, &[CREATED]).await?;
    let cart = session_of(&answer, names::CARTS)?;
    let deadline = answer.expires_at();
    let body = item_body(item, 1);
    let path = item_path(&format!("prod-{item}"));
    let answer =
        call(user, GooseMethod::Put, &path, names::ITEM, Some(&cart), Some(&body), &[OK, NO_STOCK, GONE]).await?;
    gone(&answer, deadline, names::ITEM);
    // The cart is left to expire with the rest of its wave.
    Ok(())
}
