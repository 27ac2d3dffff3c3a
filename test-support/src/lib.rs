//! What cartd's tests share, in one place instead of a copy per test file.
//!
//! - [`servers`]: where the real Redis and PostgreSQL are (the test command
//!   starts them; `CARTD_TEST_REDIS_URL` and `CARTD_TEST_POSTGRES_URL` move
//!   them).
//! - [`isolation`]: a Redis key prefix and a PostgreSQL schema nobody else
//!   uses, so tests run at once never meet; `scripts/test.sh` clears what
//!   earlier runs left (`test-*` keys, `test_*` schemas).
//! - [`stores`]: the real adapters, connected and migrated in a fresh prefix
//!   or schema.
//! - [`cluster`]: the local Redis Cluster node by node (`scripts/redis-cluster.sh`).
//! - [`fixtures`]: ids, quantities, line changes and timestamps from literals.
//! - [`contract`]: the port contracts, written once and run against every
//!   adapter by [`session_store_contract!`] and [`inventory_contract!`].
//! - [`proxy`]: a TCP proxy a test can cut, to take a server away from cartd.
//! - `app` (feature `app`, for the app's black-box tests): `spawn_app()` on
//!   port 0 and a typed HTTP client, a Prometheus text parser, raw exchanges.
//!
//! A dev-dependency only (like linkerd2-proxy's test-support crates): nothing
//! here reaches the `cartd` binary.

#![forbid(unsafe_code)]

#[cfg(feature = "app")]
pub mod app;
pub mod cluster;
pub mod contract;
pub mod fixtures;
pub mod isolation;
pub mod proxy;
pub mod servers;
pub mod stores;

pub use isolation::Isolation;
