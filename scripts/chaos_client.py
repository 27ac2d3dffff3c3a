#!/usr/bin/env python3
"""chaos_client.py: the load generator and the judge of the cartd chaos suite.

Driven by scripts/chaos.sh, which owns the servers and injects the faults; this
file only speaks HTTP to the cartd instances it is given (127.0.0.1 only).
Python 3.11, standard library only (http.client, threading, json).

The stock is seeded, and conservation judged after the load, by the load
test's own tool (`cartd-loadtest seed` and `cartd-loadtest check`, in
loadtest/src/stock.rs): one implementation for both suites. chaos.sh runs
them; this file reads what they write (seed.json, conservation.json).

Subcommands
-----------
  load   --base URL --base URL --seed seed.json --duration S --workers W
         --ttl SECS --out load.json
         N worker threads, each running carts through both instances: create,
         set lines, change a line's item, remove lines, view, then check out
         (sometimes retrying on purpose and checking the same order comes back),
         abandon, let the cart expire, race a checkout against the deadline, or
         try to change it after its deadline. A connection refused / dropped
         fails over to the other instance; 503 is retried. A checkout whose
         answer was lost is retried until the answer is definite (201/200 =
         sold, 404 = not sold); the few still open when the load ends are
         resolved afterwards. A monitor thread samples stock all along and
         checks available + reserved + sold == stock and that sold never
         decreases. Stops by itself after --duration seconds (plus the
         bounded checkout resolution). Writes every status seen, every order
         (once per order_id), the units the orders sold by item
         (`confirmed_sold`, plus `unknown_sold_upper` for checkouts whose
         answer never came) and every violation to --out.

  check  --base URL --base URL --seed seed.json --load load.json
         --conservation conservation.json
         [--faults faults.log] [--log cartd.log ...] [--meta k=v ...]
         Judges the run: the conservation check's verdict (`cartd-loadtest
         check` over both instances: they agree, per item available +
         reserved + sold == stock, reserved == 0, sold == the sum of the
         order lines the client saw, within bounds if any checkout stayed
         unknown), no 5xx other than 503 at any time, no violation seen
         during the load, every fault took effect and recovered, both
         instances answer /readyz 200, no panic in the logs. Prints a
         one-screen summary; exit status 0 = PASS, 1 = FAIL.

What counts as a violation (FAIL)
---------------------------------
  * any 5xx answer other than 503;
  * a successful PUT/DELETE line whose returned cart does not show the change,
    or (for a cart whose every step was answered) a view, or an order, that
    differs from what the client set;
  * a retried checkout that does not return the same order (or a 201 twice);
  * a checkout that sells a cart sent clearly (> --clock-margin) after its
    deadline, a change accepted after the deadline, a checkout refused with
    404 clearly before the deadline for a cart that was never touched by an
    unanswered request, or a change accepted on a checked-out cart;
  * a stock sample breaking conservation or with sold going down;
  * a request left without any answer for 10 s (an instance that hangs);
  * an answer outside the documented ones (e.g. 400, 415, inventory_not_found).
Connection refused / dropped during a kill and 503 during an outage are
expected and only counted.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import http.client
import json
import random
import re
import socket
import sys
import threading
import time
import urllib.parse

SESSION = "cart-session-id"
# cartd's own per-operation timeouts are 2 s (PostgreSQL) and 0.5 s (Redis):
# an answer slower than this waited on something else (lock waits, retries).
SLOW = 2.5
# Routes that change something: a 2xx on one of them is a write that worked.
WRITE_ROUTES = {"create", "put", "put-move", "delete-item", "put-zero", "checkout", "abandon"}
# After a fault's window ends (its last recovery note), every instance must
# answer a write with 2xx, and some checkout must place an order, within this.
RECOVERY_BOUND = 10.0
# A 503 this long after a fault's window is counted as outside any fault.
FAULT_GRACE = 3.0
JSON_CT = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class Resp:
    """An HTTP answer. The server read its clock between sent_at and recv_at."""

    __slots__ = ("status", "data", "headers", "inst", "sent_at", "recv_at", "kind")

    def __init__(self, status, data, headers, inst, sent_at):
        self.status = status
        self.data = data
        self.headers = headers
        self.inst = inst
        self.sent_at = sent_at
        self.recv_at = time.time()
        self.kind = None


class Fail:
    """No HTTP answer: kind is refused | dropped | timeout | oserror | protocol."""

    __slots__ = ("kind", "inst", "detail", "sent_at", "recv_at", "status")

    def __init__(self, kind, inst, detail, sent_at):
        self.kind = kind
        self.inst = inst
        self.detail = detail
        self.sent_at = sent_at
        self.recv_at = time.time()
        self.status = None


def parse_base(url: str):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname != "127.0.0.1":
        raise SystemExit(f"chaos_client: only http://127.0.0.1:PORT bases are allowed, got {url!r}")
    return u.hostname, u.port or 80


def rfc3339_to_epoch(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class Stats:
    """Everything the threads record, behind one lock."""

    def __init__(self, bases):
        self.lock = threading.Lock()
        self.bases = bases
        self.status = collections.Counter()  # "route status" -> n
        self.by_status = collections.Counter()  # status -> n
        self.by_inst = collections.Counter()  # "inst status" -> n
        self.events = collections.Counter()
        self.server_errors = []  # 5xx other than 503
        self.unexpected = []
        self.violations = []
        self.conn_errors = []  # (t, inst, route, kind)
        self.unavailable = []  # times of 503 answers
        self.latencies = []  # seconds, every attempt
        self.slow = []  # attempts slower than SLOW: (sent, took, inst, route, status)
        self.orders = {}  # order_id -> {"cart":, "lines": [[p, i, q]], "first": status}
        self.cart_order = {}  # cart id -> order_id
        self.unknown = []  # checkouts still undecided: {"cart":, "ever": {item: maxq}}
        self.monitor_samples = 0
        self.writes_ok = collections.defaultdict(list)  # instance -> send times of 2xx writes
        self.orders_at = []  # send times of 201 checkouts

    def count(self, route, res):
        key = str(res.status) if res.status is not None else "ERR-" + res.kind
        with self.lock:
            self.status[f"{route} {key}"] += 1
            self.by_status[key] += 1
            self.by_inst[f"{res.inst} {key}"] += 1
            took = res.recv_at - res.sent_at
            self.latencies.append(took)
            if took > SLOW:
                self.slow.append((round(res.sent_at, 3), round(took, 3), res.inst, route, key))
            if res.status is None:
                # (sent, instance, route, kind, failed at)
                self.conn_errors.append((round(res.sent_at, 3), res.inst, route, res.kind, round(res.recv_at, 3)))
            elif res.status == 503:
                self.unavailable.append(round(res.sent_at, 3))
            elif res.status >= 500 and res.status != 503:
                self.server_errors.append(
                    {"t": round(res.sent_at, 3), "inst": res.inst, "route": route, "status": res.status,
                     "body": res.data})
            if res.status is not None and 200 <= res.status < 300 and route in WRITE_ROUTES:
                self.writes_ok[res.inst].append(round(res.sent_at, 3))
                if route == "checkout" and res.status == 201:
                    self.orders_at.append(round(res.sent_at, 3))

    def event(self, name, n=1):
        with self.lock:
            self.events[name] += n

    def violation(self, what, **ctx):
        with self.lock:
            self.violations.append({"t": round(time.time(), 3), "what": what, **ctx})

    def unexpected_answer(self, route, res, note=""):
        with self.lock:
            self.unexpected.append({"t": round(res.sent_at, 3), "inst": res.inst, "route": route,
                                    "status": res.status, "body": res.data, "note": note})


class Client:
    """One per thread: keep-alive connections to every instance, with failover."""

    def __init__(self, bases, stats: Stats, rng: random.Random, timeout=10.0):
        self.bases = bases
        self.addrs = [parse_base(b) for b in bases]
        self.stats = stats
        self.rng = rng
        self.timeout = timeout
        self.conns = {}
        self.extra_headers = {}

    # The shared "instance looks down" marks live on the class: all threads
    # benefit from one thread's discovery.
    down_until = collections.defaultdict(float)

    def pick(self, prefer=None):
        now = time.time()
        up = [i for i in range(len(self.bases)) if Client.down_until[i] <= now]
        if prefer is not None and prefer in up:
            return prefer
        return self.rng.choice(up) if up else self.rng.randrange(len(self.bases))

    def _conn(self, inst):
        c = self.conns.get(inst)
        if c is None:
            host, port = self.addrs[inst]
            c = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self.conns[inst] = c
        return c

    def _drop(self, inst):
        c = self.conns.pop(inst, None)
        if c is not None:
            try:
                c.close()
            except OSError:
                pass

    def once(self, route, method, path, body=None, session=None, inst=None, headers=None, count=True):
        if inst is None:
            inst = self.pick()
        h = dict(self.extra_headers)
        h.update(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            h.update(JSON_CT)
        if session:
            h[SESSION] = session
        sent_at = time.time()
        conn = self._conn(inst)
        try:
            conn.request(method, path, body=payload, headers=h)
            r = conn.getresponse()
            raw = r.read()
            if r.getheader("connection", "").lower() == "close":
                self._drop(inst)
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw.decode("utf-8", "replace")[:200]
            res = Resp(r.status, data, {k.lower(): v for k, v in r.getheaders()}, inst, sent_at)
        except ConnectionRefusedError as e:
            self._drop(inst)
            Client.down_until[inst] = time.time() + 0.5
            res = Fail("refused", inst, str(e), sent_at)
        except (socket.timeout, TimeoutError) as e:
            self._drop(inst)
            res = Fail("timeout", inst, str(e), sent_at)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                ConnectionAbortedError) as e:
            self._drop(inst)
            res = Fail("dropped", inst, repr(e), sent_at)
        except http.client.HTTPException as e:
            self._drop(inst)
            res = Fail("protocol", inst, repr(e), sent_at)
        except OSError as e:
            self._drop(inst)
            res = Fail("oserror", inst, repr(e), sent_at)
        if count:
            self.stats.count(route, res)
        return res

    def retrying(self, route, method, path, body=None, session=None, attempts=4, until=None):
        """Retries connection failures and 503 on any instance (failover).
        Returns (last result, whether some attempt failed before it)."""
        failed = False
        res = None
        n = 0
        while True:
            n += 1
            prefer_other = res.inst if (res is not None and res.status is None) else None
            inst = self.pick()
            if prefer_other is not None and len(self.bases) > 1:
                inst = self.pick(prefer=(prefer_other + 1) % len(self.bases))
            res = self.once(route, method, path, body=body, session=session, inst=inst)
            if res.status is not None and res.status != 503:
                return res, failed
            failed = True
            if until is not None:
                if time.time() >= until:
                    return res, failed
            elif n >= attempts:
                return res, failed
            pause = 0.05 * n if res.status is None else 0.2 + 0.1 * min(n, 8)
            time.sleep(min(pause, 1.0) * (0.5 + self.rng.random()))

    def close(self):
        for inst in list(self.conns):
            self._drop(inst)


# --------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------


class Cart:
    def __init__(self, cid, expires_at):
        self.id = cid
        self.deadline = expires_at  # epoch seconds (server's view)
        self.view = {}  # product -> (item, qty), as the last answer showed
        self.exact = True  # every step so far was answered definitely
        self.touched_by_failure = False
        self.ever = collections.defaultdict(int)  # (product, item) -> max qty asked

    def ever_by_item(self):
        out = collections.Counter()
        for (_p, item), q in self.ever.items():
            out[item] += q
        return out


def lines_of(data):
    return {ln["product_id"]: (ln["inventory_id"], ln["quantity"]) for ln in (data or {}).get("lines", [])}


class Worker(threading.Thread):
    def __init__(self, n, a, stats, items, end, hard_end):
        super().__init__(name=f"worker-{n}", daemon=True)
        self.a = a
        self.stats = stats
        self.items = items
        self.hot = [i for i in items if i == a.hot_item]
        self.cold = [i for i in items if i != a.hot_item]
        self.end = end
        self.hard_end = hard_end
        self.rng = random.Random(a.seed_rng * 1000 + n)
        self.cl = Client(a.base, stats, self.rng)
        self.agenda = []  # (due, kind, cart)
        self.margin = a.clock_margin

    # ---- helpers ----------------------------------------------------------

    def pick_item(self):
        if self.hot and self.rng.random() < 0.15:
            return self.rng.choice(self.hot)
        return self.rng.choice(self.cold)

    def create(self):
        res, _ = self.cl.retrying("create", "POST", "/v1/carts", attempts=6)
        if res.status == 201:
            self.stats.event("carts_created")
            return Cart(res.data["cart_session_id"], rfc3339_to_epoch(res.data["expires_at"]))
        if res.status not in (None, 503):
            self.stats.unexpected_answer("create", res)
        return None

    def set_line(self, cart: Cart, product, item, qty, route="put"):
        if qty > 0:
            cart.ever[(product, item)] = max(cart.ever[(product, item)], qty)
            res, failed = self.cl.retrying(route, "PUT", f"/v1/cart/items/{product}",
                                           body={"inventory_id": item, "quantity": qty}, session=cart.id)
        else:
            res, failed = self.cl.retrying(route, "DELETE", f"/v1/cart/items/{product}", session=cart.id)
        if failed:
            cart.touched_by_failure = True
        if res.status == 200:
            got = lines_of(res.data)
            if qty > 0 and got.get(product) != (item, qty):
                self.stats.violation("set line answered 200 without the change", cart=cart.id, product=product,
                                     asked=[item, qty], got=got.get(product))
            if qty == 0 and product in got:
                self.stats.violation("remove line answered 200 with the line still there", cart=cart.id,
                                     product=product, got=got[product])
            if cart.exact:
                want = dict(cart.view)
                if qty > 0:
                    want[product] = (item, qty)
                else:
                    want.pop(product, None)
                if got != want:
                    self.stats.violation("cart answered differs from what was set", cart=cart.id,
                                         want=sorted(want.items()), got=sorted(got.items()))
            cart.view = got
            return "ok"
        if res.status == 404 and isinstance(res.data, dict) and res.data.get("error") == "session_not_found":
            self.stats.event("carts_lost_or_expired_on_change")
            return "gone"
        if res.status == 409 and isinstance(res.data, dict) and res.data.get("error") == "insufficient_stock":
            self.stats.event("insufficient_stock")
            return "short"
        if res.status is None or res.status == 503:
            cart.exact = False
            self.stats.event("line_changes_unanswered")
            return "failed"
        self.stats.unexpected_answer(route, res)
        cart.exact = False
        return "failed"

    def view(self, cart: Cart):
        res, failed = self.cl.retrying("get", "GET", "/v1/cart", session=cart.id)
        if res.status == 200:
            got = lines_of(res.data)
            if cart.exact and got != cart.view:
                self.stats.violation("GET /v1/cart differs from the last answer", cart=cart.id,
                                     want=sorted(cart.view.items()), got=sorted(got.items()))
            return "ok"
        if res.status == 404:
            self.stats.event("carts_lost_or_expired_on_view")
            return "gone"
        if res.status not in (None, 503):
            self.stats.unexpected_answer("get", res)
        return "failed"

    def record_order(self, cart: Cart, res, route):
        d = res.data or {}
        oid = d.get("order_id")
        lines = sorted([ln["product_id"], ln["inventory_id"], ln["quantity"]] for ln in d.get("lines", []))
        if d.get("cart_session_id") != cart.id:
            self.stats.violation("order for another cart", cart=cart.id, order=d)
        with self.stats.lock:
            prev = self.stats.cart_order.get(cart.id)
            if prev is not None and prev != oid:
                self.stats.violations.append({"t": round(time.time(), 3), "what": "two orders for one cart",
                                              "cart": cart.id, "orders": [prev, oid]})
            self.stats.cart_order[cart.id] = oid
            if oid not in self.stats.orders:
                self.stats.orders[oid] = {"cart": cart.id, "lines": lines, "first": res.status, "route": route}
            elif self.stats.orders[oid]["lines"] != lines:
                self.stats.violations.append({"t": round(time.time(), 3), "what": "same order, other lines",
                                              "order": oid, "lines": [self.stats.orders[oid]["lines"], lines]})
        return oid, lines

    def checkout(self, cart: Cart, route="checkout", resolving=False):
        """Returns 'sold', 'not_sold', 'empty' or 'unknown'."""
        until = self.hard_end if not resolving else time.time() + 15
        res, failed = self.cl.retrying(route, "POST", "/v1/cart/checkout", session=cart.id, until=until)
        if failed:
            self.stats.event("checkouts_needing_retry")
        if res.status in (200, 201):
            oid, lines = self.record_order(cart, res, route)
            self.stats.event(f"checkout_{res.status}{'_after_retry' if failed else ''}")
            if res.status == 201 and res.sent_at > cart.deadline + self.margin:
                self.stats.violation("checkout sold a cart past its deadline", cart=cart.id,
                                     deadline=cart.deadline, sent_at=res.sent_at)
            if cart.exact and not cart.touched_by_failure:
                want = sorted([p, i, q] for p, (i, q) in cart.view.items())
                if lines != want:
                    self.stats.violation("order lines differ from the cart", cart=cart.id, want=want, got=lines)
            return "sold", oid, lines
        if res.status == 404:
            self.stats.event("checkout_404")
            # The server read its clock before the answer arrived: an answer
            # received before the deadline was decided before it.
            if (res.recv_at < cart.deadline - self.margin and cart.exact and not cart.touched_by_failure
                    and not failed and cart.view):
                self.stats.violation("checkout refused (404) before the deadline", cart=cart.id,
                                     deadline=cart.deadline, sent_at=res.sent_at, recv_at=res.recv_at)
            return "not_sold", None, None
        if res.status == 409 and isinstance(res.data, dict) and res.data.get("error") == "cart_empty":
            self.stats.event("checkout_cart_empty")
            if cart.exact and cart.view:
                self.stats.violation("cart_empty for a cart with lines", cart=cart.id,
                                     view=sorted(cart.view.items()))
            return "empty", None, None
        if res.status is None or res.status == 503:
            return "unknown", None, None
        self.stats.unexpected_answer(route, res)
        return "unknown", None, None

    def checkout_and_settle(self, cart: Cart, retry_on_purpose: bool):
        outcome, oid, lines = self.checkout(cart)
        if outcome == "unknown":
            with self.stats.lock:
                self.stats.unknown.append(cart)
            return
        if outcome != "sold":
            return
        if retry_on_purpose:
            res, _ = self.cl.retrying("checkout-retry", "POST", "/v1/cart/checkout", session=cart.id,
                                      until=time.time() + 10)
            if res.status == 200:
                d = res.data or {}
                got = sorted([ln["product_id"], ln["inventory_id"], ln["quantity"]] for ln in d.get("lines", []))
                if d.get("order_id") != oid or got != lines:
                    self.stats.violation("checkout retry returned another order", cart=cart.id, first=oid,
                                         retry=d.get("order_id"))
                else:
                    self.stats.event("checkout_retries_same_order")
            elif res.status is not None and res.status != 503:
                self.stats.violation("checkout retry did not return the order", cart=cart.id,
                                     status=res.status, body=res.data)
        if self.rng.random() < 0.1:
            res, _ = self.cl.retrying("put-after-checkout", "PUT", "/v1/cart/items/p-x",
                                      body={"inventory_id": self.pick_item(), "quantity": 1}, session=cart.id)
            if res.status == 200:
                self.stats.violation("checked-out cart accepted a change", cart=cart.id)
            elif res.status == 404:
                self.stats.event("put_after_checkout_404")
            elif res.status not in (None, 503):
                self.stats.unexpected_answer("put-after-checkout", res)

    def abandon(self, cart: Cart):
        res, _ = self.cl.retrying("abandon", "DELETE", "/v1/cart", session=cart.id)
        if res.status == 204:
            self.stats.event("carts_abandoned")
        elif res.status == 404:
            self.stats.event("abandon_404")
        elif res.status not in (None, 503):
            self.stats.unexpected_answer("abandon", res)

    def after_deadline_put(self, cart: Cart):
        item = self.pick_item()
        res = self.cl.once("put-after-deadline", "PUT", "/v1/cart/items/p-late", session=cart.id,
                           body={"inventory_id": item, "quantity": 1}, inst=self.cl.pick())
        if res.status == 200 and res.sent_at > cart.deadline + self.margin:
            self.stats.violation("expired cart accepted a change", cart=cart.id, deadline=cart.deadline,
                                 sent_at=res.sent_at)
        elif res.status == 404:
            self.stats.event("put_after_deadline_404")
        elif res.status not in (None, 503, 200):
            self.stats.unexpected_answer("put-after-deadline", res)

    # ---- the loop -----------------------------------------------------------

    def run_due(self):
        now = time.time()
        self.agenda.sort(key=lambda x: x[0])
        while self.agenda and self.agenda[0][0] <= now:
            _due, kind, cart = self.agenda.pop(0)
            if kind == "race":
                self.stats.event("deadline_races")
                self.checkout_and_settle(cart, retry_on_purpose=False)
            elif kind == "late-put":
                self.after_deadline_put(cart)

    def one_cart(self):
        cart = self.create()
        if cart is None:
            time.sleep(0.05)
            return
        products = [f"p-{n}" for n in range(1, self.rng.randint(2, 6) + 1)]
        for _ in range(self.rng.randint(1, 6)):
            r = self.rng.random()
            if r < 0.60 or not cart.view:
                st = self.set_line(cart, self.rng.choice(products), self.pick_item(), self.rng.randint(1, 5))
            elif r < 0.75:
                p = self.rng.choice(sorted(cart.view))
                other = self.pick_item()
                self.stats.event("item_changes")
                st = self.set_line(cart, p, other, self.rng.randint(1, 5), route="put-move")
            elif r < 0.85:
                p = self.rng.choice(sorted(cart.view))
                if self.rng.random() < 0.5:
                    st = self.set_line(cart, p, cart.view[p][0], 0, route="delete-item")
                else:
                    st = self.set_line(cart, p, cart.view[p][0], 0, route="put-zero")
                    # PUT quantity 0 is the same as a removal
            else:
                st = self.view(cart)
            if st == "gone":
                return
            if st == "failed":
                break
        if not cart.exact:
            # An unanswered change: the cart may or may not hold it. Either
            # check it out anyway (sold is judged from the order's lines) or
            # leave it to its deadline.
            if self.rng.random() < 0.4:
                self.checkout_and_settle(cart, retry_on_purpose=False)
            else:
                self.stats.event("carts_left_after_failure")
            return
        r = self.rng.random()
        if r < 0.50:
            self.checkout_and_settle(cart, retry_on_purpose=self.rng.random() < 0.3)
        elif r < 0.56:
            due = cart.deadline + self.rng.uniform(-0.25, 0.15)
            self.agenda.append((due, "race", cart))
        elif r < 0.70:
            self.abandon(cart)
        elif r < 0.74:
            self.agenda.append((cart.deadline + self.margin + self.rng.uniform(0.05, 0.5), "late-put", cart))
        else:
            self.stats.event("carts_left_to_expire")

    def run(self):
        try:
            while time.time() < self.end:
                self.run_due()
                self.one_cart()
            # Races and late changes not yet due when the load ends are
            # dropped: those carts simply expire.
            self.stats.event("carts_left_to_expire", len(self.agenda))
            self.agenda.clear()
        except Exception as e:  # a client bug must not look like a pass
            self.stats.violation("client thread crashed", error=repr(e))
            raise
        finally:
            self.cl.close()


class Monitor(threading.Thread):
    """Samples stock during the load: conservation at every read, sold never
    going down, nothing negative."""

    def __init__(self, a, stats, stock, stop):
        super().__init__(name="monitor", daemon=True)
        self.stats = stats
        self.stock = stock
        self.stop = stop
        self.rng = random.Random(7)
        self.cl = Client(a.base, stats, self.rng)
        self.sold_seen = collections.defaultdict(int)

    def run(self):
        items = sorted(self.stock)
        while not self.stop.is_set():
            item = self.rng.choice(items)
            res = self.cl.once("stock", "GET", f"/v1/inventory/{item}")
            if res.status == 200:
                d = res.data
                with self.stats.lock:
                    self.stats.monitor_samples += 1
                if min(d["available"], d["reserved"], d["sold"]) < 0 or \
                        d["available"] + d["reserved"] + d["sold"] != self.stock[item]:
                    self.stats.violation("stock sample breaks conservation", item=item, sample=d,
                                         stock=self.stock[item])
                if d["sold"] < self.sold_seen[item]:
                    self.stats.violation("sold went down", item=item, before=self.sold_seen[item], now=d["sold"])
                self.sold_seen[item] = max(self.sold_seen[item], d["sold"])
            elif res.status not in (None, 503):
                self.stats.unexpected_answer("stock", res)
            self.stop.wait(0.05)
        self.cl.close()


def latency_summary(xs):
    if not xs:
        return {}
    xs = sorted(xs)

    def q(p):
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 4)

    return {"n": len(xs), "p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": round(xs[-1], 3)}


def cmd_load(a):
    with open(a.seed) as f:
        seed = json.load(f)
    stock = seed["items"]
    a.hot_item = seed.get("flash_item")
    items = sorted(stock)
    stats = Stats(a.base)
    t0 = time.time()
    end = t0 + a.duration
    hard_end = end + a.ttl + 2 + a.checkout_grace
    stop = threading.Event()
    mon = Monitor(a, stats, stock, stop)
    mon.start()
    workers = [Worker(n, a, stats, items, end, hard_end) for n in range(a.workers)]
    for w in workers:
        w.start()
    last_report = t0
    while any(w.is_alive() for w in workers):
        for w in workers:
            w.join(timeout=0.5)
        if a.progress and time.time() - last_report >= a.progress:
            last_report = time.time()
            with stats.lock:
                total = sum(stats.by_status.values())
                sold = len(stats.orders)
                bad = len(stats.violations) + len(stats.server_errors)
                s503 = stats.by_status.get("503", 0)
                errs = sum(v for k, v in stats.by_status.items() if k.startswith("ERR"))
            print(f"  load t+{last_report - t0:5.1f}s requests={total} orders={sold} 503={s503} "
                  f"conn-errors={errs} violations={bad}", flush=True)
    load_end = time.time()
    # Resolve checkouts whose answer never came: a retry answers 200 with the
    # order if it happened, 404 if it did not (or 201 if the cart is still
    # open: then it is sold now, and counted).
    resolver = Worker(999, a, stats, items, end, hard_end)
    with stats.lock:
        pending = list(stats.unknown)
        stats.unknown.clear()
    still = []
    for cart in pending:
        outcome, _oid, _lines = resolver.checkout(cart, route="checkout-resolve", resolving=True)
        stats.event(f"resolved_{outcome}")
        if outcome == "unknown":
            still.append(cart)
    resolver.cl.close()
    stop.set()
    mon.join(timeout=5)
    sold_by_item = collections.Counter()
    for o in stats.orders.values():
        for _p, item, q in o["lines"]:
            sold_by_item[item] += q
    unknown_upper = collections.Counter()
    for cart in still:
        unknown_upper.update(cart.ever_by_item())
    out = {
        "started": t0, "load_end": load_end, "finished": time.time(),
        "workers": a.workers, "duration": a.duration,
        "status": dict(stats.status), "by_status": dict(stats.by_status), "by_inst": dict(stats.by_inst),
        "events": dict(stats.events), "server_errors": stats.server_errors, "unexpected": stats.unexpected,
        "violations": stats.violations, "conn_errors": stats.conn_errors, "unavailable": stats.unavailable,
        "orders": stats.orders, "confirmed_sold": dict(sold_by_item),
        "unknown_checkouts": [c.id for c in still], "unknown_sold_upper": dict(unknown_upper),
        "monitor_samples": stats.monitor_samples,
        "writes_ok": {str(k): sorted(v) for k, v in stats.writes_ok.items()}, "orders_at": sorted(stats.orders_at),
        "latency": latency_summary(stats.latencies), "slow": stats.slow,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(f"load done in {load_end - t0:.1f}s (+{time.time() - load_end:.1f}s resolving {len(pending)} "
          f"unanswered checkouts, {len(still)} still unknown)")


# --------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------


def read_faults(path):
    faults = []
    if not path:
        return faults
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    faults.append(line)
    except FileNotFoundError:
        pass
    return faults


def kill_windows(faults, n_inst):
    """[(inst, start, end)] from 'EPOCH ... kill-instance i' / 'instance-ready i' lines."""
    windows = []
    open_ = {}
    for line in faults:
        parts = line.split()
        try:
            t = float(parts[0])
        except (ValueError, IndexError):
            continue
        m = re.search(r"\bKILL-9 instance (\d+)", line)
        if m:
            open_[int(m.group(1))] = t
        m = re.search(r"\binstance (\d+) ready again", line)
        if m and int(m.group(1)) in open_:
            windows.append((int(m.group(1)), open_.pop(int(m.group(1))), t))
    for i, t in open_.items():
        windows.append((i, t, float("inf")))
    return windows


def parse_faults(faults):
    """Each FAULT line with what followed it until the next FAULT or the end
    of the load: {kind, start, end, text, evidence: [(ok, text)], recovery:
    [(ok, text)]}. `end` is the time of the last line about it (its
    recovery), or the fault's own time."""
    out = []
    for line in faults:
        parts = line.split(" ", 3)
        try:
            t, typ, text = float(parts[0]), parts[2], (parts[3] if len(parts) > 3 else "")
        except (ValueError, IndexError):
            continue
        if typ == "FAULT":
            m = re.match(r"\((\d)\)", text)
            out.append({"kind": m.group(1) if m else "?", "start": t, "end": t, "text": text,
                        "evidence": [], "recovery": []})
            continue
        if "load finished" in text or "load starts" in text or not out or out[-1].get("closed"):
            if out and "load finished" in text:
                out[-1]["closed"] = True
            continue
        f = out[-1]
        f["end"] = max(f["end"], t)
        if typ in ("EVIDENCE", "RECOVERY"):
            ok, _, what = text.partition(": ")
            f["evidence" if typ == "EVIDENCE" else "recovery"].append((ok == "ok", what))
    return out


