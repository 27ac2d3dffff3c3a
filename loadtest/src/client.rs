//! One HTTP call of a scenario, made through goose so it is measured, and
//! judged against the answers the scenario expects.
//!
//! goose counts every non-2xx answer as a failure. Some 4xx answers are part of
//! normal traffic here (a flash-sale item runs out: `409 insufficient_stock`; a
//! cart expires between two steps: `404 session_not_found`), so a call names
//! the answers it expects and [`call`] marks those as successes
//! (`GooseUser::set_success`). Anything else fails: a 5xx, a transport error,
//! an unexpected status or error code. A 2xx the scenario did not expect fails
//! too (`GooseUser::set_failure`), so that, say, a checkout answering `200`
//! where `201` was due does not pass unseen.
//!
//! goose's Errors table still lists each expected answer once, as it arrived
//! (the failure is taken back afterwards); the request rows' failure counts,
//! which the run is judged on, do not include them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goose::prelude::*;
use serde_json::Value;

/// The request header (and response header) naming a cart.
pub const SESSION_HEADER: &str = "cart-session-id";

/// An answer a call accepts: a status and, for an error answer, the `error`
/// code of its JSON body (`None` accepts any body).
#[derive(Clone, Copy, Debug)]
pub struct Expect(pub u16, pub Option<&'static str>);

pub const OK: Expect = Expect(200, None);
pub const CREATED: Expect = Expect(201, None);
pub const NO_CONTENT: Expect = Expect(204, None);
/// Not enough units available: normal when many carts want the same item.
pub const NO_STOCK: Expect = Expect(409, Some("insufficient_stock"));
/// The cart expired (or was closed) between two steps.
pub const GONE: Expect = Expect(404, Some("session_not_found"));
/// Checkout of a cart whose every line was refused.
pub const CART_EMPTY: Expect = Expect(409, Some("cart_empty"));
/// Slack when comparing the time a request was sent with a deadline the
/// server stated (one machine, one clock; the margin covers scheduling).
pub const CLOCK_MARGIN: Duration = Duration::from_millis(250);

/// `GET /get-cart` of an expired or empty cart: the tutorial's 404, whose body
/// has no error code.
pub const TUTORIAL_EMPTY: Expect = Expect(404, None);

/// What came back from an accepted call.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The body, as text.
    pub body: String,
    /// The `cart-session-id` response header, when there is one.
    pub session: Option<String>,
    /// When the request was sent: the server read its clock after this.
    pub sent_at: SystemTime,
}

impl Answer {
    /// Whether the answer is `expect` (status and error code).
    pub fn is(&self, expect: Expect) -> bool {
        matches(self.status, error_code(&self.body).as_deref(), expect)
    }

    /// The cart's deadline as this answer states it (`expires_at` of a cart
    /// or of a new cart), when it has one.
    pub fn expires_at(&self) -> Option<SystemTime> {
        let value: Value = serde_json::from_str(&self.body).ok()?;
        humantime::parse_rfc3339_weak(value.get("expires_at")?.as_str()?).ok()
    }

    /// Whether the request was sent clearly (more than [`CLOCK_MARGIN`])
    /// before `deadline`: a cart that answers `404` to it vanished while it
    /// should still have been open.
    pub fn sent_before(&self, deadline: SystemTime) -> bool {
        self.sent_at + CLOCK_MARGIN < deadline
    }

    /// The body as JSON, or a transaction error naming the request.
    pub fn json(&self, name: &str) -> Result<Value, Box<TransactionError>> {
        serde_json::from_str(&self.body)
            .map_err(|e| Box::new(TransactionError::Custom(format!("{name}: body is not JSON: {e}"))))
    }
}

fn matches(status: u16, code: Option<&str>, expect: Expect) -> bool {
    status == expect.0 && (expect.1.is_none() || expect.1 == code)
}

/// The `error` field of a JSON error body.
fn error_code(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}

