//! `cartd-loadtest seed` and `cartd-loadtest check`: the stock before a run,
//! and the conservation check after it, both through cartd's HTTP API. The one
//! implementation of both: `scripts/loadtest.sh` and `scripts/chaos.sh` use it.
//!
//! The check reads every seeded item from every `--host` (instances of one
//! deployment: their answers must agree) right after the load stops, then waits
//! (up to `--settle-secs`) for every hold to come back, then reads them again:
//!
//! - every item readable from every host (a failed read is retried for
//!   `--read-retry-secs`), and the hosts agree;
//! - `available + reserved + sold == stock` at both reads, and no count negative;
//! - `reserved == 0` at the end: every cart has expired or closed, and the
//!   sweeper (or the expiry listener) has released its holds;
//! - `sold` equals the units the checkouts confirmed (`confirmed_sold` in the
//!   `--summary` file), so no sale was lost or counted twice; when some
//!   checkouts' answers were lost, `sold` may exceed that by at most their
//!   units (`unknown_sold_upper` in the same file);
//! - for the flash item, `reserved + sold <= stock` (never oversold).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::scenarios::FLASH_ITEM;

/// The admin token, read from the environment so it stays out of `ps`.
const TOKEN_VAR: &str = "CARTD_LOADTEST_ADMIN_TOKEN";

#[derive(Debug, Parser)]
#[command(name = "cartd-loadtest", about = "Seed and check cartd's stock around a load test")]
struct Cli {
    #[command(subcommand)]
    command: Tool,
}