def first_at_or_after(times, t):
    """The first time in the sorted list `times` at or after t, or None."""
    lo, hi = 0, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return times[lo] if lo < len(times) else None


def judge_faults(faults, load, n_inst):
    """Judges every fault: it must show server-side evidence that it took
    effect and that the server side came back; after its window every
    instance must answer a write with 2xx, and some checkout must place an
    order, within RECOVERY_BOUND s (or before the load ended, if sooner).
    Returns (one line per fault, failures)."""
    parsed = parse_faults(faults)
    writes = {int(k): v for k, v in (load.get("writes_ok") or {}).items()}
    orders = load.get("orders_at") or []
    load_end = load["load_end"]
    t0 = load["started"]
    lines, fails = [], []
    for f in parsed:
        label = f"({f['kind']}) at t{f['start'] - t0:+.1f}s"
        problems = []
        if not f["evidence"]:
            problems.append("no evidence that it took effect")
        for ok, what in f["evidence"]:
            if not ok:
                problems.append(f"did not take effect: {what}")
        for ok, what in f["recovery"]:
            if not ok:
                problems.append(f"did not recover: {what}")
        end = f["end"]
        until = min(end + RECOVERY_BOUND, load_end)
        delays = []
        if until - end >= 1.0:
            for inst in range(n_inst):
                first = first_at_or_after(writes.get(inst, []), end)
                if first is None or first > until:
                    problems.append(f"no write succeeded on instance {inst} within {until - end:.1f} s of the fault's end")
                else:
                    delays.append(f"i{inst} {first - end:.1f}s")
            first_order = first_at_or_after(orders, end)
            if first_order is None or first_order > until:
                problems.append(f"no order placed within {until - end:.1f} s of the fault's end")
            else:
                delays.append(f"order {first_order - end:.1f}s")
            recovered = "writes again after " + ", ".join(delays) if delays else ""
        else:
            recovered = ""
            problems.append("the load ended before the fault's window closed: its recovery cannot be judged")
        evid = "; ".join(w for ok, w in f["evidence"] if ok)
        verdict = "ok" if not problems else "BAD (" + "; ".join(problems) + ")"
        lines.append(f"{label} {verdict}: " + (f"{recovered}; " if recovered else "") + f"evidence: {evid[:70]}")
        for p_ in problems:
            fails.append(f"fault {label}: {p_}")
    return parsed, lines, fails


