#!/usr/bin/env bash
# Load test of cartd with goose (the `cartd-loadtest` crate in loadtest/), on
# this machine only (127.0.0.1), bounded in users, rate and time.
#
# What it does, in order:
#   1. raises `ulimit -n` (each user holds a connection, and cartd one per user);
#   2. runs scripts/services.sh: installs/starts Redis and PostgreSQL if needed;
#   3. builds release `cartd` and `cartd-loadtest` (skip with --no-build);
#   4. starts a release cartd with the Redis backend on a free loopback port,
#      with a Redis key prefix and a PostgreSQL schema of its own
#      (loadtest-<run>: and loadtest_<run>), a known admin token, the session TTL
#      asked for, and a high line limit; waits for /readyz;
#   5. seeds the stock through the API: inv-1..inv-N with plenty of units and
#      flash-1 with a few (the flash sale races for them), recording the totals;
#   6. runs goose with the users, rate, time and scenarios asked for, writing
#      <dir>/report.html (goose's report; its graphs need a chart script from the
#      internet), <dir>/charts.html (the same graphs and the flash item's counts
#      as inline SVG, which render offline) and <dir>/summary.json +
#      summary.md (per request type: count, failures, status codes, p50/p95/p99,
#      req/s). Metrics are kept from the first request (--no-reset-metrics), so
#      an error while users start counts too. Any 5xx, transport error or
#      unexpected answer fails the run; expected refusals (409
#      insufficient_stock, 404 session_not_found after expiry) do not;
#   7. checks conservation through the API for every seeded item: available +
#      reserved + sold == stock when the load stops; reserved back to 0 within
#      TTL + a few sweeper intervals; sold == the units the 201 checkouts
#      confirmed; flash-1 never oversold (also watched 4x/s during the run);
#      and `cartd reconcile` (reserved == hold ledger);
#   8. always (trap): stops cartd, drops its schema and deletes its Redis keys.
# Exit status 0 only when goose saw no failure and every check passed. The last
# line printed is a one-line summary.
#
# Usage: scripts/loadtest.sh [options] [-- extra goose options]
#   -u, --users N           concurrent users (default 100)
#   -r, --increase-rate R   users started per second (default users/5, at least 1)
#   -t, --run-time T        time to run once all users started, goose syntax: 30s, 2m (default 30s)
#   -s, --scenarios LIST    goose --scenarios: comma-separated names among shopper, browser,
#                           tutorial, flashsale, expirystorm (default: all five)
#       --weights LIST      e.g. shopper=1,browser=1 (default shopper=4,browser=4,tutorial=2,
#                           flashsale=1,expirystorm=1; CARTD_LOADTEST_WEIGHTS)
#       --think on|off|A-B  think time between a user's steps: on = 1-3 s (default),
#                           off = none, A-B = random between A and B seconds
#       --ttl SECS          cartd's session TTL (default 30)
#       --sweep-ms MS       cartd's sweeper interval (default 1000)
#       --items N           items inv-1..inv-N (default 100)
#       --units N           units of each inv-K (default 1000000)
#       --flash-units N     units of flash-1 (default 50)
#       --storm-period S    seconds between expiry-storm waves (default 5)
#       --shared-pool N     all users share one HTTP client keeping at most N idle
#                           connections (default: a connection per user, as browsers;
#                           needs about 2 file descriptors per user across goose and
#                           cartd, more than a process may open here past ~19,000 users)
#   -o, --report-dir DIR    where reports go (default /var/tmp/cartd-loadtest/<run>)
#       --no-build          use the binaries already built
#       --keep              leave the schema and Redis keys in place (for a post-mortem)
#   -h, --help              this text
# Examples:
#   scripts/loadtest.sh -u 200 -r 100 -t 20s -s shopper,browser,tutorial,flashsale --think off --ttl 5
#   scripts/loadtest.sh -u 1000 -r 200 -t 60s -s shopper,browser --weights shopper=1,browser=1
# Builds into $CARGO_TARGET_DIR (default /var/tmp/cartd-target, as scripts/test.sh).
# Needs Redis and PostgreSQL as scripts/services.sh sets them up (root or sudo the first time).
. "$(dirname "$0")/lib.sh"
lib_init loadtest

