//! The machine-readable summary of a run, built from goose's final metrics: per
//! request type the count, failures, status codes, p50/p95/p99/max and
//! requests per second; the totals; what the checkouts confirmed; what the
//! flash-sale watch saw; and the verdict with its reasons. Written as JSON and
//! as a Markdown table beside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use goose::metrics::{GooseMetrics, GooseRequestMetricTimingData};
use goose::test_plan::TestPlanStepAction;
use serde::Serialize;

use crate::settings::Settings;
use crate::watch::FlashReport;

/// One request type (method and name), or the total of all.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRow {
    pub name: String,
    pub count: usize,
    /// Requests counted as failed: 5xx, transport errors, unexpected answers.
    pub failures: usize,
    pub rps: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers by status code; `0` is a request that got no answer.
    pub status_codes: BTreeMap<u16, usize>,
}

/// One scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioRow {
    pub name: String,
    pub users: usize,
}

/// The summary of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub verdict: &'static str,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    pub max_users: usize,
    pub duration_secs: usize,
    /// Seconds from the first user to the last one started.
    pub ramp_up_secs: Option<f64>,
    pub think: String,
    /// How users reach the server: a connection each, or one shared pool.
    pub connections: String,
    pub items: u32,
    pub scenarios: Vec<ScenarioRow>,
    pub requests: Vec<RequestRow>,
    /// All requests together (percentiles from the merged buckets, at most 1% low).
    pub total: RequestRow,
    pub server_errors_5xx: usize,
    pub transport_errors: usize,
    /// Answers that were expected refusals (409, 404, ...) and so successes,
    /// by status and error code.
    pub expected_refusals: BTreeMap<String, usize>,
    pub transaction_errors: BTreeMap<String, usize>,
    /// goose's error table. It lists each expected refusal too, as it arrived,
    /// before the harness marked it a success; `failures` in the rows is what counts.
    pub goose_error_table: BTreeMap<String, usize>,
    /// Units confirmed sold by `201` checkouts, by inventory id.
    pub confirmed_sold: BTreeMap<String, u64>,
    /// Carts that answered `404 session_not_found` to a request sent before
    /// the deadline the server had stated for them (each fails the run).
    pub carts_gone_early: u64,
    pub flash_watch: Option<FlashReport>,
    /// The offline charts written next to the summary, when they were.
    pub charts: Option<String>,
}

