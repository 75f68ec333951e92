"""CPU probe of the full segment re-evaluation and the Parquet export at a small size (issue 10's
"≤ 60 µs per customer"): CPU time per customer (``time.process_time``, which contention distorts
less than wall time) and, with ``--profile``, cProfile's call counts — not a timed benchmark.

    python benchmarks/probe_reeval.py reeval  --customers 5000            # 50 segments, first run
    python benchmarks/probe_reeval.py cards   --customers 5000            # the card-answerable ones: cards vs records
    python benchmarks/probe_reeval.py export  --customers 5000 --profile  # the Parquet export, profiled
    python benchmarks/probe_reeval.py reeval  --customers 5000 --again    # then all 50 again: nothing changes
    python benchmarks/probe_reeval.py reeval  --customers 5000 --again --later 45  # again 45 days on: some change

The store is ``bench_analysis.py``'s (``bench_store_1m.build_store``, 10 interactions per
customer, opened with the evolve steps so the audience index is kept), built once under
``--dir`` and copied before every probe, so each run starts from the same bytes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import T0, t0_tag  # noqa: E402

#: judged 30 days after the workload's start, whose 90 days of history the store holds (bench_analysis.py's).
#: Not the fixed 2023 instant: since the workload clock went live (§72) the store is stamped "now", and a
#: 2023 "now" put every interaction three years in the future — every window read the whole history
NOW = int(T0 * 1e6) + 30 * 86_400_000_000


def seed_store(seed: Path, n: int) -> None:
    """The probe's store at ``seed/Data.fs``, built once (a few seconds per thousand customers).

    Built in a directory of its own and renamed to ``seed`` when complete: a build that was stopped
    (or is still running in another probe) left a ``seed/Data.fs`` that the next probe took for the
    whole store — a 100k probe that judged 20,000 customers."""
    if (seed / "Data.fs").exists():
        return
    final, seed = seed, seed.with_name(f"{seed.name}.building-{os.getpid()}")
    from bench_store_1m import build_store

    from shopkeeper.analysis.state import create_analysis_folder
    from shopkeeper.plugins import builtin_evolve_steps
    from shopkeeper.store import Store

    seed.mkdir(parents=True, exist_ok=True)
    build_store(str(seed / "Data.fs"), n, 10, log=lambda *a: None)
    with Store.open(f"file://{seed}/Data.fs", steps=builtin_evolve_steps()) as s, s.transaction() as f:
        create_analysis_folder(f.root)
    if (final / "Data.fs").exists():  # another probe finished first
        shutil.rmtree(seed, ignore_errors=True)
        return
    shutil.rmtree(final, ignore_errors=True)
    seed.rename(final)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("reeval", "cards", "export"))
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "probe-reeval"))
    ap.add_argument("--profile", action="store_true", help="cProfile the run; print the top functions")
    ap.add_argument("--again", action="store_true",
                    help="reeval: time a second run of all 50 after an untimed first (a scheduler's run: "
                         "every record loaded and judged, none written)")
    ap.add_argument("--later", type=float, default=0.0, metavar="DAYS",
                    help="reeval: with --again, time the second run DAYS days after the first (the scheduler's "
                         "run in which time moves customers in and out: each changed record rewritten, its "
                         "card patched — every record remembers its card after the first run)")
    ap.add_argument("--no-peek", action="store_true",
                    help="load every customer (the path before peeked records: reeval judges, export reads each "
                         "loaded customer), for an A/B in the same minute")
    ap.add_argument("--in-records", action="store_true",
                    help="keep memberships in the customer records, as before generation 16 (the copy's memberships "
                         "tree dropped before the run): the same-run baseline of the memberships rows")
    ap.add_argument("--drop-seed", action="store_true",
                    help="delete the seed store too at the end (the work copy always is)")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    # SIGTERM (the lead's script, a timeout) as an exception: the finally blocks remove the scratch copy
    # and an unfinished seed build
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = Path(args.dir) / f"seed{args.customers}{t0_tag()}"  # a store per workload start (T0)
    try:
        seed_store(seed, args.customers)
    finally:
        for stale in Path(args.dir).glob(f"{seed.name}.building-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)  # this probe's own unfinished build
    work = Path(args.dir) / f"work-{os.getpid()}"  # a probe's own: two probes on one --dir share only the seed
    work.mkdir(parents=True)
    try:
        run(args, seed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the scratch copy; the seed is kept for the next probe
        if args.drop_seed:
            shutil.rmtree(seed, ignore_errors=True)


def run(args: argparse.Namespace, seed: Path, work: Path) -> None:
    """One probe on a fresh copy of the seed store in ``work``."""
    for p in seed.iterdir():
        if p.name.startswith("Data.fs") and not p.name.endswith((".lock", ".index", ".tmp")):
            shutil.copy(p, work / p.name)

    from bench_analysis import fifty_segments

    from shopkeeper.analysis.export import export_parquet
    from shopkeeper.analysis.fullscan import card_answerable
    from shopkeeper.analysis.segments import reevaluate
    from shopkeeper.plugins import builtin_evolve_steps
    from shopkeeper.store import Store

    n = args.customers
    segs = fifty_segments()
    store = Store.open(f"file://{work}/Data.fs", steps=builtin_evolve_steps())
    if args.in_records:  # memberships in the records (``shopkeeper.memberships``: no tree, the path before it)
        with store.transaction() as f:
            if "memberships" in f.root:
                del f.root["memberships"]
        store.close()
        store = Store.open(f"file://{work}/Data.fs", steps=builtin_evolve_steps())
    prof = cProfile.Profile() if args.profile else None
    try:
        if args.what == "cards":
            names = [k for k, d in segs.defs.items() if card_answerable([d])]
            print(f"{len(names)} card-answerable segments: {', '.join(names)}")
            reevaluate(store, segs, names, now=NOW, batch=5000)  # the first run: then nothing changes
            for cards in (True, False, True, False):
                c0 = time.process_time()
                r = reevaluate(store, segs, names, now=NOW + 1, batch=5000, cards=cards)
                print(f"{r.get('path', 'records'):8} changed {r['entered'] + r['exited']}  "
                      f"{(time.process_time() - c0) / n * 1e6:.1f} us CPU per customer")
            return
        if args.what == "reeval" and args.again:
            reevaluate(store, segs, now=NOW, batch=5000)
        c0 = time.process_time()
        if prof is not None:
            prof.enable()
        if args.what == "reeval":
            r = reevaluate(store, segs, now=NOW + int(args.later * 86_400_000_000), batch=5000,
                           peek=not args.no_peek)
        else:
            r = export_parquet(store, work / "parquet", batch=10_000, control_percent=10, control_salt="bench",
                               peek=not args.no_peek)
        if prof is not None:
            prof.disable()
        cpu = time.process_time() - c0
        r.pop("sizes", None)
        print(args.what, r, f"{cpu / n * 1e6:.1f} us CPU per customer, {r['seconds'] / n * 1e6:.1f} us wall "
              f"per customer ({r['seconds'] / n * 1e6:.0f} s per 1M)")
        if prof is not None:
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)
    finally:
        store.close()


if __name__ == "__main__":
    main()
