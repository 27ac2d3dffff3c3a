#!/usr/bin/env bash
# chaos.sh: the chaos suite of cartd. Runs two cartd instances on the real
# backend (Redis sessions + PostgreSQL ledger), drives a mixed load through
# both with scripts/chaos_client.py, injects faults while the load runs, then
# checks the invariants of /work/shared/design.md through the HTTP API.
#
# Usage (as root, from anywhere):
#   scripts/chaos.sh --short   ~30 s of load, each fault once (< 60 s in all;
#                              the test command uses this)
#   scripts/chaos.sh --long    ~4 minutes: 6 rounds of every fault, alternating
#                              the killed instance and varying the pauses
#   scripts/chaos.sh --cluster [--short|--long]
#                              the same load and checks on a Redis Cluster of
#                              its own (3 primaries + 3 replicas on
#                              127.0.0.1:7100-7105, scripts/redis-cluster.sh,
#                              data in the run directory), with the cluster's
#                              faults instead of Redis's: (1) kill -9 of an
#                              instance, (6) a primary shut down (its replica
#                              takes over; the node comes back as a replica),
#                              (7) 200 slots resharded between two primaries,
#                              (8) one node's listener connections killed,
#                              (9) notifications off on one primary (then its
#                              listener connections killed so cartd
#                              re-enables them). Short: 32 s of load.
#   (CHAOS_ROUNDS=N with --long changes the number of 40 s rounds;
#    CHAOS_WORKERS=N the client's threads (8); CHAOS_UNITS=N the units of each
#    of the 20 items (1000, --long 6000); CHAOS_SKIP_BUILD=1 skips the build;
#    CHAOS_FAULTS=0 runs the same load and checks without any fault, as a
#    baseline that tells load effects from fault effects.)
#
# Own servers, so the developer's/test Redis (6379) and PostgreSQL (5432) are
# never touched:
#   * Redis on 127.0.0.1:6390, no persistence (--save "" --appendonly no),
#     daemonized with pidfile/logfile in the run directory, started with
#     keyspace notifications off so cartd has to switch them on itself;
#   * PostgreSQL cluster "<version>/chaos" on 127.0.0.1:5440, created once with
#     pg_createcluster and left created; its `cartd` database (role cartd,
#     password cartd) is dropped and re-created at every run;
#   * cartd instances on 127.0.0.1:18091 and :18092: CART__BACKEND=redis,
#     session TTL 3 s, sweeper every 500 ms, a fixed admin token.
# Only 127.0.0.1 is ever contacted. Packages come from scripts/services.sh
# (run only when redis/postgresql are missing). cartd is built with
# `cargo build -p cartd` into $CARGO_TARGET_DIR/debug/cartd, and the load
# test's tool (which seeds the stock and checks conservation, the same code
# scripts/loadtest.sh uses) with `cargo build --release -p cartd-loadtest`;
# CARGO_TARGET_DIR defaults to /var/tmp/cartd-target, as for scripts/test.sh.
#
# Faults, in turn, with a few seconds between, each logged with a timestamp
# (faults.log in the run directory):
#   1. kill -9 of one instance, restarted ~1.5 s later (waits for /readyz);
#   2. Redis restarted with every key lost (SHUTDOWN NOSAVE, start empty);
#   3. PostgreSQL frozen: SIGSTOP to the postmaster and all its children for
#      5 s (7 s in some --long rounds), then SIGCONT;
#   4. the expiry listeners' connections killed (CLIENT KILL TYPE pubsub);
#   5. notifications switched off (CONFIG SET notify-keyspace-events ""), the
#      value observed a while later, then the listeners' connections killed so
#      they resubscribe, and the value observed again (cartd re-enables it on
#      reconnect; what is seen is logged, not judged).
#
# After the load it waits TTL + 2 sweep intervals + slack, then judges through
# the API: `cartd-loadtest check` over both instances (they agree; per item
# available + reserved + sold == stock set, reserved == 0, sold == the sum of
# the lines of the orders the client saw, 201/200, each order once), then
# chaos_client.py check: that verdict, no 5xx other than 503 at any time,
# no invariant violation seen during the load (see chaos_client.py), both
# instances /readyz 200, no panic in their logs. Prints a one-screen summary
# and exits 1 on any violation (2 on a setup failure).
#
# Everything of a run (cartd logs, redis log, what PostgreSQL logged during
# the run, faults.log, seed/load/detail JSON, summary.txt) stays in
# /var/tmp/cartd-chaos/<time>-<pid>/ (the last 10 runs are kept). The summary
# also reports, without judging them, 503s outside the fault windows and
# deadlocks PostgreSQL logged. Cleanup runs on every exit (trap): both cartd instances
# stopped, the chaos Redis shut down, the chaos PostgreSQL cluster stopped
# (and resumed first if a failure left it frozen).
. "$(dirname "$0")/lib.sh"
lib_init chaos

