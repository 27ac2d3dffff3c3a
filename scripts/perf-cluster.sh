#!/usr/bin/env bash
# Redis Cluster against one Redis server, side by side in one run: two release
# cartd instances on the same PostgreSQL (a schema each), one on the single
# Redis (127.0.0.1:6379), one on a Redis Cluster of its own (3 primaries + 3
# replicas on 127.0.0.1:7200-7205, scripts/redis-cluster.sh), measured in turn
# with the same wrk scripts as scripts/perf.sh: get-cart (GET /get-cart of a
# 3-line cart) and add-to-cart (POST /add-to-cart: a hold in PostgreSQL and a
# script in Redis). Also the CPU time each process used during each run, for
# the capacity model of docs/operations.md#scaling (requests per CPU-second of
# cartd, of Redis, of PostgreSQL), and the Redis memory per session.
#
#   scripts/perf-cluster.sh            # 15 s per run
#   DUR=30 scripts/perf-cluster.sh
#   FIRST=cluster scripts/perf-cluster.sh   # the cluster measured first in each pair
#
# Prints RESULT lines and writes them to $OUT/results.txt (OUT defaults to
# /var/tmp/cartd-perf-cluster). Exits 1 when a run had non-2xx answers or
# socket errors. Traffic goes to 127.0.0.1 only; every load is bounded in time.
. "$(dirname "$0")/lib.sh"
lib_init perf-cluster
DUR=${DUR:-15}
OUT=${OUT:-/var/tmp/cartd-perf-cluster}
TOKEN=perf-admin-token-0123456789
PGURL=postgres://cartd:cartd@127.0.0.1:5432/cartd
SINGLE_PORT=18180
CLUSTER_PORT=18181
CBASE=7200
mkdir -p "$OUT"
ulimit -n 65536 || ulimit -n 4096

command -v wrk >/dev/null || as_root apt-get install -y -qq wrk >/dev/null
scripts/services.sh
cargo build --release -p cartd >&2
BIN=$CARGO_TARGET_DIR/release/cartd
cluster() { CARTD_CLUSTER_PORT=$CBASE CARTD_CLUSTER_DIR="$OUT/cluster" scripts/redis-cluster.sh "$@"; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  redis_del_prefix redis://127.0.0.1:6379 perfs: || true
  cluster stop >/dev/null 2>&1 || true
  for s in perfs perfc; do psql_url "$PGURL" -c "drop schema if exists $s cascade" >/dev/null 2>&1 || true; done
}
on_exit cleanup

cluster stop >/dev/null 2>&1 || true
SEEDS=$(cluster start)
for s in perfs perfc; do psql_url "$PGURL" -c "drop schema if exists $s cascade" >/dev/null; done
start_cartd() { # port schema extra-env...
  local port=$1 schema=$2
  shift 2
  env CART__BACKEND=redis CART__HTTP__ADDR="127.0.0.1:$port" CART__REDIS__KEY_PREFIX=perfs: \
    CART__POSTGRES__SCHEMA="$schema" CART__ADMIN__TOKEN=$TOKEN CART__LIMITS__MAX_LINES=1000 \
    CART__SESSION__TTL_SECS=3600 CART__LOG__FILTER=warn CART__HTTP__MAX_CONNECTIONS=20000 CART__QUOTAS__ENABLED=false "$@" \
    "$BIN" >"$OUT/cartd-$port.log" 2>&1 &
  pids+=($!)
}
start_cartd $SINGLE_PORT perfs
SINGLE_PID=${pids[-1]}
start_cartd $CLUSTER_PORT perfc CART__REDIS__CLUSTER_NODES="$SEEDS"
CLUSTER_PID=${pids[-1]}
wait_until 30 "" http_ok "http://127.0.0.1:$SINGLE_PORT/readyz" || die "single cartd not ready"
wait_until 30 "" http_ok "http://127.0.0.1:$CLUSTER_PORT/readyz" || die "cluster cartd not ready"

for s in perfs perfc; do
  psql_url "$PGURL" <<SQL
insert into $s.items (inventory_id, available)
select 'inv-' || g, 1000000000 from generate_series(1, 100) g;
SQL
done

