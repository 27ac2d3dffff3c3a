#!/usr/bin/env python3
"""Holds N live stock streams (GET /v1/inventory/events) open against cartd
on 127.0.0.1 and reports what they received, for scripts/sse-fanout.sh.

usage: sse_clients.py PORT STREAMS IDS SECONDS REPORT.json

Opens STREAMS connections (HTTP/1.0, so the body is plain text until the
server closes it), waits until every stream has its snapshot, writes
"ready" on stdout, then reads for SECONDS seconds and writes REPORT.json:
events per stream (snapshot and stock), the highest number of events one
stream got in any one second, and the last counts each stream saw per item.
Only loopback: the address is fixed to 127.0.0.1.
"""
import asyncio
import json
import sys
import time
from collections import defaultdict


async def stream(port, ids, state, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    query = f"?ids={ids}" if ids else ""
    writer.write(
        f"GET /v1/inventory/events{query} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        state["refused"] += 1
        ready.set_result(False) if not ready.done() else None
        writer.close()
        return
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    mine = {"events": 0, "snapshots": 0, "per_second": defaultdict(int), "last": {}}
    state["streams"].append(mine)
    event, data = None, []
    while True:
        line = await reader.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if line.startswith(b"event: "):
            event = line[7:].decode()
        elif line.startswith(b"data: "):
            data.append(line[6:])
        elif line == b"":
            if data:
                body = json.loads(b"".join(data))
                mine["events"] += 1
                mine["per_second"][int(time.monotonic())] += 1
                if event == "snapshot":
                    mine["snapshots"] += 1
                    if not ready.done():
                        ready.set_result(True)
                for item in body["items"]:
                    mine["last"][item["inventory_id"]] = [item["available"], item["reserved"], item["sold"]]
            event, data = None, []
    writer.close()


async def main():
    port, n, ids, seconds, report = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
    state = {"streams": [], "refused": 0}
    loop = asyncio.get_running_loop()
    tasks, readies = [], []
    for _ in range(n):
        ready = loop.create_future()
        readies.append(ready)
        tasks.append(asyncio.create_task(stream(port, ids, state, ready)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*readies), 60)
    started = time.monotonic()
    print("ready", flush=True)
    # Snapshots and connection set-up do not count towards the rates.
    for s in state["streams"]:
        s["events"] = 0
        s["per_second"].clear()
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu0
    out = {
        "streams": len(state["streams"]),
        "refused": state["refused"],
        "seconds": round(elapsed, 1),
        "client_cpu_share_of_one_core": round(cpu / elapsed, 2),
        "events_total": sum(s["events"] for s in state["streams"]),
        "events_per_stream_per_s_mean": round(
            sum(s["events"] for s in state["streams"]) / max(1, len(state["streams"])) / elapsed, 2
        ),
        "events_per_stream_max_in_one_second": max(
            (max(s["per_second"].values(), default=0) for s in state["streams"]), default=0
        ),
        "snapshots_after_start": sum(s["snapshots"] for s in state["streams"]) - len(state["streams"]),
        "last": [s["last"] for s in state["streams"]],
    }
    with open(report, "w") as f:
        json.dump(out, f)
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
