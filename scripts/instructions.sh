#!/usr/bin/env bash
# Instructions per request: runs a release cartd (in-memory backend) under
# valgrind's callgrind, sends it a fixed number of requests of one route on one
# kept-alive connection, and prints the instructions cartd executed per request
# (user space only: the kernel's share is not counted). Unlike time or CPU
# figures, the count is the same from run to run whatever else the machine is
# doing, so it compares two builds on a shared, noisy machine.
#
#   scripts/instructions.sh get-cart                  # GET /get-cart on 3-line carts
#   scripts/instructions.sh set-line                  # PUT /v1/cart/items/.. (a hold each)
#   CARTD_BIN=/path/to/other/cartd scripts/instructions.sh get-cart
#   REQUESTS=5000 scripts/instructions.sh get-cart
#   BACKEND=redis scripts/instructions.sh set-line    # Redis + PostgreSQL (scripts/services.sh)
#   BACKEND=redis QUOTAS=on scripts/instructions.sh set-line
#                                                     # with the shipped hold quota, one client
#                                                     # per cart (X-Forwarded-For, 127.0.0.1 trusted)
#
# On the Redis + PostgreSQL backend the count is cartd's instructions only;
# Redis and PostgreSQL are other processes (their own cost: `INFO
# commandstats`, pg_stat_statements).
#
# Prints `INSTRUCTIONS route=... per_request=...`; keeps callgrind's output
# under $OUT (default /var/tmp/cartd-instructions/<route>) for
# callgrind_annotate. Installs valgrind with apt-get when missing. Only
# 127.0.0.1.
. "$(dirname "$0")/lib.sh"
lib_init instructions
ROUTE=${1:-}
case "$ROUTE" in get-cart | set-line) ;; *) usage >&2; exit 2 ;; esac
REQUESTS=${REQUESTS:-2000}
OUT=${OUT:-/var/tmp/cartd-instructions/$ROUTE}
PORT=18097
BACKEND=${BACKEND:-memory}
QUOTAS=${QUOTAS:-off}
TOKEN=instructions-token-0123456789
case "$BACKEND" in memory | redis) ;; *) die "BACKEND must be memory or redis" ;; esac
case "$QUOTAS" in off) qenv=(CART__QUOTAS__ENABLED=false) ;;
  on) qenv=(CART__QUOTAS__ENABLED=true CART__QUOTAS__TRUSTED_PROXIES=127.0.0.1 CART__QUOTAS__CARTS_PER_MINUTE=0
    CART__QUOTAS__OPEN_CARTS=0) ;;
  *) die "QUOTAS must be off or on" ;; esac
benv=()
if [ "$BACKEND" = redis ]; then
  scripts/services.sh >&2
  benv=(CART__BACKEND=redis CART__REDIS__KEY_PREFIX=instr: CART__POSTGRES__SCHEMA=instructions "CART__ADMIN__TOKEN=$TOKEN")
fi
mkdir -p "$OUT"
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
if [ -n "${CARTD_BIN:-}" ]; then
  BIN=$CARTD_BIN
else
  cargo build --release -p cartd >&2
  BIN=$CARGO_TARGET_DIR/release/cartd
fi

pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ "$BACKEND" = redis ]; then
    redis_del_prefix redis://127.0.0.1:6379 instr: || true
    psql_url postgres://cartd:cartd@127.0.0.1:5432/cartd -c 'drop schema if exists instructions cascade' >/dev/null 2>&1 || true
  fi
}
on_exit cleanup
cleanup
rm -f "$OUT"/callgrind.out*
env CART__HTTP__ADDR=127.0.0.1:$PORT CART__LOG__FILTER=warn CART__STOREFRONT__ENABLED=false "${qenv[@]}" "${benv[@]}" \
CART__SESSION__TTL_SECS=3600 CART__SWEEPER__INTERVAL_MS=60000 CART__LIVE__TICK_MS=10000 CART__LIVE__RESYNC_MS=10000 \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" "$BIN" \
  >"$OUT/cartd.log" 2>&1 &
pid=$!
wait_until 120 "$pid" http_ok "http://127.0.0.1:$PORT/readyz" || die "cartd did not start under valgrind (see $OUT/cartd.log)"

# Carts and prepared requests first (not counted), then the counted ones on
# one connection: collection is switched on and off around them.
python3 - "$PORT" "$ROUTE" "$REQUESTS" "$OUT" "$BACKEND" "$TOKEN" <<'PY'
import http.client, json, socket, subprocess, sys
port, route, n, out, backend, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def call(method, path, body=None, session=None, xff=None):
    h = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    if session: h["cart-session-id"] = session
    if xff: h["x-forwarded-for"] = xff
    c.request(method, path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse(); r.read()
    assert r.status in (200, 201), (method, path, r.status)
    return r.getheader("cart-session-id")
if backend == "redis":
    for i in range(1, 6):
        call("PUT", f"/v1/inventory/inv-{i}", {"available": 1000000000})
sessions = []
for k in range(8):
    xff = f"10.0.0.{k + 1}"
    s = call("POST", "/v1/carts", xff=xff)
    for line in range(3):
        call("PUT", f"/v1/cart/items/p{line}", {"inventory_id": f"inv-{(k + line) % 5 + 1}", "quantity": 1}, s, xff)
    sessions.append(s)
reqs = []
for i in range(n):
    s = sessions[i % len(sessions)]
    if route == "get-cart":
        reqs.append(f"GET /get-cart HTTP/1.1\r\nhost: t\r\ncart-session-id: {s}\r\n\r\n".encode())
    else:
        # Ten lines per cart, each set to 1 then 2: every request changes a quantity.
        k = (i // len(sessions)) % 20
        body = json.dumps({"inventory_id": f"inv-{k % 5 + 1}", "quantity": k // 10 + 1})
        reqs.append((f"PUT /v1/cart/items/q{k % 10} HTTP/1.1\r\nhost: t\r\ncart-session-id: {s}\r\n"
                     f"x-forwarded-for: 10.0.0.{i % len(sessions) + 1}\r\n"
                     f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n{body}").encode())
sock = socket.create_connection(("127.0.0.1", port))
def exchange(req):
    sock.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += sock.recv(65536)
    assert head.split(b" ")[1] == b"200", head
for r in reqs[:200]:
    exchange(r)  # warm-up: pools, lazy statics
subprocess.run(["callgrind_control", "--instr=on"], check=True, capture_output=True)
for r in reqs:
    exchange(r)
subprocess.run(["callgrind_control", "--instr=off"], check=True, capture_output=True)
subprocess.run(["callgrind_control", "--dump=counted"], check=True, capture_output=True)
PY
sleep 1
total=0
for f in "$OUT"/callgrind.out*; do
  ir=$(awk '/^totals:/ {print $2; exit}' "$f")
  total=$((total + ${ir:-0}))
done
[ "$total" -gt 0 ] || die "callgrind recorded nothing (see $OUT)"
per=$((total / REQUESTS))
echo "INSTRUCTIONS route=$ROUTE backend=$BACKEND quotas=$QUOTAS requests=$REQUESTS total=$total per_request=$per bin=$BIN"