def pg_log_stats(path):
    """Counts what PostgreSQL logged during the run: deadlocks (and which
    functions took part), other errors."""
    if not path:
        return {}
    counts = collections.Counter()
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    for m in re.finditer(r"ERROR:\s+(.*)", text):
        msg = m.group(1)
        if msg.startswith("deadlock detected"):
            counts["deadlocks"] += 1
        elif "does not exist" in msg:
            counts["errors before migrations"] += 1
        else:
            counts["other errors"] += 1
    for m in re.finditer(r"Process \d+: select .*? from (cartd_\w+)", text):
        counts["in deadlock: " + m.group(1)] += 1
    return counts


def log_stats(paths):
    pat = {
        "panics": re.compile(r"panicked at"),
        "ERROR lines": re.compile(r"^\S+\s+ERROR\b"),
        "WARN lines": re.compile(r"^\S+\s+WARN\b"),
        "listener reconnects": re.compile(r"expiry listener reconnected"),
        "listener disconnects": re.compile(r"expiry listener disconnected"),
        "events switched on": re.compile(r"switched on keyspace expired events"),
        "notifications-off warnings": re.compile(r"keyspace notifications are off"),
        "sweeper retries": re.compile(r"sweeper could not release"),
        "503s logged": re.compile(r"request failed: backing store unavailable"),
        "event releases failed": re.compile(r"release on expiry event failed"),
    }
    counts = collections.Counter()
    panics = []
    for p in paths or []:
        try:
            with open(p, errors="replace") as f:
                for line in f:
                    for k, rx in pat.items():
                        if rx.search(line):
                            counts[k] += 1
                            if k == "panics":
                                panics.append(f"{p}: {line.strip()[:200]}")
        except FileNotFoundError:
            pass
    return counts, panics