# Redis's own memory for sessions, summed over the cluster's primaries
# (nothing else lives there) before and after 2,000 3-line carts: used_memory
# without what is not per session (the replication buffer, which fills up to
# its fixed size as writes are replicated; client buffers; Lua).
cluster_mem() {
  local p total=0 m
  for p in $(seq $CBASE $((CBASE + 5))); do
    [ "$(redis-cli -p "$p" role | head -n 1)" = master ] || continue
    m=$(redis-cli -p "$p" info memory | tr -d '\r' | awk -F: '
      /^used_memory:/ { u = $2 } /^mem_total_replication_buffers:/ { r = $2 } /^mem_clients_normal:/ { c = $2 }
      /^mem_clients_slaves:/ { s = $2 } /^used_memory_vm_total:/ { l = $2 } /^used_memory_scripts:/ { k = $2 }
      END { print u - r - c - s - l - k }')
    total=$((total + m))
  done
  echo "$total"
}
mem_before=$(cluster_mem)
log "opening 2 x 1,000 carts of 3 lines on each instance"
for side in "single $SINGLE_PORT" "cluster $CLUSTER_PORT"; do
  read -r name port <<<"$side"
  filled_carts "$port" 1000 "$OUT/$name-get.txt"
  filled_carts "$port" 1000 "$OUT/$name-add.txt"
done
mem_after=$(cluster_mem)
sample=$(head -n 1 "$OUT/cluster-get.txt")
key_bytes=$(redis-cli -c -p $CBASE memory usage "perfs:cart:{$sample}" samples 0)
results="$OUT/results.txt"
printf 'RESULT redis_memory sessions=2000 lines_each=3 used_memory_delta=%s bytes_per_session=%s memory_usage_one_key=%s\n' \
  "$((mem_after - mem_before))" "$(((mem_after - mem_before) / 2000))" "$key_bytes" | tee "$results" >&2

# CPU seconds (user + system) of the given pids so far.
cpu_of() {
  local tck total=0 p
  tck=$(getconf CLK_TCK)
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  awk -v t="$total" -v k="$tck" 'BEGIN { printf "%.2f", t / k }'
}
# The packaged cluster's server processes (backends included), not another cluster's.
pg_pids() { pgrep -d ' ' -f '^postgres: [0-9.]+/main' || true; }
single_redis_pid=$(redis-cli info server | tr -d '\r' | sed -n 's/^process_id://p')
cluster_redis_pids=$(for p in $(seq $CBASE $((CBASE + 5))); do cat "$OUT/cluster/$p/redis.pid"; done | tr '\n' ' ')

invalid=0
L="$ROOT/loadtest/wrk"
measure() { # name cartd-pid redis-pids port script sessions
  local name=$1 cpid=$2 rpids=$3 port=$4 script=$5 sessions=$6 c0 r0 p0 c1 r1 p1 line
  log "$name"
  # shellcheck disable=SC2086
  c0=$(cpu_of "$cpid"); r0=$(cpu_of $rpids); p0=$(cpu_of $(pg_pids))
  line=$(wrk -t2 -c64 -d"${DUR}s" -s "$L/$script" "http://127.0.0.1:$port" -- "$sessions" 2>&1 |
    tee "$OUT/$name.log" | grep '^RESULT' | tail -n 1)
  # shellcheck disable=SC2086
  c1=$(cpu_of "$cpid"); r1=$(cpu_of $rpids); p1=$(cpu_of $(pg_pids))
  local mark=""
  if [[ "$line" != *"non2xx=0 "* ]] || [[ "$line" != *"connect_err=0 read_err=0 write_err=0 timeout=0"* ]]; then
    mark=" INVALID"
    invalid=$((invalid + 1))
  fi
  printf '%s %s cartd_cpu_s=%s redis_cpu_s=%s postgres_cpu_s=%s%s\n' "$name" "$line" \
    "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$p0" -v b="$p1" 'BEGIN { printf "%.2f", b - a }')" "$mark" | tee -a "$results" >&2
}
# Alternating, so that a change in the machine's load hits both sides alike.
single() { measure "single_$1_c64" "$SINGLE_PID" "$single_redis_pid" $SINGLE_PORT "tutorial-$2.lua" "$OUT/single-$3.txt"; }
clustered() { measure "cluster_$1_c64" "$CLUSTER_PID" "$cluster_redis_pids" $CLUSTER_PORT "tutorial-$2.lua" "$OUT/cluster-$3.txt"; }
for run in "get_cart get-cart get" "add_to_cart add-to-cart add"; do
  # shellcheck disable=SC2086
  if [ "${FIRST:-single}" = cluster ]; then clustered $run; single $run; else single $run; clustered $run; fi
done
log "results in $results"
cat "$results"
[ "$invalid" -eq 0 ] || { log "$invalid runs INVALID (non-2xx or socket errors)"; exit 1; }
