#!/usr/bin/env bash
# Round trips per request: how many commands each route sends to Redis and
# how many transactions it runs in PostgreSQL, counted at the servers, for a
# release cartd on the Redis + PostgreSQL backend (issue 12: "the Redis and
# PostgreSQL round trips per request counted and minimised").
#
#   scripts/roundtrips.sh                 # every route, 200 requests each, quotas off
#   QUOTAS=on scripts/roundtrips.sh       # with the shipped client quotas (one client per cart)
#   REQUESTS=500 scripts/roundtrips.sh
#
# Redis: `MONITOR` during each route's requests, counting the commands that
# carry this run's key prefix and come from a client (those a Lua script runs
# inside Redis are listed as `[0 lua]` and are not round trips). PostgreSQL:
# the statements cartd runs in a database of this run's own, which logs every
# statement it executes (`log_min_duration_statement = 0` for that database
# only), counted in the server's log (`execute` and simple-query `statement`
# lines, so `BEGIN` and `COMMIT` count; parse and bind steps do not). A batch
# of holds is one transaction for all the holds in it: here one request at a
# time, so a batch of one; under load the batches grow and the count per hold
# falls.
# Requests go one after the other on one connection. Background work (the
# sweeper, the storefront's resync) is slowed to once a minute. Prints a
# Markdown table. Needs root (creates the database); 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
lib_init roundtrips
REQUESTS=${REQUESTS:-200}
QUOTAS=${QUOTAS:-off}
PORT=18099
DB=cartd_roundtrips
PREFIX=roundtrips:
TOKEN=roundtrips-token-0123456789
[ "${1:-}" = "-h" ] && { usage; exit 0; }
case "$QUOTAS" in off) qenv=(CART__QUOTAS__ENABLED=false) ;;
  on) qenv=(CART__QUOTAS__ENABLED=true CART__QUOTAS__TRUSTED_PROXIES=127.0.0.1) ;;
  *) die "QUOTAS must be off or on" ;; esac
scripts/services.sh >&2
cargo build --release -p cartd >&2
BIN=${CARTD_BIN:-$CARGO_TARGET_DIR/release/cartd}

psql_admin 5432 "drop database if exists $DB" >/dev/null
psql_admin 5432 "create database $DB owner cartd" >/dev/null
psql_admin 5432 "alter database $DB set log_min_duration_statement = 0" >/dev/null
PGLOG=$(find /var/log/postgresql -name 'postgresql-*-main.log' -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2)
[ -r "$PGLOG" ] || die "cannot read PostgreSQL's log under /var/log/postgresql"
pid=
cleanup() {
  [ -z "$pid" ] || stop_pid "$pid"
  redis_del_prefix redis://127.0.0.1:6379 "$PREFIX" || true
  psql_admin 5432 "drop database if exists $DB" >/dev/null 2>&1 || true
}
on_exit cleanup
env CART__BACKEND=redis CART__HTTP__ADDR=127.0.0.1:$PORT CART__REDIS__KEY_PREFIX=$PREFIX \
  CART__POSTGRES__URL=postgres://cartd:cartd@127.0.0.1:5432/$DB CART__ADMIN__TOKEN=$TOKEN \
  CART__LOG__FILTER=warn CART__SESSION__TTL_SECS=3600 CART__SWEEPER__INTERVAL_MS=60000 \
  CART__LIVE__TICK_MS=10000 CART__LIVE__RESYNC_MS=60000 "${qenv[@]}" \
  "$BIN" >/var/tmp/cartd-roundtrips.log 2>&1 &
pid=$!
wait_until 30 "$pid" http_ok "http://127.0.0.1:$PORT/readyz" || die "cartd not ready (see /var/tmp/cartd-roundtrips.log)"

python3 - "$PORT" "$REQUESTS" "$DB" "$PREFIX" "$TOKEN" "$QUOTAS" "$PGLOG" <<'PY'
import http.client, json, os, re, subprocess, sys, threading, time
port, n, db, prefix, token, quotas, pglog = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

