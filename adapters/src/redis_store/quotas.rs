//! [`RedisQuotas`]: the client quotas in Redis, shared by every instance.
//!
//! Each check is one Lua script on keys of one client, all carrying the
//! client as their hash tag (`{prefix}lim:{<client>}:...`), so a check is one
//! atomic step on one slot, in a cluster as on one server. Every count
//! carries its cart's deadline (as a sorted-set score or in the value) and is
//! dropped by the next check after it, so a cart that ends by expiry or by the
//! sweeper frees the quota at its deadline with no event needed; keys expire
//! after their last deadline.
//!
//! # Key layout (`c` the client, `i` an item, `x` a cart)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}lim:{c}:n:<minute>` | string | carts `c` opened in that minute (expires after it) |
//! | `{prefix}lim:{c}:open` | zset | `c`'s open carts, scored by deadline (ms) |
//! | `{prefix}lim:{c}:h:<i>` | hash | cart → `"<units> <deadline ms>"`: what `c`'s carts hold of `i` |
//! | `{prefix}lim:{c}:ci:<x>` | set | the items cart `x` is counted for (to forget it) |
//! | `{prefix}lim:cart:{x}` | string | the client cart `x` is counted for |
//! | `{prefix}lim:refused` | zset | `"<client> <limit>"` scored by the time of the last refusal |

use std::sync::LazyLock;

use domain::ports::{PortError, Quotas};
use domain::quota::{CartAdmission, ClientCount, ClientKey, HoldAdmission, LimitKind, RECENT_REFUSALS_SECS, Standing};
use domain::{CartId, InventoryId, Timestamp};

use super::scripts::Lua;
use super::sessions::Request;
use super::{Error, RedisSessions};

/// How long the bookkeeping of a cart (its client, its items) outlives the
/// cart's deadline, so a sliding deadline moved by another instance does not
/// lose it. Stale bookkeeping only names a cart that counts for nothing.
const BOOKKEEPING_GRACE_MS: i64 = 3_600_000;

/// `KEYS[1]` this minute's counter, `KEYS[2]` the open set; `ARGV[1]` now,
/// `ARGV[2]` per-minute limit (`-1` off), `ARGV[3]` open limit (`-1` off),
/// `ARGV[4]` the cart, `ARGV[5]` its deadline, `ARGV[6]` the end of this
/// minute (ms). Returns `{0}` when admitted, `{1, retry_ms}` (per minute) or
/// `{2, retry_ms}` (open) when refused.
static ADMIT_CART: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local now = tonumber(ARGV[1])
local per_minute = tonumber(ARGV[2])
local open = tonumber(ARGV[3])
local opened = tonumber(redis.call('GET', KEYS[1]) or '0')
if per_minute >= 0 and opened >= per_minute then
  return {1, tonumber(ARGV[6]) - now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if open >= 0 and redis.call('ZCARD', KEYS[2]) >= open then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tonumber(first[2]) - now}
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return {0}
",
    )
});

/// `KEYS[1]` the (client, item) hash, `KEYS[2]` the open set, `KEYS[3]` the
/// cart's item set; `ARGV[1]` now, `ARGV[2]` the cart, `ARGV[3]` units,
/// `ARGV[4]` cap, `ARGV[5]` deadline, `ARGV[6]` the item, `ARGV[7]` the
/// bookkeeping's expiry, `ARGV[8]` `1` when the deadline moves the cart
/// (sliding: the cart's counts of other items move too), `0` when a cart
/// known as open keeps its own; `ARGV[9]` the prefix of the client's item
/// hashes (`{prefix}lim:{c}:h:`, same slot). Returns
/// `{0, previous, owner}` when admitted (`owner` 1: the cart's first counted
/// item and not a cart known as open, so its client must be recorded),
/// `{1, may_hold, retry_ms, previous}` when refused.
static ADMIT_HOLD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
local now = tonumber(ARGV[1])
local cart = ARGV[2]
local units = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local deadline = tonumber(ARGV[5])
local open = redis.call('ZSCORE', KEYS[2], cart)
if open and tonumber(open) <= now then open = false end
if open and ARGV[8] == '0' then deadline = tonumber(open) end
local all = redis.call('HGETALL', KEYS[1])
local others, previous, first, last, owner = 0, 0, nil, 0, 0
for k = 1, #all, 2 do
  local u, d = string.match(all[k + 1], '^(%d+) (%d+)$')
  u, d = tonumber(u), tonumber(d)
  if not d or d <= now then
    redis.call('HDEL', KEYS[1], all[k])
  elseif all[k] == cart then
    previous = u
  else
    others = others + u
    if not first or d < first then first = d end
    if d > last then last = d end
  end
end
if units > previous and others + units > cap then
  local may = cap - others
  if may < 0 then may = 0 end
  return {1, may, (first or now) - now, previous}
end
if units == 0 then
  redis.call('HDEL', KEYS[1], cart)
else
  redis.call('HSET', KEYS[1], cart, units .. ' ' .. deadline)
  if deadline > last then last = deadline end
  if redis.call('SADD', KEYS[3], ARGV[6]) == 1 and not open and redis.call('SCARD', KEYS[3]) == 1 then
    owner = 1
  end
  redis.call('PEXPIREAT', KEYS[3], ARGV[7])
