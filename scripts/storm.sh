#!/usr/bin/env bash
# The expiry storm on a fresh cartd: CARTS carts (default 100,000), one unit
# each, all with the same deadline LEAD seconds away (default 30), written
# through the adapters by benches/examples/expiry_storm.rs; then the time from
# the deadline until every unit is back in `available` (p50/p99/p100, polled
# every 20 ms), as this cartd's listener and sweeper see to it.
#
#   scripts/storm.sh                      # 100,000 carts
#   CARTS=20000 scripts/storm.sh
#   EXTRA="CART__LISTENER__ENABLED=false" scripts/storm.sh
#   CARTD=/path/to/other/cartd scripts/storm.sh   # A/B runs of two builds
#
# Runs its own cartd (release, Redis + PostgreSQL backend) in a key prefix and
# schema of its own, so earlier load in other schemas does not weigh on it.
# Sweeper: cartd's shipped settings (docs/configuration.md); try others with
# EXTRA, e.g. EXTRA="CART__SWEEPER__BATCH=10000 CART__SWEEPER__INTERVAL_MS=200".
. "$(dirname "$0")/lib.sh"
lib_init storm
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
PORT=${STORM_PORT:-18282}
scripts/services.sh >&2
cargo build --release -p cartd-benches --example expiry_storm >&2
cargo build --release -p cartd >&2
clean() {
  psql_url "$PGURL" -c 'drop schema if exists storm cascade' >/dev/null 2>&1 || true
  redis_del_prefix redis://127.0.0.1:6379 storm: || true
}
clean
# shellcheck disable=SC2086
env CART__BACKEND=redis CART__HTTP__ADDR=127.0.0.1:$PORT CART__REDIS__KEY_PREFIX=storm: \
  CART__POSTGRES__SCHEMA=storm CART__ADMIN__TOKEN=storm-admin-token-0123456789 CART__LOG__FILTER=warn CART__QUOTAS__ENABLED=false \
  ${EXTRA:-} \
  "${CARTD:-$CARGO_TARGET_DIR/release/cartd}" >/var/tmp/cartd-storm.log 2>&1 &
PID=$!
on_exit clean
on_exit "stop_pid $PID"
wait_until 20 "$PID" http_ok "http://127.0.0.1:$PORT/readyz" || die "cartd not ready (see /var/tmp/cartd-storm.log)"
"$CARGO_TARGET_DIR/release/examples/expiry_storm" "${CARTS:-100000}" storm: storm "${LEAD:-30}"
