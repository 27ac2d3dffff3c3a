//! Group commit for holds: `set_hold` requests that arrive while a batch is
//! running wait for the next one, and each batch is one call of
//! `cartd_set_hold_batch`: one round trip, one transaction, one commit.
//!
//! Under light load a batch holds one request, so latency is what a single
//! call costs. Under heavy load the batch grows with the queue, which is what
//! lets many shoppers hold stock of one hot item without queueing on its row
//! lock one transaction at a time (a flash sale), and spreads one commit over
//! many holds elsewhere.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::{PgError, RETRIES, is_retryable};

/// One `cartd_set_hold` call, as its arguments.
#[derive(Debug)]
pub(super) struct HoldCall {
    pub cart: Uuid,
    pub product: String,
    pub item: Option<String>,
    pub quantity: Option<i32>,
    pub deadline: Option<i64>,
    pub max_lines: i32,
    pub now: i64,
}

/// One row `cartd_set_hold` returned.
#[derive(Debug)]
pub(super) struct HoldRow {
    pub status: String,
    pub version: i64,
    pub deadline: i64,
    pub available: i64,
    pub taken: i32,
    pub released: i32,
}

type Reply = oneshot::Sender<Result<HoldRow, Arc<PgError>>>;

/// The queue in front of the batches.
#[derive(Debug)]
pub(super) struct Batcher {
    queue: mpsc::Sender<(HoldCall, Reply)>,
}

const SQL: &str = "select o_status, o_version, o_deadline_ms, o_available, o_taken, o_released \
                   from cartd_set_hold_batch($1, $2, $3, $4, $5, $6, $7)";

impl Batcher {
    /// Starts the batching task on the current Tokio runtime. It stops when
    /// the last handle is dropped.
    pub fn start(pool: Pool, op_timeout: Duration, max_batch: usize, in_flight: usize) -> Self {
        let (queue, rx) = mpsc::channel(max_batch * in_flight.max(1) * 4);
        tokio::spawn(run(pool, rx, op_timeout, max_batch.max(1), in_flight.max(1)));
        Self { queue }
    }

    /// Queues `call` and waits for its row.
    pub async fn submit(&self, call: HoldCall) -> Result<HoldRow, Arc<PgError>> {
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
        // Take item locks in one order in every batch, as the SQL functions
        // do, so batches of several instances do not deadlock on shared items.
        // The sort is stable: changes to one item keep their arrival order.
        jobs.sort_by(|a, b| a.0.item.cmp(&b.0.item));
        let pool = pool.clone();
        tokio::spawn(async move {
            execute(&pool, jobs, op_timeout).await;
            drop(permit);
        });
    }
}

async fn execute(pool: &Pool, jobs: Vec<(HoldCall, Reply)>, op_timeout: Duration) {
    let (calls, replies): (Vec<HoldCall>, Vec<Reply>) = jobs.into_iter().unzip();
    let started = std::time::Instant::now();
    let result = with_retries(pool, &calls, op_timeout).await;
    tracing::debug!(holds = calls.len(), elapsed = ?started.elapsed(), ok = result.is_ok(), "hold batch");
    match result {
        Ok(rows) if rows.len() == calls.len() => {
            for (reply, row) in replies.into_iter().zip(rows) {
                let _ = reply.send(Ok(row));
            }
        }
        Ok(rows) => {
            let e = Arc::new(PgError::Protocol(format!("{} rows for {} holds", rows.len(), calls.len())));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
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

async fn with_retries(pool: &Pool, calls: &[HoldCall], op_timeout: Duration) -> Result<Vec<HoldRow>, PgError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout(op_timeout, once(pool, calls)).await {
            Ok(result) => result,
            Err(_) => Err(PgError::Timeout(op_timeout)),
        };
        match result {
            Err(PgError::Query(e)) if attempt < RETRIES && is_retryable(&e) => {
                tracing::debug!(error = %e, attempt, holds = calls.len(), "retrying a batch of holds");
            }
            other => return other,
        }
    }
}

async fn once(pool: &Pool, calls: &[HoldCall]) -> Result<Vec<HoldRow>, PgError> {
    let carts: Vec<Uuid> = calls.iter().map(|c| c.cart).collect();
    let products: Vec<&str> = calls.iter().map(|c| c.product.as_str()).collect();
    let items: Vec<Option<&str>> = calls.iter().map(|c| c.item.as_deref()).collect();
    let quantities: Vec<Option<i32>> = calls.iter().map(|c| c.quantity).collect();
    let deadlines: Vec<Option<i64>> = calls.iter().map(|c| c.deadline).collect();
    let max_lines: Vec<i32> = calls.iter().map(|c| c.max_lines).collect();
    let nows: Vec<i64> = calls.iter().map(|c| c.now).collect();
    let client = pool.get().await?;
    let statement = client.prepare_cached(SQL).await?;
    let rows =
        client.query(&statement, &[&carts, &products, &items, &quantities, &deadlines, &max_lines, &nows]).await?;
    rows.iter()
        .map(|r| {
            Ok(HoldRow {
                status: r.try_get(0)?,
                version: r.try_get(1)?,
                deadline: r.try_get(2)?,
                available: r.try_get(3)?,
                taken: r.try_get(4)?,
                released: r.try_get(5)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(PgError::from)
}
