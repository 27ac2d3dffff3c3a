#!/usr/bin/env python3
"""hoard_client.py: "hoarder vs shoppers" (issue 14), driven by scripts/hoard.sh.

One hoarder (one source address, many concurrent connections) and N honest
shoppers (one distinct loopback source address each: 127.0.1.1, 127.0.1.2, ...)
race for one flash item across the cartd instances given with --base. Python
3.11, standard library only: asyncio streams with a minimal HTTP/1.1 client,
because the point is the *source address* of each connection (wrk and goose
cannot bind one). Loopback only: every --base must be http://127.x.x.x:port.

  hoarder  --hoarder-workers W connections from --hoarder-addr; each loops until
           --duration: open a cart, ask for --hoarder-want units; on
           409 insufficient_stock take what is available, on 429
           hold_limit_reached take `may_hold`, on 429 too_many_requests retry
           (a bot does not give up).
  shopper  each wants --want units; starts at a random moment within --spread
           seconds; opens a cart and asks; on 409 with units left takes them,
           on 429 hold_limit_reached takes `may_hold`; 503 is retried.

At the end it reads the item's counts and (with --admin-token) the admin view
of its top holders, and writes one JSON document (--out) and a summary line.
"""

import argparse
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlparse


class Http:
    """One keep-alive HTTP/1.1 connection from a given source address."""

    def __init__(self, base, local_addr):
        u = urlparse(base)
        if not (u.hostname or "").startswith("127."):
            raise SystemExit(f"loopback only: {base}")
        self.host, self.port, self.local = u.hostname, u.port, local_addr
        self.reader = self.writer = None

    async def _connect(self):
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, local_addr=(self.local, 0))

    async def close(self):
        if self.writer:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.writer = None

    async def request(self, method, path, headers=None, body=None):
        for attempt in range(2):
            try:
                if self.writer is None:
                    await self._connect()
                return await self._exchange(method, path, headers or {}, body)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                await self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method, path, headers, body):
        data = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {len(data)}"]
        if body is not None:
            lines.append("content-type: application/json")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ")[1])
        got = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                got[k.strip().lower()] = v.strip()
        n = int(got.get("content-length", "0"))
        payload = await self.reader.readexactly(n) if n else b""
        if got.get("connection", "").lower() == "close":
            await self.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return status, got, parsed


class Tally:
    def __init__(self):
        self.statuses = {}
        self.held = {}  # cart -> units

    def saw(self, status, code=None):
        key = f"{status} {code}" if code else str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def units(self):
        return sum(self.held.values())


async def take(conn, cart, item, want, tally, deadline, persistent):
    """Asks for `want` units in `cart`, adapting to the answers. Returns the
    units held, or None when the item is gone for this client."""
    q = want
    while time.monotonic() < deadline:
        status, _, body = await conn.request(
            "PUT", "/v1/cart/items/p-" + item, {"cart-session-id": cart}, {"inventory_id": item, "quantity": q})
        code = body.get("error") if isinstance(body, dict) else None
        tally.saw(status, code)
        if status == 200:
            tally.held[cart] = q
            return q
        if status == 409 and code == "insufficient_stock":
            left = int(body.get("available") or 0)
            if left <= 0:
                if not persistent:
                    return None
                await asyncio.sleep(0.05)
                continue
            q = min(q, left)
        elif status == 429 and code == "hold_limit_reached":
            may = int(body.get("may_hold") or 0)
            if may <= 0:
                return None
            q = min(q, may)
        elif status in (503, 429):
            await asyncio.sleep(0.05)
        else:
            return None
    return None


async def open_cart(conn, tally, deadline):
    while time.monotonic() < deadline:
        status, headers, body = await conn.request("POST", "/v1/carts")
        tally.saw(status, body.get("error") if isinstance(body, dict) else None)
        if status == 201:
            return headers["cart-session-id"]
        await asyncio.sleep(0.02 if status == 429 else 0.05)
    return None


async def hoarder_worker(base, addr, item, want, tally, deadline):
    conn = Http(base, addr)
    try:
        while time.monotonic() < deadline:
            cart = await open_cart(conn, tally, deadline)
            if cart is None:
                break
            await take(conn, cart, item, want, tally, deadline, persistent=False)
    finally:
        await conn.close()


async def shopper(base, addr, item, want, spread, tally, deadline):
    await asyncio.sleep(random.uniform(0, spread))
    conn = Http(base, addr)
    try:
        cart = await open_cart(conn, tally, deadline)
        if cart is not None:
            await take(conn, cart, item, want, tally, deadline, persistent=False)
    finally:
        await conn.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", action="append", required=True)
    ap.add_argument("--item", default="flash")
    ap.add_argument("--shoppers", type=int, default=200)
    ap.add_argument("--want", type=int, default=3)
    ap.add_argument("--spread", type=float, default=1.0)
    ap.add_argument("--hoarder-addr", default="127.0.2.1")
    ap.add_argument("--hoarder-workers", type=int, default=16)
    ap.add_argument("--hoarder-want", type=int, default=100)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--admin-token")
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.shoppers > 250 * 250:
        raise SystemExit("too many shoppers for 127.0.1.1 .. 127.0.250.250")
    deadline = time.monotonic() + a.duration
    hoard = Tally()
    shoppers = [Tally() for _ in range(a.shoppers)]
    tasks = [hoarder_worker(a.base[i % len(a.base)], a.hoarder_addr, a.item, a.hoarder_want, hoard, deadline)
             for i in range(a.hoarder_workers)]
    for i, t in enumerate(shoppers):
        addr = f"127.0.{1 + i // 250}.{1 + i % 250}"
        tasks.append(shopper(a.base[i % len(a.base)], addr, a.item, a.want, a.spread, t, deadline))
    started = time.monotonic()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started

    conn = Http(a.base[0], "127.0.0.1")
    _, _, stock = await conn.request("GET", f"/v1/inventory/{a.item}")
    admin = None
    if a.admin_token:
        _, _, admin = await conn.request(
            "GET", f"/v1/admin/limits?inventory_id={a.item}&top=3", {"authorization": f"Bearer {a.admin_token}"})
    await conn.close()

    honest_units = sum(t.units() for t in shoppers)
    statuses = {}
    for t in shoppers:
        for k, v in t.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    result = {
        "label": a.label,
        "item": a.item,
        "stock": stock,
        "elapsed_s": round(elapsed, 2),
        "hoarder": {"addr": a.hoarder_addr, "workers": a.hoarder_workers, "units": hoard.units(),
                    "carts_holding": sum(1 for u in hoard.held.values() if u > 0), "statuses": hoard.statuses},
        "shoppers": {"count": a.shoppers, "want": a.want, "units": honest_units,
                     "served": sum(1 for t in shoppers if t.units() > 0),
                     "served_in_full": sum(1 for t in shoppers if t.units() >= a.want), "statuses": statuses},
        "admin": admin,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
    total = stock["available"] + stock["reserved"] + stock["sold"]
    print(f"{a.label}: stock {total} (reserved {stock['reserved']}, available {stock['available']}); "
          f"hoarder holds {hoard.units()} ({100 * hoard.units() / max(total, 1):.1f} %) in "
          f"{result['hoarder']['carts_holding']} carts; {a.shoppers} shoppers hold {honest_units}, "
          f"{result['shoppers']['served']} served, {result['shoppers']['served_in_full']} in full")
    # The client's own tally must agree with the server's ledger.
    if hoard.units() + honest_units != stock["reserved"]:
        print(f"MISMATCH: clients hold {hoard.units() + honest_units}, server reserved {stock['reserved']}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