users=100
rate=""
run_time=30s
scenarios=shopper,browser,tutorial,flashsale,expirystorm
weights="${CARTD_LOADTEST_WEIGHTS:-}"
think=on
ttl=30
sweep_ms=1000
items=100
units=1000000
flash_units=50
storm_period=5
shared_pool=0
report_dir=""
build=1
keep=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -u | --users) users="$2"; shift 2 ;;
    -r | --increase-rate) rate="$2"; shift 2 ;;
    -t | --run-time) run_time="$2"; shift 2 ;;
    -s | --scenarios) scenarios="$2"; shift 2 ;;
    --weights) weights="$2"; shift 2 ;;
    --think) think="$2"; shift 2 ;;
    --ttl) ttl="$2"; shift 2 ;;
    --sweep-ms) sweep_ms="$2"; shift 2 ;;
    --items) items="$2"; shift 2 ;;
    --units) units="$2"; shift 2 ;;
    --flash-units) flash_units="$2"; shift 2 ;;
    --storm-period) storm_period="$2"; shift 2 ;;
    --shared-pool) shared_pool="$2"; shift 2 ;;
    -o | --report-dir) report_dir="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
for n in users ttl sweep_ms items units flash_units; do
  if ! [[ "${!n}" =~ ^[0-9]+$ ]] || [ "${!n}" -eq 0 ]; then
    die "--${n//_/-} must be a positive whole number, not '${!n}'"
  fi
done
[ "$users" -le 20000 ] || die "--users is capped at 20000 on this machine"
[ -n "$rate" ] || rate=$((users / 5 > 0 ? users / 5 : 1))
case "$think" in on) think_env=1 ;; off) think_env=0 ;; *) think_env="$think" ;; esac

# 1. File descriptors: a goose user keeps a connection open, and cartd its
# side of it (each process needs one per user), plus pools to Redis and
# PostgreSQL. Users sharing a pool (--shared-pool) hold at most a few times
# the pool's size.
if [ "$shared_pool" -gt 0 ]; then need_fds=$((shared_pool * 4 + 4096)); else need_fds=$((users + 4096)); fi
want_fds=$((need_fds > 65536 ? need_fds : 65536))
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
have_fds=$(ulimit -n)
if [ "$have_fds" != unlimited ] && [ "$have_fds" -lt "$need_fds" ]; then
  die "ulimit -n is $have_fds (hard limit $(ulimit -Hn)); $users users need about $need_fds per process (try --shared-pool)"
fi

# 2. Redis and PostgreSQL.
scripts/services.sh

# 3. Release binaries.
if [ "$build" = 1 ]; then
  log "building release cartd and cartd-loadtest into $CARGO_TARGET_DIR"
  build_start=$SECONDS
  cargo build --release -p cartd -p cartd-loadtest
  log "built in $((SECONDS - build_start)) s"
fi
cartd_bin="$CARGO_TARGET_DIR/release/cartd"
lt_bin="$CARGO_TARGET_DIR/release/cartd-loadtest"
if [ ! -x "$cartd_bin" ] || [ ! -x "$lt_bin" ]; then
  die "missing $cartd_bin or $lt_bin (build them, or drop --no-build)"
fi

# 4. A cartd of this run's own.
run="$(date +%Y%m%d_%H%M%S)_$$"
prefix="loadtest-$run:"
schema="loadtest_$run"
if [ -z "$report_dir" ]; then
  report_dir="/var/tmp/cartd-loadtest/$run"
  # Keep the 20 most recent runs in the default place.
  mkdir -p /var/tmp/cartd-loadtest
  find /var/tmp/cartd-loadtest -mindepth 1 -maxdepth 1 -type d -name '[0-9]*_[0-9]*_[0-9]*' -printf '%T@ %p\n' |
    sort -rn | tail -n +20 | cut -d' ' -f2- | xargs -r rm -rf -- || true
fi
mkdir -p "$report_dir"
report_dir="$(cd "$report_dir" && pwd)"
token="loadtest-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
redis_url="${CART__REDIS__URL:-redis://127.0.0.1:6379}"
pg_url="${CART__POSTGRES__URL:-postgres://cartd:cartd@127.0.0.1:5432/cartd}"
cartd_pid=""

drop_run_data() {
  if [ "$keep" = 1 ]; then
    log "kept schema $schema and Redis keys $prefix* (--keep)"
    return
  fi
  psql_url "$pg_url" -c "drop schema if exists $schema cascade" >/dev/null 2>&1 || log "could not drop schema $schema"
  redis_del_prefix "$redis_url" "$prefix" 2>/dev/null || log "could not delete Redis keys $prefix*"
}
on_exit drop_run_data

log "run $run: cartd with Redis prefix $prefix, PostgreSQL schema $schema, TTL ${ttl}s; reports in $report_dir"
env CART__BACKEND=redis \
  CART__HTTP__ADDR=127.0.0.1:0 \
  CART__REDIS__URL="$redis_url" \
  CART__REDIS__KEY_PREFIX="$prefix" \
  CART__POSTGRES__URL="$pg_url" \
  CART__POSTGRES__SCHEMA="$schema" \
  CART__ADMIN__TOKEN="$token" \
  CART__SESSION__TTL_SECS="$ttl" \
  CART__SWEEPER__INTERVAL_MS="$sweep_ms" \
  CART__LIMITS__MAX_LINES=1000 \
  CART__QUOTAS__ENABLED=false \
  CART__LOG__FORMAT=json \
  CART__LOG__FILTER=info \
  "$cartd_bin" >"$report_dir/cartd.log" 2>&1 &
