//! The session-store contract (see `contract/mod.rs`) run against
//! [`RedisSessions`] on a real Redis.
//!
//! Each test gets a store with a fresh random key prefix, so tests running at
//! once (or earlier runs' keys, which expire by themselves) never meet. The
//! clock is the system clock: the store compares the stored deadline with the
//! `now` it is given, so the contract's later `now`s need no sleeping, and the
//! keys' real expiry (`PEXPIREAT`) lies after every instant a test reads at.
//!
//! `CARTD_TEST_REDIS_URL` overrides the server (default
//! `redis://127.0.0.1:6379`; `scripts/services.sh` starts one).

// Only the session suite runs here; `dead_code` alone (as `contract/mod.rs`
// suggests) does not silence the unused inventory macro and its re-export.
#[allow(dead_code, unused_macros, unused_imports)]
mod contract;

use std::error::Error as _;

use cartd_adapters::SystemClock;
use cartd_adapters::redis_store::{RedisSessions, RedisSettings};
use domain::CartId;

fn redis_url() -> String {
    std::env::var("CARTD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn redis_sessions() -> (RedisSessions, SystemClock) {
    let url = redis_url();
    let mut settings = RedisSettings::new(url.clone());
    settings.key_prefix = format!("cartd-test:{}:", CartId::random());
    match RedisSessions::connect(&settings).await {
        Ok(store) => (store, SystemClock),
        Err(e) => {
            let cause = e.source().map(ToString::to_string).unwrap_or_default();
            panic!("Redis at {url} is unreachable ({e}: {cause}); run scripts/services.sh or set CARTD_TEST_REDIS_URL")
        }
    }
}

mod session_store {
    crate::contract::session_store_contract!(super::redis_sessions);
}