/// One request: `method path`, reported under `name` (goose prefixes the
/// method), with the cart header when `session` is given and a JSON body when
/// `body` is. Returns the answer when it is one of `expect`.
///
/// # Errors
/// A transaction error (so the step stops) when the request could not be sent
/// or the answer is not one of `expect`; the request is counted as failed.
pub async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    session: Option<&str>,
    body: Option<&Value>,
    expect: &[Expect],
) -> Result<Answer, Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?;
    if let Some(id) = session {
        builder = builder.header(SESSION_HEADER, id);
    }
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let sent_at = SystemTime::now();
    let sent = Instant::now();
    // goose's request rows are named "<METHOD> <name>"; the charts use the same names.
    let verb = method;
    let request = GooseRequest::builder().method(method).path(path).name(name).set_request_builder(builder).build();
    let mut goose = user.request(request).await?;
    // goose has already counted a transport error as a failed request.
    let response = match goose.response {
        Ok(response) => response,
        Err(e) => {
            crate::charts::record(&format!("{verb} {name}"), sent, sent.elapsed());
            return Err(e.into());
        }
    };
    let status = response.status().as_u16();
    let session = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
    let body = response.text().await;
    crate::charts::record(&format!("{verb} {name}"), sent, sent.elapsed());
    let body = match body {
        Ok(text) => text,
        Err(e) => {
            let tag = format!("{status} with an unreadable body ({e}): {name}");
            return Err(fail(user, &mut goose.request, &tag, None));
        }
    };
    let code = error_code(&body);
    if expect.iter().any(|e| matches(status, code.as_deref(), *e)) {
        if !goose.request.success {
            // The error string would be counted a second time with the update.
            goose.request.error.clear();
            user.set_success(&mut goose.request)?;
            note_refusal(status, code.as_deref());
        }
        return Ok(Answer { status, body, session, sent_at });
    }
    let tag = match code {
        Some(code) => format!("unexpected {status} {code}: {name}"),
        None => format!("unexpected {status}: {name}"),
    };
    Err(fail(user, &mut goose.request, &tag, Some(&body)))
}

static REFUSALS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn note_refusal(status: u16, code: Option<&str>) {
    let key = format!("{status} {}", code.unwrap_or("(no error code)"));
    *REFUSALS.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default() += 1;
}

/// The expected refusals (non-2xx answers counted as successes), by status and
/// error code.
pub fn refusals() -> BTreeMap<String, usize> {
    REFUSALS.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Counts `request` as failed (when goose has not already) and returns the
/// error that stops the step.
fn fail(
    user: &mut GooseUser,
    request: &mut goose::metrics::GooseRequestMetric,
    tag: &str,
    body: Option<&str>,
) -> Box<TransactionError> {
    if request.success {
        match user.set_failure(tag, request, None, body) {
            Err(e) => e,
            Ok(()) => Box::new(TransactionError::Custom(tag.to_owned())),
        }
    } else {
        Box::new(TransactionError::RequestFailed { raw_request: Box::new(request.clone()) })
    }
}

/// A small, fast random source per user (SplitMix64): the scenarios only need
/// varied choices, not cryptographic ones.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded differently for every user.
    pub fn new() -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self(time ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low ..= high`.
    pub fn between(&mut self, low: u32, high: u32) -> u32 {
        debug_assert!(low <= high);
        low + (self.next_u64() % (u64::from(high - low) + 1)) as u32
    }

    /// A number in `0 .. 100`, for percentages.
    pub fn percent(&mut self) -> u32 {
        self.between(0, 99)
    }

    /// `count` distinct numbers in `1 ..= max` (fewer when `max < count`).
    pub fn distinct(&mut self, count: u32, max: u32) -> Vec<u32> {
        let count = count.min(max);
        let mut picked = Vec::with_capacity(count as usize);
        while picked.len() < count as usize {
            let n = self.between(1, max);
            if !picked.contains(&n) {
                picked.push(n);
            }
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expected_error_needs_its_status_and_its_code() {
        let body = r#"{"error":"insufficient_stock","message":"insufficient stock: 0 available","available":0}"#;
        let code = error_code(body);
        assert!(matches(409, code.as_deref(), NO_STOCK));
        assert!(!matches(409, Some("too_many_lines"), NO_STOCK));
        assert!(!matches(404, code.as_deref(), NO_STOCK));
        assert!(matches(404, error_code(r#"{"message":"Cart is empty","data":[]}"#).as_deref(), TUTORIAL_EMPTY));
        assert!(matches(200, None, OK));
    }

    #[test]
    fn distinct_picks_are_distinct_and_in_range() {
        let mut rng = Rng::new();
        for _ in 0..100 {
            let picks = rng.distinct(5, 7);
            assert_eq!(picks.len(), 5);
            assert!(picks.iter().all(|p| (1..=7).contains(p)));
            let mut sorted = picks.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 5);
        }
        assert_eq!(rng.distinct(5, 2).len(), 2);
    }
}