impl Summary {
    /// Builds the summary and judges the run.
    pub fn build(
        metrics: &GooseMetrics,
        settings: &Settings,
        confirmed_sold: BTreeMap<String, u64>,
        flash_watch: Option<FlashReport>,
    ) -> Self {
        let duration = metrics.duration.max(1) as f64;
        let mut requests: Vec<RequestRow> = metrics
            .requests
            .iter()
            .map(|(key, r)| {
                let count = r.success_count + r.fail_count;
                row(key.clone(), count, r.fail_count, duration, &r.raw_data, &r.status_code_counts)
            })
            .collect();
        requests.sort_by(|a, b| a.name.cmp(&b.name));

        let total = total_row(metrics, duration);
        let server_errors_5xx = total.status_codes.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum();
        let transport_errors = total.status_codes.get(&0).copied().unwrap_or(0);
        let expected_refusals = crate::client::refusals();
        let ramp_up_secs = ramp_up(metrics);
        let transaction_errors = metrics
            .transaction_errors
            .values()
            .map(|e| (format!("{} {}: {}", e.scenario_name, e.transaction_name, e.error), e.occurrences))
            .collect::<BTreeMap<_, _>>();
        let goose_error_table =
            metrics.errors.values().map(|e| (e.error.clone(), e.occurrences)).collect::<BTreeMap<_, _>>();
        let scenarios = metrics
            .scenarios
            .iter()
            .map(|s| ScenarioRow { name: s.name.to_string(), users: s.users.len() })
            .filter(|s| s.users > 0)
            .collect();

        let mut failures = Vec::new();
        if total.count == 0 {
            failures.push("no request was made".to_owned());
        }
        if server_errors_5xx > 0 {
            failures.push(format!("{server_errors_5xx} answers were 5xx"));
        }
        if transport_errors > 0 {
            failures.push(format!("{transport_errors} requests got no answer (transport error or timeout)"));
        }
        let other = total.failures.saturating_sub(server_errors_5xx + transport_errors);
        if other > 0 {
            failures.push(format!("{other} answers were not what the scenario expected (see goose_error_table)"));
        }
        let transaction_error_count: usize = transaction_errors.values().sum();
        if transaction_error_count > 0 {
            failures.push(format!("{transaction_error_count} steps failed: {transaction_errors:?}"));
        }
        let (early_gone, early_examples) = crate::tally::early_gone();
        if early_gone > 0 {
            failures.push(format!(
                "{early_gone} carts answered 404 (session_not_found, or the tutorial's empty cart) before their deadline, first: {}",
                early_examples.first().map_or("", String::as_str)
            ));
        }
        // A run whose users check out must sell something: a checkout that
        // only ever answers 404 or 409 would otherwise pass.
        let checkouts =
            requests.iter().filter(|r| r.name.ends_with("/v1/cart/checkout")).map(|r| r.count).sum::<usize>();
        if checkouts > 0 && confirmed_sold.values().sum::<u64>() == 0 {
            failures.push(format!("{checkouts} checkouts were made and none sold anything"));
        }
        if let Some(watch) = &flash_watch
            && watch.samples == 0
        {
            failures.push(format!(
                "the flash-1 watch read no counts ({} reads failed): it cannot vouch for the flash sale",
                watch.failed_reads
            ));
        }
        if let Some(watch) = &flash_watch
            && watch.violation_count > 0
        {
            failures.push(format!(
                "flash-1 broke conservation in {} of {} reads during the run, first: {}",
                watch.violation_count,
                watch.samples,
                watch.violations.first().map_or("", String::as_str)
            ));
        }

        Self {
            verdict: if failures.is_empty() { "pass" } else { "fail" },
            failures,
            max_users: metrics.maximum_users,
            duration_secs: metrics.duration,
            ramp_up_secs,
            think: settings.think_label(),
            connections: match settings.shared_pool {
                None => "one per user".to_owned(),
                Some(n) => format!("one client shared by all users, at most {n} idle connections"),
            },
            items: settings.items,
            scenarios,
            requests,
            total,
            server_errors_5xx,
            transport_errors,
            expected_refusals,
            transaction_errors,
            goose_error_table,
            confirmed_sold,
            carts_gone_early: early_gone,
            flash_watch,
            charts: None,
        }
    }

    /// Writes `path` (JSON) and the same name with `.md` (Markdown).
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("summary to JSON")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        let md = path.with_extension("md");
        std::fs::write(&md, self.markdown()).with_context(|| format!("writing {}", md.display()))?;
        Ok(())
    }

    /// One line for the console. Deliberately unlike a test runner's result line.
    pub fn one_line(&self) -> String {
        format!(
            "cartd-loadtest: {} | {} users, {} s, {} requests, {:.0} req/s, p50 {} ms, p99 {} ms | failed {} (5xx {}, no answer {}), expected refusals {}",
            self.verdict.to_uppercase(),
            self.max_users,
            self.duration_secs,
            self.total.count,
            self.total.rps,
            ms(self.total.p50_ms),
            ms(self.total.p99_ms),
            self.total.failures,
            self.server_errors_5xx,
            self.transport_errors,
            self.expected_refusals.values().sum::<usize>(),
        )
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# cartd load test: {}\n", self.verdict.to_uppercase());
        let ramp = self.ramp_up_secs.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.1} s"));
        let _ = writeln!(
            out,
            "{} users at most (all started in {ramp}), {} s measured, think time {}, items inv-1..inv-{}, \
             connections: {}.\n",
            self.max_users, self.duration_secs, self.think, self.items, self.connections
        );
        if !self.scenarios.is_empty() {
            let list: Vec<String> = self.scenarios.iter().map(|s| format!("{} ({} users)", s.name, s.users)).collect();
            let _ = writeln!(out, "Scenarios: {}.\n", list.join(", "));
        }
        if let Some(charts) = &self.charts {
            let _ = writeln!(
                out,
                "Charts (throughput and p50/p95/p99 latency per request type over time, the flash item's \
                 counts): [{charts}]({charts}), inline SVG that renders offline.\n"
            );
        }
        let _ = writeln!(
            out,
            "| request | count | failed | req/s | avg ms | p50 ms | p95 ms | p99 ms | max ms | status codes |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in self.requests.iter().chain(std::iter::once(&self.total)) {
            let codes: Vec<String> = r.status_codes.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
                r.name,
                r.count,
                r.failures,
                r.rps,
                ms(r.avg_ms),
                ms(r.p50_ms),
                ms(r.p95_ms),
                ms(r.p99_ms),
                ms(r.max_ms),
                codes.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "\n5xx: {}; no answer: {}; expected refusals counted as successes: {:?}.",
            self.server_errors_5xx, self.transport_errors, self.expected_refusals
        );
        if let Some(w) = self.flash_watch.as_ref().filter(|w| w.samples == 0) {
            let _ = writeln!(out, "\nflash-1 watch: no read answered ({} failed): nothing was judged.", w.failed_reads);
        } else if let Some(w) = &self.flash_watch {
            let _ = writeln!(
                out,
                "\nflash-1 watch: stock {}, {} reads, at most {} reserved + sold, at least {} available, {} sold at the end, {} violations.",
                w.stock,
                w.samples,
                w.max_reserved_plus_sold,
                w.min_available.map_or_else(|| "n/a".to_owned(), |a| a.to_string()),
                w.last_sold,
                w.violation_count
            );
        }
        if self.failures.is_empty() {
            let _ = writeln!(out, "\nNo failure.");
        } else {
            let _ = writeln!(out, "\nFailures:\n");
            for f in &self.failures {
                let _ = writeln!(out, "- {f}");
            }
        }
        out
    }
}