# The kinds of ERROR line a chaos run may show, each with its reason; any
# other ERROR line fails the run. None is expected: a request that meets
# Redis or PostgreSQL down is answered 503 and logged at WARN, and so are a
# failed release and a listener reconnect; cartd logs ERROR only when its
# expiry listener could not start or its task ended, which no fault here may
# cause (the listener reconnects).
EXPECTED_ERRORS: list = []


def error_kinds(paths):
    """The ERROR lines of the cartd logs, each reduced to its kind (the
    message, with ids, numbers and addresses masked)."""
    out = []
    for p in paths or []:
        try:
            with open(p, errors="replace") as f:
                for line in f:
                    if not re.match(r"^\S+\s+ERROR\b", line):
                        continue
                    kind = re.sub(r"^\S+\s+ERROR\s+", "", line.strip())
                    kind = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", kind)
                    kind = re.sub(r"\d+(\.\d+)?", "<n>", kind)
                    out.append(kind)
        except FileNotFoundError:
            pass
    return out


def meta_of(a):
    return dict(kv.split("=", 1) for kv in (a.meta or []))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def instances_ready(bases):
    """GET /readyz on every instance (retried for 5 s): the status each
    answered last, or ERR-<kind>."""
    cl = Client(bases, Stats(bases), random.Random(3))
    ready = []
    for inst in range(len(bases)):
        deadline = time.time() + 5
        while True:
            res = cl.once("readyz", "GET", "/readyz", inst=inst)
            if res.status == 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        ready.append(res.status if res.status is not None else "ERR-" + res.kind)
    cl.close()
    return ready


