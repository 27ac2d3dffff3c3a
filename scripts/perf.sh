#!/usr/bin/env bash
# Side-by-side performance run: cartd (release, Redis + PostgreSQL backend)
# against the tutorial's own service and the raw servers, in one run on this
# machine, so that ratios are comparable. Prints RESULT lines and a summary
# table; writes everything under $OUT (default /var/tmp/cartd-perf).
#
#   scripts/perf.sh                 # all comparisons, 15 s each
#   DUR=30 scripts/perf.sh          # longer runs
#
# Needs: root (installs wrk, Redis, PostgreSQL, Node's tutorial deps when
# missing) and Node.js + npm for the tutorial. The peers it compares with are
# in loadtest/peers (see its README): a clone of this repository is enough.
# cartd runs with its shipped sweeper settings; the storm too (scripts/storm.sh).
# Exits 1 when a measurement is invalid: a wrk run with non-2xx answers or
# socket errors where none are expected, or the scarce flash sale holding
# anything but exactly its stock.
# Traffic goes to 127.0.0.1 only; every load is bounded in time.
# Redis Cluster against one server: scripts/perf-cluster.sh.
. "$(dirname "$0")/lib.sh"
lib_init perf
PEERS=$ROOT/loadtest/peers
DUR=${DUR:-15}
OUT=${OUT:-/var/tmp/cartd-perf}
TOKEN=perf-admin-token-0123456789
CARTD_PORT=18080
TUT_PORT=13000
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
mkdir -p "$OUT"
ulimit -n 65536 || ulimit -n 4096

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
scripts/services.sh
cargo build --release -p cartd >&2
BIN=$CARGO_TARGET_DIR/release/cartd

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  redis_del_prefix redis://127.0.0.1:6379 perf: || true
  redis-cli del bench:h >/dev/null || true
  psql_url "$PGURL" -c 'drop schema if exists perf cascade' >/dev/null 2>&1 || true
  psql_url "$PGURL" -c 'drop table if exists stock' >/dev/null 2>&1 || true
}
on_exit cleanup

# The tutorial's service, as published (its own Redis keys: sessions:*, cart:*).
# (A copy under $OUT, so node_modules stays out of the clone; refreshed when
# the peer's files change.)
if ! diff -q "$PEERS/tutorial/server.js" "$OUT/te/server.js" >/dev/null 2>&1 ||
  ! diff -q "$PEERS/tutorial/package-lock.json" "$OUT/te/package-lock.json" >/dev/null 2>&1 ||
  [ ! -d "$OUT/te/node_modules" ]; then
  rm -rf "$OUT/te" && cp -r "$PEERS/tutorial" "$OUT/te"
  (cd "$OUT/te" && npm ci --silent >/dev/null)
fi
(cd "$OUT/te" && PORT=$TUT_PORT exec node server.js >"$OUT/tutorial.log" 2>&1) &
pids+=($!)

psql_url "$PGURL" -c 'drop schema if exists perf cascade' >/dev/null
CART__BACKEND=redis CART__HTTP__ADDR=127.0.0.1:$CARTD_PORT CART__REDIS__KEY_PREFIX=perf: \
CART__POSTGRES__SCHEMA=perf CART__ADMIN__TOKEN=$TOKEN CART__LIMITS__MAX_LINES=1000 \
CART__SESSION__TTL_SECS=3600 CART__LOG__FILTER=warn CART__HTTP__MAX_CONNECTIONS=20000 \
CART__QUOTAS__ENABLED=false \
  "$BIN" >"$OUT/cartd.log" 2>&1 &
pids+=($!)
peers_ready() {
  http_ok "http://127.0.0.1:$CARTD_PORT/readyz" && curl -sf -o /dev/null -X POST \
    "http://127.0.0.1:$TUT_PORT/add-to-cart" -H 'content-type: application/json' \
    -d '{"product_id":"warm","inventory_id":"inv-1","quantity":1}'
}
wait_until 20 "" peers_ready || true

