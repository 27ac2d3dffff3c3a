#!/usr/bin/env bash
# Live stock fan-out under a flash sale: the wrk flash sale of scripts/perf.sh
# against a release cartd (Redis + PostgreSQL), alternately without and with
# $STREAMS live stock streams open (GET /v1/inventory/events?ids=flash-1,
# held by `cartd-loadtest streams`, one thread), in
# one run, so the holds/s ratio is comparable. For each run with streams it
# reports the events each stream got (mean per second, most in one second)
# and checks that every stream's last counts equal GET /v1/inventory/flash-1
# once the sale is over. Writes everything under $OUT.
#
#   scripts/sse-fanout.sh                        # 1,000 streams, 4 rounds of 15 s
#   STREAMS=2000 DUR=30 ROUNDS=3 scripts/sse-fanout.sh
#
# Needs root for wrk/Redis/PostgreSQL installs (scripts/services.sh). Traffic
# goes to 127.0.0.1 only; every load is bounded in time.
. "$(dirname "$0")/lib.sh"
lib_init sse-fanout
DUR=${DUR:-15}
STREAMS=${STREAMS:-1000}
ROUNDS=${ROUNDS:-4}
OUT=${OUT:-/var/tmp/cartd-sse-fanout}
PORT=18090
C=http://127.0.0.1:$PORT
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
SCHEMA=sse_fanout
mkdir -p "$OUT"
ulimit -n 65536 || ulimit -n 4096

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
scripts/services.sh
cargo build --release -p cartd -p cartd-loadtest >&2
BIN=$CARGO_TARGET_DIR/release/cartd
LOADTEST=$CARGO_TARGET_DIR/release/cartd-loadtest

pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  redis_del_prefix redis://127.0.0.1:6379 ssefan: || true
  psql_url "$PGURL" -c "drop schema if exists $SCHEMA cascade" >/dev/null 2>&1 || true
}
on_exit cleanup

psql_url "$PGURL" -c "drop schema if exists $SCHEMA cascade" >/dev/null
CART__BACKEND=redis CART__HTTP__ADDR=127.0.0.1:$PORT CART__REDIS__KEY_PREFIX=ssefan: \
CART__POSTGRES__SCHEMA=$SCHEMA CART__ADMIN__TOKEN=sse-fanout-token-0123456789 CART__LIMITS__MAX_LINES=1000 \
CART__SESSION__TTL_SECS=3600 CART__LOG__FILTER=warn CART__HTTP__MAX_CONNECTIONS=20000 CART__QUOTAS__ENABLED=false \
CART__LIVE__MAX_STREAMS=$((STREAMS + 100)) CART__STOREFRONT__ENABLED=false \
  "$BIN" >"$OUT/cartd.log" 2>&1 &
pid=$!
wait_until 20 "$pid" http_ok "$C/readyz" || die "cartd not ready (see $OUT/cartd.log)"

log "seeding flash-1 and 20,000 empty carts"
psql_url "$PGURL" -c "insert into $SCHEMA.items (inventory_id, available) values ('flash-1', 1000000000)"
empty_carts "$PORT" 20000 "$OUT/sessions.txt"

results="$OUT/results.txt"
: >"$results"
flash() { # name
  wrk -t2 -c64 -d"${DUR}s" -s "$ROOT/loadtest/wrk/flash-sale.lua" "$C" -- "$OUT/sessions.txt" flash-1 2>&1 |
    tee "$OUT/$1.log" | grep '^RESULT' | tail -n 1
}

without() { # round
  log "round $1: flash sale, no streams"
  local line
  line=$(flash "r$1_no_streams")
  echo "r$1_no_streams $line" | tee -a "$results" >&2
}

with_streams() { # round
  log "round $1: flash sale with $STREAMS streams"
  local report="$OUT/r$1_streams.json" out="$OUT/clients.out" clients line open_streams final summary
  rm -f "$out"
  "$LOADTEST" streams "$PORT" "$STREAMS" flash-1 $((DUR + 4)) "$report" >"$out" 2>"$OUT/clients.err" &
  clients=$!
  for _ in $(seq 600); do grep -q ready "$out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$out" || { cat "$OUT/clients.err" >&2; echo "streams did not open" >&2; exit 1; }
  open_streams=$(curl -s "$C/metrics" | awk '$1 == "cartd_live_streams" {print $2}')
  line=$(flash "r$1_streams")
  wait "$clients"
  final=$(curl -s "$C/v1/inventory/flash-1")
  summary=$(python3 - "$report" "$final" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); final = json.loads(sys.argv[2])
want = [final["available"], final["reserved"], final["sold"]]
equal = sum(1 for last in r["last"] if last.get("flash-1") == want)
print(f"streams={r['streams']} refused={r['refused']} events_per_stream_per_s={r['events_per_stream_per_s_mean']} "
      f"max_events_one_stream_one_s={r['events_per_stream_max_in_one_second']} lag_snapshots={r['snapshots_after_start']} "
      f"final_counts_equal={equal}/{r['streams']} final={want} client_cpu={r['client_cpu_share_of_one_core']}")
PY
)
  echo "r$1_streams $line open_streams=$open_streams $summary" | tee -a "$results" >&2
}

# Carts grow by a line per hold, so later runs are a little slower: alternate
# the order (without, with; with, without; ...) so neither side always runs
# on the bigger carts.
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then without "$round"; with_streams "$round"
  else with_streams "$round"; without "$round"; fi
done

log "summary"
python3 - "$results" <<'PY' | tee -a "$results" >&2
import re, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def rps(kind):
    return [float(re.search(r"rps=(\d+)", " ".join(r)).group(1)) for r in rows if r[0].split("_", 1)[1] == kind]
a, b = rps("no_streams"), rps("streams")
per_round = [round(y / x, 3) for x, y in zip(a, b)]
median = sorted(per_round)[len(per_round) // 2] if len(per_round) % 2 else sum(sorted(per_round)[len(per_round) // 2 - 1:][:2]) / 2
print(f"SUMMARY holds_per_s_no_streams={a} holds_per_s_with_streams={b} "
      f"ratio_with_over_without={sum(b) / len(b) / (sum(a) / len(a)):.3f} median_round_ratio={median:.3f} per_round={per_round}")
PY