def item_rows(stock, cons, load):
    """Per item: (available, reserved, sold, expected sold low, high, bad) from
    the conservation check's final reading, or None when it had none."""
    sold_exp = collections.Counter(load["confirmed_sold"])
    upper = collections.Counter(load["unknown_sold_upper"])
    final = cons.get("final") or {}
    rows = []
    for item in sorted(stock):
        d = final.get(item)
        if d is None:
            rows.append((item, None))
            continue
        lo = sold_exp[item]
        bad = any(re.search(rf"(^|\s){re.escape(item)}:", v) for v in cons["violations"])
        rows.append((item, (d["available"], d["reserved"], d["sold"], lo, lo + upper[item], bad)))
    return rows


def stray_conn_errors(load, faults, n_inst):
    """Connection errors other than refusals outside every kill window."""
    windows = kill_windows(faults, n_inst)
    stray = []
    for err in load["conn_errors"]:
        _sent, inst, _route, kind, failed = err
        if kind == "refused":
            continue
        if any(w_i == inst and ws - 0.5 <= failed <= we + 0.5 for w_i, ws, we in windows):
            continue
        stray.append(err)
    return stray


def load_fails(load, panics, timeout):
    """What the load itself saw go wrong."""
    fails = []
    if load["server_errors"]:
        fails.append(f"{len(load['server_errors'])} answers 5xx other than 503")
    if load["violations"]:
        fails.append(f"{len(load['violations'])} invariant violations seen during the load")
    if load["unexpected"]:
        fails.append(f"{len(load['unexpected'])} undocumented/unexpected answers")
    if panics:
        fails.append(f"{len(panics)} panics in the cartd logs")
    hung = [c for c in load["conn_errors"] if c[3] == "timeout"]
    if hung:
        fails.append(f"{len(hung)} requests got no answer within {timeout:g} s (first: {hung[0]})")
    return fails