#[derive(Debug, Subcommand)]
enum Tool {
    /// Sets the stock of inv-1..inv-N and flash-1 (admin API; the token in
    /// CARTD_LOADTEST_ADMIN_TOKEN) and writes what was put in. Every item must
    /// be fresh (nothing reserved or sold) once set.
    Seed {
        /// cartd's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        host: String,
        /// How long to retry a PUT that got no answer or a 503.
        #[arg(long, default_value_t = 10.0)]
        retry_secs: f64,
        /// Items inv-1 ..= inv-N.
        #[arg(long, default_value_t = 100)]
        items: u32,
        /// Units of each inv-K.
        #[arg(long, default_value_t = 1_000_000)]
        units: u64,
        /// Units of flash-1 (limited: the flash sale races for them).
        #[arg(long, default_value_t = 50)]
        flash_units: u64,
        /// Where to write the stock (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Checks conservation for every seeded item; exit status 1 on a violation.
    Check {
        /// cartd's base URL; repeat it for every instance of the deployment
        /// (each must read every item, and they must agree).
        #[arg(long, required = true)]
        host: Vec<String>,
        /// The file `seed` wrote.
        #[arg(long)]
        stock: PathBuf,
        /// The run's summary: `confirmed_sold` (units the checkouts confirmed,
        /// by item) and, optionally, `unknown_sold_upper` (units of checkouts
        /// whose answer was lost, which may or may not have sold).
        #[arg(long)]
        summary: Option<PathBuf>,
        /// How long to retry a read that failed (an instance still recovering).
        #[arg(long, default_value_t = 0.0)]
        read_retry_secs: f64,
        /// How long to wait for every hold to come back (session TTL plus a
        /// few sweeper intervals).
        #[arg(long, default_value_t = 40.0)]
        settle_secs: f64,
        /// Where to write the result (JSON).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// What `seed` put in.
#[derive(Debug, Serialize, Deserialize)]
struct Stock {
    /// Units put in, by inventory id.
    items: BTreeMap<String, u64>,
    /// The scarce item the flash sale races for.
    #[serde(default = "flash_item")]
    flash_item: String,
}

fn flash_item() -> String {
    FLASH_ITEM.to_owned()
}

/// The units each item may have sold: from what the checkouts confirmed to
/// that plus the units of checkouts whose answer was lost.
#[derive(Debug, Default, Deserialize)]
struct SoldBounds {
    #[serde(default)]
    confirmed_sold: BTreeMap<String, u64>,
    #[serde(default)]
    unknown_sold_upper: BTreeMap<String, u64>,
}

impl SoldBounds {
    fn range(&self, item: &str) -> (i64, i64) {
        let lo = self.confirmed_sold.get(item).copied().unwrap_or(0) as i64;
        (lo, lo + self.unknown_sold_upper.get(item).copied().unwrap_or(0) as i64)
    }
}

/// One item's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
struct Counts {
    available: i64,
    reserved: i64,
    sold: i64,
}

/// Runs `seed` or `check`.
pub async fn run_tool() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Tool::Seed { host, retry_secs, items, units, flash_units, out } => {
            seed(&host, retry_secs, items, units, flash_units, &out).await
        }
        Tool::Check { host, stock, summary, read_retry_secs, settle_secs, out } => {
            let reader = Reader {
                client: match client() {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("cartd-loadtest: {e:#}");
                        return ExitCode::from(2);
                    }
                },
                hosts: host,
                retry: Duration::from_secs_f64(read_retry_secs.max(0.0)),
            };
            check(&reader, &stock, summary.as_deref(), settle_secs, out.as_deref()).await
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cartd-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().context("building the HTTP client")
}

fn base(host: &str) -> &str {
    host.trim_end_matches('/')
}

/// Sends what `request` builds until it gets an answer other than 503, for
/// at most `retry` (an instance still starting or recovering).
async fn send_retrying(
    request: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
    retry: Duration,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let deadline = Instant::now() + retry;
    loop {
        let answer = match request().send().await {
            Ok(response) => {
                let status = response.status();
                Ok((status, response.text().await.unwrap_or_default()))
            }
            Err(e) => Err(anyhow::Error::new(e).context(what.to_owned())),
        };
        let transient = match &answer {
            Ok((status, _)) => *status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            Err(_) => true,
        };
        if !transient || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn seed(
    host: &str,
    retry_secs: f64,
    items: u32,
    units: u64,
    flash_units: u64,
    out: &std::path::Path,
) -> anyhow::Result<bool> {
    let token = std::env::var(TOKEN_VAR).with_context(|| format!("{TOKEN_VAR} is not set"))?;
    let client = client()?;
    let retry = Duration::from_secs_f64(retry_secs.max(0.0));
    let mut stock = Stock { items: BTreeMap::new(), flash_item: flash_item() };
    let wanted = (1..=items).map(|n| (format!("inv-{n}"), units)).chain([(FLASH_ITEM.to_owned(), flash_units)]);
    for (item, units) in wanted {
        let url = format!("{}/v1/inventory/{item}", base(host));
        let put = || client.put(&url).bearer_auth(&token).json(&json!({ "available": units }));
        let (status, body) = send_retrying(put, &format!("PUT {url}"), retry).await?;
        if !status.is_success() {
            bail!("PUT {url}: {status}: {body}");
        }
        let counts = parse_counts(&body).with_context(|| format!("PUT {url}: unexpected body {body}"))?;
        if counts.available != units as i64 || counts.reserved != 0 || counts.sold != 0 {
            bail!("{item} is not fresh after seeding: {counts:?} (use a new schema for each run)");
        }
        stock.items.insert(item, units);
    }
    std::fs::write(out, serde_json::to_string_pretty(&stock)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    let total: u64 = stock.items.values().sum();
    println!(
        "seeded {} items: inv-1..inv-{items} with {units} units each, {FLASH_ITEM} with {flash_units}; {total} units in all",
        stock.items.len()
    );
    Ok(true)
}

fn parse_counts(body: &str) -> Option<Counts> {
    let v: Value = serde_json::from_str(body).ok()?;
    let n = |k: &str| v.get(k).and_then(Value::as_i64);
    Some(Counts { available: n("available")?, reserved: n("reserved")?, sold: n("sold")? })
}

/// Reads counts from every instance of a deployment.
struct Reader {
    client: reqwest::Client,
    hosts: Vec<String>,
    retry: Duration,
}

/// One read of every item: the counts (from the first host that answered) and
/// what went wrong (an item a host could not read, hosts that disagree).
struct Reading {
    counts: BTreeMap<String, Counts>,
    problems: Vec<String>,
}

impl Reader {
    async fn read_all(&self, stock: &Stock) -> anyhow::Result<Reading> {
        let mut reading = Reading { counts: BTreeMap::new(), problems: Vec::new() };
        for item in stock.items.keys() {
            let mut seen: Vec<(&str, Counts)> = Vec::new();
            for host in &self.hosts {
                let url = format!("{}/v1/inventory/{item}", base(host));
                match send_retrying(|| self.client.get(&url), &format!("GET {url}"), self.retry).await {
                    Ok((reqwest::StatusCode::OK, body)) => {
                        let counts =
                            parse_counts(&body).with_context(|| format!("GET {url}: unexpected body {body}"))?;
                        seen.push((host, counts));
                    }
                    Ok((status, body)) => {
                        reading.problems.push(format!("{host} could not read {item}: {status}: {body}"))
                    }
                    Err(e) => reading.problems.push(format!("{host} could not read {item}: {e:#}")),
                }
            }
            if let Some((first_host, first)) = seen.first() {
                for (host, counts) in &seen[1..] {
                    if counts != first {
                        reading
                            .problems
                            .push(format!("{first_host} and {host} disagree on {item}: {first:?} vs {counts:?}"));
                    }
                }
                reading.counts.insert(item.clone(), *first);
            }
        }
        Ok(reading)
    }
}

/// The conservation rules that hold at any quiet moment.
fn conservation(stock: &Stock, counts: &BTreeMap<String, Counts>, when: &str, violations: &mut Vec<String>) {
    for (item, put_in) in &stock.items {
        let Some(c) = counts.get(item) else {
            violations.push(format!("{when}: {item}: unreadable"));
            continue;
        };
        let put_in = *put_in as i64;
        if c.available < 0 || c.reserved < 0 || c.sold < 0 {
            violations.push(format!("{when}: {item}: a negative count: {c:?}"));
        }
        let sum = c.available + c.reserved + c.sold;
        if sum != put_in {
            violations.push(format!(
                "{when}: {item}: available {} + reserved {} + sold {} = {sum}, but {put_in} units were put in",
                c.available, c.reserved, c.sold
            ));
        }
        if *item == stock.flash_item && c.reserved + c.sold > put_in {
            violations.push(format!(
                "{when}: {item}: reserved {} + sold {} exceeds its stock {put_in} (oversold)",
                c.reserved, c.sold
            ));
        }
    }
}

fn totals(counts: &BTreeMap<String, Counts>) -> Counts {
    counts.values().fold(Counts::default(), |t, c| Counts {
        available: t.available + c.available,
        reserved: t.reserved + c.reserved,
        sold: t.sold + c.sold,
    })
}

async fn check(
    reader: &Reader,
    stock_path: &std::path::Path,
    summary: Option<&std::path::Path>,
    settle_secs: f64,
    out: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    let stock: Stock = serde_json::from_str(
        &std::fs::read_to_string(stock_path).with_context(|| format!("reading {}", stock_path.display()))?,
    )
    .with_context(|| format!("parsing {}", stock_path.display()))?;
    let sold: Option<SoldBounds> = match summary {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?)
        }
        None => None,
    };
    let mut violations = Vec::new();

    let started = Instant::now();
    let first = reader.read_all(&stock).await?;
    violations.extend(first.problems.iter().map(|p| format!("when the load stopped: {p}")));
    let at_stop = first.counts;
    conservation(&stock, &at_stop, "when the load stopped", &mut violations);

    // Every cart ends within one TTL, and the sweeper releases it within an interval.
    let deadline = started + Duration::from_secs_f64(settle_secs.max(0.0));
    let mut last = at_stop.clone();
    let mut settled_after = None;
    loop {
        if totals(&last).reserved == 0 {
            settled_after = Some(started.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = reader.read_all(&stock).await?.counts;
        // Only the first break seen while waiting: the final read reports the rest.
        let mut seen = Vec::new();
        conservation(&stock, &last, "while the carts expired", &mut seen);
        if let Some(first) = seen.into_iter().next()
            && !violations.iter().any(|v| v.starts_with("while the carts expired"))
        {
            violations.push(first);
        }
    }
    let end = reader.read_all(&stock).await?;
    violations.extend(end.problems.iter().map(|p| format!("after the carts expired: {p}")));
    let settled = end.counts;
    conservation(&stock, &settled, "after the carts expired", &mut violations);
    for (item, c) in &settled {
        if c.reserved != 0 {
            violations.push(format!(
                "after {settle_secs:.0} s: {item}: {} units still reserved (holds not released after their carts expired)",
                c.reserved
            ));
        }
    }
    if let Some(sold) = &sold {
        violations.extend(sold_violations(sold, &settled));
    }

    let stop_totals = totals(&at_stop);
    let end_totals = totals(&settled);
    let put_in: u64 = stock.items.values().sum();
    let result = json!({
        "verdict": if violations.is_empty() { "pass" } else { "fail" },
        "items": stock.items.len(),
        "units_put_in": put_in,
        "when_the_load_stopped": stop_totals,
        "after_settling": end_totals,
        "reserved_back_to_zero_after_secs": settled_after,
        "settle_limit_secs": settle_secs,
        "sold_checked_against_checkouts": sold.is_some(),
        "flash": settled.get(&stock.flash_item),
        "final": settled,
        "violations": violations,
    });
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    for v in &violations {
        eprintln!("conservation: VIOLATION: {v}");
    }
    let settled_text = settled_after
        .map_or_else(|| format!("NOT back to 0 after {settle_secs:.0} s"), |s| format!("back to 0 after {s:.1} s"));
    println!(
        "conservation: {} | {} items, {put_in} units put in; when the load stopped {} reserved, {} sold; reserved {settled_text}; {} violations",
        if violations.is_empty() { "ok" } else { "FAILED" },
        stock.items.len(),
        stop_totals.reserved,
        end_totals.sold,
        violations.len(),
    );
    Ok(violations.is_empty())
}

/// `sold` against what the checkouts confirmed: exactly that, or up to the
/// units of the checkouts whose answer was lost.
fn sold_violations(sold: &SoldBounds, settled: &BTreeMap<String, Counts>) -> Vec<String> {
    let mut violations = Vec::new();
    for (item, c) in settled {
        let (lo, hi) = sold.range(item);
        if c.sold < lo || c.sold > hi {
            let expected = if lo == hi { format!("{lo}") } else { format!("{lo}..={hi}") };
            violations.push(format!(
                "{item}: sold {} but the checkouts confirmed {expected} units (a sale lost or counted twice)",
                c.sold
            ));
        }
    }
    let named: std::collections::BTreeSet<&String> =
        sold.confirmed_sold.keys().chain(sold.unknown_sold_upper.keys()).collect();
    for item in named.into_iter().filter(|i| !settled.contains_key(*i)) {
        violations.push(format!("{item}: checkouts confirmed units of an item that was not seeded"));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock() -> Stock {
        Stock {
            items: BTreeMap::from([("inv-1".to_owned(), 100), (FLASH_ITEM.to_owned(), 10)]),
            flash_item: flash_item(),
        }
    }

    fn counts(list: &[(&str, i64, i64, i64)]) -> BTreeMap<String, Counts> {
        list.iter().map(|(i, a, r, s)| ((*i).to_owned(), Counts { available: *a, reserved: *r, sold: *s })).collect()
    }

    #[test]
    fn counts_that_add_up_pass() {
        let mut v = Vec::new();
        conservation(&stock(), &counts(&[("inv-1", 90, 4, 6), (FLASH_ITEM, 0, 3, 7)]), "now", &mut v);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_lost_unit_or_an_oversell_is_a_violation() {
        let mut v = Vec::new();
        conservation(&stock(), &counts(&[("inv-1", 90, 4, 5), (FLASH_ITEM, -1, 4, 7)]), "now", &mut v);
        assert!(v.iter().any(|m| m.contains("inv-1") && m.contains("= 99")), "{v:?}");
        assert!(v.iter().any(|m| m.contains("oversold")), "{v:?}");
        assert!(v.iter().any(|m| m.contains("negative")), "{v:?}");
    }

    #[test]
    fn an_unreadable_item_is_a_violation() {
        let mut v = Vec::new();
        conservation(&stock(), &counts(&[("inv-1", 90, 4, 6)]), "now", &mut v);
        assert_eq!(v, [format!("now: {FLASH_ITEM}: unreadable")]);
    }

    #[test]
    fn sold_must_be_what_was_confirmed_or_within_the_lost_answers() {
        let exact = SoldBounds { confirmed_sold: BTreeMap::from([("inv-1".to_owned(), 6)]), ..SoldBounds::default() };
        assert!(sold_violations(&exact, &counts(&[("inv-1", 90, 4, 6)])).is_empty());
        assert_eq!(sold_violations(&exact, &counts(&[("inv-1", 89, 4, 7)])).len(), 1, "one sold twice");
        assert_eq!(sold_violations(&exact, &counts(&[("inv-1", 91, 4, 5)])).len(), 1, "one sale lost");
        let unknown = SoldBounds {
            confirmed_sold: BTreeMap::from([("inv-1".to_owned(), 6)]),
            unknown_sold_upper: BTreeMap::from([("inv-1".to_owned(), 2), ("inv-9".to_owned(), 1)]),
        };
        let v = sold_violations(&unknown, &counts(&[("inv-1", 88, 4, 8)]));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("inv-9") && v[0].contains("not seeded"), "{v:?}");
        assert!(!sold_violations(&unknown, &counts(&[("inv-1", 87, 4, 9)])).is_empty(), "beyond the lost answers");
    }
}
