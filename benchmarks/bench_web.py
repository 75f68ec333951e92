"""Web collector throughput over HTTP, every acknowledged event committed.

A hub on a fresh FileStorage (fsync on every commit) runs the web adapter in-process; a load
generator in a **separate process** keeps ``--connections`` keep-alive HTTP/1.1 connections
busy posting beacons of ``--batch`` events (the snippet batches the same way, default 20) for
``--seconds``. Afterwards the store is reopened and its interaction count must equal the
number of events the collector acknowledged as applied: acknowledged means committed.

    python benchmarks/bench_web.py [--seconds 10] [--connections 32] [--batch 20] [--visitors 20000]

Target (issue 6): >= 5,000 events/s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ORIGIN = "https://shop.bench"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def _request(port: int, visitor: str, batch: int, rng: random.Random) -> bytes:
    now = time.time() * 1000
    events = []
    for _ in range(batch):
        r = rng.random()
        if r < 0.75:
            events.append({"type": "page_view", "id": str(uuid.uuid4()), "ts": now,
                           "data": {"url": f"{ORIGIN}/product/{rng.randrange(500)}", "title": "Product"}})
        elif r < 0.95:
            events.append({"type": "click", "id": str(uuid.uuid4()), "ts": now,
                           "data": {"url": f"{ORIGIN}/", "target": f"tile-{rng.randrange(40)}"}})
        else:
            events.append({"type": "cart_add", "id": str(uuid.uuid4()), "ts": now,
                           "data": {"sku": f"sku-{rng.randrange(500)}", "price": 19.9, "quantity": 1}})
    body = json.dumps({"visitor": visitor, "sent": now, "events": events}, separators=(",", ":")).encode()
    head = (f"POST /v1/shop/collect HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {ORIGIN}\r\n"
            f"User-Agent: {UA}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _conn(port: int, deadline: float, batch: int, visitors: list[str], seed: int, out: dict) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < deadline:
        req = _request(port, rng.choice(visitors), batch, rng)
        t0 = time.perf_counter()
        writer.write(req)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = json.loads(await reader.readexactly(length)) if length else {}
        out["latency"].append(time.perf_counter() - t0)
        out["requests"] += 1
        if status == 200:
            out["applied"] += body.get("applied", 0)
            out["duplicates"] += body.get("duplicates", 0)
        else:
            out["errors"][status] = out["errors"].get(status, 0) + 1
    writer.close()


def load_generator(port: int, seconds: float, connections: int, batch: int, n_visitors: int, q: mp.Queue) -> None:
    visitors = [str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(n_visitors)]
    out: dict = {"latency": [], "requests": 0, "applied": 0, "duplicates": 0, "errors": {}}

    async def main() -> float:
        t0 = time.monotonic()
        deadline = t0 + seconds
        await asyncio.gather(*(_conn(port, deadline, batch, visitors, i, out) for i in range(connections)))
        return time.monotonic() - t0

    out["elapsed"] = asyncio.run(main())
    q.put(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--visitors", type=int, default=20_000)
    ap.add_argument("--store", default=None, help="storage URI (default: a fresh FileStorage in a temp dir)")
    args = ap.parse_args()

    from shopkeeper.adapters.web import WebAdapter
    from shopkeeper.store import Store
    from shopkeeper.testing import start_hub

    tmp = tempfile.mkdtemp(prefix="bench-web-")
    uri = args.store or f"file://{tmp}/Data.fs"
    harness = start_hub({"store": uri})
    cfg = {"listen": "127.0.0.1:0", "sites": {"shop": {"origins": [ORIGIN]}},
           "ip_rate": 1e9, "ip_burst": 10**9, "visitor_rate": 1e6, "visitor_burst": 10**6,
           "max_events_per_request": max(100, args.batch)}
    q: mp.Queue = mp.get_context("spawn").Queue()
    with harness.run_adapter(WebAdapter, cfg, "in-process") as web:
        port = web.server.port
        proc = mp.get_context("spawn").Process(target=load_generator, args=(
            port, args.seconds, args.connections, args.batch, args.visitors, q))
        proc.start()
        out = q.get()
        proc.join()
        stats = dict(web.collector.stats)
    writer_events = harness.hub.writer.events_committed
    harness.hub.stop(grace=1.0)
    store = Store.open(uri)  # reopen: what is on disk
    with store.read() as f:
        committed = f.counter("interactions")
    store.close()

    lat = sorted(out["latency"])
    eps = out["applied"] / out["elapsed"]
    print(f"web collector over HTTP: {out['elapsed']:.1f} s, {args.connections} connections, "
          f"{args.batch} events per beacon, {args.visitors} visitors, store {uri}")
    rps = out["requests"] / out["elapsed"]
    print(f"  requests        {out['requests']:>10,}   ({rps:,.0f}/s)  errors {out['errors']}")
    print(f"  events acked    {out['applied']:>10,}   ({eps:,.0f} events/s)")
    print(f"  latency         p50 {statistics.median(lat) * 1000:.1f} ms   "
          f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms   (request sent -> committed ack)")
    print(f"  committed       {committed:>10,}   on disk after reopening; writer committed {writer_events:,}")
    print(f"  collector stats {stats}")
    ok = committed == out["applied"]
    print(f"  every acknowledged event committed: {'yes' if ok else 'NO'}")
    print(f"  target >= 5,000 events/s: {'met' if eps >= 5000 else 'MISSED'}")
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps({"events_per_s": eps, "committed_ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