log "seeding stock and sessions"
psql_url "$PGURL" <<SQL
insert into perf.items (inventory_id, available)
select 'inv-' || g, 1000000000 from generate_series(1, 100) g
union all select 'sku-' || g, 1000000000 from generate_series(1, 10000) g
union all select 'flash-1', 1000000000
union all select 'flash-scarce', ${SCARCE_UNITS:-1000};
SQL
# Separate carts per measurement: the tutorial routes' runs add lines to their
# carts, and a cart of hundreds of lines is not the 3-line cart the HGETALL
# reference reads.
filled_carts "$CARTD_PORT" 1000 "$OUT/cartd-sessions.txt"
filled_carts "$CARTD_PORT" 1000 "$OUT/cartd-v1-sessions.txt"
filled_carts "$CARTD_PORT" 1000 "$OUT/cartd-hold-sessions.txt"
filled_carts "$TUT_PORT" 1000 "$OUT/tutorial-sessions.txt"
# The flash sale: many shoppers, each adding the hot item to a small cart of
# their own. 20,000 empty carts keep every cart at a few lines over the run
# (a handful of requests each); the older run on the 1,000 carts above grew
# them to hundreds of lines, so every answer carried a cart of hundreds of
# lines and the run measured that more than the holds.
empty_carts "$CARTD_PORT" 20000 "$OUT/cartd-flash-sessions.txt"
redis-cli hset bench:h a 1 b 2 c 3 >/dev/null
psql_url "$PGURL" -f "$PEERS/pgbench/stock-setup.sql" >/dev/null

results="$OUT/results.txt"
: >"$results"
invalid=0
# run NAME COMMAND...: runs one measurement and keeps its result line. A wrk
# run whose answers were not all 2xx, or that had socket errors, measured
# something else than it claims: its line is marked INVALID and perf.sh
# exits 1 at the end. (Runs that expect refusals count them themselves.)
run() { # name, command...
  local name=$1; shift
  log "$name"
  local line mark=""
  line=$("$@" 2>&1 | tr '\r' '\n' | tee "$OUT/$name.log" | grep -E '^RESULT|requests per second|^tps = ' | tail -n 1)
  if [[ "$line" == *non2xx=* ]]; then
    local non2xx errors
    non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
    errors=$(sed -E 's/.*connect_err=([0-9]+) read_err=([0-9]+) write_err=([0-9]+) timeout=([0-9]+).*/\1 \2 \3 \4/' <<<"$line")
    if [ "$non2xx" != 0 ] && [ "${EXPECT_REFUSALS:-0}" != 1 ]; then
      mark=" INVALID(non2xx=$non2xx)"
      invalid=$((invalid + 1))
    elif [ "$errors" != "0 0 0 0" ]; then
      # Socket errors (wrk's 2 s timeout included) make a cartd figure
      # invalid; for a reference (the tutorial) they are part of what it
      # does under that load, and are only noted.
      if [[ "$name" == cartd_* ]]; then
        mark=" INVALID(connect read write timeout = $errors)"
        invalid=$((invalid + 1))
      else
        mark=" NOTE(reference socket errors: connect read write timeout = $errors)"
      fi
    fi
  elif [ -z "$line" ]; then
    mark=" INVALID(no result line; see $OUT/$name.log)"
    invalid=$((invalid + 1))
  fi
  printf '%s %s%s\n' "$name" "$line" "$mark" | tee -a "$results" >&2
}
L="$ROOT/loadtest/wrk"
C=http://127.0.0.1:$CARTD_PORT
T=http://127.0.0.1:$TUT_PORT
run tutorial_get_cart_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/tutorial-get-cart.lua" "$T" -- "$OUT/tutorial-sessions.txt"
run cartd_get_cart_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/tutorial-get-cart.lua" "$C" -- "$OUT/cartd-sessions.txt"
run tutorial_get_cart_c512 wrk -t2 -c512 -d"${DUR}s" -s "$L/tutorial-get-cart.lua" "$T" -- "$OUT/tutorial-sessions.txt"
run cartd_get_cart_c512 wrk -t2 -c512 -d"${DUR}s" -s "$L/tutorial-get-cart.lua" "$C" -- "$OUT/cartd-sessions.txt"
run tutorial_add_to_cart_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/tutorial-add-to-cart.lua" "$T" -- "$OUT/tutorial-sessions.txt"
run cartd_add_to_cart_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/tutorial-add-to-cart.lua" "$C" -- "$OUT/cartd-sessions.txt"
run cartd_add_to_cart_c512 wrk -t2 -c512 -d"${DUR}s" -s "$L/tutorial-add-to-cart.lua" "$C" -- "$OUT/cartd-sessions.txt"
run redis_benchmark_hgetall_c64 redis-benchmark -q -c 64 -n $((DUR * 40000)) HGETALL bench:h
run cartd_v1_get_cart_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/v1-get-cart.lua" "$C" -- "$OUT/cartd-v1-sessions.txt"
run pgbench_spread_c64 su postgres -c "PGPASSWORD=cartd pgbench -h 127.0.0.1 -U cartd -n -c 64 -j 2 -T $DUR -f $PEERS/pgbench/spread-rows.sql cartd"
run cartd_set_line_spread_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/set-line.lua" "$C" -- "$OUT/cartd-hold-sessions.txt" 10000 sku- 20
run pgbench_hot_row_c64 su postgres -c "PGPASSWORD=cartd pgbench -h 127.0.0.1 -U cartd -n -c 64 -j 2 -T $DUR -f $PEERS/pgbench/hot-row.sql cartd"
run cartd_flash_sale_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/flash-sale.lua" "$C" -- "$OUT/cartd-flash-sessions.txt" flash-1
run cartd_flash_sale_1000_carts_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/flash-sale.lua" "$C" -- "$OUT/cartd-hold-sessions.txt" flash-1
log "flash-1 after the flash sale"
curl -s "$C/v1/inventory/flash-1" | tee -a "$results" >&2
echo >>"$results"
# The flash sale on scarce stock: far more requests than units, so the
# refusals and the last units are what is measured. Every answer must be a
# hold (200) or a refusal (409), exactly the stock must end up held, none
# available, and the holds answered must be exactly the stock.
SCARCE=${SCARCE_UNITS:-1000}
EXPECT_REFUSALS=1 run cartd_flash_scarce_c64 wrk -t2 -c64 -d"${DUR}s" -s "$L/flash-scarce.lua" "$C" -- \
  "$OUT/cartd-flash-sessions.txt" flash-scarce
