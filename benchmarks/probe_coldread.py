"""Where a GetCustomer's CPU and loads go, part by part, in process (issue 17's 10M read target).

    python benchmarks/probe_coldread.py --uri postgresql://postgres@127.0.0.1:55432/b10m --customers 10000000
    python benchmarks/probe_coldread.py --uri file:///tmp/bench1m/Data.fs --customers 1000000 --by id

The store is opened read-only and read through the hub's own read pool (``ReadPool``: 8
connections of ``--read-cache-objects`` loaded objects each, the range affinity on), one read at a
time in this thread, for customers drawn with the workload's Zipf popularity (as ``bench_hub``'s
GetCustomer load): ``--warm`` reads not counted, then ``--reads`` measured. Each part's CPU
(``time.process_time``) and the objects it loaded (a ``Connection.setstate`` hook, by class) are
summed:

* ``begin`` — the read's ``tm.begin()`` (RelStorage: the rollback, ``BEGIN`` and its poll; the
  read pool may skip it: ``--poll-interval``);
* ``index`` — ``identities.get`` (by identity) — the identity index's interior node and bucket;
* ``tree`` — ``customers.get`` — the customers tree's interior node and bucket (by id; and by
  identity on a store whose index values are ids);
* ``record`` — the ``Customer`` record itself;
* ``view`` — ``convert.customer`` (the 360° view as a protobuf message: its identities, history);
* ``end`` — the read's end (``tm.abort()``: RelStorage's rollback), as the pool does it.

And how many of the loads were of an object the same connection had loaded before (its cache
evicted it since): the index's interior nodes should load once per connection and stay.

``--by id`` reads by customer id (the ids taken first through a connection of their own). A
probe, not a benchmark: CPU and loads per read, which a shared machine moves far less than wall time.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub import draw_customers  # noqa: E402
from workload import customer_email  # noqa: E402

PARTS = ("begin", "index", "tree", "record", "view", "end")


class Meter:
    """CPU and loads by part: ``with meter("index"): ...``."""

    def __init__(self) -> None:
        self.cpu: collections.Counter[str] = collections.Counter()
        self.loads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.part = "other"
        self.on = False
        self.seen: set[tuple[int, bytes]] = set()  # (connection, oid) loaded before, warm-up included
        #: loads of an object its connection had loaded before (evicted from the cache since), by class
        self.reloads: collections.Counter[str] = collections.Counter()

    def load(self, conn: object, obj: object) -> None:
        key = (id(conn), obj._p_oid)  # type: ignore[attr-defined]
        if self.on:
            self.loads[self.part][type(obj).__name__] += 1
            if key in self.seen:
                self.reloads[type(obj).__name__] += 1
        self.seen.add(key)

    def __call__(self, part: str) -> Meter:
        self.part = part
        return self

    def __enter__(self) -> None:
        self.t0 = time.process_time()

    def __exit__(self, *exc: object) -> None:
        if self.on:
            self.cpu[self.part] += time.process_time() - self.t0
        self.part = "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uri", required=True, help="the store, opened read-only")
    ap.add_argument("--customers", type=int, required=True, help="customers drawn from (c{i:07d}@example.com)")
    ap.add_argument("--reads", type=int, default=8000)
    ap.add_argument("--warm", type=int, default=8000)
    ap.add_argument("--by", choices=("identity", "id"), default="identity")
    ap.add_argument("--read-cache-objects", type=int, default=5000)
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--poll-interval", type=float, default=0.0,
                    help="the read pool's poll interval (limits.read_poll_interval; 0: every read begins afresh)")
    ap.add_argument("--warm-index", action="store_true",
                    help="the pool loads its shares of the index interior nodes first (warm_index, as the hub does)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from ZODB.Connection import Connection

    from shopkeeper.hub import convert
    from shopkeeper.readpool import ReadPool
    from shopkeeper.store import Store, StoreOptions

    store = Store.open(a.uri, StoreOptions(read_only=True))
    drawn = draw_customers(a.customers, a.warm + a.reads, a.seed)
    keys: list[Any] = [("email", customer_email(i)) for i in drawn]
    if a.by == "id":
        t0 = time.perf_counter()
        with store.read() as f:
            ids = {}
            for k in set(keys):
                ids[k] = f.identities.get(k)
        keys = [ids[k] for k in keys]
        print(f"ids taken in {time.perf_counter() - t0:.0f} s", flush=True)
    pool = ReadPool(store, a.pool, cache_objects=a.read_cache_objects, affinity=True, poll_interval=a.poll_interval)
    if a.warm_index:
        c0, w0 = time.process_time(), time.perf_counter()
        n = pool.warm_index()
        print(f"index warmed: {n:,} interior nodes, {time.process_time() - c0:.1f} s CPU, "
              f"{time.perf_counter() - w0:.1f} s", flush=True)
    m = Meter()
    setstate = Connection.setstate

    def counting(self: Connection, obj: object) -> None:
        setstate(self, obj)
        m.load(self, obj)

    Connection.setstate = counting  # type: ignore[method-assign]
    seen: set[object] = set()
    cold = 0
    try:
        for n, key in enumerate(keys):
            if n == a.warm:
                m.on = True
            if m.on and key not in seen:
                cold += 1
            seen.add(key)
            slot = pool._take(pool.home(key))
            clean = False
            try:
                with m("begin"):
                    f = slot.begin(pool.poll_interval)
                if a.by == "identity":
                    with m("index"):
                        cid = f.identities.get(key)
                else:
                    cid = key
                with m("tree"):
                    c = f.customers.get(cid)
                with m("record"):
                    c._p_activate()
                with m("view"):
                    convert.customer(c, recent=10)
                with m("end"):
                    slot.finish(keep=pool.poll_interval > 0)
                clean = True
            finally:
                pool._give(slot, clean)
    finally:
        Connection.setstate = setstate  # type: ignore[method-assign]
        pool.close()
        store.close()
    r = a.reads
    rows = {p: {"cpu_us": round(m.cpu[p] / r * 1e6), "loads": round(sum(m.loads[p].values()) / r, 3),
                "by_class": {k: round(v / r, 3) for k, v in m.loads[p].most_common(4)}} for p in PARTS}
    total = {"cpu_us": round(sum(m.cpu.values()) / r * 1e6),
             "loads": round(sum(sum(c.values()) for c in m.loads.values()) / r, 3)}
    print(f"{a.by}: {r:,} reads, {cold / r:.0%} of them of a customer not read before", flush=True)
    for p in PARTS:
        print(f"  {p:<7} {rows[p]['cpu_us']:6,} µs  {rows[p]['loads']:.3f} loads  {rows[p]['by_class']}", flush=True)
    print(f"  {'all':<7} {total['cpu_us']:6,} µs  {total['loads']:.3f} loads", flush=True)
    reloads = {k: round(v / r, 3) for k, v in m.reloads.most_common()}
    print(f"  of them loaded before by the same connection (evicted since): {reloads}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "parts": rows, "all": total, "cold": cold / r,
                                             "reloads": reloads}, indent=1))


if __name__ == "__main__":
    main()
