//! `cartd reconcile`: checks each item's `reserved` count against the hold
//! ledger (the sum of its holds) and, with `--fix`, repairs the difference.
//!
//! `reserved` is a running total kept beside the ledger for speed; the ledger
//! is the truth. They can only disagree after a bug or a hand edit, and a
//! `reserved` lower than its holds is worse than a wrong number: releasing
//! those holds would take it below zero, which the database refuses. This is
//! the tool for that day.

use std::io::Write;

use adapters::postgres_store::{Drift, PgInventory};
use anyhow::Context;

use crate::compose::pg_settings;
use crate::settings::{Backend, Settings};

/// What a run found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Items whose `reserved` differed from the ledger (before any fix).
    pub drifts: Vec<Drift>,
    /// Whether they were repaired.
    pub fixed: bool,
}

impl Report {
    /// Whether the stock is consistent now: nothing differed, or it was fixed.
    #[must_use]
    pub fn consistent(&self) -> bool {
        self.drifts.is_empty() || self.fixed
    }
}

/// Compares (and with `fix` repairs) every item in the PostgreSQL database of
/// `settings`, writing one tab-separated line per differing item to `out`.
///
/// # Errors
/// When the settings are not for the `redis` backend (the in-memory stock
/// lives only inside a running process), or PostgreSQL cannot be reached or
/// has no schema yet.
pub async fn run(settings: &Settings, fix: bool, out: &mut impl Write) -> anyhow::Result<Report> {
    anyhow::ensure!(
        settings.backend == Backend::Redis,
        "reconcile works on the PostgreSQL ledger: set backend = \"redis\" (CART__BACKEND=redis) and the postgres settings"
    );
    let inventory = PgInventory::connect(&pg_settings(settings)).context("postgres settings")?;
    let drifts = inventory.reconcile(fix).await.context("reconcile failed; nothing was changed")?;
    if !drifts.is_empty() {
        writeln!(out, "inventory_id\tavailable\treserved\tledger\tdifference")?;
        for d in &drifts {
            writeln!(out, "{}\t{}\t{}\t{}\t{:+}", d.inventory_id, d.available, d.reserved, d.ledger, d.difference())?;
        }
    }
    Ok(Report { drifts, fixed: fix })
}
