"""``shopkeeper import`` throughput on a real FileStorage, against a bare ZODB loop.

    python benchmarks/bench_import.py                          # 1M rows over 100k customers
    python benchmarks/bench_import.py --rows 200000            # scaled down
    python benchmarks/bench_import.py --rows 50000 --profile   # cProfile of the import phase

1. Generate a JSON Lines file of interactions with the reference workload
   (``workload.iter_events``: Zipf-distributed customers, ~0.2% redelivered rows), not timed.
2. **import**: ``Importer(...).run([file])`` into an empty FileStorage (fsync on), batch
   ``--batch`` rows per transaction (default: the importer's own, what a user gets): reading,
   JSON parsing, shaping, validation, identity
   resolution, history, facts, idempotency and commit — everything ``shopkeeper import`` does
   except drawing the progress bar.
3. **bare**: the floor ZODB itself sets, in the same run and on the same disk: for the same
   rows (customer, ts), one ``Persistent`` per row inserted into an ``LOBTree`` per customer
   (the trees in an ``OOBTree`` by customer), committing every ``--batch`` rows. No parsing,
   no validation, no indexes.

What the comparison is: the bare loop is the cheapest way ZODB itself stores these rows with the
same transaction size (the same ``--batch`` for both, so neither gains from commit count alone);
it starts from arrays of (customer, µs) already in memory, so reading and parsing the file (JSON
decoding, ~5-10 µs a row) is work only the import does. The import keeps far more per row (the
whole event, identities and their index, facts, per-day totals, the idempotency key) but may
write it as one record per customer per batch, where the bare loop writes one per row.

Each phase runs in a fresh child process so that its peak RSS is its own; RSS is also
sampled during the import to show that it levels off instead of growing with the rows.
Prints rows/s of both, their ratio, storage bytes and RSS. Rates are given by wall clock
and by CPU time of the phase's process: on a shared machine the CPU-time figures (and their
ratio) are what stays comparable between runs; the wall-clock ones include fsync waits.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import platform
import pstats
import random
import resource
import shutil
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

from persistent import Persistent

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def rss_mb() -> float:
    """Current resident set size (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def customer_rows(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` customer profile rows (as a CRM export would have them), one per customer."""
    from workload import customer_email

    rng = random.Random(seed)
    cities = ("Berlin", "Hamburg", "Munich", "Cologne", "Vienna", "Zurich")
    for i in range(n):
        yield {"email": customer_email(i), "id": f"crm-{i:07d}",
               "traits": {"first_name": f"N{i}", "city": cities[rng.randrange(len(cities))]},
               "consent": {"email": {"marketing": rng.random() < 0.6}},
               "soft": {"price_sensitivity": rng.choice(("low", "mid", "high"))},
               "ts": 1_700_000_000 + i}  # not imported: only for the bare loop's keys


def generate(path: Path, rows: int, customers: int, seed: int, kind: str) -> tuple[Path, Path]:
    """Write the JSONL workload, and (customer, ts µs) per row as two int64 arrays for the bare loop."""
    try:
        from workload import iter_events
    except ImportError:  # pragma: no cover - the shared generator is the reference
        sys.exit("benchmarks/workload.py (iter_events) is missing")
    cust, ts = array("q"), array("q")
    source = customer_rows(customers, seed) if kind == "customers" else iter_events(rows, customers, seed)
    with open(path, "w", encoding="utf-8") as f:
        dumps = json.dumps
        for ev in source:
            if kind == "customers":
                ev_ts = ev.pop("ts")
                cust.append(int(ev["id"][4:]))
                ts.append(ev_ts * 1_000_000)
                f.write(dumps(ev, separators=(",", ":")))
                f.write("\n")
                continue
            f.write(dumps(ev, separators=(",", ":")))
            f.write("\n")
            email = ev["identities"]["email"]
            cust.append(int(email[1:8]))
            ts.append(int(round(ev["ts"] * 1_000_000)))
    cpath, tpath = path.with_suffix(".cust"), path.with_suffix(".ts")
    cpath.write_bytes(cust.tobytes())
    tpath.write_bytes(ts.tobytes())
    return cpath, tpath


def phase_import(data: str, store_dir: str, batch: int, profile: bool, queue: Any) -> None:
    from shopkeeper.importer import Importer, ImportOptions
    from shopkeeper.store import Store

    store = Store.open(f"file://{store_dir}/Data.fs")
    samples: list[tuple[int, float]] = []

    def on_progress(n: int, pos: int, size: int) -> None:
        if not samples or n - samples[-1][0] >= 50_000:
            samples.append((n, rss_mb()))

    importer = Importer(store, ImportOptions(batch_size=batch), on_progress=on_progress)
    prof = cProfile.Profile() if profile else None
    t0, c0 = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    summary = importer.run([data])
    if prof:
        prof.disable()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with store.read() as f:
        customers = f.counter("customers")
    size = store.storage_size()
    store.close()
    if prof:
        out = Path(store_dir) / "import.prof"
        prof.dump_stats(out)
        stats = pstats.Stats(str(out), stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    queue.put({"rows": summary.rows, "applied": summary.applied, "duplicates": summary.duplicates,
               "rejected": summary.rejected, "customers": customers, "seconds": seconds, "cpu": cpu, "bytes": size,
               "peak_mb": peak_mb(), "rss": samples})


class Row(Persistent):
    """One row of the bare loop: a persistent object of its own (class must be importable)."""

    def __init__(self, ts: int) -> None:
        self.ts = ts


def phase_bare(cust_path: str, ts_path: str, store_dir: str, batch: int, queue: Any) -> None:
    import transaction
    import ZODB
    from BTrees.LOBTree import LOBTree
    from BTrees.OOBTree import OOBTree
    from ZODB.FileStorage import FileStorage

    cust, ts = array("q"), array("q")
    cust.frombytes(Path(cust_path).read_bytes())
    ts.frombytes(Path(ts_path).read_bytes())
    db = ZODB.DB(FileStorage(f"{store_dir}/Data.fs"), cache_size=50_000, cache_size_bytes=256 * 2**20)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    tm.begin()
    conn.root()["trees"] = OOBTree()
    tm.commit()
    t0, c0 = time.perf_counter(), time.process_time()
    tm.begin()
    trees = conn.root()["trees"]
    n = len(cust)
    for i in range(n):
        c = cust[i]
        tree = trees.get(c)
        if tree is None:
            tree = trees[c] = LOBTree()
        key = ts[i]
        while key in tree:
            key += 1
        tree[key] = Row(key)
        if (i + 1) % batch == 0:
            tm.commit()
            tm.begin()
    tm.commit()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = db.getSize()
    conn.close()
    db.close()
    queue.put({"rows": n, "seconds": seconds, "cpu": cpu, "bytes": size, "peak_mb": peak_mb()})


def run_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:  # a child that dies must not leave us waiting for its result forever
        try:
            result = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive():
                sys.exit(f"{target.__name__} died with exit code {proc.exitcode}")
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("interactions", "customers"), default="interactions",
                    help="interactions: the reference workload; customers: one profile row per customer "
                         "(--customers rows; shows RSS staying flat as customers are created)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=None,
                    help="rows per transaction, for both phases (default: the importer's default)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed afterwards)")
    ap.add_argument("--profile", action="store_true", help="cProfile the import phase (slows it down)")
    args = ap.parse_args()
    if args.batch is None:
        from shopkeeper.importer import ImportOptions

        args.batch = ImportOptions().batch_size

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_import_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "events.jsonl"
        t0 = time.perf_counter()
        cpath, tpath = generate(data, args.rows, args.customers, args.seed, args.kind)
        rows = args.customers if args.kind == "customers" else args.rows
        print(f"generated {rows:,} {args.kind} rows over {args.customers:,} customers "
              f"in {time.perf_counter() - t0:.1f} s ({data.stat().st_size / 2**20:.0f} MiB)", flush=True)
        (work / "import").mkdir(exist_ok=True)
        (work / "bare").mkdir(exist_ok=True)
        imp = run_child(phase_import, str(data), str(work / "import"), args.batch, args.profile)
        bare = run_child(phase_bare, str(cpath), str(tpath), str(work / "bare"), args.batch)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)

    imp_rate, bare_rate = imp["rows"] / imp["seconds"], bare["rows"] / bare["seconds"]
    imp_cpu, bare_cpu = imp["rows"] / imp["cpu"], bare["rows"] / bare["cpu"]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}, batch {args.batch}{' (profiled)' if args.profile else ''}")
    print(f"import: {imp['rows']:,} rows in {imp['seconds']:.1f} s = {imp_rate:,.0f} rows/s "
          f"(CPU {imp['cpu']:.1f} s = {imp_cpu:,.0f} rows/CPU-s) "
          f"({imp['applied']:,} applied, {imp['duplicates']:,} duplicates, {imp['rejected']:,} rejected, "
          f"{imp['customers']:,} customers); {imp['bytes'] / 2**20:.0f} MiB on disk; peak RSS {imp['peak_mb']:.0f} MiB")
    print("        RSS by rows: " + ", ".join(f"{n // 1000}k: {mb:.0f} MiB" for n, mb in imp["rss"]))
    print(f"bare:   {bare['rows']:,} persistent objects in {bare['seconds']:.1f} s = {bare_rate:,.0f} rows/s "
          f"(CPU {bare['cpu']:.1f} s = {bare_cpu:,.0f} rows/CPU-s); "
          f"{bare['bytes'] / 2**20:.0f} MiB on disk; peak RSS {bare['peak_mb']:.0f} MiB")
    print(f"ratio:  import / bare = {imp_rate / bare_rate:.0%} by wall clock, {imp_cpu / bare_cpu:.0%} by CPU time")


if __name__ == "__main__":
    main()
