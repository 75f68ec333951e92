"""Backup + restore round trip of a large store, verified customer by customer (issue 17).

    python benchmarks/bench_backup.py --customers 100000 --pg                  # builds a store, both round trips
    nice python benchmarks/bench_backup.py --store /tmp/bench1m/Data.fs --pg   # an existing store (only read)

What it does, each step timed (wall, CPU of this process, MB/s over the source's size) and
reporting progress every ``--progress`` seconds:

1. the source: ``--store`` (only read, never written: a hub or a build may still hold it) or a
   ``bench_store_1m`` build of ``--customers`` × ``--interactions``;
2. a **working copy of its current records** (``storage copy --current``: no history, the shape of
   a packed store) into the work directory, then every ``--decorate``-th customer given what the
   bulk build leaves out — an outbox message, a rule's timer, a model-free score, a consent, a
   soft fact — so that verification has them to check;
3. **FileStorage**: ``shopkeeper backup`` (repozo + the manifest: counts and a digest per
   customer), ``restore`` (repozo -R) into a new file, ``restore --verify`` (the restored store's
   manifest against the backup's, customer by customer: identities, history, facts, consents,
   scores, rules and rule state, outbox, idempotency keys — digest version 2, ops/verify.py);
4. with ``--pg``, in a private PostgreSQL: ``storage copy --current`` of the working copy into a
   database, ``backup`` (pg_dump in one snapshot, the manifest read in it), ``restore``
   (pg_restore into an empty database), ``restore --verify``.

Any difference ends the run with exit 1 and names the customers. The work directory (copies,
backups, the PostgreSQL cluster) is removed on exit, on failure and on SIGTERM/SIGINT, unless
``--dir`` is given. It is a correctness run: run it ``nice``; ``--estimate-for N`` scales each
step linearly (every step reads or writes each customer once) for the lead's time estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_store_1m import build_store  # noqa: E402

from shopkeeper.ops.backup import backup, restore, verify_restore  # noqa: E402
from shopkeeper.ops.copy import copy_storage  # noqa: E402


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(what: str, fn: Callable[[], Any], size: int, out: dict[str, Any]) -> Any:
    say(f"{what} ...")
    t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
    got = fn()
    wall, cpu, kids = time.perf_counter() - t0, time.process_time() - c0, children_cpu() - k0
    out[what] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "children_cpu_seconds": round(kids, 2),
                 "mb_per_s": round(size / 1e6 / wall, 1) if wall else None}
    say(f"{what:<34} {wall:8.1f} s  cpu {cpu:8.1f} s + children {kids:8.1f} s  {out[what]['mb_per_s']} MB/s")
    return got


def children_cpu() -> float:
    """CPU of the finished child processes (manifest workers, repozo, pg_dump, pg_restore): the
    figure that survives a loaded machine, where wall time does not (PostgreSQL's own is not in it)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Progress:
    """A progress line at most every ``every`` seconds: customers digested (with rate and time
    left against ``total``) or records copied."""

    def __init__(self, what: str, total: int, every: float) -> None:
        self.what, self.total, self.every = what, total, every
        self.t0 = self.shown = time.monotonic()

    def customers(self, n: int) -> None:
        now = time.monotonic()
        if now - self.shown < self.every:
            return
        self.shown = now
        rate = n / max(now - self.t0, 1e-9)
        left = (self.total - n) / rate if rate and self.total > n else 0
        say(f"  {self.what}: {n:,}/{self.total:,} customers, {rate:,.0f}/s, ~{left / 60:.1f} min left")

    def copy(self, rep: Any) -> None:
        now = time.monotonic()
        if now - self.shown < self.every:
            return
        self.shown = now
        say(f"  {self.what}: {rep.records:,} records, {rep.bytes / 1e6:,.0f} MB, {rep.transactions:,} transactions, "
            f"{rep.records / max(now - self.t0, 1e-9):,.0f} records/s")


def decorate(uri: str, every: int) -> int:
    """Give every ``every``-th customer the state a bulk build does not make (what a live store's
    rules, adapters and imports write), so the round trip has it to verify. Written in a store
    transaction of the benchmark's own working copy: no hub serves it."""
    from BTrees.OOBTree import OOBTree

    from shopkeeper.outbox import OutboxItem
    from shopkeeper.store import Store, StoreOptions

    done = 0
    with Store.open(uri, StoreOptions(cache_size=20_000)) as s:
        with s.read() as f:
            ids = [cid for i, cid in enumerate(f.customers.keys()) if i % every == 0]
        for start in range(0, len(ids), 5_000):
            with s.transaction() as f:
                for cid in ids[start:start + 5_000]:
                    c = f.customers[cid]
                    c.outbox = OOBTree({f"i-{cid}": OutboxItem(f"i-{cid}", "email", "welcome", status="sent",
                                                                message_id=f"m-{cid}", attempts=1)})
                    c.rule_state = {"timers": {"winback": 1_700_000_000_000_000}, "failures": {}}
                    c.set_score("bench_rfm", float(len(cid)), "bench_backup")
                    c.set_consent("email", "marketing", True, "bench_backup")
                    c.set_soft_fact("bench_segment", cid[:2], "bench_backup")
                    done += 1
    return done


def round_trip(src_uri: str, target_uri: str, work: Path, size: int, label: str, out: dict[str, Any],
               workers: int, customers: int, every: float) -> None:
    bk = work / f"backup-{label}"
    rep = timed(f"{label} backup", lambda: backup(src_uri, bk, workers=workers,
                                                  on_progress=Progress(f"{label} backup manifest", customers,
                                                                       every).customers), size, out)
    timed(f"{label} restore", lambda: restore(bk, target_uri), size, out)
    cmp = timed(f"{label} verify", lambda: verify_restore(
        bk, target_uri, workers, Progress(f"{label} verify manifest", rep.customers, every).customers), size, out)
    out[f"{label} customers"] = rep.customers
    out[f"{label} backup bytes"] = sum(p.stat().st_size for p in bk.iterdir() if p.is_file())
    if not cmp.ok:
        for line in cmp.lines():
            say(f"{label}: {line}")
        raise SystemExit(f"{label}: the restore differs from the backup")
    say(f"{label}: {rep.customers:,} customers verified one by one (digest 2), counts equal")
    shutil.rmtree(bk, ignore_errors=True)  # the next round trip needs the disk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=100_000, help="customers to build (without --store)")
    ap.add_argument("--interactions", type=int, default=10, help="per customer (without --store)")
    ap.add_argument("--store", help="an existing FileStorage (Data.fs) to back up: only read, never written")
    ap.add_argument("--dir", help="work directory (default: a temp dir, removed at the end)")
    ap.add_argument("--pg", action="store_true", help="also round-trip through a private PostgreSQL")
    ap.add_argument("--no-file", action="store_true", help="skip the FileStorage round trip (with --pg)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--workers", type=int, default=2,
                    help="processes computing the manifests (the PostgreSQL backup's manifest is always one: "
                         "it is read in pg_dump's snapshot)")
    ap.add_argument("--decorate", type=int, default=10, metavar="N",
                    help="give every N-th customer an outbox message, a timer, a score, a consent, a soft fact "
                         "(0: none)")
    ap.add_argument("--progress", type=float, default=30.0, metavar="S", help="seconds between progress lines")
    ap.add_argument("--estimate-for", type=int, metavar="N",
                    help="also print each step scaled linearly to N customers (e.g. 1000000)")
    args = ap.parse_args()
    # SIGTERM (timeout, a stopped session) unwinds like Ctrl-C: worker pools end, the private
    # PostgreSQL is stopped, the work directory removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-backup-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # a private PostgreSQL runs as an unprivileged user when we are root
    out: dict[str, Any] = {"load_at_start": os.getloadavg()[0]}
    every = args.progress
    code = 0
    try:
        if args.store:
            src = Path(args.store).resolve()
            if not src.exists():
                raise SystemExit(f"{src}: no such store")
        else:
            src = work / "built" / "Data.fs"
            src.parent.mkdir()
            timed("build", lambda: build_store(str(src), args.customers, args.interactions), 0, out)
        size = src.stat().st_size
        out["source bytes"] = size
        copy = work / "src" / "Data.fs"
        rep = timed("copy current file -> file", lambda: copy_storage(
            f"file://{src}", f"file://{copy}", on_progress=Progress("copy", 0, every).copy, current=True), size, out)
        out["copy records"], out["copy bytes"] = rep.records, copy.stat().st_size
        if not args.store:
            shutil.rmtree(src.parent, ignore_errors=True)
        if args.decorate:
            out["decorated customers"] = timed("decorate", lambda: decorate(f"file://{copy}", args.decorate), 0, out)
        size = copy.stat().st_size
        from shopkeeper.store import Store, StoreOptions

        with Store.open(f"file://{copy}", StoreOptions(read_only=True)) as s, s.read() as f:
            customers = len(f.customers)  # the progress lines' total
        out["customers"] = customers
        if not args.no_file:
            round_trip(f"file://{copy}", f"file://{work}/restored/Data.fs", work, size, "filestorage", out,
                       args.workers, customers, every)
            shutil.rmtree(work / "restored", ignore_errors=True)
        if args.pg:
            from shopkeeper.servers import PrivatePostgres

            with PrivatePostgres(work / "pg") as pg:
                src_pg = pg.create_database("bench_src")
                timed("copy current file -> pg", lambda: copy_storage(
                    f"file://{copy}", src_pg, on_progress=Progress("copy into PostgreSQL", 0, every).copy,
                    current=True), size, out)
                round_trip(src_pg, pg.create_database("bench_restored"), work, size, "postgresql", out,
                           args.workers, customers, every)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int):
            say(str(exc.code))
    finally:
        if not args.dir:
            say(f"removing {work}")
            shutil.rmtree(work, ignore_errors=True)
    if args.estimate_for and code == 0:
        done = out.get("filestorage customers") or out.get("postgresql customers", 0)
        estimate(out, done, args.estimate_for)
    out["load_at_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    print(json.dumps(out), flush=True)
    sys.exit(code)


def estimate(out: dict[str, Any], customers: int, target: int) -> None:
    """Each step's wall time scaled linearly to ``target`` customers (every step reads or writes
    each customer once: the copies walk every record, backup and verify digest every customer,
    repozo, pg_dump and pg_restore copy bytes in proportion)."""
    if not customers:
        return
    factor = target / customers
    total = cpu_total = 0.0
    for what, fig in out.items():
        if isinstance(fig, dict) and "seconds" in fig and what != "build":
            scaled = fig["seconds"] * factor
            cpu = (fig["cpu_seconds"] + fig.get("children_cpu_seconds", 0)) * factor
            total += scaled
            cpu_total += cpu
            say(f"estimate at {target:,}: {what:<34} {scaled / 60:8.1f} min wall, {cpu / 60:8.1f} min CPU (ours)")
    say(f"estimate at {target:,}: the round trip(s) in all {total / 60:.1f} min wall at this run's load, "
        f"{cpu_total / 60:.1f} min of CPU in our processes (PostgreSQL's not counted), without building the store")
    out[f"estimate minutes at {target}"] = round(total / 60, 1)
    out[f"estimate cpu minutes at {target}"] = round(cpu_total / 60, 1)


if __name__ == "__main__":
    main()
