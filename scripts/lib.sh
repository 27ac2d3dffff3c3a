# shellcheck shell=bash
# What every script of scripts/ shares; sourced, never run:
#
#   . "$(dirname "$0")/lib.sh"; lib_init NAME
#
# lib_init: `set -euo pipefail`, the working directory is the repository's
# root ($ROOT), cargo on PATH, and CARGO_TARGET_DIR defaulting to the one
# build directory every script and the test command share
# (/var/tmp/cartd-target), so no script builds a second tree.
#
# Logging:  log MSG (to stderr, "HH:MM:SS.mmm NAME: MSG"), die MSG (log, exit 2),
#           usage (prints the script's header comment, up to `. .../lib.sh`).
# Cleanup:  on_exit 'COMMAND' registers a command run at exit, last registered
#           first, whatever the exit; the exit status is kept (and readable
#           as $LIB_EXIT_STATUS while they run). INT and TERM exit 130 and 143
#           (running the same cleanup).
# Waiting:  wait_until SECONDS PID COMMAND...: runs COMMAND every 0.1 s until it
#           succeeds; fails after SECONDS or as soon as PID (if not empty) is gone.
#           http_ok URL: a GET answered 200 (bash's /dev/tcp; no curl needed).
#           logged_port LOG: the port cartd logged ("listening on http://127.0.0.1:N").
#           stop_pid PID [SECONDS]: TERM, up to SECONDS (5) to exit, then KILL.
# Servers:  psql_url URL ARGS...: psql on URL, quiet and unaligned, notices off.
#           psql_admin PORT SQL: psql as the postgres superuser on PORT (root).
#           redis_del_prefix URL PREFIX: deletes every key under PREFIX.
#           as_root COMMAND...: runs COMMAND as root (sudo when not root).
#           pg_ready PORT: PostgreSQL on 127.0.0.1:PORT accepts connections.
# Load:     empty_carts PORT COUNT FILE: opens COUNT empty carts on the cartd at
#           127.0.0.1:PORT and writes their session ids to FILE, one a line.

lib_init() {
  LIB_NAME=$1
  set -euo pipefail
  ROOT=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
  cd "$ROOT"
  if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cartd-target}"
  case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR=$ROOT/$CARGO_TARGET_DIR ;; esac
  export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
  LIB_SCRIPT=${BASH_SOURCE[1]}
  LIB_CLEANUPS=()
  trap lib_run_cleanups EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

log() { printf '%s %s: %s\n' "$(date +%T.%3N)" "$LIB_NAME" "$*" >&2; }
die() {
  log "$*"
  exit 2
}
usage() { sed -n '2,/^\. .*lib\.sh/p' "$LIB_SCRIPT" | sed '$d' | sed 's/^# \{0,1\}//'; }

on_exit() { LIB_CLEANUPS+=("$1"); }
lib_run_cleanups() {
  LIB_EXIT_STATUS=$?
  local lib_i
  set +e
  trap - EXIT INT TERM
  for ((lib_i = ${#LIB_CLEANUPS[@]} - 1; lib_i >= 0; lib_i--)); do
    eval "${LIB_CLEANUPS[$lib_i]}"
  done
  exit "$LIB_EXIT_STATUS"
}

wait_until() {
  local seconds=$1 pid=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  while [ "$SECONDS" -le "$deadline" ]; do
    "$@" && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

http_ok() {
  local rest=${1#http://} hostport path status
  hostport=${rest%%/*}
  path=/${rest#*/}
  [ "$rest" = "$hostport" ] && path=/
  (
    exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
    IFS= read -r -t 5 status <&3 || exit 1
    [[ "$status" == "HTTP/1.1 200"* ]]
  ) 2>/dev/null
}

logged_port() { grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$1" 2>/dev/null | head -n 1 | sed 's/.*://'; }

stop_pid() {
  local pid=$1 seconds=${2:-5} _
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

psql_url() {
  local url=$1
  shift
  PGOPTIONS=--client-min-messages=warning psql "$url" -qtAX "$@"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"
    return 1
  fi
}

psql_admin() { as_root su postgres -c "PGOPTIONS='-c client_min_messages=warning' psql -p $1 -qtAX -v ON_ERROR_STOP=1 -c \"$2\""; }

redis_del_prefix() {
  redis-cli -u "$1" --scan --pattern "$2*" | xargs -r -n 500 redis-cli -u "$1" del >/dev/null
}

empty_carts() {
  python3 - "$@" <<'PY'
import http.client, sys
port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
ids = []
for n in range(count):
    c.request("POST", "/v1/carts")
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
    ids.append(r.getheader("cart-session-id"))
open(path, "w").write("\n".join(ids) + "\n")
PY
}

# filled_carts PORT COUNT PATH: COUNT carts of 3 lines each (inv-1..inv-100,
# quantities 1-3), made through POST /add-to-cart; their ids go to PATH.
filled_carts() {
  python3 - "$@" <<'PY'
import http.client, json, sys, uuid
port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
ids = []
for n in range(count):
    sid = None
    for line in range(3):
        body = json.dumps({"product_id": str(uuid.uuid4()), "inventory_id": f"inv-{(n + line) % 100 + 1}", "quantity": 1 + line})
        h = {"content-type": "application/json"}
        if sid: h["cart-session-id"] = sid
        c.request("POST", "/add-to-cart", body, h)
        r = c.getresponse(); data = json.loads(r.read())
        assert r.status == 200, (r.status, data)
        sid = data["cartSessionId"]
    ids.append(sid)
open(path, "w").write("\n".join(ids) + "\n")
PY
}

# CPU clock ticks (user + system; getconf CLK_TCK per second) of a set of processes, from /proc/<pid>/stat.
cpu_of() {
  local total=0 p f
  for p in "$@"; do
    f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
    # utime and stime are fields 14 and 15 of the line: 12 and 13 after ")".
    total=$((total + $(awk '{print $12 + $13}' <<<"$f")))
  done
  echo "$total"
}
# Whether a wrk RESULT line (loadtest/wrk/common.lua) shows every answer 2xx
# and no socket error.
wrk_clean() { grep -q 'non2xx=0 connect_err=0 read_err=0 write_err=0 timeout=0' <<<"$1"; }
# The order of two modes in round N of an A/B run: A first in odd rounds,
# B first in even ones, so that the machine's drift is shared out.
ab_order() { if [ $(($1 % 2)) = 1 ]; then echo "$2 $3"; else echo "$3 $2"; fi; }
pg_ready() { pg_isready -h 127.0.0.1 -p "$1" -q 2>/dev/null; }
