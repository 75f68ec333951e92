"""Heap per interaction held in memory: a loaded history bucket in each format, and the recent window.

    python benchmarks/probe_history_memory.py              # 200 customers x 60 interactions each

Why: since 2aff269 an interaction loaded from a record keeps its packed bytes (``values._Packed``,
~100–200 B each, docs/benchmarks.md §68) and §59 measured ~4–8 KB of RSS per loaded object at 1M;
generation 7 (§77) stores the spilled history's entries as bytes, so a loaded bucket holds no
interaction objects at all. Deterministic (``tracemalloc``, no timing). Printed per interaction:

* a history bucket loaded (every entry read from the storage), old format (pickled interactions:
  each unpickled into a ``_Packed`` holding its bytes) and new format (bytes), and for the old one
  what it would hold without ``_Packed`` (plain ``Interaction``s, the bytes freed);
* the recent window after the 360° view reads it (each read interaction unpacked and kept).

Interactions like the workload's: a page view or an order, an e-mail and a cookie, a 32-character key.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import tracemalloc
from typing import Any

import transaction
from BTrees.LOBTree import LOBTree
from ZODB import DB
from ZODB.FileStorage import FileStorage

from shopkeeper.customer import Customer, Interaction
from shopkeeper.values import _pack_fields, _Packed

T = 1_700_000_000_000_000


def interaction(c: int, i: int) -> Interaction:
    data: dict[str, Any] = ({"amount": 12.5 + i, "order_id": f"o-{c}-{i}", "items": 2} if i % 5 == 0
                            else {"url": f"/catalog/item/{(c * 31 + i) % 997}", "referrer": "search"})
    return Interaction(T + i * 1_000_000, T + i * 1_000_000, "order" if i % 5 == 0 else "page_view", "web",
                       "site", data, f"{c:08x}{i:024x}", (("email", f"user{c}@example.com"), ("cookie", f"ck-{c}")))


def measure(path: str, customers: int, per: int, fmt: str) -> tuple[float, int]:
    """Heap (bytes) per interaction after loading every spilled bucket of ``customers`` customers."""
    db = DB(FileStorage(path, read_only=True), cache_size=1_000_000)
    conn = db.open()
    root = conn.root()
    trees = [root[f"t{c}"] for c in range(customers)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = []
    for t in trees:
        held.extend(t.values())
    kinds = {type(v).__name__ for v in held}
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n = len(held)
    out = (after - before - sys.getsizeof(held)) / n
    conn.close()
    db.close()
    print(f"  {fmt:<38} {out:8.0f} B per interaction ({n} loaded; {', '.join(sorted(kinds))})")
    return out, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=200)
    ap.add_argument("--per", type=int, default=60, help="interactions per customer's bucket")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="probe-histmem-")
    try:
        print(f"history buckets, {a.customers} x {a.per} interactions, loaded and every entry read:")
        for fmt in ("old (pickled Interaction -> _Packed)", "new (packed bytes, generation 7)"):
            path = f"{tmp}/{fmt[:3]}.fs"
            db = DB(FileStorage(path))
            conn = db.open()
            root = conn.root()
            for c in range(a.customers):
                t = root[f"t{c}"] = LOBTree()
                for i in range(a.per):
                    it = interaction(c, i)
                    t[it.key] = it if fmt.startswith("old") else _pack_fields(it)
            transaction.commit()
            db.close()
            measure(path, a.customers, a.per, fmt)
        # what the old bucket would hold without the bytes: plain Interactions
        sample = [interaction(c, i) for c in range(a.customers) for i in range(a.per)]
        packed = [_pack_fields(it) for it in sample]
        gc.collect()
        tracemalloc.start()
        b0 = tracemalloc.get_traced_memory()[0]
        plain = [Interaction._make(__import__("pickle").loads(b"\x80\x04" + p)) for p in packed]
        b1 = tracemalloc.get_traced_memory()[0]
        carried = []
        for it, p in zip(plain, packed, strict=True):
            x = tuple.__new__(_Packed, it)
            x._b = p
            carried.append(x)
        b2 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        n = len(plain)
        print(f"  plain Interaction (unpacked, bytes freed)  {(b1 - b0 - sys.getsizeof(plain)) / n:8.0f} B; "
              f"a _Packed copy of it (tuple + __dict__) {(b2 - b1 - sys.getsizeof(carried)) / n:6.0f} B "
              f"+ the bytes it keeps {sum(sys.getsizeof(p) for p in packed) / n:6.0f} B")
        # the recent window: a customer as loaded, then read by the view
        c = Customer("x", created_at=0)
        for i in range(15):
            c.add_interaction(interaction(1, i))
        state = c.__getstate__()
        tracemalloc.start()
        b0 = tracemalloc.get_traced_memory()[0]
        loaded = Customer.__new__(Customer)
        loaded.__setstate__(state if type(state) is tuple else dict(state))  # (generation 12: a tuple)
        b1 = tracemalloc.get_traced_memory()[0]
        loaded.recent(15)
        b2 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        kinds = {type(v).__name__ for v in loaded._recent._items.values()}
        print(f"recent window of 15: loaded {b1 - b0} B, + {(b2 - b1) / 15:.0f} B per interaction once read "
              f"({', '.join(sorted(kinds))})")
        serialize_costs()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def serialize_costs(n: int = 2000) -> None:
    """Process CPU of ZODB's ``ObjectWriter.serialize`` for what a spill rewrites, in each format: a
    history bucket of 45 interactions, a key-log bucket of 22 keys (the middle of their 30–60 and
    15–30 after a split). CPU time, so it survives a shared machine better than wall time; still
    indicative only."""
    import time

    from BTrees.LOBTree import LOBucket
    from BTrees.OOBTree import OOSet
    from ZODB.serialize import ObjectWriter

    from shopkeeper.keylog import entry
    from shopkeeper.values import _unpack_interaction

    its = [interaction(7, i) for i in range(45)]
    keys = [(T + i, f"{7:08x}{i:024x}") for i in range(22)]
    cases = (("history bucket, 45 pickled interactions (before gen. 7)",
              LOBucket({it.key: _unpack_interaction(_pack_fields(it)) for it in its})),
             ("history bucket, 45 packed bytes (gen. 7)", LOBucket({it.key: _pack_fields(it) for it in its})),
             ("key-log bucket, 22 (ts, key) tuples (before gen. 8)", OOSet(keys)),
             ("key-log bucket, 22 strings (gen. 8)", OOSet([entry(ts, k) for ts, k in keys])))
    print(f"ZODB serialize, process CPU per record ({n} each):")
    for name, obj in cases:
        w = ObjectWriter()
        w.serialize(obj)
        c0 = time.process_time()
        for _ in range(n):
            w.serialize(obj)
        us = (time.process_time() - c0) / n * 1e6
        print(f"  {name:<55} {us:7.1f} µs, {len(w.serialize(obj)):5d} B")


if __name__ == "__main__":
    main()
