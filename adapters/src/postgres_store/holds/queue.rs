//! Group commit for holds: `set_hold` requests that arrive while a batch is
//! running wait for the next one, and each batch is one transaction and one
//! commit, run in the [`Mode`] the adapter was given.
//!
//! Under light load a batch holds one request, so latency is what a single
//! call costs. Under heavy load the batch grows with the queue, which is what
//! lets many shoppers hold stock of one hot item without queueing on its row
//! lock one transaction at a time (a flash sale), and spreads one commit over
//! many holds elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::reference::{REFERENCE_SQL, ReferenceParams, read_rows};
use super::{HoldCall, HoldOutcome, Mode, planned};
use crate::postgres_store::HoldBatchStats;
use crate::postgres_store::error::{PgError, retrying};
use crate::postgres_store::notice::{ALL_ITEMS, NOTIFY_STOCK};

type Reply = oneshot::Sender<Result<HoldOutcome, Arc<PgError>>>;

/// What the batches have done so far, for metrics: running totals.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    holds: AtomicU64,
    busy_micros: AtomicU64,
    failed: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> HoldBatchStats {
        #[allow(clippy::cast_precision_loss)] // microseconds as f64 seconds: exact up to 285 years
        let busy_seconds = self.busy_micros.load(Ordering::Relaxed) as f64 / 1e6;
        HoldBatchStats {
            batches: self.batches.load(Ordering::Relaxed),
            holds: self.holds.load(Ordering::Relaxed),
            busy_seconds,
            failed: self.failed.load(Ordering::Relaxed),
            reference_fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Counts a planned batch that ran the reference path instead.
    pub(super) fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
}

/// The queue in front of the batches.
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<(HoldCall, Reply)>,
}

impl Batcher {
    /// Starts the batching task on the current Tokio runtime. It stops when
    /// the last handle is dropped.
    pub(crate) fn start(
        pool: Pool,
        op_timeout: Duration,
        max_batch: usize,
        in_flight: usize,
        mode: Mode,
        counters: Arc<Counters>,
    ) -> Self {
        let (queue, rx) = mpsc::channel(max_batch * in_flight.max(1) * 4);
        tokio::spawn(run(pool, rx, op_timeout, max_batch.max(1), in_flight.max(1), mode, counters));
        Self { queue }
    }

    /// Queues `call` and waits for its outcome.
    pub(crate) async fn submit(&self, call: HoldCall) -> Result<HoldOutcome, Arc<PgError>> {
        let (tx, rx) = oneshot::channel();
        let stopped = || Arc::new(PgError::Protocol("the hold batcher stopped".to_owned()));
        self.queue.send((call, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(
    pool: Pool,
    mut rx: mpsc::Receiver<(HoldCall, Reply)>,
    op_timeout: Duration,
    max_batch: usize,
    in_flight: usize,
    mode: Mode,
    counters: Arc<Counters>,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        // Everything that queued up while we waited for a slot joins this batch.
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            execute(&pool, jobs, op_timeout, mode, &counters).await;
            drop(permit);
        });
    }
}

async fn execute(pool: &Pool, jobs: Vec<(HoldCall, Reply)>, op_timeout: Duration, mode: Mode, counters: &Counters) {
    let (calls, replies): (Vec<HoldCall>, Vec<Reply>) = jobs.into_iter().unzip();
    let started = std::time::Instant::now();
    let n = calls.len();
    let result = run_batch(pool, calls, op_timeout, mode, counters).await;
    let elapsed = started.elapsed();
    tracing::debug!(holds = n, ?elapsed, ok = result.is_ok(), "hold batch");
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.holds.fetch_add(n as u64, Ordering::Relaxed);
    counters.busy_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    if result.is_err() {
        counters.failed.fetch_add(1, Ordering::Relaxed);
    }
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs one batch, retried whole when PostgreSQL aborted it for a deadlock or
/// a serialization failure: one outcome per call, in the calls' order.
///
/// The calls run sorted by item, so that every batch takes item locks in one
/// order, as the SQL functions do, and batches of several instances do not
/// deadlock on shared items. The sort is stable: changes to one item keep
/// their arrival order.
pub(crate) async fn run_batch(
    pool: &Pool,
    calls: Vec<HoldCall>,
    op_timeout: Duration,
    mode: Mode,
    counters: &Counters,
) -> Result<Vec<HoldOutcome>, PgError> {
    let mut indexed: Vec<(usize, HoldCall)> = calls.into_iter().enumerate().collect();
    indexed.sort_by(|a, b| a.1.item().cmp(&b.1.item()));
    let (order, sorted): (Vec<usize>, Vec<HoldCall>) = indexed.into_iter().unzip();
    let outcomes = retrying(op_timeout, || once(pool, &sorted, mode, counters)).await?;
    if outcomes.len() != sorted.len() {
        return Err(PgError::Protocol(format!("{} rows for {} holds", outcomes.len(), sorted.len())));
    }
    let mut answered: Vec<(usize, HoldOutcome)> = order.into_iter().zip(outcomes).collect();
    answered.sort_by_key(|(i, _)| *i);
    Ok(answered.into_iter().map(|(_, outcome)| outcome).collect())
}

async fn once(pool: &Pool, calls: &[HoldCall], mode: Mode, counters: &Counters) -> Result<Vec<HoldOutcome>, PgError> {
    let client = Exclusive(Some(pool.get().await?));
    let outcomes = match mode {
        Mode::Planned => planned::run(client.get(), calls, counters).await?,
        Mode::Reference => {
            let statement = client.get().prepare_cached(REFERENCE_SQL).await?;
            let params = ReferenceParams::of(calls);
            let outcomes = read_rows(&client.get().query(&statement, &params.as_params()).await?)?;
            // The function commits on its own, so this notice comes just
            // after: a crash in between is covered by the listeners' resync.
            client.get().execute(NOTIFY_STOCK, &[&ALL_ITEMS]).await?;
            outcomes
        }
    };
    client.keep();
    Ok(outcomes)
}

/// A pooled connection that goes back to the pool only when [`Exclusive::keep`]
/// says so. Dropped otherwise (an error, or a timeout cancelling the future
/// halfway), it is closed instead, so a transaction left open can never reach
/// the next user of the connection; PostgreSQL rolls it back.
struct Exclusive(Option<deadpool_postgres::Object>);

impl Exclusive {
    fn get(&self) -> &deadpool_postgres::Object {
        self.0.as_ref().expect("present until keep or drop")
    }

    fn keep(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}
