"""What loading customer records costs, in process CPU per customer: a cold walk, the Parquet export.

    python benchmarks/probe_records.py                          # 10k customers x 10 interactions
    python benchmarks/probe_records.py --customers 50000 --dir /tmp/probe-records   # store kept there

Why: every full walk of the customers — re-evaluation, the Parquet export, a cold ``GetCustomer`` —
pays the load of each record (``Connection.setstate`` → ``Customer.__setstate__``) before any work of
its own; docs/benchmarks.md §51 found that load (unpacking every recent interaction) the largest part
of the export and of a record-path re-evaluation. Each measure runs in its own process on the same
store (built once, like ``bench_store_1m``/``bench_analysis``: 10 interactions per customer, the
builder's random ones), opened fresh so every record is a first load:

* ``walk`` — every customer loaded, one hard fact read (what a condition on facts needs);
* ``walk_history`` — every customer loaded and its newest interaction read (a recency condition);
* ``export`` — ``export_parquet`` (customers and every interaction).

Printed per measure: CPU µs per customer (``time.process_time``, the least of ``--repeat`` runs)
and ``pickle.loads`` calls per customer (deterministic). On a shared machine read the ratios; the
lead's quiet run gives the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MEASURES = ("walk", "walk_history", "export")


def _count_loads() -> dict[str, int]:
    """Count ``pickle.loads`` in the modules that unpack a record's parts (patched module attribute)."""
    import pickle

    import shopkeeper.customer
    import shopkeeper.values

    counts = {"loads": 0}

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(pickle, name)

        @staticmethod
        def loads(data: bytes, *a: Any, **k: Any) -> Any:
            counts["loads"] += 1
            return pickle.loads(data, *a, **k)

    for mod in (shopkeeper.customer, shopkeeper.values):
        mod.pickle = Counting()  # type: ignore[attr-defined]
    return counts


def run_one(measure: str, path: str, work: str) -> dict[str, Any]:
    from shopkeeper.store import Store

    store = Store.open(f"file://{path}")
    counts = _count_loads()
    c0 = time.process_time()
    if measure == "export":
        from shopkeeper.analysis.export import export_parquet

        r = export_parquet(store, Path(work) / f"parquet-{os.getpid()}", batch=10_000)
        n = r["customers"]
    else:
        n = 0
        with store.read() as f:
            for c in f.customers.values():
                n += 1
                if measure == "walk":
                    c.hard["orders"]
                else:
                    c.history.maxKey()
                    c.history[c.history.maxKey()]
    cpu = time.process_time() - c0
    store.close()
    return {"customers": n, "cpu_us": round(cpu / max(1, n) * 1e6, 1), "loads": round(counts["loads"] / max(1, n), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--measures", default=",".join(MEASURES))
    ap.add_argument("--dir", help="work directory, the store kept there between calls (default: a temp dir)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="probe-records-")
    if args.one:
        print(json.dumps(run_one(args.one, args.store, work)))
        return
    Path(work).mkdir(parents=True, exist_ok=True)
    path = str(Path(work) / f"records-{args.customers}.fs")
    if not Path(path).exists():
        from bench_store_1m import build_store

        t0 = time.perf_counter()
        build_store(path, args.customers, 10, log=lambda *a: None)
        print(f"store: {args.customers:,} customers in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"{args.customers:,} customers x 10 interactions, least of {args.repeat}:")
    for m in args.measures.split(","):
        best: dict[str, Any] | None = None
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, f"--one={m}", f"--store={path}", f"--dir={work}"],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            best = r if best is None or r["cpu_us"] < best["cpu_us"] else best
        assert best is not None
        print(f"  {m:<13} {best['cpu_us']:8.1f} µs CPU  {best['loads']:6.2f} pickle.loads per customer", flush=True)


if __name__ == "__main__":
    main()