end
if last > 0 then
  redis.call('PEXPIREAT', KEYS[1], last)
end
if ARGV[8] == '1' then
  -- Sliding expiry: the whole cart lives on, so do its other items' counts
  -- (else a cart kept alive by one line would free the others' quota).
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    local key = ARGV[9] .. other
    local v = redis.call('HGET', key, cart)
    if v then
      local u, d = string.match(v, '^(%d+) (%d+)$')
      if d and tonumber(d) < deadline then
        redis.call('HSET', key, cart, u .. ' ' .. deadline)
        redis.call('PEXPIREAT', key, deadline, 'GT')
      end
    end
  end
end
if open and tonumber(open) < deadline then
  redis.call('ZADD', KEYS[2], deadline, cart)
  local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], newest[2])
end
return {0, previous, owner}
",
    )
});

/// `KEYS[1]` the open set, `KEYS[2]` the cart's item set; `ARGV[1]` the
/// cart, `ARGV[2]` the prefix of the client's item hashes
/// (`{prefix}lim:{c}:h:`, same slot). Stops counting the cart. Returns 1.
static FORGET: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
for _, item in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('HDEL', ARGV[2] .. item, ARGV[1])
end
redis.call('DEL', KEYS[2])
return 1
",
    )
});

/// `KEYS[1]` the refusals; `ARGV[1]` now, `ARGV[2]` `"<client> <limit>"`,
/// `ARGV[3]` the oldest time kept, `ARGV[4]` how long the key lasts (ms).
static REFUSED: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
",
    )
});

/// The client quotas in Redis, on the session store's connections.
///
/// Invariant: the quotas contract, each check one script on one hash slot. Proved by
/// `adapters/tests/redis_contract.rs` (`quotas` module); on a Redis Cluster by the same contract
/// in `adapters/tests/redis_cluster.rs`.
#[derive(Clone, Debug)]
pub struct RedisQuotas {
    redis: RedisSessions,
}

impl RedisQuotas {
    /// Quotas kept under the store's key prefix, sharing its pool.
    #[must_use]
    pub fn new(redis: RedisSessions) -> Self {
        Self { redis }
    }

    fn client_key(&self, client: &ClientKey, rest: &str) -> String {
        format!("{}lim:{{{client}}}:{rest}", self.redis.key_prefix())
    }

    fn cart_key(&self, cart: CartId) -> String {
        format!("{}lim:cart:{{{cart}}}", self.redis.key_prefix())
    }

    fn refused_key(&self) -> String {
        format!("{}lim:refused", self.redis.key_prefix())
    }

    async fn remember_owner(&self, cart: CartId, client: &ClientKey, deadline: Timestamp) -> Result<(), Error> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.cart_key(cart))
            .arg(client.as_str())
            .arg("PXAT")
            .arg(deadline.as_millis().saturating_add(BOOKKEEPING_GRACE_MS));
        self.redis.exec::<()>("quota owner", Request::Cmd(&cmd)).await
    }
}

/// Milliseconds as whole seconds, at least 1.
fn secs(ms: i64) -> u32 {
    u32::try_from(ms.max(0).saturating_add(999) / 1000).unwrap_or(u32::MAX).max(1)
}

fn limit_arg(v: Option<u32>) -> i64 {
    v.map_or(-1, i64::from)
}