def fault_windows(parsed_faults):
    """A fault's window: from just before it to FAULT_GRACE after its last
    line (its recovery). [(kind, start, end, text)]"""
    return [(f["kind"], f["start"] - 0.5, f["end"] + FAULT_GRACE, f["text"]) for f in parsed_faults]


def split_503s(load, windows_all):
    """The times of 503 answers inside some fault window, and outside all."""
    inside, outside = [], []
    for t in load.get("unavailable", []):
        (inside if any(ws <= t <= we for _k, ws, we, _x in windows_all) else outside).append(t)
    return inside, outside


def print_load(load, W):
    ev = load["events"]
    total = sum(load["by_status"].values())
    secs = load["load_end"] - load["started"]
    print(f"load: {load['workers']} workers, {secs:.1f}s, {total} requests ({total / max(secs, 0.001):.0f}/s), "
          f"{ev.get('carts_created', 0)} carts, {len(load['orders'])} orders, "
          f"{load['monitor_samples']} stock samples")
    bs = load["by_status"]
    print("by status: " + "  ".join(f"{k}={bs[k]}" for k in sorted(bs)))
    per_route = collections.defaultdict(dict)
    for k, v in load["status"].items():
        route, st = k.rsplit(" ", 1)
        per_route[route][st] = v
    line = []
    for route in sorted(per_route):
        line.append(f"{route}[" + " ".join(f"{s}:{n}" for s, n in sorted(per_route[route].items())) + "]")
    text = " ".join(line)
    while text:
        cut = text.rfind(" ", 0, W) if len(text) > W else len(text)
        cut = cut if cut > 0 else len(text)
        print("  " + text[:cut])
        text = text[cut:].lstrip()
    keys = ["checkout_201", "checkout_201_after_retry", "checkout_200_after_retry", "checkout_404",
            "checkout_retries_same_order", "deadline_races", "carts_abandoned", "carts_left_to_expire",
            "carts_lost_or_expired_on_change", "put_after_deadline_404", "put_after_checkout_404",
            "insufficient_stock", "line_changes_unanswered", "resolved_sold", "resolved_not_sold"]
    print("events: " + ", ".join(f"{k}={ev[k]}" for k in keys if ev.get(k)))


