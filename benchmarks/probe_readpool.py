"""Where a serving hub's CPU per ``GetCustomer`` goes on its read pool, by connection (issue 17, §91).

    python benchmarks/probe_readpool.py --uri postgresql://postgres@127.0.0.1:55432/b10m \\
        --customers 10000000 --requests 6000 --policy rotate,affinity

In this process, without gRPC: the hub's read pool (``limits.max_concurrent_reads`` connections,
``limits.read_cache_objects`` each) answers Zipf-drawn ``GetCustomer`` lookups (identity → customer →
the 360° view as a message), one at a time, each on the connection a *policy* picks:

* ``rotate``: the connections in turn — what a busy hub's stack of idle connections does when
  requests overlap (every connection serves every customer, so each warms its own copy);
* ``affinity``: the key's own connection (``ReadPool.home``: its range of the identity tree, cut at
  the root's separators), so the connections' caches hold disjoint customers and index nodes;
* ``hash``: the key's connection by hash (:func:`shopkeeper.readpool.affinity_slot`): disjoint
  customers, but every connection walks every interior node;
* ``one``: a single connection (the in-process baseline, ``bench_hub.inprocess_lookup``).

Per policy, over the measured requests (after ``--warm`` unmeasured ones): CPU µs per request
(``time.process_time``), objects loaded per request (``Connection.setstate``) and each connection's
cache (non-ghost objects, all objects with the ghosts the loaded ones pin, ZODB's byte estimate). ``--profile`` prints
the top of cProfile for the measured requests. CPU and counts, not wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub import draw_customers, email_of  # noqa: E402

from shopkeeper.engine.operations import resolve_ref  # noqa: E402
from shopkeeper.hub import convert  # noqa: E402
from shopkeeper.identity import IdentityConfig  # noqa: E402
from shopkeeper.readpool import ReadPool, affinity_slot  # noqa: E402
from shopkeeper.store import Store, StoreOptions  # noqa: E402


class Counts:
    """Objects loaded, per ZODB connection."""

    def __init__(self) -> None:
        from ZODB.Connection import Connection

        self.loads: collections.Counter[int] = collections.Counter()
        self.by_class: collections.Counter[str] = collections.Counter()
        orig_setstate = Connection.setstate
        counts = self

        def setstate(conn: Any, obj: Any) -> None:
            counts.loads[id(conn)] += 1
            counts.by_class[type(obj).__name__] += 1
            orig_setstate(conn, obj)
        Connection.setstate = setstate


def run(a: argparse.Namespace, policy: str, emails: list[str], counts: Counts) -> dict[str, Any]:
    store = Store.open(a.uri, StoreOptions(cache_size=50_000, read_only=True))
    size = 1 if policy == "one" else a.conns
    pool = ReadPool(store, size, cache_objects=a.read_cache_objects)
    slots = [pool._take() for _ in range(size)]  # the pool's connections, picked by the policy below
    pool._take_bounds(slots[0].begin())  # the ranges ReadPool.read takes at its first read
    slots[0].tm.abort()
    cfg = IdentityConfig()

    def one(k: int, e: str) -> None:
        if policy == "affinity":
            slot = slots[pool.home(("email", e))]
        elif policy == "hash":
            slot = slots[affinity_slot(("email", e), size)]
        else:
            slot = slots[k % size]
        folders = slot.begin()
        try:
            convert.customer(resolve_ref(folders, None, ("email", e), cfg))
        finally:
            slot.tm.abort()

    for k, e in enumerate(emails[:a.warm]):
        one(k, e)
    counts.loads.clear()
    counts.by_class.clear()
    n = len(emails) - a.warm
    prof = cProfile.Profile(time.process_time) if a.profile else None
    c0 = time.process_time()
    if prof:
        prof.enable()
    for k, e in enumerate(emails[a.warm:], a.warm):
        one(k, e)
    if prof:
        prof.disable()
    cpu = time.process_time() - c0
    caches = [(c.cache_non_ghost_count, len(c), round(c.total_estimated_size / 2**20))
              for c in (s.conn._cache for s in slots)]
    out = {"policy": policy, "connections": size, "requests": n, "cpu_us": round(cpu / n * 1e6),
           "loads_per_request": round(sum(counts.loads.values()) / n, 2),
           "by_class": {k: round(v / n, 2) for k, v in counts.by_class.most_common()},
           "caches": caches}
    for s in slots:
        pool._give(s, True)
    pool.close()
    store.close()
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.profile)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--customers", type=int, required=True)
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--warm", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=8, help="limits.max_concurrent_reads")
    ap.add_argument("--read-cache-objects", type=int, default=10_000)
    ap.add_argument("--policy", default="rotate,hash,affinity,one")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", type=int, default=0, help="print this many cProfile lines (tottime)")
    a = ap.parse_args()
    drawn = draw_customers(a.customers, a.warm + a.requests, a.seed)
    emails = [email_of(i, None) for i in drawn]
    counts = Counts()
    for policy in a.policy.split(","):
        r = run(a, policy, emails, counts)
        print(f"{policy:<9} {r['connections']} conn: {r['cpu_us']:6,} µs CPU/request, "
              f"{r['loads_per_request']} loads/request; caches (non-ghosts, all objects, ZODB's "
              f"estimate MB): {r['caches']}; loads/request by class: {r['by_class']}", flush=True)


if __name__ == "__main__":
    main()
