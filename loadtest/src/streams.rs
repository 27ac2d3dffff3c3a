//! `cartd-loadtest streams PORT STREAMS IDS SECONDS REPORT.json`: holds many
//! live stock streams (`GET /v1/inventory/events`) open against cartd on
//! 127.0.0.1 and reports what they received, for `scripts/sse-fanout.sh`.
//!
//! It opens STREAMS connections (HTTP/1.0, so the body is the plain event
//! stream until the server closes it), waits until every stream has its
//! snapshot, prints `ready`, then reads for SECONDS seconds and writes
//! REPORT.json: events per stream, the most events one stream got in any one
//! second, the snapshots received after the start (a stream that fell behind
//! gets one) and the last counts each stream saw per item.
//!
//! It runs on one thread and parses only what it must, because it shares the
//! machine with the server it measures: the Python client it replaces used a
//! fifth of a core for 1,000 streams, which showed up as a cost of the streams.
//! Only loopback: the address is fixed to 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What one stream saw.
#[derive(Default)]
struct Seen {
    events: u64,
    snapshots: u64,
    /// Events per whole second since the client started.
    per_second: HashMap<u64, u32>,
    /// The last `[available, reserved, sold]` per item.
    last: BTreeMap<String, [i64; 3]>,
}

#[derive(Deserialize)]
struct EventData {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    inventory_id: String,
    available: i64,
    reserved: i64,
    sold: i64,
}

/// Runs the command; `args` are the ones after `streams`.
pub fn run(args: &[String]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cartd-loadtest streams: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(main(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cartd-loadtest streams: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn main(args: &[String]) -> anyhow::Result<()> {
    let [port, n, ids, seconds, report] = args else {
        bail!("usage: cartd-loadtest streams PORT STREAMS IDS SECONDS REPORT.json");
    };
    let port: u16 = port.parse().context("PORT")?;
    let n: usize = n.parse().context("STREAMS")?;
    let seconds: f64 = seconds.parse().context("SECONDS")?;
    let epoch = Instant::now();
    let query = if ids.is_empty() { String::new() } else { format!("?ids={ids}") };
    let request =
        format!("GET /v1/inventory/events{query} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");

    // Each stream reports once: Some(its record) when its snapshot came, None
    // when it was refused or failed before.
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..n {
        let (request, tx) = (request.clone(), tx.clone());
        tokio::spawn(async move {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let mut told = false;
            let result = stream(port, &request, &seen, epoch, || {
                told = true;
                let _ = tx.send(Some(Arc::clone(&seen)));
            })
            .await;
            if !told {
                if let Err(e) = result {
                    eprintln!("stream {i}: {e:#}");
                }
                let _ = tx.send(None);
            }
        });
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tx);
    let mut streams = Vec::with_capacity(n);
    let mut refused = 0usize;
    let gathered = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(s) = rx.recv().await {
            match s {
                Some(s) => streams.push(s),
                None => refused += 1,
            }
            if streams.len() + refused == n {
                break;
            }
        }
    })
    .await;
    if gathered.is_err() {
        bail!("only {} of {n} streams had their snapshot after 60 s", streams.len());
    }

    // Snapshots and connection set-up do not count towards the rates.
    for s in &streams {
        let mut s = s.lock().expect("stream record");
        s.events = 0;
        s.snapshots = 0;
        s.per_second.clear();
    }
    println!("ready");
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;

    let records: Vec<_> = streams.iter().map(|s| s.lock().expect("stream record")).collect();
    let events_total: u64 = records.iter().map(|s| s.events).sum();
    let out = serde_json::json!({
        "client": "cartd-loadtest streams",
        "streams": records.len(),
        "refused": refused,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "client_cpu_share_of_one_core": (cpu / elapsed * 100.0).round() / 100.0,
        "events_total": events_total,
        "events_per_stream_per_s_mean":
            (events_total as f64 / records.len().max(1) as f64 / elapsed * 100.0).round() / 100.0,
        "events_per_stream_max_in_one_second":
            records.iter().filter_map(|s| s.per_second.values().max()).max().copied().unwrap_or(0),
        "snapshots_after_start": records.iter().map(|s| s.snapshots).sum::<u64>(),
        "last": records.iter().map(|s| &s.last).collect::<Vec<_>>(),
    });
    std::fs::write(report, serde_json::to_vec(&out)?).with_context(|| format!("writing {report}"))?;
    // The open streams end with the process.
    std::process::exit(0)
}

/// Reads one stream until the server closes it; calls `on_snapshot` once,
/// when the first snapshot has been recorded.
async fn stream(
    port: u16,
    request: &str,
    seen: &Mutex<Seen>,
    epoch: Instant,
    mut on_snapshot: impl FnMut(),
) -> anyhow::Result<()> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.context("connect")?;
    socket.write_all(request.as_bytes()).await.context("send")?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut head_done = false;
    let mut first = true;
    let mut chunk = [0u8; 8192];
    loop {
        let n = socket.read(&mut chunk).await.context("read")?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = find(&buf, b"\r\n\r\n") else { continue };
            let status = buf.split(|&b| b == b'\n').next().unwrap_or_default();
            if find(status, b" 200 ").is_none() {
                bail!("refused: {}", String::from_utf8_lossy(status).trim_end());
            }
            buf.drain(..end + 4);
            head_done = true;
        }
        // Events end with a blank line.
        while let Some(end) = find(&buf, b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let mut event: &[u8] = b"";
            let mut data: Vec<u8> = Vec::new();
            for line in block.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(e) = line.strip_prefix(b"event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix(b"data: ") {
                    data.extend_from_slice(d);
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let parsed: EventData = serde_json::from_slice(&data).context("event data")?;
            let snapshot = event == b"snapshot";
            {
                let mut s = seen.lock().expect("stream record");
                s.events += 1;
                *s.per_second.entry(epoch.elapsed().as_secs()).or_default() += 1;
                if snapshot {
                    s.snapshots += 1;
                }
                for item in parsed.items {
                    s.last.insert(item.inventory_id, [item.available, item.reserved, item.sold]);
                }
            }
            if snapshot && first {
                first = false;
                on_snapshot();
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// This process's CPU time (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}
