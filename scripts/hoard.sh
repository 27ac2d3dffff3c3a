#!/usr/bin/env bash
# "Hoarder vs shoppers" (issue 14): one client address hoards a flash item
# while 200 honest shoppers, each from an address of its own (127.0.1.1 ..
# 127.0.1.200), race for it, on two cartd instances (release build) sharing
# one Redis and one PostgreSQL. Run twice, quotas off then on, with fresh
# state each time; prints one summary line per run and writes JSON under $OUT.
#
#   scripts/hoard.sh                  # 500 units, 200 shoppers wanting 3, 5 % share
#   UNITS=1000 SHARE=2 scripts/hoard.sh
#
# The race (scripts/hoard_client.py): the hoarder opens carts on 16
# connections from 127.0.2.1 and asks for 100 units a cart, taking what it is
# offered on 409 insufficient_stock or 429 hold_limit_reached, for DURATION
# seconds; the shoppers arrive within the first second, each opens a cart and
# asks for WANT units, taking what is left. With quotas on, the hoarder may
# hold SHARE % of the stock (and open at most OPEN carts, CPM a minute).
# Exits 1 when a run's client tally disagrees with the server's reserved count,
# or the quotas-on run lets the hoarder hold more than its share.
# Loopback only (127.0.0.0/8); needs Redis and PostgreSQL (scripts/services.sh).
. "$(dirname "$0")/lib.sh"
lib_init hoard
UNITS=${UNITS:-500}
SHOPPERS=${SHOPPERS:-200}
WANT=${WANT:-3}
SHARE=${SHARE:-5}
OPEN=${OPEN:-10}
CPM=${CPM:-30}
DURATION=${DURATION:-6}
OUT=${OUT:-/var/tmp/cartd-hoard}
TOKEN=hoard-admin-token-0123456789
PORTS=(18291 18292)
REDIS_URL=redis://127.0.0.1:6379
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n 4096 || true
[ "${1:-}" = "-h" ] && { usage; exit 0; }

scripts/services.sh >&2
cargo build --release -p cartd >&2
BIN=$CARGO_TARGET_DIR/release/cartd

pids=()
stop_all() {
  for p in "${pids[@]}"; do stop_pid "$p"; done
  pids=()
}
cleanup() {
  stop_all
  redis_del_prefix "$REDIS_URL" hoard: || true
  psql_url "$PGURL" -c 'drop schema if exists hoard cascade' >/dev/null 2>&1 || true
}
on_exit cleanup

run() {
  local mode=$1 quotas
  stop_all
  redis_del_prefix "$REDIS_URL" hoard: || true
  psql_url "$PGURL" -c 'drop schema if exists hoard cascade' >/dev/null
  if [ "$mode" = on ]; then
    quotas="CART__QUOTAS__ENABLED=true CART__QUOTAS__HELD_SHARE_PERCENT=$SHARE CART__QUOTAS__HELD_UNITS=0"
    quotas+=" CART__QUOTAS__HELD_SHARE_FLOOR=0"
    quotas+=" CART__QUOTAS__OPEN_CARTS=$OPEN CART__QUOTAS__CARTS_PER_MINUTE=$CPM"
  else
    quotas="CART__QUOTAS__ENABLED=false"
  fi
  for i in 0 1; do
    # shellcheck disable=SC2086
    env CART__BACKEND=redis CART__HTTP__ADDR="127.0.0.1:${PORTS[$i]}" CART__REDIS__URL="$REDIS_URL" \
      CART__REDIS__KEY_PREFIX=hoard: CART__POSTGRES__URL="$PGURL" CART__POSTGRES__SCHEMA=hoard \
      CART__ADMIN__TOKEN="$TOKEN" CART__LOG__FILTER=warn $quotas \
      "$BIN" >"$OUT/cartd-$mode-$i.log" 2>&1 &
    pids+=($!)
    wait_until 30 "${pids[-1]}" http_ok "http://127.0.0.1:${PORTS[$i]}/readyz" ||
      die "cartd $i did not become ready (see $OUT/cartd-$mode-$i.log)"
  done
  curl -sf -o /dev/null -X PUT "http://127.0.0.1:${PORTS[0]}/v1/inventory/flash" \
    -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "{\"available\": $UNITS}"
  python3 scripts/hoard_client.py --base "http://127.0.0.1:${PORTS[0]}" --base "http://127.0.0.1:${PORTS[1]}" \
    --item flash --shoppers "$SHOPPERS" --want "$WANT" --duration "$DURATION" --admin-token "$TOKEN" \
    --label "quotas $mode" --out "$OUT/hoard-$mode.json"
}

rc=0
run off || rc=1
run on || rc=1
cap=$(python3 -c "import math; print(max(1, math.ceil($UNITS * $SHARE / 100)))")
held=$(python3 -c "import json; print(json.load(open('$OUT/hoard-on.json'))['hoarder']['units'])")
if [ "$held" -gt "$cap" ]; then
  log "FAIL: with quotas on the hoarder holds $held units, over its share ($cap)"
  rc=1
fi
log "figures in $OUT/hoard-off.json and $OUT/hoard-on.json"
exit "$rc"
