"""CPU probe of an offline import, in one process: ``process_time`` around ``Importer.run`` and,
with ``--profile``, cProfile call counts (deterministic) and shares. Not a timed benchmark.

    python benchmarks/probe_import.py cdnow --rows 20000            # CDNOW, the walk-through's options
    python benchmarks/probe_import.py bench --rows 50000            # bench_import's workload (100k Zipf customers)
    python benchmarks/probe_import.py cdnow --profile --top 30      # where the time goes

The CDNOW options are the documented command's (docs/analysis.md): ``--historical``, whitespace
delimiter, ``%Y%m%d`` dates, the three ``--map``s, ``--default type=order``, ``--batch 20000``.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def cdnow_file(work: Path, rows: int) -> tuple[Path, dict]:
    src = REPO / "tests" / "data" / "CDNOW_master.txt.gz"
    out = work / "CDNOW_master.txt"
    with gzip.open(src, "rt", newline="") as fin, open(out, "w", newline="") as fout:
        for i, line in enumerate(fin):
            if rows and i > rows:
                break
            fout.write(line)
    opts = dict(historical=True, delimiter="whitespace", date_format="%Y%m%d",
                mapping=[("customer_id", "crm_id"), ("date", "ts"), ("dollar_value", "data.amount"),
                         ("number_of_cds", "data.items")], defaults=[("type", "order")], batch_size=20_000)
    return out, opts


def bench_file(work: Path, rows: int, customers: int) -> tuple[Path, dict]:
    from workload import iter_events

    out = work / "events.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for ev in iter_events(rows, customers, 42):
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")
    return out, {}


def shape_only(path: Path, opts: dict) -> None:
    """Reading, shaping and validating alone, as ``Importer._apply_file`` does them: CPU per row and
    cProfile's call count per row (deterministic), without the store."""
    from shopkeeper.importer import Importer, ImportOptions

    importer = Importer(None, ImportOptions(**opts))  # type: ignore[arg-type]
    for prof in (None, cProfile.Profile()):
        importer.mapper.guesses.clear()
        src, rows, from_csv = importer._rows(str(path), importer_summary())
        n = 0
        c0 = time.process_time()
        if prof:
            prof.enable()
        for _line, item in rows:
            importer.prepare(item, from_csv=from_csv)
            n += 1
        if prof:
            prof.disable()
        cpu = time.process_time() - c0
        src.close()
        if prof is None:
            print(f"shape+validate: {n} rows, CPU {cpu:.2f} s = {cpu / max(n, 1) * 1e6:.1f} µs/row")
        else:
            calls = pstats.Stats(prof).total_calls  # type: ignore[attr-defined]
            print(f"  cProfile: {calls} calls = {calls / max(n, 1):.1f} per row")


def importer_summary():  # noqa: ANN201 - the importer's own summary type
    from shopkeeper.importer import ImportSummary

    return ImportSummary()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload", choices=("cdnow", "bench"))
    ap.add_argument("--rows", type=int, default=20_000, help="rows (cdnow: 0 = the whole master file)")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--shape-only", action="store_true",
                    help="read, shape and validate the rows only (no store): CPU and cProfile calls per row")
    args = ap.parse_args()

    from shopkeeper.importer import Importer, ImportOptions
    from shopkeeper.store import Store

    with tempfile.TemporaryDirectory(prefix="probe-import-") as tmp:
        work = Path(tmp)
        path, opts = (cdnow_file(work, args.rows) if args.workload == "cdnow"
                      else bench_file(work, args.rows, args.customers))
        if args.batch:
            opts["batch_size"] = args.batch
        if args.shape_only:
            shape_only(path, opts)
            return
        store = Store.open(f"file://{work}/Data.fs")
        importer = Importer(store, ImportOptions(**opts))
        from shopkeeper.engine.ingest import Ingestor

        per_batch: list[float] = []
        original = Ingestor.apply

        def timed(self, events, *a, **k):  # the apply loop and commit of each batch, apart from reading and shaping
            b0 = time.process_time()
            try:
                return original(self, events, *a, **k)
            finally:
                per_batch.append(time.process_time() - b0)

        Ingestor.apply = timed  # type: ignore[method-assign]
        prof = cProfile.Profile() if args.profile else None
        c0 = time.process_time()
        if prof:
            prof.enable()
        summary = importer.run([str(path)])
        if prof:
            prof.disable()
        cpu = time.process_time() - c0
        size = store.storage_size()
        store.close()
        print(f"{args.workload}: {summary.rows} rows, {summary.applied} applied, {summary.duplicates} dup, "
              f"{summary.rejected} rejected, {summary.customers_created} customers; "
              f"CPU {cpu:.2f} s = {cpu / max(summary.rows, 1) * 1e6:.0f} µs/row; {size / 2**20:.1f} MiB")
        applying = sum(per_batch)
        print(f"  read+shape+validate {cpu - applying:.2f} s, apply+commit {applying:.2f} s "
              f"(per batch: {', '.join(f'{b:.2f}' for b in per_batch)})")
        if prof:
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf)
            print(f"total calls: {st.total_calls}")
            st.sort_stats(args.sort).print_stats(args.top)
            st.sort_stats("cumulative").print_stats(args.top + 15)
            print(buf.getvalue())


if __name__ == "__main__":
    main()
