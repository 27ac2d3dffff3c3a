#!/usr/bin/env bash
# Where a request's time goes: runs one route of a release cartd (Redis +
# PostgreSQL backend) under wrk -c64, and prints the CPU each process spent
# per request (cartd, Redis, PostgreSQL, wrk), then records cartd with
# `perf` in a second run and draws a flame graph (SVG) of it, with the share
# of its samples in the kernel, libc and cartd's own code.
#
#   scripts/profile.sh get-cart          # GET /get-cart on 3-line carts
#   scripts/profile.sh v1-get-cart       # GET /v1/cart
#   scripts/profile.sh add-to-cart       # POST /add-to-cart (a hold each)
#   scripts/profile.sh set-line          # PUT /v1/cart/items/.. spread over 10,000 items
#   scripts/profile.sh flash             # the flash sale: everyone holds flash-1
#   DUR=20 PERF_SECS=8 scripts/profile.sh get-cart
#   CARTD_BIN=/path/to/cartd PERF_SECS=0 scripts/profile.sh get-cart
#                                        # another build, CPU split only (no perf run)
#
# Output under $OUT (default /var/tmp/cartd-profile/<route>): profile.md (the
# table), cartd.svg (the flame graph, self-contained: open it in any
# browser, no network needed), perf.data, wrk logs. The CPU split comes from
# /proc/<pid>/stat of each process before and after the first run (no
# profiler attached), so it is what the route costs, not what profiling
# costs. Installs wrk and linux-perf with apt-get, and inferno (the flame
# graph tool, from crates.io) into /var/tmp/cartd-tools, when missing.
# Traffic goes to 127.0.0.1 only; every load is bounded in time.
. "$(dirname "$0")/lib.sh"
lib_init profile
ROUTE=${1:-}
case "$ROUTE" in
  get-cart | v1-get-cart | add-to-cart | set-line | flash) ;;
  *) usage >&2; exit 2 ;;
esac
DUR=${DUR:-15}
PERF_SECS=${PERF_SECS:-5}
OUT=${OUT:-/var/tmp/cartd-profile/$ROUTE}
TOOLS=${TOOLS:-/var/tmp/cartd-tools}
PORT=18095
C=http://127.0.0.1:$PORT
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
SCHEMA=profile
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null
export PATH=$TOOLS/bin:$PATH
if ! command -v inferno-flamegraph >/dev/null; then
  log "installing inferno (flame graphs) into $TOOLS"
  cargo install --locked --quiet --root "$TOOLS" inferno >&2
fi
scripts/services.sh
if [ -n "${CARTD_BIN:-}" ]; then
  BIN=$CARTD_BIN
else
  cargo build --release -p cartd >&2
  BIN=$CARGO_TARGET_DIR/release/cartd
fi

pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  redis_del_prefix redis://127.0.0.1:6379 profile: || true
  psql_url "$PGURL" -c "drop schema if exists $SCHEMA cascade" >/dev/null 2>&1 || true
}
on_exit cleanup

psql_url "$PGURL" -c "drop schema if exists $SCHEMA cascade" >/dev/null
CART__BACKEND=redis CART__HTTP__ADDR=127.0.0.1:$PORT CART__REDIS__KEY_PREFIX=profile: \
CART__POSTGRES__SCHEMA=$SCHEMA CART__ADMIN__TOKEN=profile-admin-token-0123456789 CART__LIMITS__MAX_LINES=1000 \
CART__SESSION__TTL_SECS=3600 CART__LOG__FILTER=warn CART__HTTP__MAX_CONNECTIONS=20000 \
CART__STOREFRONT__ENABLED=false CART__QUOTAS__ENABLED=false \
  "$BIN" >"$OUT/cartd.log" 2>&1 &
pid=$!
wait_until 20 "$pid" http_ok "$C/readyz" || die "cartd not ready (see $OUT/cartd.log)"

log "seeding"
psql_url "$PGURL" <<SQL
insert into $SCHEMA.items (inventory_id, available)
select 'inv-' || g, 1000000000 from generate_series(1, 100) g
union all select 'sku-' || g, 1000000000 from generate_series(1, 10000) g
union all select 'flash-1', 1000000000;
SQL
L=$ROOT/loadtest/wrk
case "$ROUTE" in
  get-cart) filled_carts "$PORT" 1000 "$OUT/sessions.txt"; args=(-s "$L/tutorial-get-cart.lua" "$C" -- "$OUT/sessions.txt") ;;
  v1-get-cart) filled_carts "$PORT" 1000 "$OUT/sessions.txt"; args=(-s "$L/v1-get-cart.lua" "$C" -- "$OUT/sessions.txt") ;;
  add-to-cart) filled_carts "$PORT" 1000 "$OUT/sessions.txt"; args=(-s "$L/tutorial-add-to-cart.lua" "$C" -- "$OUT/sessions.txt") ;;
  set-line) filled_carts "$PORT" 1000 "$OUT/sessions.txt"; args=(-s "$L/set-line.lua" "$C" -- "$OUT/sessions.txt" 10000 sku- 20) ;;
  flash) empty_carts "$PORT" 20000 "$OUT/sessions.txt"; args=(-s "$L/flash-sale.lua" "$C" -- "$OUT/sessions.txt" flash-1) ;;
esac

redis_pids=$(pgrep -f 'redis-server 127\.0\.0\.1:6379' | tr '\n' ' ')
pg_pids() { pgrep -u postgres | tr '\n' ' '; }
hz=$(getconf CLK_TCK)

