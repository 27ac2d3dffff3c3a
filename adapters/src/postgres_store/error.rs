//! What can go wrong inside the PostgreSQL adapter, and the retry of
//! transactions PostgreSQL aborted for a deadlock or a serialization failure.
//!
//! Every function of the adapter works in [`PgError`]; it becomes a
//! [`PortError`] (or [`CartError::Unavailable`]) once, at the port.

use std::time::Duration;

use domain::CartError;
use domain::ports::PortError;
use tokio_postgres::error::SqlState;

/// What can go wrong inside the adapter; all of it surfaces as [`PortError`].
#[derive(Debug, thiserror::Error)]
pub(super) enum PgError {
    #[error("invalid postgres url")]
    Url(#[source] tokio_postgres::Error),
    #[error("invalid schema name {0:?}")]
    Schema(String),
    #[error("postgres pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres pool setup")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("postgres query")]
    Query(#[from] tokio_postgres::Error),
    #[error("migrations")]
    Migrate(#[from] refinery::Error),
    #[error(
        "the database's migration history does not match this build's ({0}); a database migrated by a \
         development build from before the baseline migration must be reset: see docs/operations.md, \
         \"A database made before the baseline\""
    )]
    History(String),
    #[error("postgres operation timed out after {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer from postgres: {0}")]
    Protocol(String),
}

impl From<PgError> for PortError {
    fn from(e: PgError) -> Self {
        PortError::new("postgres", e)
    }
}

impl From<PgError> for CartError {
    fn from(e: PgError) -> Self {
        CartError::Unavailable(e.into())
    }
}

/// How often a transaction that lost a deadlock or serialization race is retried.
const RETRIES: usize = 3;

/// Runs `op`, one transaction, within `op_timeout`; again (up to [`RETRIES`]
/// times in all) when PostgreSQL aborted it for a deadlock or a serialization
/// failure.
pub(super) async fn retrying<T, F>(op_timeout: Duration, mut op: impl FnMut() -> F) -> Result<T, PgError>
where
    F: Future<Output = Result<T, PgError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout(op_timeout, op()).await {
            Ok(result) => result,
            Err(_) => Err(PgError::Timeout(op_timeout)),
        };
        match result {
            Err(PgError::Query(e)) if attempt < RETRIES && is_retryable(&e) => {
                tracing::debug!(error = %e, attempt, "retrying postgres transaction");
            }
            other => return other,
        }
    }
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}
