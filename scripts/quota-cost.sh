#!/usr/bin/env bash
# What the client quotas (issue 14) cost honest traffic: get-cart and set-line
# throughput of a release cartd with the quotas on against one with them off,
# in one run, rounds alternating (on/off order flipped each round) so that the
# machine's drift is shared out. Redis + PostgreSQL backend, one instance per
# mode on the same servers; wrk, 2 threads, 64 connections.
#
#   scripts/quota-cost.sh               # 3 rounds of 10 s per route and mode
#   ROUNDS=5 DUR=15 scripts/quota-cost.sh
#   ROUTES=set_line ON_ENV="CART__QUOTAS__HELD_SHARE_PERCENT=0 CART__QUOTAS__HELD_UNITS=1000" scripts/quota-cost.sh
#                                       # one route; other quota settings for "on"
#   ON_BIN=/path/to/cartd scripts/quota-cost.sh   # "on" runs another build (e.g. one whose
#                                       # quota script does nothing: the cost of the round trip)
#
# "On" is the shipped defaults for holds (held_share_percent = 20, so every
# set-line runs the quota script and needs the item's stock, cached for 1 s)
# with 127.0.0.1 as a trusted proxy, and every request carries an
# X-Forwarded-For naming one client per cart (10.x.y.z), as real shoppers
# are counted apart; "off" gets the same requests with quotas.enabled = false.
# The cart quotas are off in both: making the carts is not what is measured.
# Stock is 10^9 units of each of 10,000 items, so no request is refused; a
# run with any non-2xx answer is invalid (exit 1). Prints RESULT lines and the
# on/off ratio per route (medians of the rounds). Loopback only.
. "$(dirname "$0")/lib.sh"
lib_init quota-cost
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
ROUTES=${ROUTES:-get_cart set_line}
OUT=${OUT:-/var/tmp/cartd-quota-cost}
TOKEN=quota-cost-token-0123456789
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
declare -A PORT=([off]=18391 [on]=18392) PID=()
HZ=$(getconf CLK_TCK)
L=$ROOT/loadtest/wrk
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n 4096 || true
[ "${1:-}" = "-h" ] && { usage; exit 0; }

command -v wrk >/dev/null || as_root apt-get install -y -qq wrk >/dev/null
scripts/services.sh >&2
REDIS_PIDS=$(pgrep -f 'redis-server 127\.0\.0\.1:6379' | tr '\n' ' ' || true)
cargo build --release -p cartd >&2
BIN=$CARGO_TARGET_DIR/release/cartd
declare -A BINS=([off]=$BIN [on]=${ON_BIN:-$BIN})

pids=()
cleanup() {
  for p in "${pids[@]}"; do stop_pid "$p"; done
  for m in off on; do redis_del_prefix redis://127.0.0.1:6379 "qc$m:" || true; done
  psql_url "$PGURL" -c 'drop schema if exists quotacost cascade' >/dev/null 2>&1 || true
}
on_exit cleanup
cleanup

for m in off on; do
  if [ "$m" = on ]; then
    q="CART__QUOTAS__ENABLED=true CART__QUOTAS__TRUSTED_PROXIES=127.0.0.1 CART__QUOTAS__CARTS_PER_MINUTE=0 CART__QUOTAS__OPEN_CARTS=0 ${ON_ENV:-}"
  else
    q="CART__QUOTAS__ENABLED=false"
  fi
  # shellcheck disable=SC2086
  env CART__BACKEND=redis CART__HTTP__ADDR="127.0.0.1:${PORT[$m]}" CART__REDIS__KEY_PREFIX="qc$m:" \
    CART__POSTGRES__SCHEMA=quotacost CART__ADMIN__TOKEN=$TOKEN CART__SESSION__TTL_SECS=3600 \
    CART__LOG__FILTER=warn $q "${BINS[$m]}" >"$OUT/cartd-$m.log" 2>&1 &
  pids+=($!)
  PID[$m]=$!
  wait_until 30 "${pids[-1]}" http_ok "http://127.0.0.1:${PORT[$m]}/readyz" || die "cartd ($m) not ready"
done

