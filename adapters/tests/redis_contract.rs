//! The session-store contract (see `cartd_test_support::contract`) against
//! [`RedisSessions`] on a real Redis, a fresh key prefix per test.
//!
//! The clock is the system clock: the store compares the stored deadline with
//! the `now` it is given, so the contract's later `now`s need no sleeping, and
//! the keys' real expiry (`PEXPIREAT`) lies after every instant a test reads at.

use cartd_adapters::SystemClock;
use cartd_adapters::redis_store::RedisSessions;

async fn redis_sessions() -> (RedisSessions, SystemClock) {
    (cartd_test_support::stores::redis_sessions().await, SystemClock)
}

mod session_store {
    cartd_test_support::session_store_contract!(super::redis_sessions);
}

async fn redis_quotas() -> (cartd_adapters::redis_store::RedisQuotas, SystemClock) {
    (cartd_adapters::redis_store::RedisQuotas::new(cartd_test_support::stores::redis_sessions().await), SystemClock)
}

mod quotas {
    cartd_test_support::quotas_contract!(super::redis_quotas);
}