answers=$(grep '^ANSWERS' "$OUT/cartd_flash_scarce_c64.log" | tail -n 1)
counts=$(curl -s "$C/v1/inventory/flash-scarce")
read -r held refused other < <(sed -E 's/ANSWERS held=([0-9]+) refused=([0-9]+) other=([0-9]+)/\1 \2 \3/' <<<"$answers")
read -r avail resv sold < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["available"], d["reserved"], d["sold"])' "$counts")
verdict=ok
if [ "${held:-x}" != "$SCARCE" ] || [ "${other:-x}" != 0 ] || [ "$avail" != 0 ] || [ "$resv" != "$SCARCE" ] || [ "$sold" != 0 ] ||
  [ "${refused:-0}" -le 0 ]; then
  verdict=FAIL
  invalid=$((invalid + 1))
fi
printf 'flash_scarce_check %s stock=%s held_answers=%s refused_answers=%s other_answers=%s available=%s reserved=%s sold=%s\n' \
  "$verdict" "$SCARCE" "$held" "$refused" "$other" "$avail" "$resv" "$sold" | tee -a "$results" >&2
# The storm gets a fresh cartd and schema: the runs above leave this one's
# tables full of dead rows, which is not what a storm meets in production.
kill "${pids[1]}" 2>/dev/null || true
run expiry_storm env CARTS="${STORM_CARTS:-100000}" LEAD="${STORM_LEAD:-30}" scripts/storm.sh
log "results in $results"
cat "$results"
if [ "$invalid" -ne 0 ]; then
  echo "perf.sh: $invalid measurements are INVALID (non-2xx answers or socket errors, or a failed check); see above" >&2
  exit 1
fi
