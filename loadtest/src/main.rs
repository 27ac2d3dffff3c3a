//! `cartd-loadtest`: the goose load test of cartd, and the two helper commands
//! the wrapper script (`scripts/loadtest.sh`) runs around it.
//!
//! - `cartd-loadtest [GOOSE OPTIONS]` runs the load test: every goose option
//!   works (`-H`, `-u`, `-r`, `-t`, `--scenarios`, `--report-file`, ...). The
//!   scenarios are `shopper`, `browser`, `tutorial`, `flashsale` and
//!   `expirystorm` (see `scenarios.rs`); the environment tunes them (see
//!   `settings.rs`). When it ends it writes a summary (per request type: count,
//!   failures, status codes, p50/p95/p99, rps) and exits non-zero when any
//!   request failed: a 5xx, a transport error or an answer the scenario did not
//!   expect. Expected refusals (`409 insufficient_stock`, `404
//!   session_not_found` after expiry, ...) are marked as successes in goose.
//! - `cartd-loadtest seed ...` sets the stock of every item the scenarios use,
//!   through the admin API, and records it.
//! - `cartd-loadtest check ...` checks conservation through the API once the
//!   load is over: `available + reserved + sold == stock` for every item,
//!   `reserved` back to 0 once the carts have expired, `sold` equal to what the
//!   checkouts confirmed, and `sold + reserved <= stock` for the flash item.
//! - `cartd-loadtest streams ...` holds many live stock streams open and
//!   reports what they received (`scripts/sse-fanout.sh`).
//!
//! This crate is a workspace member on its own: `app` does not depend on it,
//! so building or testing the service never compiles goose.

#![forbid(unsafe_code)]

mod charts;
mod client;
mod scenarios;
mod settings;
mod stock;
mod streams;
mod summary;
mod tally;
mod watch;

use std::process::ExitCode;

use goose::config::GooseConfiguration;
use goose::prelude::*;

fn main() -> ExitCode {
    let first = std::env::args().nth(1);
    if first.as_deref() == Some("streams") {
        // One thread of its own: it shares the machine with what it measures.
        return streams::run(&std::env::args().skip(2).collect::<Vec<_>>());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cartd-loadtest: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match first.as_deref() {
        Some("seed" | "check") => runtime.block_on(stock::run_tool()),
        _ => runtime.block_on(load_test()),
    }
}

/// Runs goose with the scenarios, then writes the summary and judges the run.
async fn load_test() -> ExitCode {
    let settings = match settings::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cartd-loadtest: {e:#}");
            return ExitCode::from(2);
        }
    };
    let configuration = GooseConfiguration::parse_args_default_or_exit();
    let host = configuration.host.clone();
    let attack = match build_attack(configuration, &settings) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cartd-loadtest: {e}");
            return ExitCode::from(2);
        }
    };

    // Watches the flash item's counts while the users run, outside goose's
    // metrics, so an oversell shows even if the counts are right at the end.
    let watcher = match (&host, settings.flash_stock) {
        (Some(host), Some(stock)) => Some(watch::FlashWatch::start(host, stock)),
        _ => None,
    };

    charts::start();
    let result = attack.execute().await;
    let watched = match watcher {
        Some(w) => Some(w.stop().await),
        None => None,
    };
    let (metrics, thresholds_failed) = match result {
        Ok(m) => (m, Vec::new()),
        Err(GooseError::ThresholdsFailed { failed, metrics }) => (
            *metrics.0,
            failed.iter().map(|t| format!("threshold {} failed (observed {})", t.rule, t.observed)).collect(),
        ),
        Err(e) => {
            eprintln!("cartd-loadtest: goose failed: {e}");
            return ExitCode::from(2);
        }
    };
    if metrics.requests.is_empty() && metrics.duration == 0 {
        // `--list`, `--scenarios-list`, `--version` and the like end here.
        return ExitCode::SUCCESS;
    }

    let flash = watched.as_ref().map(|w| (w.stock, w.series.clone()));
    let mut summary = summary::Summary::build(&metrics, &settings, tally::sold(), watched);
    summary.failures.extend(thresholds_failed);
    if let Some(path) = &settings.summary {
        // The charts first, so that the summary can link them.
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        match charts::write(dir, flash.as_ref().map(|(stock, series)| (*stock, series.as_slice()))) {
            Ok(()) => summary.charts = Some("charts.html".to_owned()),
            Err(e) => eprintln!("cartd-loadtest: cannot write the charts: {e:#}"),
        }
        if let Err(e) = summary.write(path) {
            eprintln!("cartd-loadtest: cannot write the summary: {e:#}");
            return ExitCode::from(2);
        }
    }
    println!("{}", summary.one_line());
    for reason in &summary.failures {
        eprintln!("cartd-loadtest: FAIL: {reason}");
    }
    if summary.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn build_attack(configuration: GooseConfiguration, settings: &settings::Settings) -> Result<GooseAttack, GooseError> {
    let mut attack = GooseAttack::initialize_with_config(configuration)?;
    for scenario in scenarios::all(settings)? {
        attack = attack.register_scenario(scenario);
    }
    Ok(attack)
}