cartd_pid=$!
on_exit "stop_pid $cartd_pid 15"

port=""
cartd_port() { port=$(logged_port "$report_dir/cartd.log") && [ -n "$port" ]; }
wait_until 30 "$cartd_pid" cartd_port || { tail -n 20 "$report_dir/cartd.log" >&2; die "cartd did not report its port"; }
base="http://127.0.0.1:$port"
# GET /readyz answers 200 once Redis and PostgreSQL (with the schema migrated)
# answer.
wait_until 60 "$cartd_pid" http_ok "$base/readyz" || die "cartd at $base not ready (see $report_dir/cartd.log)"
log "cartd (pid $cartd_pid) ready at $base"

# 5. Stock.
CARTD_LOADTEST_ADMIN_TOKEN="$token" "$lt_bin" seed --host "$base" --items "$items" --units "$units" \
  --flash-units "$flash_units" --out "$report_dir/stock.json" >&2

# 6. The load, with the CPU each process spends during it (what limits a run:
# goose itself, cartd, Redis, PostgreSQL, or nothing: idle cores).
log "goose: $users users, $rate/s, $run_time, scenarios $scenarios, think $think"
redis_pids=$(pgrep -f 'redis-server 127\.0\.0\.1:6379' | tr '\n' ' ' || true)
# PostgreSQL starts a process per connection, and cartd's pool opens more
# during the run: each process's ticks, before and after (one that started
# during the run counts from zero).
pg_ticks() { for p in $(pgrep -u postgres || true); do echo "$p $(cpu_of "$p")"; done; }
pg_ticks >"$report_dir/pg-ticks-0"
# /proc/stat's first line: the machine's ticks by kind (user nice system
# idle iowait irq softirq steal ...).
machine() { awk '/^cpu / {print $2 "," $3 "," $4 "," $5 "," $6 "," $7 "," $8 "," $9; exit}' /proc/stat; }
# shellcheck disable=SC2086
cpu0=("$(cpu_of "$cartd_pid")" "$(cpu_of $redis_pids)" 0 "$(machine)")
set +e
TIMEFORMAT='%U %S'
{ time env CARTD_LOADTEST_THINK="$think_env" \
  CARTD_LOADTEST_ITEMS="$items" \
  CARTD_LOADTEST_WEIGHTS="$weights" \
  CARTD_LOADTEST_STORM_PERIOD="$storm_period" \
  CARTD_LOADTEST_FLASH_STOCK="$flash_units" \
  CARTD_LOADTEST_TTL_SECS="$ttl" \
  CARTD_LOADTEST_SUMMARY="$report_dir/summary.json" \
  CARTD_LOADTEST_SHARED_POOL="${shared_pool:-0}" \
  "$lt_bin" --host "$base" --users "$users" --increase-rate "$rate" --run-time "$run_time" \
  --scenarios "$scenarios" --no-reset-metrics --report-file "$report_dir/report.html" \
  "${extra[@]}" >"$report_dir/goose.log" 2>&1; } 2>"$report_dir/goose.time"
goose_rc=$?
# shellcheck disable=SC2086
cpu1=("$(cpu_of "$cartd_pid")" "$(cpu_of $redis_pids)" 0 "$(machine)")
pg_ticks >"$report_dir/pg-ticks-1"
set -e
if [ -f "$report_dir/summary.json" ] && [ -f "$report_dir/summary.md" ]; then
  python3 - "$report_dir" "$(getconf CLK_TCK)" "$(nproc)" "${cpu0[@]}" "${cpu1[@]}" >>"$report_dir/summary.md" <<'PY' || true
import json, sys
out, hz, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c0, c1 = sys.argv[4:8], sys.argv[8:12]
m0, m1 = [int(x) for x in c0[3].split(",")], [int(x) for x in c1[3].split(",")]
ticks = [(b - a) / hz for a, b in zip(m0, m1)]  # user nice system idle iowait irq softirq steal
summary = json.load(open(f"{out}/summary.json"))
n = summary["total"]["count"]
user, system = (float(x) for x in open(f"{out}/goose.time").read().split()[-2:])
total = sum(ticks)
wall = total / cores
def ticks_of(path):
    return {p: int(t) for p, t in (l.split() for l in open(path) if len(l.split()) == 2)}