MODE=short
CLUSTER=0
for arg in "$@"; do
  case "$arg" in
    --short) MODE=short ;;
    --long) MODE=long ;;
    --cluster) CLUSTER=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument $arg (use --short, --long and/or --cluster)" ;;
  esac
done

CLIENT="$ROOT/scripts/chaos_client.py"
PYTHON=${PYTHON:-python3}
REDIS_PORT=6390
PG_PORT=5440
PG_CLUSTER=chaos
PORTS=(18091 18092)
TTL_SECS=3
SWEEP_MS=500
TOKEN=chaos-admin-token-0f3e2d1c
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
PG_URL="postgres://cartd:cartd@127.0.0.1:$PG_PORT/cartd"
BASES=("http://127.0.0.1:${PORTS[0]}" "http://127.0.0.1:${PORTS[1]}")
CLUSTER_BASE=7100
CPORTS=()
for i in 0 1 2 3 4 5; do CPORTS+=($((CLUSTER_BASE + i))); done
SEEDS=""
if [ "$CLUSTER" = 1 ]; then
  # Not used by cartd on a cluster; it marks the instances as this script's.
  REDIS_URL="redis://127.0.0.1:$CLUSTER_BASE"
  SEEDS=$(for p in "${CPORTS[@]}"; do printf 'redis://127.0.0.1:%s,' "$p"; done)
  SEEDS=${SEEDS%,}
fi

# Nothing of the caller's cartd configuration may leak into the instances,
# and no proxy may redirect a request away from 127.0.0.1.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^CART__' || true)
unset RUST_LOG http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY='*' no_proxy='*'

T_START=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || die "run as root (starts the PostgreSQL cluster, signals its processes)"