def call(method, path, body=None, session=None, client=1, expect=(200, 201, 204)):
    h = {"content-type": "application/json", "authorization": f"Bearer {token}",
         "x-forwarded-for": f"10.9.{client // 256 % 256}.{client % 256}"}
    if session:
        h["cart-session-id"] = session
    c.request(method, path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse(); r.read()
    assert r.status in expect, (method, path, r.status)
    return r.getheader("cart-session-id")

for i in range(1, 11):
    call("PUT", f"/v1/inventory/inv-{i}", {"available": 1000000000})

STATEMENT = re.compile(r"@" + re.escape(db) + r" LOG:  duration: [0-9.]+ ms  (execute [^:]*|statement): ")
def pg_offset():
    return os.path.getsize(pglog)
def statements(since):
    time.sleep(0.2)  # the log is written as statements end
    with open(pglog, "rb") as f:
        f.seek(since)
        return sum(1 for l in f.read().decode("utf-8", "replace").splitlines() if STATEMENT.search(l))

def filled(count, lines=3, base=0):
    ids = []
    for k in range(count):
        s = call("POST", "/v1/carts", client=base + k)
        for line in range(lines):
            call("PUT", f"/v1/cart/items/p{line}", {"inventory_id": f"inv-{(k + line) % 10 + 1}", "quantity": 1}, s, base + k)
        ids.append(s)
    return ids

rows = []
def measure(name, setup, step):
    state = setup()
    mon = subprocess.Popen(["redis-cli", "monitor"], stdout=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(mon.stdout), daemon=True)
    reader.start()
    time.sleep(0.3)
    x0 = pg_offset()
    for i in range(n):
        step(state, i)
    pg = statements(x0)
    time.sleep(0.3)
    mon.terminate(); reader.join(timeout=5)
    redis = sum(1 for l in lines if prefix in l and "lua]" not in l)
    rows.append((name, redis / n, pg / n))
    print(f"ROUNDTRIPS route={name!r} redis_per_request={redis / n:.2f} pg_statements_per_request={pg / n:.2f}", file=sys.stderr)

measure("POST /v1/carts", lambda: None, lambda s, i: call("POST", "/v1/carts", client=1000 + i))
measure("GET /get-cart", lambda: filled(8), lambda s, i: call("GET", "/get-cart", session=s[i % 8], client=i % 8))
measure("GET /v1/cart", lambda: filled(8), lambda s, i: call("GET", "/v1/cart", session=s[i % 8], client=i % 8))
measure("PUT /v1/cart/items/{p} (a hold)", lambda: filled(8, base=2000),
        lambda s, i: call("PUT", f"/v1/cart/items/q{i % 10}", {"inventory_id": f"inv-{i % 10 + 1}", "quantity": i // 80 % 3 + 1},
                          s[i % 8], 2000 + i % 8))
measure("POST /add-to-cart (a hold)", lambda: filled(8, base=3000),
        lambda s, i: call("POST", "/add-to-cart", {"product_id": f"q{i % 10}", "inventory_id": f"inv-{i % 10 + 1}", "quantity": i // 80 % 3 + 1},
                          s[i % 8], 3000 + i % 8))
measure("DELETE /v1/cart/items/{p}", lambda: filled(n, base=4000),
        lambda s, i: call("DELETE", "/v1/cart/items/p0", session=s[i], client=4000 + i))
measure("POST /v1/cart/checkout", lambda: filled(n, base=5000),
        lambda s, i: call("POST", "/v1/cart/checkout", session=s[i], client=5000 + i))
measure("DELETE /v1/cart (abandon)", lambda: filled(n, base=6000),
        lambda s, i: call("DELETE", "/v1/cart", session=s[i], client=6000 + i))

print(f"\n{n} requests per route, one at a time, quotas {quotas}:\n")
print("| route | Redis commands per request | PostgreSQL statements per request |")
print("|---|---:|---:|")
for name, r, p in rows:
    print(f"| {name} | {r:.2f} | {p:.2f} |")
PY
