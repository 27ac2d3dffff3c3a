//! Reconciliation: finding (and fixing) items whose `reserved` count
//! disagrees with the holds in the ledger.

use domain::ports::PortError;

use super::PgInventory;
use super::error::PgError;

/// Every item whose `reserved` differs from the sum of its holds.
const DRIFTS: &str = "select i.inventory_id, i.available, i.reserved, coalesce(h.held, 0)::bigint \
                      from items i \
                      left join (select inventory_id, sum(quantity) as held from holds group by inventory_id) h \
                        using (inventory_id) \
                      where i.reserved <> coalesce(h.held, 0) \
                      order by i.inventory_id";

/// Sets `reserved` to the ledger's sum, moving the difference to or from
/// `available` (never below 0).
const FIX: &str = "update items i \
                      set reserved = h.held, available = greatest(i.available + i.reserved - h.held, 0) \
                     from (select it.inventory_id, coalesce(sum(ho.quantity), 0)::bigint as held \
                             from items it left join holds ho using (inventory_id) \
                            group by it.inventory_id) h \
                    where i.inventory_id = h.inventory_id and i.reserved <> h.held";

impl PgInventory {
    /// Compares each item's `reserved` with the sum of its holds in the
    /// ledger and returns every item where they differ, by `inventory_id`.
    /// With `fix`, also sets `reserved` to the ledger's sum and moves the
    /// difference to or from `available`, so `available + reserved + sold` is
    /// unchanged; only when `available` cannot give up enough units does it
    /// stop at 0 (see [`Drift::shortfall`]).
    ///
    /// One transaction, which first locks every item row (in the usual lock
    /// order), so no hold can change while the ledger is summed.
    ///
    /// # Errors
    /// [`PortError`] when PostgreSQL cannot be reached or the transaction
    /// fails (nothing is changed then).
    pub async fn reconcile(&self, fix: bool) -> Result<Vec<Drift>, PortError> {
        Ok(self.reconcile_in_one_transaction(fix).await?)
    }

    async fn reconcile_in_one_transaction(&self, fix: bool) -> Result<Vec<Drift>, PgError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("select 1 from items order by inventory_id for update", &[]).await?;
        let drifts = tx
            .query(DRIFTS, &[])
            .await?
            .iter()
            .map(|row| {
                Ok(Drift {
                    inventory_id: row.try_get(0)?,
                    available: row.try_get(1)?,
                    reserved: row.try_get(2)?,
                    ledger: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        if fix && !drifts.is_empty() {
            tx.execute(FIX, &[]).await?;
        }
        tx.commit().await?;
        Ok(drifts)
    }
}

/// An item whose `reserved` disagrees with its holds in the ledger, as found
/// by [`PgInventory::reconcile`] (the counts before any fix).
///
/// Proved by `reconcile_reports_reserved_counts_that_disagree_with_the_ledger_and_fixes_them`
/// (`adapters/tests/postgres_store.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The item.
    pub inventory_id: String,
    /// Its `available` count.
    pub available: i64,
    /// Its `reserved` count.
    pub reserved: i64,
    /// The sum of its holds in the ledger: what `reserved` should be.
    pub ledger: i64,
}

impl Drift {
    /// `ledger - reserved`: units to move from `available` to `reserved`
    /// (negative: from `reserved` back to `available`).
    #[must_use]
    pub fn difference(&self) -> i64 {
        self.ledger - self.reserved
    }

    /// Units a fix cannot take from `available` because it has too few: the
    /// total `available + reserved + sold` grows by this much (0 almost
    /// always; more means the ledger holds units that were never in stock).
    #[must_use]
    pub fn shortfall(&self) -> i64 {
        (self.difference() - self.available).max(0)
    }
}
