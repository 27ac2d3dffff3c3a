//! The schema check: `/readyz` reports PostgreSQL ready only when the
//! database records exactly this build's migrations, and a database migrated
//! by a development build from before the baseline migration is refused with
//! a pointer to how to reset it.

use cartd_adapters::postgres_store::{PgInventory, PgSettings};
use cartd_test_support::isolation::fresh_schema;
use cartd_test_support::servers::postgres_url;
use cartd_test_support::stores;

/// Runs `sql` in `schema` on a connection of its own.
async fn exec_in(schema: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("set search_path = {schema}; {sql}")).await.unwrap();
}

fn unmigrated() -> (PgInventory, String) {
    let schema = fresh_schema();
    let mut settings = PgSettings::new(postgres_url());
    settings.schema = Some(schema.clone());
    (PgInventory::connect(&settings).unwrap(), schema)
}

#[tokio::test]
async fn ready_means_the_database_records_exactly_this_builds_migrations() {
    let (inv, schema) = stores::pg_inventory_with_schema().await;
    assert!(inv.ready().await, "freshly migrated");

    exec_in(
        &schema,
        "insert into refinery_schema_history values (99, 'from_a_newer_build', '2026-11-01T10:00:00.000000000Z', '1')",
    )
    .await;
    assert!(!inv.ready().await, "a migration this build does not have");
    exec_in(&schema, "delete from refinery_schema_history where version = 99").await;
    assert!(inv.ready().await);

    exec_in(&schema, "update refinery_schema_history set checksum = '1' where version = 1").await;
    assert!(!inv.ready().await, "the baseline with other contents");
    exec_in(&schema, "delete from refinery_schema_history").await;
    assert!(!inv.ready().await, "no migration recorded");
}

#[tokio::test]
async fn a_database_from_before_the_baseline_is_not_ready_and_migrating_it_says_how_to_reset_it() {
    let (inv, schema) = unmigrated();
    exec_in("public", &format!("create schema {schema}")).await;
    // What a development build's twelve migrations left behind (the table
    // as refinery creates it).
    let mut history = String::from(
        "create table refinery_schema_history (version int4 primary key, name varchar(255), \
         applied_on varchar(255), checksum varchar(255));",
    );
    let old = [
        "ledger",
        "report_moved_units",
        "set_hold_batch",
        "set_hold_lock_order",
        "batch_locks_up_front",
        "leaner_set_hold",
        "batch_locks_only_what_it_changes",
        "drop_holds_by_item",
        "batch_prologue_by_index",
        "release_expired_holders",
        "cart_line_count",
        "expired_holders_from_the_deadline_index",
    ];
    for (v, name) in old.iter().enumerate() {
        history.push_str(&format!(
            "insert into refinery_schema_history values ({}, '{name}', '2026-11-01T10:00:00.000000000Z', '{v}');",
            v + 1
        ));
    }
    exec_in(&schema, &history).await;

    assert!(!inv.ready().await);
    let err = inv.migrate(Some(&schema)).await.unwrap_err();
    let chain = domain::error_chain(&err);
    assert!(chain.contains("docs/operations.md"), "{chain}");
    assert!(chain.contains("migration history does not match"), "{chain}");
    assert!(!inv.ready().await, "still not ready");
}

#[tokio::test]
async fn an_unmigrated_database_is_not_ready() {
    let (inv, _) = unmigrated();
    assert!(!inv.ready().await);
}
