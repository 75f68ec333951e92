"""Write shape of the writer's apply loop, counted record by record: what each group commit writes.

    python benchmarks/probe_write_shape.py                     # 20k customers, 6,000 events
    python benchmarks/probe_write_shape.py --customers 2000 --events 1000   # a quick check

Deterministic (no timing): the counts depend on the code and the workload, not on the machine's
load. The writer's apply loop runs in process (``Ingestor`` with the hub's built-in processors,
as ``bench_ingest.py --plugins`` builds them, the store opened with the built-in plugins' evolve
steps), on a store of ``--customers`` customers built in bulk (each with its audience card, as a
real store has), with the WORKLOAD.md events after the first ``--skip`` (so most customers
touched already have records in the writer's shape), in groups of ``--batch``. Printed:

* records and bytes per event, in all and by pickled class;
* the records of the indexes kept on every write: the audience index's cards, order facts and
  segment member sets, and the order table (``root['orders']``), found by walking their trees;
* which parts of the audience cards changed, and how often (segments by name).

Process CPU per event is printed too, for orientation only: on a shared machine it is noise.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_ingest  # noqa: E402
from bench_store_1m import build_store  # noqa: E402
from workload import iter_events  # noqa: E402

CARD_PARTS = ("status", "segments", "consents", "emails", "phones", "soft", "country", "order facts", "contacted")


def _buckets(tree: Any) -> list[Any]:
    out = [tree]
    b = tree._firstbucket
    while b is not None:
        out.append(b)
        b = b._next
    return out


def owners(path: str) -> dict[bytes, str]:
    """oid -> which kept index the record belongs to."""
    from ZODB import DB
    from ZODB.FileStorage import FileStorage

    db = DB(FileStorage(path, read_only=True))
    try:
        root = db.open().root()
        out: dict[bytes, str] = {}
        idx = root.get("audience")
        if idx is not None:
            for name in ("cards", "order_facts"):
                if idx.get(name) is not None:
                    out.update((o._p_oid, f"audience {name}") for o in _buckets(idx[name]))
            for m in list(idx["segments"].values()):
                out.update((o._p_oid, "audience members") for o in _buckets(m))
        if root.get("orders") is not None:
            out.update((o._p_oid, "order table") for o in _buckets(root["orders"]))
        return out
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=6_000)
    ap.add_argument("--skip", type=int, default=3_000, help="workload events left out before the measured ones")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--dir", help="work directory (default: a temp dir)")
    args = ap.parse_args()

    from ZODB.FileStorage import FileStorage

    from shopkeeper import audience
    from shopkeeper.events import validate_event
    from shopkeeper.rules.runtime import _event_types_with_rules

    tmp = Path(args.dir or tempfile.mkdtemp(prefix="probe-write-shape-"))
    tmp.mkdir(parents=True, exist_ok=True)
    seed, work = str(tmp / "seed.fs"), str(tmp / "work.fs")
    if not Path(seed).exists():
        from shopkeeper.plugins import builtin_evolve_steps
        from shopkeeper.store import Store

        build_store(seed, args.customers, 0, txn=10_000, log=lambda m: None)
        Store.open(f"file://{seed}", steps=builtin_evolve_steps()).close()  # the kept indexes, built once
    bench_ingest.copy_store(seed, work)

    changed: collections.Counter[str] = collections.Counter()
    put = audience._put

    def counting_put(index: Any, cid: str, old: Any, new: Any) -> None:
        if old is None or len(old) != len(new):
            changed["new card or status"] += 1
        else:
            for part, a, b in zip(CARD_PARTS, old, new, strict=True):
                if a != b:
                    changed[part] += 1
                    if part == "segments":
                        for s in set(a) ^ set(b):
                            changed[f"  segment {s}"] += 1
        put(index, cid, old, new)

    audience._put = counting_put
    types = _event_types_with_rules()
    raws = list(iter_events(args.skip + args.events, n_customers=args.customers, seed=42))[args.skip:]
    events = [validate_event(r, types, index=i) for i, r in enumerate(raws)]
    fs = FileStorage(work, read_only=True)
    start = fs.lastTransaction()  # the evolve steps the first open may run are not the workload's
    fs.close()
    res = bench_ingest.run_phase(work, events, args.batch, None, plugins=True)
    audience._put = put

    own = owners(work)
    n, by = len(events), collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    fs = FileStorage(work, read_only=True)
    try:
        for txn in fs.iterator(start=start):
            if txn.tid == start or txn.description.startswith(b"shopkeeper: evolve"):
                continue
            for rec in txn:
                k = own.get(rec.oid, "customer records and the rest")
                by[k] += 1
                size[k] += len(rec.data or b"")
    finally:
        fs.close()
    print(f"{args.customers:,} customers, {n:,} events in groups of {args.batch}: "
          f"{res['records_per_event']} records and {res['bytes_per_event']:,} B per event "
          f"({res['cpu_us_per_event']} µs process CPU per event: orientation only)")
    print("per event, by index:")
    for k in sorted(by):
        print(f"  {k:32} {by[k] / n:6.3f} records {size[k] / n:8.0f} B")
    print("per group commit, by class (records, bytes):")
    for k, (r, b) in res["per_txn_by_class"].items():
        print(f"  {k:40} {r:7.1f} {b:9,}")
    print("audience card parts changed (count of card writes):")
    for k, v in sorted(changed.items(), key=lambda kv: (kv[0].startswith(" "), -kv[1])):
        print(f"  {k:32} {v:6}")


if __name__ == "__main__":
    main()
