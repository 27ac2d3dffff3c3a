//! The Lua scripts behind every mutation. Each runs atomically on the server,
//! so checking that a session is live and changing it are one step (the
//! tutorial's `EXISTS` then `HSET` let a session expire in between).
//! A [`Call`] sends `EVALSHA`, and `EVAL` with the source when the server
//! answers `NOSCRIPT` (after a restart, a failover to a replica that never
//! ran it, or `SCRIPT FLUSH`). `redis::Script` would answer `NOSCRIPT` with a
//! `SCRIPT LOAD`, which a cluster client sends to every node and which fails
//! as a whole while any node is down, even when the key's own primary is
//! healthy; `EVAL` goes where the key lives and caches the script there.
//!
//! Every script names its one key in `KEYS`, as Redis Cluster requires.
//! Deadlines are compared as numbers (milliseconds fit a Lua double exactly);
//! versions as decimal strings (by length, then by text), so every `u64` is
//! compared exactly.

use std::sync::LazyLock;

use redis::{Cmd, ToRedisArgs};

/// `KEYS[1]` session key; `ARGV[1]` deadline (ms). Replaces whatever the key
/// held with an empty session ending at the deadline. Returns 1.
pub(super) static CREATE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
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
pub(super) static APPLY: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
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
pub(super) static CLOSE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
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
pub(super) static CLAIM_KEY: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
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
pub(super) static SETTLE_KEY: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
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

/// A Lua script: its source and its SHA-1.
pub(super) struct Lua {
    code: &'static str,
    hash: String,
}

impl Lua {
    pub(super) fn new(code: &'static str) -> Self {
        Self { code, hash: redis::Script::new(code).get_hash().to_owned() }
    }

    /// A call of this script, to be given its keys and arguments.
    pub(super) fn call(&'static self) -> Call {
        Call { lua: self, keys: Vec::new(), args: Vec::new() }
    }
}

/// One call of a [`Lua`] script with its keys (`KEYS`) and arguments (`ARGV`).
pub(super) struct Call {
    lua: &'static Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call {
    /// Adds a key (`KEYS[i]`).
    pub(super) fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    /// Adds an argument (`ARGV[i]`).
    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// `EVALSHA <sha> <numkeys> <keys> <args>`.
    pub(super) fn evalsha(&self) -> Cmd {
        self.command("EVALSHA", self.lua.hash.as_bytes())
    }

    /// `EVAL <source> <numkeys> <keys> <args>`: runs the script and caches it
    /// on the node that runs it.
    pub(super) fn eval(&self) -> Cmd {
        self.command("EVAL", self.lua.code.as_bytes())
    }

    fn command(&self, name: &str, script: &[u8]) -> Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(script).arg(self.keys.len()).arg(&*self.keys).arg(&*self.args);
        cmd
    }
}