/// Escapes the glob characters of `s` for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Quotas for RedisQuotas {
    async fn admit_cart(
        &self,
        client: &ClientKey,
        cart: CartId,
        deadline: Timestamp,
        now: Timestamp,
        per_minute: Option<u32>,
        open: Option<u32>,
    ) -> Result<CartAdmission, PortError> {
        let minute = now.as_millis().div_euclid(60_000);
        let mut inv = ADMIT_CART.call();
        inv.key(self.client_key(client, &format!("n:{minute}")))
            .key(self.client_key(client, "open"))
            .arg(now.as_millis())
            .arg(limit_arg(per_minute))
            .arg(limit_arg(open))
            .arg(cart.to_string())
            .arg(deadline.as_millis())
            .arg((minute + 1) * 60_000);
        let answer: Vec<i64> = self.redis.exec("quota admit cart", Request::Script(&inv)).await?;
        match answer.as_slice() {
            [0] => {
                self.remember_owner(cart, client, deadline).await?;
                Ok(CartAdmission::Admitted)
            }
            [1, ms] => Ok(CartAdmission::Refused { limit: LimitKind::CartsPerMinute, retry_after_secs: secs(*ms) }),
            [2, ms] => Ok(CartAdmission::Refused { limit: LimitKind::OpenCarts, retry_after_secs: secs(*ms) }),
            other => Err(Error::Protocol(format!("admit cart answered {other:?}")).into()),
        }
    }

    async fn admit_hold(
        &self,
        client: &ClientKey,
        cart: CartId,
        item: &InventoryId,
        units: u32,
        cap: u32,
        deadline: Timestamp,
        moves: bool,
        now: Timestamp,
    ) -> Result<HoldAdmission, PortError> {
        let mut inv = ADMIT_HOLD.call();
        inv.key(self.client_key(client, &format!("h:{item}")))
            .key(self.client_key(client, "open"))
            .key(self.client_key(client, &format!("ci:{cart}")))
            .arg(now.as_millis())
            .arg(cart.to_string())
            .arg(units)
            .arg(cap)
            .arg(deadline.as_millis())
            .arg(item.as_str())
            .arg(deadline.as_millis().saturating_add(BOOKKEEPING_GRACE_MS))
            .arg(u8::from(moves))
            .arg(self.client_key(client, "h:"));
        let answer: Vec<i64> = self.redis.exec("quota admit hold", Request::Script(&inv)).await?;
        match answer.as_slice() {
            [0, previous, owner] => {
                let previous = u32::try_from(*previous).unwrap_or(0);
                // The first item this cart counts, and a cart not made under
                // a quota on carts (those are recorded when made): record its
                // client, so a checkout or an abandon can free its units. One
                // more round trip, once per cart.
                if *owner == 1 {
                    self.remember_owner(cart, client, deadline).await?;
                }
                Ok(HoldAdmission::Admitted { previous })
            }
            [1, may, ms, holding] => Ok(HoldAdmission::Refused {
                may_hold: u32::try_from(*may).unwrap_or(0),
                retry_after_secs: secs(*ms),
                holding: u32::try_from(*holding).unwrap_or(0),
            }),
            other => Err(Error::Protocol(format!("admit hold answered {other:?}")).into()),
        }
    }

    async fn forget_cart(&self, cart: CartId, _now: Timestamp) -> Result<(), PortError> {
        let mut get = redis::cmd("GETDEL");
        get.arg(self.cart_key(cart));
        let owner: Option<String> = self.redis.exec("quota owner", Request::Cmd(&get)).await?;
        let Some(client) = owner.and_then(|c| ClientKey::new(c).ok()) else { return Ok(()) };
        let mut inv = FORGET.call();
        inv.key(self.client_key(&client, "open"))
            .key(self.client_key(&client, &format!("ci:{cart}")))
            .arg(cart.to_string())
            .arg(self.client_key(&client, "h:"));
        self.redis.exec::<i64>("quota forget", Request::Script(&inv)).await?;
        Ok(())
    }

    async fn note_refusal(&self, client: &ClientKey, limit: LimitKind, now: Timestamp) -> Result<(), PortError> {
        let mut inv = REFUSED.call();
        inv.key(self.refused_key())
            .arg(now.as_millis())
            .arg(format!("{client} {}", limit.as_str()))
            .arg(now.as_millis() - i64::from(RECENT_REFUSALS_SECS) * 1000)
            .arg(i64::from(RECENT_REFUSALS_SECS) * 1000);
        self.redis.exec::<i64>("quota refusal", Request::Script(&inv)).await?;
        Ok(())
    }

    async fn standing(&self, item: Option<&InventoryId>, top: usize, now: Timestamp) -> Result<Standing, PortError> {
        let since = now.as_millis() - i64::from(RECENT_REFUSALS_SECS) * 1000;
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.refused_key()).arg("+inf").arg(format!("({since}")).arg("BYSCORE").arg("REV");
        let recent: Vec<String> = self.redis.exec("quota standing", Request::Cmd(&cmd)).await?;
        let refused = recent
            .iter()
            .filter_map(|m| {
                let (client, limit) = m.rsplit_once(' ')?;
                let limit = LimitKind::ALL.into_iter().find(|l| l.as_str() == limit)?;
                Some((ClientKey::new(client).ok()?, limit))
            })
            .collect();
        let mut top_holders = Vec::new();
        if let Some(item) = item {
            // An admin route during a sale, not a hot path: walk the item's
            // hashes (one per client holding it; on a cluster, on every
            // primary), then read each through the routed path.
            let prefix = self.redis.key_prefix();
            let pattern = format!("{}lim:{{*}}:h:{}", glob_escape(prefix), glob_escape(item.as_str()));
            for key in self.redis.scan_keys("quota standing", &pattern).await? {
                let Some(client) = key
                    .strip_prefix(prefix)
                    .and_then(|k| k.strip_prefix("lim:{"))
                    .and_then(|k| k.split_once('}'))
                    .and_then(|(c, _)| ClientKey::new(c).ok())
                else {
                    continue;
                };
                let mut get = redis::cmd("HVALS");
                get.arg(&key);
                let values: Vec<String> = self.redis.exec("quota standing", Request::Cmd(&get)).await?;
                let count: u64 = values
                    .iter()
                    .filter_map(|v| {
                        let (u, d) = v.split_once(' ')?;
                        (d.parse::<i64>().ok()? > now.as_millis()).then(|| u.parse::<u64>().ok())?
                    })
                    .sum();
                if count > 0 {
                    top_holders.push(ClientCount { client, count });
                }
            }
            top_holders.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.client.cmp(&b.client)));
            top_holders.truncate(top);
        }
        Ok(Standing { refused, top_holders })
    }
}
