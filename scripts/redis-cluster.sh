#!/usr/bin/env bash
# A local Redis Cluster for tests and users: 3 primaries and 3 replicas of
# Debian's redis-server on 127.0.0.1, ports BASE..BASE+5 (BASE from
# CARTD_CLUSTER_PORT, default 7000), data under /var/tmp/cartd-cluster/<port>.
#
#   scripts/redis-cluster.sh start    starts the six nodes and creates the
#                                     cluster if needed; waits for every node
#                                     to say cluster_state:ok; prints the seed
#                                     URLs (CART__REDIS__CLUSTER_NODES value)
#   scripts/redis-cluster.sh stop     shuts every node down and deletes the data
#   scripts/redis-cluster.sh status   `redis-cli --cluster check` and the roles
#   scripts/redis-cluster.sh restart-node PORT [--empty]
#                                     stops one node and starts it again (with
#                                     --empty: without its data, as after a
#                                     crash without persistence; it keeps its
#                                     nodes.conf, so it rejoins the cluster)
#
# Idempotent: `start` on a healthy cluster only checks it; `stop` on nothing
# does nothing. Nodes run without persistence and with expired-key events on
# (cartd switches them on anyway unless told not to touch CONFIG), and
# cluster-node-timeout 2000 ms, so a killed primary's replica takes over in
# about 3-4 s.
. "$(dirname "$0")/lib.sh"
lib_init redis-cluster

BASE="${CARTD_CLUSTER_PORT:-7000}"
DIR="${CARTD_CLUSTER_DIR:-/var/tmp/cartd-cluster}"
NODE_TIMEOUT_MS="${CARTD_CLUSTER_NODE_TIMEOUT_MS:-2000}"
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE + i))); done

command -v redis-server >/dev/null || die "redis-server missing (scripts/services.sh installs it)"

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
up() { cli "$1" ping 2>/dev/null | grep -q PONG; }

start_node() {
  local p=$1
  mkdir -p "$DIR/$p"
  up "$p" && return 0
  redis-server --port "$p" --bind 127.0.0.1 --dir "$DIR/$p" --daemonize yes \
    --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout "$NODE_TIMEOUT_MS" \
    --save '' --appendonly no --notify-keyspace-events Ex \
    --pidfile "$DIR/$p/redis.pid" --logfile "$DIR/$p/redis.log"
  wait_until 10 "" up "$p" || die "node $p did not start (see $DIR/$p/redis.log)"
}

state_ok() { cli "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }
all_ok() {
  local p
  for p in "${PORTS[@]}"; do state_ok "$p" || return 1; done
}

seeds() {
  local p out=()
  for p in "${PORTS[@]}"; do out+=("redis://127.0.0.1:$p"); done
  (IFS=,; echo "${out[*]}")
}

start() {
  local p
  for p in "${PORTS[@]}"; do start_node "$p"; done
  if [ "$(cli "$BASE" cluster info | grep -c '^cluster_slots_assigned:16384')" != 1 ]; then
    log "creating the cluster on ${PORTS[*]}"
    local addrs=()
    for p in "${PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 ||
      { cat "$DIR/create.log" >&2; die "cluster create failed"; }
  fi
  wait_until 30 "" all_ok || { cli "$BASE" cluster nodes >&2; die "cluster_state is not ok on every node"; }
  log "cluster ok on ${PORTS[*]}"
  seeds
}

stop() {
  local p
  for p in "${PORTS[@]}"; do
    if up "$p"; then cli "$p" shutdown nosave >/dev/null 2>&1 || true; fi
  done
  for p in "${PORTS[@]}"; do wait_until 10 "" bash -c "! redis-cli -p $p ping >/dev/null 2>&1" || true; done
  rm -rf "$DIR"
  log "cluster stopped"
}

status() {
  local p
  for p in "${PORTS[@]}"; do
    if up "$p"; then
      echo "$p $(cli "$p" role | head -n 1) $(cli "$p" cluster info | grep '^cluster_state' | tr -d '\r')"
    else
      echo "$p down"
    fi
  done
  redis-cli --cluster check "127.0.0.1:$BASE"
}

restart_node() {
  local p=$1 empty=${2:-}
  [ -n "$p" ] || die "restart-node needs a port"
  if up "$p"; then cli "$p" shutdown nosave >/dev/null 2>&1 || true; fi
  wait_until 10 "" bash -c "! redis-cli -p $p ping >/dev/null 2>&1" || die "node $p did not stop"
  [ "$empty" = --empty ] && rm -f "$DIR/$p/dump.rdb" "$DIR/$p"/appendonly*
  start_node "$p"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart-node) restart_node "${2:-}" "${3:-}" ;;
  seeds) seeds ;;
  *) usage; exit 2 ;;
esac
