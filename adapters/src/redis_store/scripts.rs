//! The Lua scripts behind every mutation. Each runs atomically on the server,
//! so checking that a session is live and changing it are one step (the
//! tutorial's `EXISTS` then `HSET` let a session expire in between).
//! [`redis::Script`] sends `EVALSHA` and loads the script only when the server
//! does not have it (after a restart or `SCRIPT FLUSH`).
//!
//! Every script names its one key in `KEYS`, as Redis Cluster requires.
//! Deadlines are compared as numbers (milliseconds fit a Lua double exactly);
//! versions as decimal strings (by length, then by text), so every `u64` is
//! compared exactly.

use std::sync::LazyLock;

use redis::Script;

/// `KEYS[1]` session key; `ARGV[1]` deadline (ms). Replaces whatever the key
/// held with an empty session ending at the deadline. Returns 1.
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '@', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
",
    )
});

/// `KEYS[1]` session key; `ARGV[1]` now (ms), `ARGV[2]` the receipt's version,
/// `ARGV[3]` the receipt's deadline (ms), `ARGV[4]` the line's field, `ARGV[5]`
/// its new value. Nil when the session is missing or ended by now; otherwise
/// writes the line unless it already carries a version at least as new, moves
/// the deadline (field and key expiry) to the receipt's if that is later
/// (deadlines never move back, so receipts applied out of order cannot shorten
/// a session) and returns the whole hash, or just 1 when `ARGV[6]` is `1`
/// (the caller does not need the cart: the answer then does not grow with it).
pub(super) static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local deadline = tonumber(redis.call('HGET', KEYS[1], '@'))
if not deadline or deadline <= tonumber(ARGV[1]) then
  return false
end
local current = redis.call('HGET', KEYS[1], ARGV[4])
local stale = false
if current then
  local seen = string.match(current, '^%d+')
  local v = ARGV[2]
  if seen and (#seen > #v or (#seen == #v and seen >= v)) then
    stale = true
  end
end
if not stale then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
end
if tonumber(ARGV[3]) > deadline then
  redis.call('HSET', KEYS[1], '@', ARGV[3])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
if ARGV[6] == '1' then
  return 1
end
return redis.call('HGETALL', KEYS[1])
",
    )
});

/// `KEYS[1]` session key; `ARGV[1]` now (ms). Deletes the key; returns 1 if it
/// existed with a deadline after now, else 0.
pub(super) static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local deadline = tonumber(redis.call('HGET', KEYS[1], '@'))
local existed = redis.call('DEL', KEYS[1])
if existed == 1 and deadline and deadline > tonumber(ARGV[1]) then
  return 1
end
return 0
",
    )
});

/// `KEYS[1]` idempotency key; `ARGV[1]` the record
/// (`<until> <cart> 0 <fingerprint>`), `ARGV[2]` when it ends (ms since the
/// epoch), `ARGV[3]` now (ms). Keeps the record unless a record that ends
/// after now has the key, and returns nil; otherwise returns that record.
/// Redis drops the key at its end too (`PXAT`), so ended keys cost nothing.
pub(super) static CLAIM_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if held then
  local ends = tonumber(string.match(held, '^(%d+) '))
  if ends and ends > tonumber(ARGV[3]) then
    return held
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return false
",
    )
});

/// `KEYS[1]` idempotency key; `ARGV[1]` the cart that claimed it, `ARGV[2]`
/// when the done record ends (ms), or empty to drop it. Acts only while the
/// key still names that cart.
pub(super) static SETTLE_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if not held then
  return 0
end
local ends, cart, done, fingerprint = string.match(held, '^(%d+) (%S+) ([01]) (.*)$')
if cart ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. cart .. ' 1 ' .. fingerprint, 'PXAT', ARGV[2])
end
return 1
",
    )
});
