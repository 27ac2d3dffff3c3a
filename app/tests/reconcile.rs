//! `cartd reconcile` as an operator runs it: the binary, against the
//! PostgreSQL ledger of a running deployment (Redis and PostgreSQL from the
//! test command).

use cartd_test_support::app as support;

use std::process::{Command, Output};

use support::{Isolation, postgres_url, spawn_real_app_in};

fn reconcile(iso: &Isolation, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cartd"))
        .arg("reconcile")
        .args(args)
        .env("CART__BACKEND", "redis")
        .env("CART__POSTGRES__URL", postgres_url())
        .env("CART__POSTGRES__SCHEMA", &iso.schema)
        .env("CART__LOG__FILTER", "warn")
        .output()
        .expect("cartd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn corrupt(iso: &Isolation, sql: &str) {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("set search_path = {}; {sql}", iso.schema)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_drift_with_exit_1_and_fix_repairs_it_keeping_totals() {
    let iso = Isolation::new();
    let app = spawn_real_app_in(&iso, &[]).await;
    app.set_stock("rec-a", 10).await;
    app.set_stock("rec-b", 10).await;
    let cart = app.set_line_new("p1", "rec-a", 3).await.session();
    assert_eq!(app.set_line(&cart, "p2", "rec-b", 2).await.status, 200);

    let out = reconcile(&iso, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "nothing to report");

    corrupt(&iso, "update items set reserved = 9 where inventory_id = 'rec-a'").await;
    let out = reconcile(&iso, &[]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "inventory_id\tavailable\treserved\tledger\tdifference\nrec-a\t7\t9\t3\t-6\n");
    assert!(text(&out.stderr).contains("1 item(s) differ"), "{}", text(&out.stderr));
    assert_eq!(app.stock("rec-a").await, (7, 9, 0), "a report changes nothing");

    let out = reconcile(&iso, &["--fix"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("rec-a\t7\t9\t3\t-6"), "{}", text(&out.stdout));
    // available + reserved + sold stays 16: the 6 extra units go back to available.
    assert_eq!(app.stock("rec-a").await, (13, 3, 0));
    assert_eq!(app.stock("rec-b").await, (8, 2, 0));

    let out = reconcile(&iso, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    // The deployment goes on: checkout sells what the ledger holds.
    let res = app.request(http::Method::POST, "/v1/cart/checkout", &[("cart-session-id", &cart)], None).await;
    assert_eq!(res.status, 201);
    assert_eq!(app.stock("rec-a").await, (13, 0, 3));
    app.stop().await;
}

#[test]
fn reconcile_needs_the_postgres_backend_and_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_cartd"))
        .arg("reconcile")
        .env("CART__BACKEND", "memory")
        .output()
        .expect("cartd runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("backend"), "{}", text(&out.stderr));
}

#[test]
fn reconcile_against_an_unreachable_database_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_cartd"))
        .args(["reconcile", "--fix"])
        .env("CART__BACKEND", "redis")
        .env("CART__POSTGRES__URL", "postgres://cartd:cartd@127.0.0.1:1/cartd")
        .env("CART__POSTGRES__TIMEOUT_MS", "500")
        .output()
        .expect("cartd runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("reconcile failed"), "{}", text(&out.stderr));
}
