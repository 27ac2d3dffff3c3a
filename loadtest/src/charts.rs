//! Charts of a load test that render anywhere: `charts.html`, next to
//! `summary.md`, with inline SVG and no script, so they show on a machine
//! without internet (goose's own report fetches its chart library from a CDN,
//! and shows empty boxes offline).
//!
//! Every request a scenario makes through [`crate::client::call`] is recorded
//! here (its name, the second of the run it was sent in, its latency to the
//! end of the body); the flash watch adds its reads of the flash item. The
//! page draws, per request type, the throughput and the p50 / p95 / p99
//! latency of every second, and the flash item's counts against its stock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The requests of a run, per request type and second.
struct Timeline {
    start: Instant,
    /// Request type -> latencies in µs, per second of the run.
    by_name: BTreeMap<String, Vec<Vec<u32>>>,
}

static TIMELINE: OnceLock<Mutex<Timeline>> = OnceLock::new();

fn timeline() -> &'static Mutex<Timeline> {
    TIMELINE.get_or_init(|| Mutex::new(Timeline { start: Instant::now(), by_name: BTreeMap::new() }))
}

/// Marks the start of the run (the first second of the charts).
pub fn start() {
    timeline().lock().unwrap_or_else(PoisonError::into_inner).start = Instant::now();
}

/// Records one request of type `name`, sent at `sent`, that took `latency`.
pub fn record(name: &str, sent: Instant, latency: Duration) {
    let mut t = timeline().lock().unwrap_or_else(PoisonError::into_inner);
    let second = sent.saturating_duration_since(t.start).as_secs() as usize;
    let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
    let per_second = match t.by_name.get_mut(name) {
        Some(v) => v,
        None => t.by_name.entry(name.to_owned()).or_default(),
    };
    if per_second.len() <= second {
        per_second.resize_with(second + 1, Vec::new);
    }
    per_second[second].push(us);
}

/// Seconds since [`start`], for the flash watch's samples.
pub fn since_start() -> f64 {
    timeline().lock().unwrap_or_else(PoisonError::into_inner).start.elapsed().as_secs_f64()
}

/// One read of the flash item: seconds since the start, available, reserved, sold.
pub type FlashSample = (f64, i64, i64, i64);

/// A line of a chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// Writes `charts.html` into `dir`, with the flash item's `stock` and
/// `flash` samples when the flash sale ran.
///
/// # Errors
/// When the file cannot be written.
pub fn write(dir: &Path, flash: Option<(u64, &[FlashSample])>) -> anyhow::Result<()> {
    let t = timeline().lock().unwrap_or_else(PoisonError::into_inner);
    let mut throughput = Vec::new();
    let mut latency: [Vec<Series>; 3] = Default::default();
    for (name, seconds) in &t.by_name {
        let mut rps = Vec::new();
        let mut lines: [Vec<(f64, f64)>; 3] = Default::default();
        for (second, samples) in seconds.iter().enumerate() {
            let x = second as f64;
            rps.push((x, samples.len() as f64));
            if samples.is_empty() {
                continue;
            }
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            for (line, p) in lines.iter_mut().zip([50.0, 95.0, 99.0]) {
                line.push((x, percentile(&sorted, p)));
            }
        }
        throughput.push(Series { name: name.clone(), points: rps });
        for (chart, points) in latency.iter_mut().zip(lines) {
            chart.push(Series { name: name.clone(), points });
        }
    }
    let total: usize = t.by_name.values().flatten().map(Vec::len).sum();
    drop(t);

    let mut html = String::new();
    html.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cartd load test: charts</title>\n\
         <style>body{font-family:sans-serif;margin:1.5em;max-width:1000px}svg{display:block;margin:0 0 2em}\
         h1{font-size:1.4em}p{color:#444}</style></head><body>\n<h1>cartd load test: charts</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p>{total} requests. Each point is one second of the run (x: seconds since the first user started); \
         latency is from sending the request to the end of the answer's body, as the users saw it. \
         No script and no network: the charts are inline SVG.</p>"
    );
    html.push_str(&chart("Throughput per request type", "requests per second", &throughput, false));
    for (series, label) in latency.iter().zip(["p50", "p95", "p99"]) {
        html.push_str(&chart(
            &format!("Latency {label} per request type"),
            &format!("{label} latency (ms, log scale)"),
            series,
            true,
        ));
    }
    if let Some((stock, samples)) = flash {
        let line = |name: &str, f: fn(&FlashSample) -> i64| Series {
            name: name.to_owned(),
            points: samples.iter().map(|s| (s.0, f(s) as f64)).collect(),
        };
        let series = [
            Series { name: "stock".to_owned(), points: samples.iter().map(|s| (s.0, stock as f64)).collect() },
            line("reserved + sold", |s| s.2 + s.3),
            line("available", |s| s.1),
            line("reserved", |s| s.2),
            line("sold", |s| s.3),
        ];
        html.push_str(
            "<p>The conservation watch: four reads a second of the flash item. \
             <code>reserved + sold</code> must never rise above <code>stock</code>, and \
             <code>available + reserved + sold</code> must equal it.</p>\n",
        );
        html.push_str(&chart("Flash item: counts against stock", "units", &series, false));
    }
    html.push_str("</body></html>\n");
    let path = dir.join("charts.html");
    std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))
}