def print_faults(load, faults, parsed_faults, fault_lines, windows_all, W):
    t0 = load["started"]
    bad_faults = [l_ for l_ in fault_lines if " BAD (" in l_]
    print(f"faults: {len(parsed_faults)} injected, {len(parsed_faults) - len(bad_faults)} with evidence that they "
          f"took effect and recovery within {RECOVERY_BOUND:g} s (times in faults.log):")
    if len(fault_lines) <= 10:
        for fl in fault_lines:
            print(f"  {fl[:2 * W]}")
        return
    for fl in bad_faults:
        print(f"  {fl[:2 * W]}")
    by_kind = collections.defaultdict(list)
    for kind, ws, _we, text in windows_all:
        by_kind[kind].append((ws + 0.5 - t0, text))
    for kind in sorted(by_kind):
        first = by_kind[kind][0][1]
        first = re.sub(r"^\(\d\)\s*", "", first)
        first = re.sub(r"instance \d \(pid \d+, [^)]*\)", "an instance (alternating), restarted", first)
        first = re.sub(r" \(dbsize was \d+\)", "", first)
        times = " ".join(f"{t:+.0f}" for t, _ in by_kind[kind])
        print(f"  ({kind}) x{len(by_kind[kind])} at t{times}s: {first[:60]}")
    for fl in faults:
        if "NOT ready" in fl or "did not come back" in fl:
            print(f"  ANOMALY {fl}")
    obs = [fl.split(" NOTE ", 1)[1] for fl in faults if "2 s later notify-keyspace-events" in fl]
    if obs:
        print("  (5) observed after resubscribe: " + "; ".join(sorted(set(obs)))[:120])


def print_items(rows, stock, load, cons):
    upper = load["unknown_sold_upper"]
    print(f"items (available/reserved/sold, expected sold): stock {sum(stock.values())} units")
    cells = []
    for item, r in rows:
        if r is None:
            cells.append(f"{item:10} unreadable")
            continue
        a_, r_, s_, lo, hi, bad = r
        exp = f"{lo}" if lo == hi else f"{lo}..{hi}"
        cells.append(f"{item:10} {a_:>5}/{r_}/{s_:<4} exp {exp:<5} {'BAD' if bad else 'ok'}")
    half = (len(cells) + 1) // 2
    for i in range(half):
        left = cells[i]
        right = cells[i + half] if i + half < len(cells) else ""
        print(f"  {left:<37} {right}")
    tot_sold = sum(r[2] for _i, r in rows if r)
    print(f"totals: sold {tot_sold} (orders say {sum(load['confirmed_sold'].values())}"
          f"{', +unknown up to ' + str(sum(upper.values())) if upper else ''}), reserved "
          f"{sum(r[1] for _i, r in rows if r)}, unknown checkouts {len(load['unknown_checkouts'])}")
    print(f"conservation (cartd-loadtest check): {cons['verdict']}, {len(cons['violations'])} violations")