PG_VERSION=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
RUNS=/var/tmp/cartd-chaos
RUN_DIR="$RUNS/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$RUN_DIR"
# keep the last 10 runs
ls -1d "$RUNS"/*/ 2>/dev/null | sort | head -n -10 | xargs -r rm -rf
FAULTS="$RUN_DIR/faults.log"
: >"$FAULTS"
# faults.log lines: "<epoch> <hh:mm:ss.mmm> FAULT|NOTE <text>"
fault() {
  printf '%s %s FAULT %s\n' "$(date +%s.%3N)" "$(date +%T.%3N)" "$*" >>"$FAULTS"
  log "FAULT $*"
}
note() {
  printf '%s %s NOTE %s\n' "$(date +%s.%3N)" "$(date +%T.%3N)" "$*" >>"$FAULTS"
  log "$*"
}
# What the server side shows of a fault, judged by chaos_client.py check:
#   evidence ok|NONE TEXT   the fault took effect (or did not: the run fails)
#   recovery ok|NONE TEXT   the server side came back (or did not: the run fails)
evidence() {
  printf '%s %s EVIDENCE %s: %s\n' "$(date +%s.%3N)" "$(date +%T.%3N)" "$1" "$2" >>"$FAULTS"
  log "evidence $1: $2"
}
recovery() {
  printf '%s %s RECOVERY %s: %s\n' "$(date +%s.%3N)" "$(date +%T.%3N)" "$1" "$2" >>"$FAULTS"
  log "recovery $1: $2"
}

# ---------------------------------------------------------------- redis
redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_start() {
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --notify-keyspace-events "" --dir "$RUN_DIR" --pidfile "$RUN_DIR/redis.pid" \
    --logfile "$RUN_DIR/redis.log" >/dev/null
  for _ in $(seq 100); do redis_cli ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}
redis_stop() {
  redis_cli ping >/dev/null 2>&1 || return 0
  local pid
  pid=$(redis_cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')
  redis_cli shutdown nosave >/dev/null 2>&1
  for _ in $(seq 100); do
    if [ -n "$pid" ]; then kill -0 "$pid" 2>/dev/null || return 0; else redis_cli ping >/dev/null 2>&1 || return 0; fi
    sleep 0.05
  done
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  return 0
}

# ---------------------------------------------------------------- postgres
# Sends SIG<$1> to the chaos cluster's postmaster and every one of its
# children (backends, checkpointer, walwriter, ...). Prints how many.
pg_signal_all() {
  local sig=$1 pm kids
  [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ] || return 0
  pm=$(head -n 1 "$PG_DATA/postmaster.pid")
  [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null || return 0
  if [ "$sig" = STOP ]; then
    # the postmaster first, so it cannot fork a backend we would miss
    kill -STOP "$pm"
    kids=$(pgrep -P "$pm" || true)
    # shellcheck disable=SC2086
    [ -n "$kids" ] && kill -STOP $kids
  else
    kids=$(pgrep -P "$pm" || true)
    # shellcheck disable=SC2086
    [ -n "$kids" ] && kill -"$sig" $kids
    kill -"$sig" "$pm"
  fi
  echo $((1 + $(echo "$kids" | wc -w)))
}

# How many of the chaos cluster's processes (postmaster and children) are in
# state T (stopped by a signal), and how many there are: "stopped total".
pg_stopped_count() {
  local pm pids stopped=0 total=0 p st
  [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ] || { echo "0 0"; return 0; }
  pm=$(head -n 1 "$PG_DATA/postmaster.pid")
  pids="$pm $(pgrep -P "$pm" 2>/dev/null | tr '\n' ' ')"
  for p in $pids; do
    st=$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null || true)
    [ -n "$st" ] || continue
    total=$((total + 1))
    [ "$st" = T ] && stopped=$((stopped + 1))
  done
  echo "$stopped $total"
}

# ---------------------------------------------------------------- cleanup
CARTD_PIDS=("" "")
CLIENT_PID=""
PG_DATA=""
PG_LOG=""
PG_LOG_FROM=0
save_pg_log() {
  [ -n "$PG_LOG" ] && [ -f "$PG_LOG" ] && tail -c +"$((PG_LOG_FROM + 1))" "$PG_LOG" >"$RUN_DIR/postgresql.log"
  return 0
}
cluster_script() { CARTD_CLUSTER_PORT=$CLUSTER_BASE CARTD_CLUSTER_DIR="$RUN_DIR/cluster" "$ROOT/scripts/redis-cluster.sh" "$@"; }
cluster_stop() {
  [ -d "$RUN_DIR/cluster" ] || return 0
  local p
  for p in "${CPORTS[@]}"; do
    [ -f "$RUN_DIR/cluster/$p/redis.log" ] && cp "$RUN_DIR/cluster/$p/redis.log" "$RUN_DIR/redis-$p.log"
  done
  cluster_script stop >/dev/null 2>&1 || true
}
cleanup() {
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then
    kill "$CLIENT_PID" 2>/dev/null
  fi
  # A failure in the middle of the freeze must not leave PostgreSQL stopped.
  pg_signal_all CONT >/dev/null 2>&1
  for i in 0 1; do
    stop_pid "${CARTD_PIDS[$i]}" 5
  done
  if [ "$CLUSTER" = 1 ]; then cluster_stop; else command -v redis-cli >/dev/null && redis_stop; fi
  if [ -n "$PG_VERSION" ] && command -v pg_ctlcluster >/dev/null &&
    pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c && $4 == "online" { f = 1 } END { exit !f }'; then
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m fast >/dev/null 2>&1 ||
      pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m immediate >/dev/null 2>&1
  fi
  save_pg_log
  rm -f "$RUN_DIR/cartd"
  log "cleaned up (cartd instances, redis $([ "$CLUSTER" = 1 ] && echo "cluster ${CPORTS[*]}" || echo ":$REDIS_PORT") and PostgreSQL $PG_VERSION/$PG_CLUSTER stopped); run directory $RUN_DIR; total $(elapsed "$T_START")s"
}
on_exit cleanup

# ---------------------------------------------------------------- packages
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null ||
  ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v psql >/dev/null ||
  ! command -v pg_createcluster >/dev/null; then
  log "installing Redis/PostgreSQL with scripts/services.sh"
  "$ROOT/scripts/services.sh"
fi
PG_VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
[ -n "$PG_VERSION" ] || die "no PostgreSQL server installed"
command -v curl >/dev/null || die "curl is needed"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON must be Python >= 3.11"

# ---------------------------------------------------------------- build
BIN="$CARGO_TARGET_DIR/debug/cartd"
LT_BIN="$CARGO_TARGET_DIR/release/cartd-loadtest"
if [ "${CHAOS_SKIP_BUILD:-0}" != 1 ]; then
  t=$(date +%s.%N)
  cargo build -q -p cartd || die "cargo build -p cartd failed"
  cargo build -q --release -p cartd-loadtest || die "cargo build --release -p cartd-loadtest failed"
  log "cargo build -p cartd, --release -p cartd-loadtest: $(elapsed "$t")s"
fi
[ -x "$BIN" ] || die "no binary at $BIN"
[ -x "$LT_BIN" ] || die "no binary at $LT_BIN"
# Run a private copy: a concurrent build must not swap the binary under the
# instance restarted after its kill. (Removed at exit.)
cp "$BIN" "$RUN_DIR/cartd"
BIN="$RUN_DIR/cartd"
T_SETUP=$(date +%s.%N)

# ---------------------------------------------------------------- cartd
# Leftovers of an earlier run that could not clean up: cartd processes on our
# ports that point at our Redis are ours; anything else on them is an error.
for port in "${PORTS[@]}"; do
  for pid in $(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "CART__REDIS__URL=$REDIS_URL"; then
      log "stopping a leftover chaos cartd (pid $pid) on :$port"
      kill -KILL "$pid" 2>/dev/null || true
    else
      die "port $port is in use by another process (pid $pid)"
    fi
  done
done

start_instance() { # $1 = index
  local i=$1
  env CART__BACKEND=redis \
    CART__HTTP__ADDR="127.0.0.1:${PORTS[$i]}" \
    CART__REDIS__URL="$REDIS_URL" \
    CART__REDIS__CLUSTER_NODES="$SEEDS" \
    CART__POSTGRES__URL="$PG_URL" \
    CART__SESSION__TTL_SECS="$TTL_SECS" \
    CART__SWEEPER__INTERVAL_MS="$SWEEP_MS" \
    CART__ADMIN__TOKEN="$TOKEN" \
    CART__QUOTAS__ENABLED=false \
    CART__LOG__FILTER=info \
    "$BIN" </dev/null >>"$RUN_DIR/cartd-$i.log" 2>&1 &
  CARTD_PIDS[$i]=$!
  printf '%s' "${CARTD_PIDS[$i]}" >"$RUN_DIR/cartd-$i.pid"
}
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 --noproxy '*' "$1" 2>/dev/null || true; }
wait_ready() { # $1 = index, $2 = seconds
  wait_until "$2" "${CARTD_PIDS[$1]}" http_ok "${BASES[$1]}/readyz"
}

# ---------------------------------------------------------------- setup
if [ "$CLUSTER" = 1 ]; then
  # A leftover cluster of an earlier run (another run directory) is shut down.
  for p in "${CPORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  cluster_script start >/dev/null || die "the chaos cluster did not start on ${CPORTS[*]}"
  # Notifications off everywhere: cartd has to switch them on, node by node.
  for p in "${CPORTS[@]}"; do redis-cli -p "$p" config set notify-keyspace-events "" >/dev/null; done
else
  redis_stop # a leftover chaos Redis: start from an empty one
  redis_start || die "redis did not start on 127.0.0.1:$REDIS_PORT (see $RUN_DIR/redis.log)"
fi

if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { f = 1 } END { exit !f }'; then
  log "creating PostgreSQL cluster $PG_VERSION/$PG_CLUSTER on port $PG_PORT (once)"
  pg_createcluster -p "$PG_PORT" "$PG_VERSION" "$PG_CLUSTER" >/dev/null
fi
# loopback only (the cluster's conf.d is read after postgresql.conf)
mkdir -p "/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d"
printf "# written by cartd's scripts/chaos.sh\nlisten_addresses = '127.0.0.1'\n" \
  >"/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d/chaos.conf"
PG_DATA=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $6 }')
PG_LOG=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $7 }')
# what the cluster logs during this run is copied to the run directory at exit
PG_LOG_FROM=$(stat -c %s "$PG_LOG" 2>/dev/null || echo 0)
pg_signal_all CONT >/dev/null # a run killed in the middle of the freeze
if ! pg_ready "$PG_PORT"; then
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start || die "cannot start PostgreSQL $PG_VERSION/$PG_CLUSTER"
  wait_until 10 "" pg_ready "$PG_PORT" || true
fi
pg_ready "$PG_PORT" || die "PostgreSQL $PG_VERSION/$PG_CLUSTER does not answer on 127.0.0.1:$PG_PORT"
if [ "$(psql_admin "$PG_PORT" "select 1 from pg_roles where rolname = 'cartd'")" != "1" ]; then
  psql_admin "$PG_PORT" "create role cartd login createdb password 'cartd'"
fi
# A fresh database every run: the stock set below is then the whole stock.
psql_admin "$PG_PORT" "drop database if exists cartd with (force)"
psql_admin "$PG_PORT" "create database cartd owner cartd"

start_instance 0
start_instance 1
for i in 0 1; do
  wait_ready "$i" 30 || die "cartd instance $i did not become ready (see $RUN_DIR/cartd-$i.log)"
done
log "redis $([ "$CLUSTER" = 1 ] && echo "cluster ${CPORTS[*]}" || echo ":$REDIS_PORT"), PostgreSQL $PG_VERSION/$PG_CLUSTER :$PG_PORT, cartd ${BASES[*]} ready ($(elapsed "$T_SETUP")s setup)"

# Enough stock that most items are not sold out before the load ends (the
# client sells a few hundred units a second); one hot item with little stock
# keeps contention and "expired holds never block" in play.
UNITS=${CHAOS_UNITS:-$([ "$MODE" = long ] && echo 6000 || echo 1000)}
CARTD_LOADTEST_ADMIN_TOKEN="$TOKEN" "$LT_BIN" seed --host "${BASES[0]}" --items 20 --units "$UNITS" \
  --flash-units 30 --out "$RUN_DIR/seed.json" >&2 || die "seeding failed"

# ---------------------------------------------------------------- faults
LOAD_T0=0
sleep_until() { # seconds after the load started
  local left
  left=$(awk -v t0="$LOAD_T0" -v at="$1" -v now="$(date +%s.%N)" 'BEGIN { d = t0 + at - now; printf "%.3f", (d > 0 ? d : 0) }')
  sleep "$left"
}

fault_kill() { # $1 = instance, $2 = seconds down
  local i=$1 pid=${CARTD_PIDS[$1]}
  fault "(1) KILL-9 instance $i (pid $pid, ${BASES[$i]})"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if kill -0 "$pid" 2>/dev/null; then
    evidence NONE "pid $pid still running after SIGKILL"
  else
    evidence ok "pid $pid is gone; ${BASES[$i]}/readyz -> '$(http_code "${BASES[$i]}/readyz")' (000 = refused)"
  fi
  sleep "$2"
  start_instance "$i"
  if wait_ready "$i" 20; then
    note "instance $i ready again (pid ${CARTD_PIDS[$i]})"
    recovery ok "instance $i answers /readyz 200 as pid ${CARTD_PIDS[$i]}"
  else
    note "instance $i NOT ready 20 s after its restart"
    recovery NONE "instance $i not ready 20 s after its restart"
  fi
}

redis_run_id() { redis_cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^run_id://p'; }
fault_redis_restart() {
  local before run_before run_after size_after
  before=$(redis_cli dbsize 2>/dev/null || echo '?')
  run_before=$(redis_run_id)
  fault "(2) REDIS RESTART, all data lost (dbsize was $before)"
  redis_stop
  if redis_cli ping >/dev/null 2>&1; then
    evidence NONE "redis still answers PING after SHUTDOWN NOSAVE"
  else
    evidence ok "redis :$REDIS_PORT refuses connections (run_id was $run_before, dbsize $before)"
  fi
  sleep 1
  redis_start || note "redis did not come back!"
  run_after=$(redis_run_id)
  size_after=$(redis_cli dbsize 2>/dev/null || echo '?')
  if [ -n "$run_after" ] && [ "$run_after" != "$run_before" ]; then
    recovery ok "redis is a new process (run_id $run_after), dbsize $size_after"
  else
    recovery NONE "redis did not come back as a new process (run_id '$run_after')"
  fi
  note "redis back empty (dbsize $size_after, notify-keyspace-events '$(notify_flags)')"
}

fault_pg_pause() { # $1 = seconds
  local n
  n=$(pg_signal_all STOP)
  fault "(3) POSTGRESQL SIGSTOP: ${n:-0} processes of $PG_VERSION/$PG_CLUSTER frozen for $1 s"
  # /proc says whether they really stopped (state T): a data directory that
  # was not found, or a postmaster not running, freezes nothing.
  sleep 0.2
  read -r stopped total < <(pg_stopped_count)
  if [ "$stopped" -gt 0 ] && [ "$stopped" -eq "$total" ]; then
    evidence ok "$stopped of $total PostgreSQL processes are in state T (stopped)"
  else
    evidence NONE "$stopped of $total PostgreSQL processes stopped (data directory '$PG_DATA')"
  fi
  sleep "$1"
  n=$(pg_signal_all CONT)
  sleep 0.2
  read -r stopped total < <(pg_stopped_count)
  if [ "$stopped" -eq 0 ] && pg_ready "$PG_PORT"; then
    recovery ok "PostgreSQL resumed: $total processes, none stopped, pg_isready ok"
  else
    recovery NONE "PostgreSQL not back: $stopped of $total processes still stopped"
  fi
  note "PostgreSQL resumed (SIGCONT to ${n:-0} processes)"
}

notify_flags() { redis_cli config get notify-keyspace-events 2>/dev/null | sed -n 2p; }
pubsub_clients() { redis_cli client list type pubsub 2>/dev/null | grep -c . || true; }

fault_pubsub_kill() {
  local n after
  n=$(redis_cli client kill type pubsub 2>/dev/null || echo '?')
  fault "(4) CLIENT KILL TYPE pubsub: $n listener connections killed"
  if [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ]; then
    evidence ok "$n pubsub connections killed"
  else
    evidence NONE "no pubsub connection was killed ('$n'): no listener was subscribed"
  fi
  sleep 1.5
  after=$(pubsub_clients)
  # Each instance resubscribes within about a second of losing its listener.
  if [ "$after" -ge "${#PORTS[@]}" ]; then
    recovery ok "$after pubsub clients 1.5 s later"
  else
    recovery NONE "$after pubsub clients 1.5 s later (want ${#PORTS[@]})"
  fi
  note "pubsub clients 1.5 s later: $after"
}

fault_notify_off() { # $1 = seconds off before forcing a resubscribe
  local before
  before=$(notify_flags)
  redis_cli config set notify-keyspace-events "" >/dev/null
  local now_flags
  now_flags=$(notify_flags)
  fault "(5) NOTIFICATIONS OFF: notify-keyspace-events '$before' -> '$now_flags'"
  if [ -z "$now_flags" ] && [ -n "$before" ]; then
    evidence ok "notify-keyspace-events went from '$before' to ''"
  else
    evidence NONE "notify-keyspace-events was '$before' and is '$now_flags'"
  fi
  sleep "$1"
  note "after $1 s notify-keyspace-events is '$(notify_flags)' (cartd checks only when its listener (re)subscribes)"
  local n flags
  n=$(redis_cli client kill type pubsub 2>/dev/null || echo '?')
  note "listener connections killed ($n) to make them resubscribe"
  sleep 2
  flags=$(notify_flags)
  # cartd switches expired events back on when its listener subscribes.
  if [[ "$flags" == *x* ]] && [[ "$flags" == *E* || "$flags" == *A* ]]; then
    recovery ok "notify-keyspace-events is '$flags' again after the listeners resubscribed"
  else
    recovery NONE "notify-keyspace-events is '$flags' after the listeners resubscribed"
  fi
  note "2 s later notify-keyspace-events is '$flags', pubsub clients $(pubsub_clients)"
}

# ---------------------------------------------------------------- cluster faults
ccli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
# CLUSTER NODES from the first node that answers.
cluster_nodes() {
  local p out
  for p in "${CPORTS[@]}"; do
    out=$(ccli "$p" cluster nodes 2>/dev/null) && [ -n "$out" ] && { echo "$out"; return 0; }
  done
  return 1
}
# Primaries serving slots, not failed: "host:port id slots" per line.
cluster_primaries() {
  cluster_nodes | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 {
    split($2, a, "@"); n = 0
    for (i = 9; i <= NF; i++) if ($i !~ /^\[/) { split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1) }
    print a[1], $1, n }' | sort
}
# Every live node says cluster_state:ok and three primaries serve slots.
cluster_ok() {
  local p
  [ "$(cluster_primaries | wc -l)" -eq 3 ] || return 1
  for p in "${CPORTS[@]}"; do
    ccli "$p" ping >/dev/null 2>&1 || continue
    ccli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}
# The node at $1 (host:port) says it is a primary, and the cluster is ok.
promoted() { ccli "${1##*:}" role 2>/dev/null | head -n 1 | grep -qx master && cluster_ok; }
node_pubsub() { ccli "$1" client list type pubsub 2>/dev/null | grep -c . || true; }
node_flags() { ccli "$1" config get notify-keyspace-events 2>/dev/null | sed -n 2p; }

fault_primary_kill() {
  local victim id port t replica
  read -r victim id _ < <(cluster_primaries | head -n 1)
  port=${victim##*:}
  replica=$(cluster_nodes | awk -v id="$id" '$4 == id && $3 !~ /fail/ { split($2, a, "@"); print a[1]; exit }')
  fault "(6) PRIMARY KILL: $victim shut down without saving; its replica ${replica:-?} must take over"
  ccli "$port" shutdown nosave >/dev/null 2>&1 || true
  if ccli "$port" ping >/dev/null 2>&1; then
    evidence NONE "$victim still answers PING"
  else
    evidence ok "$victim refuses connections"
  fi
  t=$(date +%s.%N)
  if [ -n "$replica" ] && wait_until 20 "" promoted "$replica"; then
    recovery ok "replica $replica promoted, cluster_state ok after $(elapsed "$t")s"
  else
    recovery NONE "replica '${replica}' of $victim not promoted within 20 s"
  fi
  cluster_script restart-node "$port" >/dev/null 2>&1 || note "$victim did not restart"
  wait_until 20 "" cluster_ok || true
  note "$victim back as $(ccli "$port" role 2>/dev/null | head -n 1)"
}

# Whether the primary with node id $1 serves $2 slots, as the cluster sees it.
serves_slots() { [ "$(cluster_primaries | awk -v id="$1" '$2 == id { print $3 }')" = "$2" ]; }

fault_reshard() { # $1 = slots
  local from to via before after
  read -r via from before < <(cluster_primaries | sed -n 1p)
  read -r _ to _ < <(cluster_primaries | sed -n 2p)
  fault "(7) RESHARD: $1 slots from ${from:0:8} ($via, $before slots) to ${to:0:8}"
  if redis-cli --cluster reshard "$via" --cluster-from "$from" --cluster-to "$to" --cluster-slots "$1" \
    --cluster-yes --cluster-pipeline 10 >>"$RUN_DIR/reshard.log" 2>&1; then
    # The last slots' new owner reaches the node we ask by gossip, a moment
    # after redis-cli returns (seen: 3 of 200 not yet there): give it 5 s.
    wait_until 5 "" serves_slots "$from" $((before - $1)) || true
    after=$(cluster_primaries | awk -v id="$from" '$2 == id { print $3 }')
    if [ "${after:-0}" -eq $((before - $1)) ]; then
      evidence ok "$via serves $after slots (was $before)"
    else
      evidence NONE "$via serves '${after}' slots, expected $((before - $1))"
    fi
  else
    evidence NONE "redis-cli --cluster reshard failed (see reshard.log)"
  fi
  if redis-cli --cluster check "$via" 2>&1 | grep -q 'All 16384 slots covered'; then
    recovery ok "redis-cli --cluster check: every slot covered, no open slot"
  else
    recovery NONE "redis-cli --cluster check does not find every slot covered"
  fi
}

fault_node_pubsub_kill() {
  local node port n after
  node=$(cluster_primaries | sed -n 2p | cut -d' ' -f1)
  port=${node##*:}
  n=$(ccli "$port" client kill type pubsub 2>/dev/null || echo '?')
  fault "(8) NODE PUBSUB KILL: $n listener connections killed on $node"
  if [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge "${#PORTS[@]}" ]; then
    evidence ok "$n pubsub connections killed on $node"
  else
    evidence NONE "'$n' pubsub connections killed on $node (want one per instance)"
  fi
  sleep 1.5
  after=$(node_pubsub "$port")
  if [ "$after" -ge "${#PORTS[@]}" ]; then
    recovery ok "$after pubsub clients on $node 1.5 s later"
  else
    recovery NONE "$after pubsub clients on $node 1.5 s later (want ${#PORTS[@]})"
  fi
}

fault_node_notify_off() { # $1 = seconds off
  local node port before flags n
  node=$(cluster_primaries | sed -n 3p | cut -d' ' -f1)
  port=${node##*:}
  before=$(node_flags "$port")
  ccli "$port" config set notify-keyspace-events "" >/dev/null
  fault "(9) NODE NOTIFICATIONS OFF on $node: '$before' -> '$(node_flags "$port")'"
  if [ -z "$(node_flags "$port")" ] && [ -n "$before" ]; then
    evidence ok "notify-keyspace-events on $node went from '$before' to ''"
  else
    evidence NONE "notify-keyspace-events on $node was '$before' and is '$(node_flags "$port")'"
  fi
  sleep "$1"
  n=$(ccli "$port" client kill type pubsub 2>/dev/null || echo '?')
  note "listener connections on $node killed ($n) to make them resubscribe"
  sleep 2
  flags=$(node_flags "$port")
  if [[ "$flags" == *x* ]] && [[ "$flags" == *E* || "$flags" == *A* ]]; then
    recovery ok "notify-keyspace-events on $node is '$flags' again after the listeners resubscribed"
  else
    recovery NONE "notify-keyspace-events on $node is '$flags' after the listeners resubscribed"
  fi
}

# ---------------------------------------------------------------- load
WORKERS=${CHAOS_WORKERS:-8}
if [ "$MODE" = short ]; then
  DURATION=$([ "$CLUSTER" = 1 ] && echo 32 || echo 30)
else
  ROUNDS=${CHAOS_ROUNDS:-6}
  DURATION=$((ROUNDS * 40 + 5))
fi
note "load starts: $MODE, $DURATION s, $WORKERS workers"
LOAD_T0=$(date +%s.%N)
"$PYTHON" "$CLIENT" load --base "${BASES[0]}" --base "${BASES[1]}" --seed "$RUN_DIR/seed.json" \
  --duration "$DURATION" --workers "$WORKERS" --ttl "$TTL_SECS" --out "$RUN_DIR/load.json" \
  --progress "$([ "$MODE" = long ] && echo 20 || echo 10)" >&2 &
CLIENT_PID=$!

PLANNED_FAULTS=0
if [ "${CHAOS_FAULTS:-1}" = 0 ]; then
  note "CHAOS_FAULTS=0: baseline run, no fault injected"
elif [ "$CLUSTER" = 1 ] && [ "$MODE" = short ]; then
  PLANNED_FAULTS=5
  sleep_until 2
  fault_kill 0 1.5
  sleep_until 7
  fault_primary_kill
  sleep_until 17
  fault_reshard 200
  sleep_until 21
  fault_node_pubsub_kill
  sleep_until 24
  fault_node_notify_off 3
elif [ "$CLUSTER" = 1 ]; then
  PLANNED_FAULTS=$((ROUNDS * 5))
  for r in $(seq 0 $((ROUNDS - 1))); do
    base=$((r * 40))
    sleep_until $((base + 2))
    fault_kill $((r % 2)) $((1 + r % 3))
    sleep_until $((base + 8))
    fault_primary_kill
    sleep_until $((base + 20))
    fault_reshard $((100 + 100 * (r % 3)))
    sleep_until $((base + 26))
    fault_node_pubsub_kill
    sleep_until $((base + 30))
    fault_node_notify_off 4
  done
elif [ "$MODE" = short ]; then
  PLANNED_FAULTS=5
  sleep_until 2
  fault_kill 0 1.5
  sleep_until 7
  fault_redis_restart
  sleep_until 11
  fault_pg_pause 5
  sleep_until 18
  fault_pubsub_kill
  sleep_until 21
  fault_notify_off 3
else
  PLANNED_FAULTS=$((ROUNDS * 5))
  for r in $(seq 0 $((ROUNDS - 1))); do
    base=$((r * 40))
    sleep_until $((base + 2))
    fault_kill $((r % 2)) $((1 + r % 3))
    sleep_until $((base + 9))
    fault_redis_restart
    sleep_until $((base + 14))
    fault_pg_pause $((r % 3 == 2 ? 7 : 5))
    sleep_until $((base + 24))
    fault_pubsub_kill
    sleep_until $((base + 28))
    fault_notify_off 4
  done
fi
load_rc=0
wait "$CLIENT_PID" || load_rc=$?
CLIENT_PID=""
[ "$load_rc" -eq 0 ] || log "the load client exited with status $load_rc"
note "load finished"

# Every cart was created before the load ended: the last deadline is at most
# TTL after that. Wait for it, plus two sweep intervals, plus slack.
WAIT=$(awk -v t="$TTL_SECS" -v s="$SWEEP_MS" 'BEGIN { printf "%.1f", t + 2 * s / 1000 + 1.5 }')
log "waiting ${WAIT}s (TTL + 2 sweeps + slack) for every hold to be released"
sleep "$WAIT"

# ---------------------------------------------------------------- check
check_rc=0
if [ "$load_rc" -ne 0 ] || [ ! -s "$RUN_DIR/load.json" ]; then
  log "no load results: FAIL"
  check_rc=1
else
  save_pg_log
  # Conservation: the load test's check, over both instances. Reads are
  # retried for 10 s (an instance may still be recovering); the wait above was
  # the settling, so reserved must be 0 at once (--settle-secs 0).
  "$LT_BIN" check --host "${BASES[0]}" --host "${BASES[1]}" --stock "$RUN_DIR/seed.json" \
    --summary "$RUN_DIR/load.json" --read-retry-secs 10 --settle-secs 0 \
    --out "$RUN_DIR/conservation.json" >"$RUN_DIR/conservation.log" 2>&1 || true
  [ -s "$RUN_DIR/conservation.json" ] || { cat "$RUN_DIR/conservation.log" >&2; die "the conservation check did not run"; }
  "$PYTHON" "$CLIENT" check --base "${BASES[0]}" --base "${BASES[1]}" --seed "$RUN_DIR/seed.json" \
    --load "$RUN_DIR/load.json" --conservation "$RUN_DIR/conservation.json" --faults "$FAULTS" --log "$RUN_DIR/cartd-0.log" --log "$RUN_DIR/cartd-1.log" \
    --pg-log "$RUN_DIR/postgresql.log" \
    --detail "$RUN_DIR/detail.json" --meta "mode=--$MODE$([ "$CLUSTER" = 1 ] && echo ' --cluster')" --meta "run_dir=$RUN_DIR" \
    --meta "faults=$PLANNED_FAULTS" |
    tee "$RUN_DIR/summary.txt" || check_rc=$?
fi
for i in 0 1; do
  if ! kill -0 "${CARTD_PIDS[$i]}" 2>/dev/null; then
    log "cartd instance $i (pid ${CARTD_PIDS[$i]}) is not running any more: FAIL"
    check_rc=1
  fi
done
log "timings: setup $(awk -v a="$T_SETUP" -v b="$LOAD_T0" 'BEGIN { printf "%.1f", b - a }')s, load+wait+check $(elapsed "$LOAD_T0")s"
exit "$check_rc"
