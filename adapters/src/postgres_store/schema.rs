//! The schema: applying the embedded migrations, and telling whether the
//! database holds exactly the schema this build expects.

use std::sync::OnceLock;

use domain::ports::PortError;

use super::PgInventory;
use super::error::PgError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// An arbitrary, fixed key for cartd's migration lock.
const MIGRATION_LOCK: i64 = 7_262_633_841;

/// One applied migration as refinery records it: version, name, checksum.
type Applied = (i32, String, String);

/// The migrations this build embeds, as `refinery_schema_history` records
/// them once applied. Read once: readiness probes come often.
fn expected() -> &'static [Applied] {
    static EXPECTED: OnceLock<Vec<Applied>> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| (m.version(), m.name().to_owned(), m.checksum().to_string()))
            .collect()
    })
}

impl PgInventory {
    /// Creates the schema (when one is configured) and applies pending
    /// migrations, under an advisory lock so instances starting together do
    /// not race. Returns the names of the migrations applied.
    ///
    /// # Errors
    /// [`PortError`] when PostgreSQL cannot be reached, a migration fails, or
    /// the database recorded migrations this build does not have (one made
    /// before the baseline migration: it must be reset, see
    /// docs/operations.md).
    pub async fn migrate(&self, schema: Option<&str>) -> Result<Vec<String>, PortError> {
        Ok(self.migrate_locked(schema).await?)
    }

    async fn migrate_locked(&self, schema: Option<&str>) -> Result<Vec<String>, PgError> {
        let mut client = self.pool.get().await?;
        let client: &mut tokio_postgres::Client = &mut client;
        client.execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let result = async {
            if let Some(schema) = schema {
                if !super::is_identifier(schema) {
                    return Err(PgError::Schema(schema.to_owned()));
                }
                client.batch_execute(&format!("create schema if not exists {schema}")).await?;
            }
            let report = embedded::migrations::runner().run_async(client).await.map_err(|e| match e.kind() {
                refinery::error::Kind::DivergentVersion(..) | refinery::error::Kind::MissingVersion(..) => {
                    PgError::History(e.to_string())
                }
                _ => PgError::Migrate(e),
            })?;
            Ok(report.applied_migrations().iter().map(ToString::to_string).collect())
        }
        .await;
        let unlocked = client.execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        let applied = result?;
        unlocked?;
        Ok(applied)
    }

    /// Whether PostgreSQL answers and holds exactly the schema this build
    /// expects: the migrations it records are this build's, no fewer (the
    /// functions the requests call would be missing or old) and no others (a
    /// database made by another build, whose functions may differ).
    pub async fn ready(&self) -> bool {
        let applied = self
            .query("select version, name, checksum from refinery_schema_history order by version", &[])
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<Result<Vec<Applied>, tokio_postgres::Error>>()
                    .map_err(PgError::from)
            });
        matches!(applied, Ok(applied) if applied == expected())
    }
}
