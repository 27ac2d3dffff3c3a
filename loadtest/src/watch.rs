//! Watches the flash-sale item while the users race for it: four times a
//! second it reads `GET /v1/inventory/flash-1` (one row, read in one statement,
//! so the three counts are consistent with each other) and records any moment
//! where more units are held or sold than were put in, or where the counts do
//! not add up to the stock. These reads are not part of goose's metrics.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::scenarios::FLASH_ITEM;

/// What the watch saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlashReport {
    pub item: String,
    pub stock: u64,
    /// Reads that returned counts.
    pub samples: u64,
    /// Reads that failed (transport error or not 200).
    pub failed_reads: u64,
    /// The most units held or sold at once (`reserved + sold`).
    pub max_reserved_plus_sold: u64,
    /// The fewest units available seen.
    pub min_available: Option<i64>,
    /// The units sold at the last read.
    pub last_sold: u64,
    /// Each read that broke `reserved + sold <= stock` or
    /// `available + reserved + sold == stock` (the first 20).
    pub violations: Vec<String>,
    /// How many reads broke one of them.
    pub violation_count: u64,
    /// Every read, for the charts (not in summary.json).
    #[serde(skip)]
    pub series: Vec<crate::charts::FlashSample>,
}

/// A running watch.
pub struct FlashWatch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<FlashReport>,
}

impl FlashWatch {
    /// Starts watching `flash-1` on `host`, seeded with `stock` units.
    pub fn start(host: &str, stock: u64) -> Self {
        let url = format!("{}/v1/inventory/{FLASH_ITEM}", host.trim_end_matches('/'));
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut report = FlashReport { item: FLASH_ITEM.to_owned(), stock, ..FlashReport::default() };
            let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
                Ok(c) => c,
                Err(_) => return report,
            };
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                match read(&client, &url).await {
                    Some(counts) => observe(&mut report, counts),
                    None => report.failed_reads += 1,
                }
            }
            report
        });
        Self { stop, task }
    }

    /// Stops the watch and returns what it saw.
    pub async fn stop(self) -> FlashReport {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// `available`, `reserved`, `sold`.
type Counts = (i64, i64, i64);

async fn read(client: &reqwest::Client, url: &str) -> Option<Counts> {
    let response = client.get(url).send().await.ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    let body: serde_json::Value = response.json().await.ok()?;
    let n = |key: &str| body.get(key).and_then(serde_json::Value::as_i64);
    Some((n("available")?, n("reserved")?, n("sold")?))
}

fn observe(report: &mut FlashReport, (available, reserved, sold): Counts) {
    report.samples += 1;
    report.series.push((crate::charts::since_start(), available, reserved, sold));
    let held = reserved + sold;
    report.max_reserved_plus_sold = report.max_reserved_plus_sold.max(held.max(0) as u64);
    report.min_available = Some(report.min_available.map_or(available, |m| m.min(available)));
    report.last_sold = sold.max(0) as u64;
    let stock = report.stock as i64;
    let mut broken = Vec::new();
    if held > stock {
        broken.push(format!("reserved {reserved} + sold {sold} = {held} > stock {stock}"));
    }
    if available + reserved + sold != stock {
        broken.push(format!("available {available} + reserved {reserved} + sold {sold} != stock {stock}"));
    }
    if available < 0 || reserved < 0 || sold < 0 {
        broken.push(format!("negative count: available {available}, reserved {reserved}, sold {sold}"));
    }
    if !broken.is_empty() {
        report.violation_count += 1;
        if report.violations.len() < 20 {
            report.violations.push(broken.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversell_or_a_leak_is_a_violation() {
        let mut report = FlashReport { stock: 10, ..FlashReport::default() };
        observe(&mut report, (4, 3, 3));
        assert_eq!(report.violation_count, 0);
        observe(&mut report, (0, 5, 6));
        observe(&mut report, (1, 3, 3));
        assert_eq!(report.violation_count, 2);
        assert_eq!(report.max_reserved_plus_sold, 11);
        assert_eq!(report.min_available, Some(0));
    }
}