def print_availability(a, load, windows_all, inside, outside, counts, errors_by_kind, stray):
    """Latency, 503s by fault, what the logs of cartd and PostgreSQL show."""
    per_kind = collections.Counter()
    for t in inside:
        for k, ws, we, _x in windows_all:
            if ws <= t <= we:
                per_kind[k] += 1
                break
    lat = load.get("latency") or {}
    slow = load.get("slow") or []
    if lat:
        slow_out = [x for x in slow if not any(ws <= x[0] + x[1] and x[0] <= we for _k, ws, we, _t in windows_all)]
        print(f"latency: p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms, p99.9 "
              f"{lat['p999'] * 1000:.0f} ms, max {lat['max']:.1f} s; {len(slow)} answers slower than {SLOW} s "
              f"({len(slow_out)} outside fault windows)")
    print(f"503s: {len(inside) + len(outside)}, {len(inside)} during or within {FAULT_GRACE:g} s after a fault ("
          + ", ".join(f"({k}):{n}" for k, n in sorted(per_kind.items()))
          + f"), {len(outside)} elsewhere (allowed {a.allowed_503_outside})")
    print("cartd logs: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if errors_by_kind:
        print("ERROR lines by kind: " + "; ".join(f"{n}x {k[:60]}" for k, n in errors_by_kind.most_common(4)))
    pg = pg_log_stats(a.pg_log)
    if pg:
        print("postgres log: " + ", ".join(f"{k}={v}" for k, v in sorted(pg.items()))
              + (" (not judged; see postgresql.log)" if pg.get("deadlocks") else ""))
    if stray:
        print(f"note: {len(stray)} connection errors outside kill windows (first: {stray[0]})")


def print_problems(a, load, cons, panics, fails, stray, ready, counts):
    """The first few of each kind of problem; everything in --detail."""
    for m in cons["violations"][:5]:
        print(f"  MISMATCH {m}")
    for e in load["server_errors"][:5]:
        print(f"  5XX {e}")
    for v in load["violations"][:5]:
        print(f"  VIOLATION {json.dumps(v)[:300]}")
    for u in load["unexpected"][:5]:
        print(f"  UNEXPECTED {json.dumps(u)[:300]}")
    for p in panics[:3]:
        print(f"  PANIC {p}")
    if a.detail:
        with open(a.detail, "w") as f:
            json.dump({"final": cons.get("final"), "fails": fails, "mismatches": cons["violations"],
                       "server_errors": load["server_errors"], "violations": load["violations"],
                       "unexpected": load["unexpected"], "panics": panics, "stray_conn_errors": stray,
                       "ready": ready, "log_counts": counts, "slow": load.get("slow"),
                       "latency": load.get("latency")}, f, indent=1)


def cmd_check(a):
    seed, load, cons = read_json(a.seed), read_json(a.load), read_json(a.conservation)
    stock = seed["items"]
    fails = []

    ready = instances_ready(a.base)
    for inst, status in enumerate(ready):
        if status != 200:
            fails.append(f"instance {inst} ({a.base[inst]}) /readyz -> {status}")
    if cons["verdict"] != "pass":
        fails.append(f"conservation: {len(cons['violations'])} violations")
    rows = item_rows(stock, cons, load)

    counts, panics = log_stats(a.log)
    faults = read_faults(a.faults)
    stray = stray_conn_errors(load, faults, len(a.base))
    fails.extend(load_fails(load, panics, a.timeout))

    parsed_faults, fault_lines, fault_fails = judge_faults(faults, load, len(a.base))
    fails.extend(fault_fails)
    expected_faults = int(meta_of(a).get("faults", "0") or 0)
    if len(parsed_faults) < expected_faults:
        fails.append(f"{len(parsed_faults)} faults in faults.log, {expected_faults} planned")
    windows_all = fault_windows(parsed_faults)
    inside, outside = split_503s(load, windows_all)
    if len(outside) > a.allowed_503_outside:
        fails.append(f"{len(outside)} answers 503 outside every fault window (allowed {a.allowed_503_outside}; "
                     f"first at t{outside[0] - load['started']:+.1f}s)")
    errors_by_kind = collections.Counter(error_kinds(a.log))
    unexplained = {k: n for k, n in errors_by_kind.items() if not any(rx.search(k) for rx in EXPECTED_ERRORS)}
    if unexplained:
        fails.append(f"{sum(unexplained.values())} ERROR log lines of no expected kind: "
                     + "; ".join(f"{n}x {k[:100]}" for k, n in sorted(unexplained.items())[:3]))

    # ---- summary --------------------------------------------------------
    meta = meta_of(a)
    W = 78
    print("=" * W)
    print(f"cartd chaos {meta.get('mode', '')}: {meta.get('run_dir', '')}".rstrip())
    print_load(load, W)
    print_faults(load, faults, parsed_faults, fault_lines, windows_all, W)
    print_availability(a, load, windows_all, inside, outside, counts, errors_by_kind, stray)
    print_items(rows, stock, load, cons)
    print("readyz: " + ", ".join(f"{a.base[i]} -> {ready[i]}" for i in range(len(ready))))
    print_problems(a, load, cons, panics, fails, stray, ready, counts)
    verdict = "PASS" if not fails else "FAIL: " + "; ".join(fails)
    print(("RESULT " + verdict)[:2000])
    print("=" * W)
    return 0 if not fails else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("load")
    l.add_argument("--base", action="append", required=True)
    l.add_argument("--seed", required=True)
    l.add_argument("--duration", type=float, default=30)
    l.add_argument("--workers", type=int, default=8)
    l.add_argument("--ttl", type=float, default=3)
    l.add_argument("--checkout-grace", type=float, default=10,
                   help="how long after the load (+TTL) a checkout may keep retrying")
    l.add_argument("--clock-margin", type=float, default=0.25,
                   help="seconds of slack when comparing request times with deadlines")
    l.add_argument("--seed-rng", type=int, default=int(time.time()) % 100000)
    l.add_argument("--progress", type=float, default=5)
    l.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--base", action="append", required=True)
    c.add_argument("--seed", required=True)
    c.add_argument("--load", required=True)
    c.add_argument("--conservation", required=True, help="what `cartd-loadtest check` wrote (--out)")
    c.add_argument("--faults")
    c.add_argument("--log", action="append")
    c.add_argument("--meta", action="append")
    c.add_argument("--detail")
    c.add_argument("--pg-log", help="what PostgreSQL logged during the run (deadlocks are reported)")
    c.add_argument("--timeout", type=float, default=10.0, help="the load's per-request timeout (for the report)")
    c.add_argument("--allowed-503-outside", type=int, default=0,
                   help="503 answers allowed outside every fault window (default 0)")
    a = p.parse_args()
    if a.cmd == "load":
        cmd_load(a)
        return 0
    return cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