pg0, pg1 = ticks_of(f"{out}/pg-ticks-0"), ticks_of(f"{out}/pg-ticks-1")
pg = sum(t - pg0.get(p, 0) for p, t in pg1.items()) / hz
rows = [("goose (the load generator)", user + system), ("cartd", (int(c1[0]) - int(c0[0])) / hz),
        ("Redis", (int(c1[1]) - int(c0[1])) / hz), ("PostgreSQL (every process, those started during the run too)", pg)]
machine = [("the kernel's network and device interrupts (irq, softirq: loopback TCP is processed there, "
            "charged to no process)", ticks[5] + ticks[6]),
           ("taken by the hypervisor (steal)", ticks[7]), ("idle (and waiting for I/O)", ticks[3] + ticks[4])]
print("\n## Where the CPU went\n")
print(f"During goose's run ({wall:.0f} s, ramp-up included, {n} requests), from `/proc` (the CPU of each "
      f"process, user + system) and `/proc/stat` (the machine's {cores} cores):\n")
print("| where | CPU seconds | share of the machine | CPU per request (µs) |")
print("|---|---:|---:|---:|")
for name, secs in rows + machine:
    print(f"| {name} | {secs:.1f} | {100 * secs / total:.0f}% | {1e6 * secs / max(n, 1):.0f} |")
rest = total - sum(s for _, s in rows + machine)
print(f"| everything else (other processes, kernel threads) | {rest:.1f} | {100 * rest / total:.0f}% | |")
PY
fi
goose_line=$(grep '^cartd-loadtest: ' "$report_dir/goose.log" | tail -n 1 || true)
[ -f "$report_dir/summary.md" ] && cat "$report_dir/summary.md" >&2
grep '^cartd-loadtest: FAIL' "$report_dir/goose.log" >&2 || true
if [ -z "$goose_line" ]; then
  tail -n 30 "$report_dir/goose.log" >&2
  goose_line="cartd-loadtest: goose ended without a summary (exit $goose_rc; see $report_dir/goose.log)"
  [ "$goose_rc" -ne 0 ] || goose_rc=2
fi

# 7. Conservation.
ledger_rc=0
ledger_check() {
  env CART__BACKEND=redis CART__REDIS__URL="$redis_url" CART__REDIS__KEY_PREFIX="$prefix" \
    CART__POSTGRES__URL="$pg_url" CART__POSTGRES__SCHEMA="$schema" CART__ADMIN__TOKEN="$token" \
    "$cartd_bin" reconcile >>"$report_dir/reconcile.log" 2>&1 || {
    ledger_rc=1
    log "cartd reconcile ($1) found differences between reserved and the hold ledger (or could not run):"
    tail -n 20 "$report_dir/reconcile.log" >&2
  }
}
ledger_check "when the load stopped"
settle=$((ttl + 5 * sweep_ms / 1000 + 10))
summary_arg=()
[ -f "$report_dir/summary.json" ] && summary_arg=(--summary "$report_dir/summary.json")
set +e
"$lt_bin" check --host "$base" --stock "$report_dir/stock.json" "${summary_arg[@]}" \
  --settle-secs "$settle" --out "$report_dir/conservation.json" >"$report_dir/conservation.log" 2>&1
check_rc=$?
set -e
cat "$report_dir/conservation.log" >&2
ledger_check "after the carts expired"
check_line=$(grep '^conservation: ' "$report_dir/conservation.log" | tail -n 1 || echo "conservation: not checked (exit $check_rc)")

alive=yes
kill -0 "$cartd_pid" 2>/dev/null || alive=no
# cartd logs ERROR only when its expiry listener could not start or its task
# ended; neither may happen in a load test, so any ERROR line fails the run.
# (Refusals and 503s are WARN or below.)
errors_logged=$(grep -c '"level":"ERROR"' "$report_dir/cartd.log" || true)
verdict=PASS
if [ "$goose_rc" -ne 0 ] || [ "$check_rc" -ne 0 ] || [ "$ledger_rc" -ne 0 ] || [ "$alive" = no ] ||
  [ "$errors_logged" -ne 0 ]; then
  verdict=FAIL
fi
[ "$errors_logged" -eq 0 ] || grep '"level":"ERROR"' "$report_dir/cartd.log" | head -n 5 >&2
[ "$alive" = yes ] || log "cartd died during the run (see $report_dir/cartd.log)"
log "files: $report_dir/{summary.md,charts.html,summary.json,report.html,conservation.json,goose.log,cartd.log}"
echo "loadtest $verdict :: ${goose_line#cartd-loadtest: } :: ${check_line#conservation: } :: cartd error lines logged: $errors_logged :: $report_dir"
[ "$verdict" = PASS ]