const COLOURS: [&str; 10] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

/// One line chart as inline SVG, with axes, ticks and a legend.
fn chart(title: &str, y_label: &str, series: &[Series], log_y: bool) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 360.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 330.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 40.0;
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.0).fold(1.0_f64, f64::max);
    let (mut y_min, mut y_max) = (f64::MAX, f64::MIN);
    for p in points() {
        y_min = y_min.min(p.1);
        y_max = y_max.max(p.1);
    }
    if y_min > y_max {
        (y_min, y_max) = (0.0, 1.0);
    }
    let ty = |v: f64| if log_y { v.max(0.01).log10() } else { v };
    let (lo, hi) = if log_y {
        (ty(y_min).floor(), ty(y_max).ceil().max(ty(y_min).floor() + 1.0))
    } else {
        (0.0_f64.min(y_min), if y_max > 0.0 { y_max * 1.05 } else { 1.0 })
    };
    let px = |x: f64| LEFT + x / x_max * (W - LEFT - RIGHT);
    let py = |y: f64| TOP + (1.0 - (ty(y) - lo) / (hi - lo)) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" \
         font-size=\"12\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = writeln!(svg, "<text x=\"{LEFT}\" y=\"18\" font-size=\"15\" font-weight=\"bold\">{}</text>", escape(title));
    // Y ticks.
    let ticks: Vec<f64> = if log_y {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        let step = nice_step((hi - lo) / 5.0);
        (0..=((hi - lo) / step) as usize).map(|i| lo + i as f64 * step).collect()
    };
    for v in ticks {
        let y = py(v);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            label(v)
        );
    }
    // X ticks.
    let step = nice_step(x_max / 8.0).max(1.0);
    let mut x = 0.0;
    while x <= x_max {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{3}</text>",
            px(x),
            H - BOTTOM,
            H - BOTTOM + 16.0,
            label(x)
        );
        x += step;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the start</text>\
         <text transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (LEFT + W - RIGHT) / 2.0,
        H - 6.0,
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>",
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        if !s.points.is_empty() {
            let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
                path.join(" "),
                escape(&s.name)
            );
        }
        let ly = TOP + 8.0 + i as f64 * 18.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"4\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            W - RIGHT + 12.0,
            ly - 4.0,
            W - RIGHT + 30.0,
            ly + 1.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

fn label(v: f64) -> String {
    if v != 0.0 && v.abs() < 1.0 {
        format!("{v}")
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_read_from_the_sorted_latencies() {
        let sorted: Vec<u32> = (1..=100).map(|v| v * 1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&[7000], 99.0), 7.0);
    }

    #[test]
    fn a_chart_draws_every_series_within_its_frame_and_escapes_names() {
        let series = [
            Series { name: "GET a<b".into(), points: vec![(0.0, 1.0), (1.0, 100.0), (2.0, 10.0)] },
            Series { name: "PUT c".into(), points: vec![(0.0, 5.0), (2.0, 50.0)] },
        ];
        for log in [false, true] {
            let svg = chart("t", "y", &series, log);
            assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
            assert!(svg.contains("GET a&lt;b") && !svg.contains("a<b"), "{svg}");
            for poly in svg.split("points=\"").skip(1) {
                let pts = poly.split('"').next().unwrap();
                for pt in pts.split(' ') {
                    let (x, y) = pt.split_once(',').unwrap();
                    let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                    assert!((70.0..=670.0).contains(&x) && (30.0..=320.0).contains(&y), "{pt} outside the frame");
                }
            }
        }
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(130.0), 200.0);
    }
}