log "seeding 10,000 items and 1,000 carts of 3 lines per instance"
psql_url "$PGURL" <<SQL
insert into quotacost.items (inventory_id, available)
select 'sku-' || g, 1000000000 from generate_series(1, 10000) g;
SQL
python3 - "$OUT" "${PORT[off]}" "${PORT[on]}" <<'PY'
import http.client, json, random, sys
out, ports = sys.argv[1], {"off": int(sys.argv[2]), "on": int(sys.argv[3])}
for mode, port in ports.items():
    c = http.client.HTTPConnection("127.0.0.1", port)
    ids = []
    for i in range(1, 1001):
        xff = {"x-forwarded-for": "10.%d.%d.%d" % (i // 65536 % 256, i // 256 % 256, i % 256)}
        c.request("POST", "/v1/carts", headers=xff)
        r = c.getresponse(); r.read()
        assert r.status == 201, (mode, r.status)
        sid = r.getheader("cart-session-id")
        for p in range(3):
            body = json.dumps({"inventory_id": "sku-%d" % random.randint(1, 10000), "quantity": 1 + p})
            c.request("PUT", "/v1/cart/items/p-%d" % (p + 1), body,
                      {"content-type": "application/json", "cart-session-id": sid, **xff})
            r = c.getresponse(); r.read()
            assert r.status == 200, (mode, r.status)
        ids.append(sid)
    open(f"{out}/sessions-{mode}.txt", "w").write("\n".join(ids) + "\n")
PY

rc=0
measure() {
  local route=$1 mode=$2 round=$3 out
  local url=http://127.0.0.1:${PORT[$mode]}
  local pg c0 r0 p0 c1 r1 p1
  pg=$(pgrep -u postgres | tr '\n' ' ')
  # shellcheck disable=SC2086
  c0=$(cpu_of "${PID[$mode]}") r0=$(cpu_of $REDIS_PIDS) p0=$(cpu_of $pg)
  case $route in
    get_cart) out=$(wrk -t2 -c64 -d"${DUR}s" -s "$L/v1-get-cart.lua" "$url" -- "$OUT/sessions-$mode.txt" /v1/cart xff) ;;
    set_line) out=$(wrk -t2 -c64 -d"${DUR}s" -s "$L/set-line.lua" "$url" -- "$OUT/sessions-$mode.txt" 10000 sku- 20 xff) ;;
  esac
  # shellcheck disable=SC2086
  c1=$(cpu_of "${PID[$mode]}") r1=$(cpu_of $REDIS_PIDS) p1=$(cpu_of $pg)
  local result requests
  result=$(grep '^RESULT' <<<"$out")
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
  # CPU per request (µs) of cartd, Redis and PostgreSQL over the run.
  local us
  us=$(python3 -c "import sys; n,hz=int(sys.argv[1]),int(sys.argv[2]); print(' '.join('%s_us=%.1f' % (k, int(v)/hz*1e6/max(n,1)) for k,v in zip(('cartd','redis','pg'), sys.argv[3:])))" \
    "$requests" "$HZ" $((c1 - c0)) $((r1 - r0)) $((p1 - p0)))
  echo "RESULT route=$route quotas=$mode round=$round ${result#RESULT } $us" | tee -a "$OUT/results.txt"
  if ! wrk_clean "$result"; then
    log "invalid run: $result"
    rc=1
  fi
}
: >"$OUT/results.txt"
for round in $(seq "$ROUNDS"); do
  order=$(ab_order "$round" off on)
  for route in $ROUTES; do
    for mode in $order; do measure "$route" "$mode" "$round"; done
  done
done
python3 - "$OUT/results.txt" <<'PY'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in open(sys.argv[1])]
for route in sorted({r["route"] for r in rows}):
    rps = {m: [float(r["rps"]) for r in rows if r["route"] == route and r["quotas"] == m] for m in ("off", "on")}
    off, on = statistics.median(rps["off"]), statistics.median(rps["on"])
    cpu = {m: {k: statistics.median(float(r[k + "_us"]) for r in rows if r["route"] == route and r["quotas"] == m)
               for k in ("cartd", "redis", "pg")} for m in ("off", "on")}
    print(f"SUMMARY route={route} cpu_us_per_request off={cpu['off']} on={cpu['on']}")
    print(f"SUMMARY route={route} off_rps={off:.0f} on_rps={on:.0f} on/off={on / off:.3f} "
          f"rounds_off={[round(x) for x in rps['off']]} rounds_on={[round(x) for x in rps['on']]}")
PY
exit "$rc"
