"""Backup + restore round trip of a large store, verified customer by customer (issue 17).

    python benchmarks/bench_backup.py --customers 1000000                     # builds a FileStorage store
    python benchmarks/bench_backup.py --store /tmp/bench1m/run1/Data.fs       # an existing one (kept as is)
    python benchmarks/bench_backup.py --customers 2000 --pg                   # also PostgreSQL: storage copy
                                                                              # into a private cluster, then
                                                                              # pg_dump / pg_restore
Measures each step's wall time, CPU time of this process and MB/s over the store's size:
``shopkeeper backup`` (repozo + the manifest: a digest per customer), ``restore --verify``
(repozo -R, then the manifest of the restored store and the comparison), and with ``--pg`` the
same with pg_dump / pg_restore. The figures feed docs/capacity.md (input I16). Run it alone:
it reads the whole store several times.

How long the 1M round trip takes (docs/benchmarks.md §30): the time goes into the two manifests
(a digest of every customer, at backup and at verify). Each chunk of 1,000 customers is now read
in two bulk reads and ``--workers`` processes share the digests (default 2 here): ≈ 0.7 ms of CPU
per customer on the 1M store, so ≈ 6 min per manifest on 2 quiet cores, and **≈ 17–25 min for
the FileStorage round trip at 1M** with repozo's copies. With ``--pg`` add the storage copy of the
whole store and a backup manifest in one process (pg_dump's snapshot): ≈ 45–75 min at 1M — run
``--pg --no-file --customers 100000 --estimate-for 1000000`` instead, or give it an hour alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_store_1m import build_store  # noqa: E402

from shopkeeper.ops.backup import backup, restore, verify_restore  # noqa: E402


def timed(what: str, fn, size: int, out: dict[str, Any]) -> Any:  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), time.process_time()
    got = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out[what] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                 "mb_per_s": round(size / 1e6 / wall, 1) if wall else None}
    print(f"{what:<28} {wall:8.1f} s  cpu {cpu:8.1f} s  {out[what]['mb_per_s']} MB/s", flush=True)
    return got


_SHOWN = [time.monotonic()]


def progress(report: Any) -> None:
    """The storage copy's progress every minute (at 1M it runs for the better part of an hour)."""
    if time.monotonic() - _SHOWN[0] >= 60:
        _SHOWN[0] = time.monotonic()
        print(f"  storage copy: {report.transactions:,} transactions, {report.records:,} records, "
              f"{report.bytes / 1e6:,.0f} MB of pickles", flush=True)


def round_trip(src_uri: str, target_uri: str, work: Path, size: int, label: str, out: dict[str, Any],
               workers: int = 1) -> None:
    bk = work / f"backup-{label}"
    rep = timed(f"{label} backup", lambda: backup(src_uri, bk, workers=workers), size, out)
    timed(f"{label} restore", lambda: restore(bk, target_uri), size, out)
    cmp = timed(f"{label} verify", lambda: verify_restore(bk, target_uri, workers), size, out)
    out[f"{label} customers"] = rep.customers
    out[f"{label} backup bytes"] = sum(p.stat().st_size for p in bk.iterdir() if p.is_file())
    if not cmp.ok:
        raise SystemExit(f"{label}: restore differs from the backup: {cmp.lines()}")
    print(f"{label}: {rep.customers} customers verified", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--interactions", type=int, default=10, help="per customer")
    ap.add_argument("--store", help="an existing FileStorage (Data.fs) to back up instead of building one")
    ap.add_argument("--dir", help="work directory (default: a temp dir, removed at the end)")
    ap.add_argument("--pg", action="store_true", help="also round-trip through a private PostgreSQL")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--workers", type=int, default=2,
                    help="processes computing the manifests (the PostgreSQL backup's manifest is always one: "
                         "it is read in pg_dump's snapshot)")
    ap.add_argument("--no-file", action="store_true", help="skip the FileStorage round trip (with --pg)")
    ap.add_argument("--estimate-for", type=int, metavar="N",
                    help="also print each step scaled linearly to N customers (e.g. 1000000)")
    args = ap.parse_args()
    # SIGTERM (timeout, a stopped session) unwinds like Ctrl-C: the private PostgreSQL is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-backup-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # a private PostgreSQL runs as an unprivileged user when we are root
    out: dict[str, Any] = {}
    try:
        if args.store:
            src = Path(args.store).resolve()
        else:
            src = work / "src" / "Data.fs"
            src.parent.mkdir()
            build_store(str(src), args.customers, args.interactions)
        size = src.stat().st_size
        out["store bytes"] = size
        if not args.no_file:
            round_trip(f"file://{src}", f"file://{work}/restored/Data.fs", work, size, "filestorage", out,
                       args.workers)
        if args.pg:
            from shopkeeper.ops.copy import copy_storage
            from shopkeeper.servers import PrivatePostgres

            with PrivatePostgres(work / "pg") as pg:
                src_pg = pg.create_database("bench_src")
                timed("storage copy file -> pg", lambda: copy_storage(f"file://{src}", src_pg, on_progress=progress),
                      size, out)
                round_trip(src_pg, pg.create_database("bench_restored"), work, size, "postgresql", out,
                           args.workers)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    if args.estimate_for:
        done = out.get("filestorage customers") or out.get("postgresql customers", 0)
        estimate(out, args.customers if not args.store else done, args.estimate_for)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def estimate(out: dict[str, Any], customers: int, target: int) -> None:
    """Each step's wall time scaled linearly to ``target`` customers (every step reads or writes
    each customer once: backup and verify compute a digest per customer; repozo, pg_dump and
    pg_restore copy bytes in proportion)."""
    if not customers:
        return
    factor = target / customers
    total = 0.0
    for what, fig in out.items():
        if isinstance(fig, dict) and "seconds" in fig:
            scaled = fig["seconds"] * factor
            total += scaled
            print(f"estimate at {target:,}: {what:<28} {scaled / 60:8.1f} min", flush=True)
    print(f"estimate at {target:,}: round trip(s) in all {total / 60:.1f} min (without building the store)",
          flush=True)
    out[f"estimate minutes at {target}"] = round(total / 60, 1)


if __name__ == "__main__":
    main()
