"""The console's server time: the 360° page of a customer with many interactions, and search by email.

A hub on a fresh FileStorage holds ``--customers`` customers (one e-mail each, a page view) and
one heavy customer with ``--interactions`` interactions; the console adapter runs in-process.
A logged-in HTTP client on loopback asks for

* ``GET /customers/{id}`` — the whole 360° page of the heavy customer, first timeline page
  included (the server-rendered HTML), ``--repeat`` times;
* ``GET /api/customers?q=EMAIL`` — search by a random customer's e-mail, ``--repeat`` times;

and reports the time per request (median, p95): the wall time of the HTTP request on loopback,
seen from this process — an upper bound of the server time the target speaks of.

    python benchmarks/bench_console.py [--customers 100000] [--interactions 10000] [--repeat 50]

Targets (issue 18): the 360° page of a customer with 10k interactions <= 300 ms server time;
search by e-mail <= 50 ms at 1M customers. ``--customers`` says at what size it was measured.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()

    import httpx

    from shopkeeper.hub.config import ApiKey, hash_key, new_key
    from shopkeeper.testing import start_hub

    tmp = tempfile.mkdtemp(prefix="bench-console-")
    harness = start_hub({"store": f"file://{tmp}/Data.fs", "adapters": {"console": {"listen": "127.0.0.1:0"}}})
    key = new_key()
    harness.hub.config.api_keys.append(ApiKey("bench", hash_key(key), frozenset({"console"})))
    api = harness.in_process("bench")
    try:
        t0 = time.perf_counter()
        for start in range(0, args.customers, args.batch):
            api.record([{"type": "page_view", "identities": {"email": f"c{i}@example.com"},
                         "idempotency_key": f"c{i}", "data": {"url": "/"}}
                        for i in range(start, min(args.customers, start + args.batch))])
        heavy = None
        for start in range(0, args.interactions, args.batch):
            res = api.record([{"type": "page_view" if i % 10 else "order", "identities": {"email": "heavy@example.com"},
                               "idempotency_key": f"h{i}",
                               "data": {"url": f"/p/{i}"} if i % 10 else {"order_id": f"O{i}", "amount": 10.0}}
                              for i in range(start, min(args.interactions, start + args.batch))])
            heavy = res[0]["customer_id"]
        print(f"loaded {args.customers} customers + 1 with {args.interactions} interactions "
              f"in {time.perf_counter() - t0:.1f} s")
        console = harness.hub.adapters["console"]
        with httpx.Client(base_url=console.url, timeout=30) as c:
            pre = re.search(r'name="pre" value="([^"]+)"', c.get("/login").text).group(1)
            assert c.post("/login", data={"api_key": key, "pre": pre}).status_code == 303
            page: list[float] = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = c.get(f"/customers/{heavy}")
                page.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and r.text.count("<tr data-key=") == 50
            rng = random.Random(7)
            search: list[float] = []
            for _ in range(args.repeat):
                i = rng.randrange(args.customers)
                t = time.perf_counter()
                r = c.get("/api/customers", params={"q": f"c{i}@example.com"})
                search.append((time.perf_counter() - t) * 1000)
                assert len(r.json()["customers"]) == 1
        # the same searches in the hub, without HTTP: the look-ups' own time (the rest is transport)
        from shopkeeper.adapters.console import data

        rng = random.Random(7)
        inside: list[float] = []
        cpu0 = time.process_time()
        for _ in range(args.repeat):
            q = f"c{rng.randrange(args.customers)}@example.com"
            t = time.perf_counter()
            assert len(data.search(harness.hub, q)["customers"]) == 1
            inside.append((time.perf_counter() - t) * 1000)
        cpu = (time.process_time() - cpu0) / args.repeat * 1000
        print(f"360° page, {args.interactions} interactions: median {statistics.median(page):.1f} ms, "
              f"p95 {_pct(page, 0.95):.1f} ms (target <= 300 ms)")
        print(f"search by e-mail at {args.customers} customers: median {statistics.median(search):.1f} ms, "
              f"p95 {_pct(search, 0.95):.1f} ms (target <= 50 ms at 1M)")
        print(f"  of which the search in the hub (same queries, no HTTP): median {statistics.median(inside):.2f} ms, "
              f"p95 {_pct(inside, 0.95):.2f} ms, CPU {cpu:.2f} ms")
    finally:
        harness.close()
        harness.hub.stop(grace=0.5)


if __name__ == "__main__":
    main()
