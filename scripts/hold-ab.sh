#!/usr/bin/env bash
# A/B of two cartd release binaries on the hold routes (issue 12's hold
# ideas): A is the base, B the candidate. Both run at once on the same Redis
# and PostgreSQL (schemas holdab_a / holdab_b, key prefixes holdab:a: /
# holdab:b:, ports 18501 / 18502), quotas off, and the rounds alternate
# (A,B then B,A, ...) so that the machine's drift (it is shared and noisy) is
# shared out. Only the ratios of one run mean anything.
#
#   cp "$CARGO_TARGET_DIR/release/cartd" /var/tmp/cartd-ab-base   # build A first
#   scripts/hold-ab.sh /var/tmp/cartd-ab-base            # B = this tree's release build
#   ROUNDS=5 DUR=15 scripts/hold-ab.sh A_BIN B_BIN       # two given binaries
#
# Each round runs, per binary, wrk -t2 -c64 for DUR seconds of:
#   set_line     loadtest/wrk/set-line.lua, 1,000 carts of 3 lines, 10,000 items
#   flash        loadtest/wrk/flash-sale.lua, FLASH_CARTS (20,000) empty carts, one
#                item of 10^9 units (never short), a new product prefix per round
#   add_to_cart  loadtest/wrk/tutorial-add-to-cart.lua, another 1,000 carts
# Every item has 10^9 units, so no request is refused: a run with a non-2xx
# answer or a socket error is invalid (exit 1). At the end the ledger of both
# schemas is checked: available + reserved + sold = 10^9 for every item, and
# reserved = the units the holds table holds of it (exit 1 otherwise).
# Prints RESULT lines per run, and per route the medians, the B/A ratio of the
# medians and the per-round B/A ratios (their spread is the noise). Loopback only.
. "$(dirname "$0")/lib.sh"
lib_init hold-ab
[ "${1:-}" = "-h" ] && { usage; exit 0; }
[ $# -ge 1 ] || { usage; exit 2; }
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
FLASH_CARTS=${FLASH_CARTS:-20000}
OUT=${OUT:-/var/tmp/cartd-hold-ab}
TOKEN=hold-ab-token-0123456789
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
declare -A PORT=([a]=18501 [b]=18502) BINS=()
L=$ROOT/loadtest/wrk
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n 4096 || true

command -v wrk >/dev/null || as_root apt-get install -y -qq wrk >/dev/null
scripts/services.sh >&2
# Copies, so that a rebuild during the run changes neither side.
cp "$1" "$OUT/cartd-a"
if [ $# -ge 2 ]; then
  cp "$2" "$OUT/cartd-b"
else
  cargo build --release -p cartd >&2
  cp "$CARGO_TARGET_DIR/release/cartd" "$OUT/cartd-b"
fi
BINS=([a]="$OUT/cartd-a" [b]="$OUT/cartd-b")
cmp -s "${BINS[a]}" "${BINS[b]}" && log "note: A and B are the same binary (an A/A run)"

pids=()
cleanup() {
  for p in "${pids[@]}"; do stop_pid "$p"; done
  for m in a b; do
    redis_del_prefix redis://127.0.0.1:6379 "holdab:$m:" || true
    psql_url "$PGURL" -c "drop schema if exists holdab_$m cascade" >/dev/null 2>&1 || true
  done
}
on_exit cleanup
cleanup

for m in a b; do
  env CART__BACKEND=redis CART__HTTP__ADDR="127.0.0.1:${PORT[$m]}" CART__REDIS__KEY_PREFIX="holdab:$m:" \
    CART__POSTGRES__SCHEMA="holdab_$m" CART__ADMIN__TOKEN=$TOKEN CART__SESSION__TTL_SECS=3600 \
    CART__LIMITS__MAX_LINES=1000 CART__HTTP__MAX_CONNECTIONS=20000 CART__QUOTAS__ENABLED=false \
    CART__LOG__FILTER=warn "${BINS[$m]}" >"$OUT/cartd-$m.log" 2>&1 &
  pids+=($!)
  wait_until 30 "${pids[-1]}" http_ok "http://127.0.0.1:${PORT[$m]}/readyz" || die "cartd ($m) not ready"
done

log "seeding 10,100 items, 2 x 1,000 carts of 3 lines and $FLASH_CARTS empty carts per instance"
for m in a b; do
  psql_url "$PGURL" <<SQL
insert into holdab_$m.items (inventory_id, available)
select 'inv-' || g, 1000000000 from generate_series(1, 100) g
union all select 'sku-' || g, 1000000000 from generate_series(1, 10000) g
union all select 'flash-1', 1000000000;
SQL
  filled_carts "${PORT[$m]}" 1000 "$OUT/set-line-$m.txt"
  filled_carts "${PORT[$m]}" 1000 "$OUT/add-$m.txt"
  empty_carts "${PORT[$m]}" "$FLASH_CARTS" "$OUT/flash-$m.txt"
done

rc=0
measure() {
  local route=$1 m=$2 round=$3 url=http://127.0.0.1:${PORT[$2]} out result
  case $route in
    set_line) out=$(wrk -t2 -c64 -d"${DUR}s" -s "$L/set-line.lua" "$url" -- "$OUT/set-line-$m.txt" 10000 sku- 20) ;;
    flash) out=$(wrk -t2 -c64 -d"${DUR}s" -s "$L/flash-sale.lua" "$url" -- "$OUT/flash-$m.txt" flash-1 "r$round-") ;;
    add_to_cart) out=$(wrk -t2 -c64 -d"${DUR}s" -s "$L/tutorial-add-to-cart.lua" "$url" -- "$OUT/add-$m.txt") ;;
  esac
  result=$(grep '^RESULT' <<<"$out" || true)
  echo "RESULT route=$route bin=$m round=$round ${result#RESULT }" | tee -a "$OUT/results.txt"
  if ! wrk_clean "$result"; then
    log "invalid run: ${result:-no RESULT line}"
    rc=1
  fi
}
: >"$OUT/results.txt"
for round in $(seq "$ROUNDS"); do
  order=$(ab_order "$round" a b)
  for route in set_line flash add_to_cart; do
    for m in $order; do measure "$route" "$m" "$round"; done
  done
done

for m in a b; do
  # shellcheck disable=SC2016
  bad=$(psql_url "$PGURL" -c "
    select count(*) from holdab_$m.items i
    left join (select inventory_id, sum(quantity) as held from holdab_$m.holds group by inventory_id) h using (inventory_id)
    where i.available + i.reserved + i.sold <> 1000000000 or i.reserved <> coalesce(h.held, 0)")
  log "ledger $m: $bad item(s) off (available + reserved + sold, reserved = held)"
  [ "$bad" = 0 ] || rc=1
done

python3 - "$OUT/results.txt" <<'PY'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in open(sys.argv[1])]
for route in ("set_line", "flash", "add_to_cart"):
    rps = {m: {int(r["round"]): float(r["rps"]) for r in rows if r["route"] == route and r["bin"] == m} for m in "ab"}
    a, b = statistics.median(rps["a"].values()), statistics.median(rps["b"].values())
    per_round = [round(rps["b"][k] / rps["a"][k], 3) for k in sorted(rps["a"]) if k in rps["b"]]
    print(f"SUMMARY route={route} a_rps={a:.0f} b_rps={b:.0f} b/a={b / a:.3f} "
          f"per_round_b/a={per_round} rounds_a={[round(rps['a'][k]) for k in sorted(rps['a'])]} "
          f"rounds_b={[round(rps['b'][k]) for k in sorted(rps['b'])]}")
PY
exit "$rc"