log "run 1: $ROUTE under wrk -t2 -c64 for ${DUR}s, no profiler attached"
pg_before=$(pg_pids)
c0=$(cpu_of "$pid") r0=$(cpu_of $redis_pids) p0=$(cpu_of $pg_before)
TIMEFORMAT='%U %S'
{ time wrk -t2 -c64 -d"${DUR}s" "${args[@]}" >"$OUT/wrk.log" 2>&1; } 2>"$OUT/wrk.time"
c1=$(cpu_of "$pid") r1=$(cpu_of $redis_pids) p1=$(cpu_of $pg_before)
line=$(grep '^RESULT' "$OUT/wrk.log" | tail -n 1)
[ -n "$line" ] || die "wrk printed no result (see $OUT/wrk.log)"
requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line")
non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
read -r wu ws <"$OUT/wrk.time"

: >"$OUT/symbols.txt"
if [ "$PERF_SECS" != 0 ]; then
  log "run 2: the same load, cartd recorded by perf for ${PERF_SECS}s"
  wrk -t2 -c64 -d"$((PERF_SECS + 4))s" "${args[@]}" >"$OUT/wrk-perf.log" 2>&1 &
  wrk_pid=$!
  sleep 2
  perf record -q -F 299 --call-graph dwarf,16384 -p "$pid" -o "$OUT/perf.data" -- sleep "$PERF_SECS" >/dev/null 2>&1 ||
    die "perf record failed (is perf allowed here? see /proc/sys/kernel/perf_event_paranoid)"
  wait "$wrk_pid" || true
  perf script -i "$OUT/perf.data" 2>/dev/null | inferno-collapse-perf --kernel >"$OUT/cartd.folded"
  perf report -i "$OUT/perf.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0 2>/dev/null |
    grep "%" >"$OUT/symbols.txt" || true
  inferno-flamegraph --title "cartd, $ROUTE under wrk -c64" <"$OUT/cartd.folded" >"$OUT/cartd.svg"
fi

python3 - "$ROUTE" "$requests" "$rps" "$non2xx" "$hz" "$((c1 - c0))" "$((r1 - r0))" "$((p1 - p0))" "$wu" "$ws" \
  "$OUT/symbols.txt" "$OUT/profile.md" <<'PY'
import sys
route, requests, rps, non2xx, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cartd, redis, pg = (int(v) / hz for v in sys.argv[6:9])
wrk = float(sys.argv[9]) + float(sys.argv[10])
symbols, out = sys.argv[11], sys.argv[12]
us = lambda s: s / requests * 1e6
# cartd's samples by the code they were in: the kernel (system calls,
# wake-ups, the network stack), the allocator, the rest of libc, cartd's own
# code (with the crates compiled into it).
kinds = {"kernel": 0.0, "malloc/free": 0.0, "libc (other)": 0.0, "cartd": 0.0, "other": 0.0}
top = []
for line in open(symbols):
    parts = line.split(None, 3)
    if len(parts) < 4 or not parts[0].endswith("%"):
        continue
    pct, dso, sym = float(parts[0][:-1]), parts[1], parts[3].strip()
    if dso.startswith("[kernel"):
        kind = "kernel"
    elif dso.startswith("libc"):
        kind = "malloc/free" if any(k in sym for k in ("malloc", "free", "_int_", "unlink_chunk", "tcache", "realloc")) else "libc (other)"
    elif dso == "cartd":
        # mimalloc (the default allocator) is compiled into cartd.
        kind = "malloc/free" if sym.startswith(("mi_", "_mi_")) else "cartd"
    else:
        kind = "other"
    kinds[kind] += pct
    if len(top) < 15:
        top.append((pct, dso, sym))
total = sum(kinds.values())
rows = [
    f"# Profile of `{route}` ({requests} requests, {rps} req/s, non-2xx {non2xx})",
    "",
    "CPU per request, from /proc/<pid>/stat over the run without a profiler:",
    "",
    "| process | CPU per request (µs) | share |",
    "|---|---:|---:|",
]
whole = cartd + redis + pg + wrk
for name, s in (("cartd", cartd), ("Redis", redis), ("PostgreSQL", pg), ("wrk", wrk)):
    rows.append(f"| {name} | {us(s):.1f} | {s / whole:.0%} |")
rows.append(f"| all | {us(whole):.1f} | 100% |")
if total > 0:
    rows += ["", "cartd's samples (perf record -F 299, DWARF stacks) by the code they were in:", "",
             "| where | share | CPU per request (µs) |", "|---|---:|---:|"]
    for k, v in kinds.items():
        share = v / total
        rows.append(f"| {k} | {share:.0%} | {us(cartd) * share:.1f} |")
    rows += ["", "Hottest symbols:", "", "| share | where | symbol |", "|---:|---|---|"]
    for pct, dso, sym in top:
        rows.append(f"| {pct:.1f}% | {dso} | `{sym[:100]}` |")
    rows += ["", "Flame graph: cartd.svg (self-contained SVG)."]
else:
    rows += ["", "No profile recorded (PERF_SECS=0): the CPU split only."]
open(out, "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
print(f"PROFILE route={route} rps={rps} cartd_us={us(cartd):.1f} redis_us={us(redis):.1f} pg_us={us(pg):.1f} wrk_us={us(wrk):.1f}")
PY
log "flame graph: $OUT/cartd.svg; table: $OUT/profile.md"
if [ "$non2xx" != 0 ]; then die "$non2xx answers were not 2xx: the profile measured something else (see $OUT/wrk.log)"; fi
