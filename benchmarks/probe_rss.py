"""What a serving hub's read connections hold in memory at 1M customers: RSS over a uniform read run.

A probe for a shared machine (issue 10, "RSS at 1M customers <= 1.5 GB"): it opens a store
read-only — the 1M store is never written, so no copy and no evolve walk — and runs what
``GetCustomer`` does on the hub's read path (``ReadPool.read`` → ``find_customer`` by e-mail →
``customer_view``) for customers drawn uniformly at random, the worst case for the caches, on
``--threads`` threads sharing a :class:`~shopkeeper.readpool.ReadPool` of ``--readers``
connections, each connection's cache bounded as the hub bounds it (``--cache-objects``,
``--cache-mb``; defaults: the hub's). Every ``--every`` reads it prints the process's RSS, the
loaded (non-ghost) objects and ZODB's byte estimate summed over the pool's connections, and the
loads from the storage per read since the last line (a miss in the connection cache). At the
end: CPU per read over the run, the share of reads whose customer record was already loaded,
and the heap per loaded customer (RSS growth over the loaded customers, while the caches fill).

Figures are not timed: CPU is ``process_time`` and the RSS comes from ``/proc``; run it
``nice -n 19``. The hub proper (writer, feed, gRPC) adds its own ~80 MB after open (§55) and the
writer's connection cache; ``bench_hub.py`` prints the serving hub's RSS at the end of a run.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def email_for(store_emails: str, i: int) -> str:
    """bench_console's store: ``c{i}@example.com``; bench_store_1m's: ``c{i:07d}@example.com``."""
    return f"c{i}@example.com" if store_emails == "console" else f"c{i:07d}@example.com"


def main() -> None:
    from shopkeeper.hub.config import Limits
    from shopkeeper.store.storages import StoreOptions

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="a FileStorage Data.fs, opened read-only")
    ap.add_argument("--customers", type=int, required=True, help="customers drawn from, uniformly")
    ap.add_argument("--reads", type=int, default=40_000)
    ap.add_argument("--every", type=int, default=5_000, help="print a line every N reads")
    ap.add_argument("--threads", type=int, default=None, help="reading threads (default: --readers)")
    ap.add_argument("--readers", type=int, default=Limits.max_concurrent_reads,
                    help="the read pool's connections (the hub's limits.max_concurrent_reads)")
    ap.add_argument("--cache-objects", type=int, default=StoreOptions.cache_size,
                    help="loaded objects kept per connection (ZODB cache_size)")
    ap.add_argument("--cache-mb", type=float, default=StoreOptions.cache_size_bytes / 2**20,
                    help="ZODB's estimate of a connection cache's bytes, kept under this (cache_size_bytes)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()

    from shopkeeper.hub.server import tune_gc
    from shopkeeper.lookup import find_customer
    from shopkeeper.readpool import ReadPool
    from shopkeeper.store import Store
    from shopkeeper.view import customer_view

    opts = StoreOptions(cache_size=a.cache_objects, cache_size_bytes=int(a.cache_mb * 2**20),
                        pool_size=max(a.readers, 1), read_only=True)
    rss_start = rss_mb()
    store = Store.open(f"file://{Path(a.store).resolve()}", opts)
    pool = ReadPool(store, a.readers)
    with pool.read() as f:
        kind = "console" if f.identities.get(("email", "c0@example.com")) is not None else "bulk"
        assert f.identities.get(("email", email_for(kind, a.customers - 1))) is not None, \
            f"the store has no customer {a.customers - 1}"
    tune_gc()
    rss_open = rss_mb()
    print(f"store open: RSS {rss_start:.0f} -> {rss_open:.0f} MB; pool of {a.readers} connections, "
          f"{a.cache_objects:,} objects / {a.cache_mb:g} MB (ZODB's estimate) each; "
          f"{a.customers:,} customers drawn uniformly", flush=True)

    rng = random.Random(a.seed)
    todo = [email_for(kind, rng.randrange(a.customers)) for _ in range(a.reads)]
    threads = a.threads or a.readers
    lock = threading.Lock()
    state = {"next": 0, "hits": 0}
    conns: list[Any] = []

    def pool_conns() -> list[Any]:
        return [s.conn for s in pool._idle]  # noqa: SLF001 (a probe looks inside)

    def one(email: str) -> None:
        with pool.read() as f:
            cid = f.identities.get(("email", email))
            c = f.customers.get(cid)
            hit = c is not None and c._p_changed is not None  # loaded already: a cache hit
            customer_view(find_customer(f, cid))
            if hit:
                with lock:
                    state["hits"] += 1

    def loads() -> int:
        return sum(c._load_count for c in conns)  # noqa: SLF001

    def run(stop: int) -> None:
        while True:
            with lock:
                i = state["next"]
                if i >= stop:
                    return
                state["next"] = i + 1
            one(todo[i])

    print(f"{'reads':>8} {'RSS MB':>7} {'loaded objs':>12} {'est. MB':>8} {'loads/read':>10} {'hit %':>6} "
          f"{'CPU us/read':>11}", flush=True)
    p0 = time.process_time()
    prev_loads, prev_hits, prev_cpu = 0, 0, p0
    for stop in range(a.every, a.reads + 1, a.every):
        ts = [threading.Thread(target=run, args=(stop,)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if not conns:
            conns = pool_conns()
        live = sum(c._cache.cache_non_ghost_count for c in conns)  # noqa: SLF001
        est = sum(c._cache.total_estimated_size for c in conns) / 2**20  # noqa: SLF001
        ld, cpu, rss = loads(), time.process_time(), rss_mb()
        hits = state["hits"]
        print(f"{stop:>8,} {rss:>7.0f} {live:>12,} {est:>8.0f} {(ld - prev_loads) / a.every:>10.2f} "
              f"{100 * (hits - prev_hits) / a.every:>6.1f} {(cpu - prev_cpu) / a.every * 1e6:>11,.0f}", flush=True)
        prev_loads, prev_hits, prev_cpu = ld, hits, cpu
    p1 = time.process_time()
    customers_loaded = sum(
        1 for c in conns for o in c._cache.lru_items() if type(o[1]).__name__ == "Customer")  # noqa: SLF001
    gc.collect()
    rss_end = rss_mb()
    print(f"end: RSS {rss_end:.0f} MB after {a.reads:,} reads ({len(conns)} connections); CPU "
          f"{(p1 - p0) / a.reads * 1e6:,.0f} us per read; customer already loaded in "
          f"{100 * state['hits'] / a.reads:.1f}% of reads; {customers_loaded:,} customers loaded in the pool, "
          f"{(rss_end - rss_open) * 1024 / max(customers_loaded, 1):.1f} KB of RSS over open per loaded customer",
          flush=True)
    pool.close()
    store.close()


if __name__ == "__main__":
    main()