fn row(
    name: String,
    count: usize,
    failures: usize,
    duration: f64,
    times: &GooseRequestMetricTimingData,
    codes: &std::collections::HashMap<u16, usize>,
) -> RequestRow {
    let us = |p: f32| times.percentile_us(p) as f64 / 1000.0;
    RequestRow {
        name,
        count,
        failures,
        rps: count as f64 / duration,
        avg_ms: if times.counter == 0 { 0.0 } else { times.average_ms() },
        p50_ms: us(0.5),
        p95_ms: us(0.95),
        p99_ms: us(0.99),
        max_ms: times.maximum_time_us as f64 / 1000.0,
        status_codes: codes.iter().map(|(s, n)| (*s, *n)).collect(),
    }
}

/// The total row: counts added up, percentiles from every request's buckets
/// (each bucket's lower bound, so at most 1% low).
fn total_row(metrics: &GooseMetrics, duration: f64) -> RequestRow {
    let mut buckets: BTreeMap<u64, usize> = BTreeMap::new();
    let (mut count, mut failures, mut timed, mut total_us, mut max_us) = (0, 0, 0usize, 0u64, 0u64);
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    for r in metrics.requests.values() {
        count += r.success_count + r.fail_count;
        failures += r.fail_count;
        timed += r.raw_data.counter;
        total_us += r.raw_data.total_time_us;
        max_us = max_us.max(r.raw_data.maximum_time_us);
        for (bucket, n) in r.raw_data.times_us.iter() {
            *buckets.entry(*bucket).or_default() += *n;
        }
        for (status, n) in &r.status_code_counts {
            *codes.entry(*status).or_default() += *n;
        }
    }
    let percentile = |p: f64| -> f64 {
        if timed == 0 {
            return 0.0;
        }
        let rank = ((p * timed as f64).ceil() as usize).max(1);
        let mut seen = 0;
        for (bucket, n) in &buckets {
            seen += n;
            if seen >= rank {
                return *bucket as f64 / 1000.0;
            }
        }
        max_us as f64 / 1000.0
    };
    RequestRow {
        name: "all requests".to_owned(),
        count,
        failures,
        rps: count as f64 / duration,
        avg_ms: if timed == 0 { 0.0 } else { total_us as f64 / timed as f64 / 1000.0 },
        p50_ms: percentile(0.5),
        p95_ms: percentile(0.95),
        p99_ms: percentile(0.99),
        max_ms: max_us as f64 / 1000.0,
        status_codes: codes,
    }
}

/// Seconds from the first increase step to the first maintain step.
fn ramp_up(metrics: &GooseMetrics) -> Option<f64> {
    let start = metrics.history.iter().find(|h| matches!(h.action, TestPlanStepAction::Increasing))?;
    let full = metrics.history.iter().find(|h| matches!(h.action, TestPlanStepAction::Maintaining))?;
    Some((full.timestamp - start.timestamp).num_milliseconds() as f64 / 1000.0)
}

/// A time in milliseconds as goose shows it: hundredths under 10 ms, whole above.
fn ms(v: f64) -> String {
    if v < 10.0 { format!("{v:.2}") } else { format!("{v:.0}") }
}
