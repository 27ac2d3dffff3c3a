//! `cartd-loadtest seed` and `cartd-loadtest check`: the stock before a run,
//! and the conservation check after it, both through cartd's HTTP API.
//!
//! The check reads every seeded item right after the load stops, then waits
//! (up to `--settle-secs`) for every hold to come back, then reads them again:
//!
//! - `available + reserved + sold == stock` at both reads, and no count negative;
//! - `reserved == 0` at the end: every cart has expired or closed, and the
//!   sweeper (or the expiry listener) has released its holds;
//! - `sold` equals the units the `201` checkouts confirmed (from the run's
//!   summary), so no sale was lost or counted twice;
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
    /// CARTD_LOADTEST_ADMIN_TOKEN) and writes what was put in.
    Seed {
        /// cartd's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        host: String,
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
        /// cartd's base URL.
        #[arg(long)]
        host: String,
        /// The file `seed` wrote.
        #[arg(long)]
        stock: PathBuf,
        /// The run's summary (for the units its checkouts confirmed).
        #[arg(long)]
        summary: Option<PathBuf>,
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
}

/// One item's counts.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Counts {
    available: i64,
    reserved: i64,
    sold: i64,
}

/// Runs `seed` or `check`.
pub async fn run_tool() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Tool::Seed { host, items, units, flash_units, out } => seed(&host, items, units, flash_units, &out).await,
        Tool::Check { host, stock, summary, settle_secs, out } => {
            check(&host, &stock, summary.as_deref(), settle_secs, out.as_deref()).await
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

async fn seed(host: &str, items: u32, units: u64, flash_units: u64, out: &std::path::Path) -> anyhow::Result<bool> {
    let token = std::env::var(TOKEN_VAR).with_context(|| format!("{TOKEN_VAR} is not set"))?;
    let client = client()?;
    let mut stock = Stock { items: BTreeMap::new() };
    let wanted = (1..=items).map(|n| (format!("inv-{n}"), units)).chain([(FLASH_ITEM.to_owned(), flash_units)]);
    for (item, units) in wanted {
        let url = format!("{}/v1/inventory/{item}", base(host));
        let response = client
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({ "available": units }))
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
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

async fn read_all(client: &reqwest::Client, host: &str, stock: &Stock) -> anyhow::Result<BTreeMap<String, Counts>> {
    let mut out = BTreeMap::new();
    for item in stock.items.keys() {
        let url = format!("{}/v1/inventory/{item}", base(host));
        let response = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::OK {
            bail!("GET {url}: {status}: {body}");
        }
        out.insert(item.clone(), parse_counts(&body).with_context(|| format!("GET {url}: unexpected body {body}"))?);
    }
    Ok(out)
}

/// The conservation rules that hold at any quiet moment.
fn conservation(stock: &Stock, counts: &BTreeMap<String, Counts>, when: &str, violations: &mut Vec<String>) {
    for (item, put_in) in &stock.items {
        let Some(c) = counts.get(item) else { continue };
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
        if item == FLASH_ITEM && c.reserved + c.sold > put_in {
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
    host: &str,
    stock_path: &std::path::Path,
    summary: Option<&std::path::Path>,
    settle_secs: f64,
    out: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    let stock: Stock = serde_json::from_str(
        &std::fs::read_to_string(stock_path).with_context(|| format!("reading {}", stock_path.display()))?,
    )
    .with_context(|| format!("parsing {}", stock_path.display()))?;
    let confirmed: Option<BTreeMap<String, u64>> = match summary {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            Some(serde_json::from_value(v.get("confirmed_sold").cloned().unwrap_or(json!({})))?)
        }
        None => None,
    };
    let client = client()?;
    let mut violations = Vec::new();

    let started = Instant::now();
    let at_stop = read_all(&client, host, &stock).await?;
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
        last = read_all(&client, host, &stock).await?;
        // Only the first break seen while waiting: the final read reports the rest.
        let mut seen = Vec::new();
        conservation(&stock, &last, "while the carts expired", &mut seen);
        if let Some(first) = seen.into_iter().next()
            && !violations.iter().any(|v| v.starts_with("while the carts expired"))
        {
            violations.push(first);
        }
    }
    let settled = read_all(&client, host, &stock).await?;
    conservation(&stock, &settled, "after the carts expired", &mut violations);
    for (item, c) in &settled {
        if c.reserved != 0 {
            violations.push(format!(
                "after {settle_secs:.0} s: {item}: {} units still reserved (holds not released after their carts expired)",
                c.reserved
            ));
        }
    }
    if let Some(confirmed) = &confirmed {
        for (item, c) in &settled {
            let sold_ok = confirmed.get(item).copied().unwrap_or(0) as i64;
            if c.sold != sold_ok {
                violations.push(format!(
                    "{item}: sold {} but the checkouts confirmed {sold_ok} units (a sale lost or counted twice)",
                    c.sold
                ));
            }
        }
        for item in confirmed.keys().filter(|i| !settled.contains_key(*i)) {
            violations.push(format!("{item}: checkouts confirmed units of an item that was not seeded"));
        }
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
        "sold_checked_against_checkouts": confirmed.is_some(),
        "flash": settled.get(FLASH_ITEM),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stock() -> Stock {
        Stock { items: BTreeMap::from([("inv-1".to_owned(), 100), (FLASH_ITEM.to_owned(), 10)]) }
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
}
