"""Where an event committed alone spends its time, against a bare fsync'd single-record commit loop.

    python benchmarks/probe_single.py --seed-store /tmp/seed.fs --events 1000
    python benchmarks/probe_single.py --customers 20000 --events 1000   # builds a seed store first
    python benchmarks/probe_single.py --customers 20000 --events 1000 --calls   # calls per event, deterministic
    python benchmarks/probe_single.py --customers 20000 --events 1000 --warm-folder   # folder buckets cached first
    python benchmarks/probe_single.py --customers 20000 --events 1000 --phases   # CPU by ZODB step and the rest
    python benchmarks/probe_single.py --customers 20000 --events 5000 --variants handoff,handoff-metrics

Issue 10's target "one event per transaction (fsync each): >= 0.8x a bare fsync'd single-record
ZODB commit loop" is measured by ``bench_ingest.py --single``; this probe splits it, on a shared
machine, into what survives contention (benchmarks §49, §63, §71):

* per variant, CPU per event by clock: process (user and system apart, ``os.times``) and the
  applying thread's own (``time.thread_time``), wall, fsyncs and their wall time, records and
  bytes per transaction, records loaded;
* variants: ``ingestor`` — ``Ingestor.apply([ev])`` per event, what ``bench_ingest --single``
  times; ``writer`` — ``Writer.submit_events([ev]).result()`` per event, the hub's path (queue
  hand-off, the change feed's entry, the after-commit publication); ``bare`` — a ZODB loop
  committing one ~1.2 KB record per transaction, no reads, everything cached (``bare3``: three such
  records, the number a lone event writes through the writer: what ZODB's per-record cost is); ``handoff`` and
  ``handoff-metrics`` — the writer's own cost per lone event and nothing else: ``submit_events([ev])
  .result()`` with the ingestor's ``apply`` replaced by a stub (no transaction, one ``applied``
  result), without a stats callback and with the hub's (``Metrics.writer_stat``): the queue
  hand-off, the futures, the group's bookkeeping and the metrics, in CPU of both threads
  (docs/benchmarks.md §104).

Every variant's store copy is fsync'd before its clock starts: ``copy_store`` leaves the copy's
~130 MB dirty in the page cache, and the first commits' fsyncs would write it back (the bare loop
starts on a file it built and committed itself).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import transaction  # noqa: E402
from BTrees.LOBTree import LOBTree  # noqa: E402
from persistent import Persistent  # noqa: E402
from workload import iter_events  # noqa: E402
from ZODB import DB  # noqa: E402
from ZODB.FileStorage import FileStorage  # noqa: E402

from shopkeeper.events import validate_event  # noqa: E402
from shopkeeper.store import Store  # noqa: E402

fsmod = sys.modules["ZODB.FileStorage.FileStorage"]  # the module (the package exports the class)
_FSYNC = {"n": 0, "s": 0.0}
_real_fsync = fsmod.fsync


def _counting_fsync(fd: int) -> None:
    t = time.perf_counter()
    _real_fsync(fd)
    _FSYNC["s"] += time.perf_counter() - t
    _FSYNC["n"] += 1


fsmod.fsync = _counting_fsync

#: ``--calls``: function calls (Python and C, as ``sys.setprofile`` sees them) on the applying thread
_CALLS = [0]
COUNT_CALLS = False


def _tick(frame: Any, event: str, arg: Any) -> None:
    if event == "call" or event == "c_call":
        _CALLS[0] += 1


def _counting(on: bool) -> None:
    """Count calls on this thread from now (``on``) or stop (``--calls`` only)."""
    if COUNT_CALLS:
        sys.setprofile(_tick if on else None)


def _synced_copy(src: str, dst: str) -> None:
    for suffix in ("", ".index"):
        shutil.copyfile(src + suffix, dst + suffix)
        with open(dst + suffix, "rb+") as f:
            os.fsync(f.fileno())


WARM_FOLDER = False


def _warm_folder(conn: Any) -> None:
    """``--warm-folder``: every bucket of the customers folder loaded into ``conn``'s cache before the
    clock starts (the customers themselves stay ghosts), so a lone event's load is its customer's record
    only: against a run without it, what the cold folder buckets cost (docs/benchmarks.md §96: the
    ceiling of a customers folder whose buckets hold no persistent references)."""
    if not WARM_FOLDER:
        return
    tm = conn.transaction_manager
    tm.begin()
    try:
        for _ in conn.root()["customers"].keys():
            pass
    finally:
        tm.abort()


#: ``--phases``: the applying thread's CPU (``time.thread_time``) in each step of ZODB's transaction, by step
_PHASES: dict[str, float] = {}
PHASES = False


def _time_phases() -> None:
    """``--phases``: wrap the steps every commit takes — ``begin`` (a new transaction: the connection
    polls invalidations), ``loads`` (a ghost's record read and unpickled), ``commit`` and within it
    ``pickle_store`` (the changed records pickled and handed to the storage), ``tpc_begin``, ``tpc_vote``,
    ``tpc_finish`` (the fsync's system time included) — so a lone event's CPU splits into ZODB's steps and
    the rest (the apply loop, the processors, the writer's own work). Each wrapper costs ~1 µs; read the
    split, not the sum, against a run without ``--phases``."""
    from ZODB.Connection import Connection

    tt = time.thread_time

    def wrap(cls: Any, name: str, label: str) -> None:
        orig = getattr(cls, name)

        def timed(*a: Any, **k: Any) -> Any:
            t = tt()
            try:
                return orig(*a, **k)
            finally:
                _PHASES[label] = _PHASES.get(label, 0.0) + tt() - t

        setattr(cls, name, timed)

    wrap(transaction.TransactionManager, "begin", "begin")
    wrap(transaction.TransactionManager, "commit", "commit")
    wrap(Connection, "setstate", "loads")
    wrap(Connection, "_store_objects", "commit.pickle_store")
    wrap(Connection, "tpc_begin", "commit.tpc_begin")
    wrap(Connection, "tpc_vote", "commit.tpc_vote")
    wrap(Connection, "tpc_finish", "commit.tpc_finish")


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = os.times()
        self.f0 = dict(_FSYNC)
        _PHASES.clear()  # (a setup commit before the clock is not the probe's)

    def done(self, n: int, thread_s: float) -> dict[str, Any]:
        el = time.perf_counter() - self.t0
        c = os.times()
        user, sys_ = c.user - self.c0.user, c.system - self.c0.system
        return {"events": n, "events_per_s": round(n / el), "wall_us": round(el / n * 1e6, 1),
                "cpu_us": round((user + sys_) / n * 1e6, 1), "user_us": round(user / n * 1e6, 1),
                "sys_us": round(sys_ / n * 1e6, 1), "thread_cpu_us": round(thread_s / n * 1e6, 1),
                "fsyncs_per_event": round((_FSYNC["n"] - self.f0["n"]) / n, 3),
                "fsync_wall_us": round((_FSYNC["s"] - self.f0["s"]) / n * 1e6, 1)} | self._phases(n, thread_s)

    @staticmethod
    def _phases(n: int, thread_s: float) -> dict[str, Any]:
        if not PHASES:
            return {}
        got = {k: round(v / n * 1e6, 1) for k, v in sorted(_PHASES.items())}
        rest = thread_s - _PHASES.get("begin", 0.0) - _PHASES.get("commit", 0.0) - _PHASES.get("loads", 0.0)
        return {"phases_us": got | {"rest": round(rest / n * 1e6, 1)}}


def run_ingestor(path: str, events: list, profile: str | None) -> dict[str, Any]:
    from shopkeeper.engine.ingest import Ingestor

    store = Store.open(f"file://{path}")
    start_tid = store.db.lastTransaction()
    with Ingestor(store) as ing:
        _warm_folder(ing.conn)
        prof = cProfile.Profile() if profile else None
        loads0 = ing.conn.getTransferCounts()[0]
        clock, th0, calls0 = _Clock(), time.thread_time(), _CALLS[0]
        if prof:
            prof.enable()
        _counting(True)
        for ev in events:
            ing.apply([ev])
        _counting(False)
        if prof:
            prof.disable()
        res = clock.done(len(events), time.thread_time() - th0)
        res |= _calls(calls0, len(events))
        res["loads_per_event"] = round((ing.conn.getTransferCounts()[0] - loads0) / len(events), 2)
    store.close()
    if prof:
        prof.dump_stats(profile)
    return res | _shape(path, start_tid, len(events))


def run_writer(path: str, events: list, profile: str | None) -> dict[str, Any]:
    import shopkeeper.engine.writer  # noqa: F401 -- first: the broker alone is a circular import (feed)
    from shopkeeper.engine.broker import Broker
    from shopkeeper.engine.writer import Writer
    from shopkeeper.identity import IdentityConfig, Resolver

    store = Store.open(f"file://{path}")
    start_tid = store.db.lastTransaction()
    broker = Broker()
    published = [0]

    def on_committed(entries: list) -> None:
        published[0] += len(entries)
        broker.publish(entries)

    w = Writer(store, Resolver(IdentityConfig()), on_committed=on_committed)
    _warm_folder(w.ingestor.conn)  # (before the writer's thread starts: the connection is not in use yet)
    prof = cProfile.Profile() if profile else None

    def on_thread(f: Any, ch: Any) -> float:  # an op runs on the writer's thread: read its clock there
        if prof is not None:
            if prof_on[0]:
                prof.disable()
            else:
                prof.enable()
        _counting(not prof_on[0])  # (the first op's own commit is counted: one empty commit in all)
        prof_on[0] = not prof_on[0]
        return time.thread_time()

    prof_on = [False]
    w.start()
    clock = _Clock()
    calls0 = _CALLS[0]
    th0 = w.submit_op(on_thread).result()
    caller0 = time.thread_time()
    for ev in events:
        w.submit_events([ev]).result()
    caller = time.thread_time() - caller0
    th1 = w.submit_op(on_thread).result()
    res = clock.done(len(events), th1 - th0) | _calls(calls0, len(events))
    res["caller_thread_cpu_us"] = round(caller / len(events) * 1e6, 1)
    res["published_per_event"] = round(published[0] / len(events), 3)  # every commit's entry, after it
    w.stop()
    store.close()
    if prof:
        prof.dump_stats(profile)
    return res | _shape(path, start_tid, len(events))


def run_handoff(path: str, events: list, profile: str | None, metrics: bool) -> dict[str, Any]:
    """The writer's own cost per lone event: its ingestor's ``apply`` is a stub (no transaction, no
    store change), so what is left is the hand-off, the futures, the bookkeeping and (``metrics``)
    the hub's stats callback. CPU of the whole process (the caller's thread and the writer's)."""
    import shopkeeper.engine.writer  # noqa: F401 -- first: the broker alone is a circular import (feed)
    from shopkeeper.engine.results import EventResult
    from shopkeeper.engine.writer import Writer
    from shopkeeper.hub.metrics import Metrics
    from shopkeeper.identity import IdentityConfig, Resolver

    store = Store.open(f"file://{path}")
    m = Metrics()
    w = Writer(store, Resolver(IdentityConfig()), on_stats=m.writer_stat if metrics else None)
    m.watch_writer(lambda: w.queue_depth)

    def stub(evs: Any, note: Any = None, before: Any = None) -> list:
        return [EventResult(i, "applied", customer_id="c") for i in range(len(evs))]

    w.ingestor.apply = stub  # type: ignore[method-assign]
    w.start()
    w.submit_events(events[:1]).result()  # the threads started and warm
    prof = cProfile.Profile() if profile else None  # (the caller's thread: the writer's is in --calls)
    on = [False]

    def toggle(f: Any, ch: Any) -> None:  # --calls: count on the writer's thread too (one empty commit in all)
        on[0] = not on[0]
        _counting(on[0])

    w.submit_op(toggle).result()
    clock, calls0, cpu0 = _Clock(), _CALLS[0], time.process_time()
    _counting(True)
    if prof:
        prof.enable()
    for ev in events:
        w.submit_events([ev]).result()
    if prof:
        prof.disable()
    _counting(False)
    cpu = time.process_time() - cpu0
    w.submit_op(toggle).result()
    res = clock.done(len(events), 0.0) | _calls(calls0, len(events))
    res["cpu_us"] = round(cpu / len(events) * 1e6, 2)  # (process_time: os.times' 10 ms ticks are too coarse here)
    for k in ("thread_cpu_us", "fsyncs_per_event", "fsync_wall_us", "phases_us"):  # (no commit, two threads)
        res.pop(k, None)
    res["applied_metric"] = m.registry.get_sample_value("shopkeeper_events_total", {"outcome": "applied"})
    w.stop()
    store.close()
    if prof:
        prof.dump_stats(profile)
    return res


class _Obj(Persistent):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


def run_bare(tmp: Path, n: int, obj_bytes: int, per_txn: int) -> dict[str, Any]:
    path = tmp / "bare.fs"
    db = DB(FileStorage(str(path)), cache_size=100_000)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    rng = random.Random(1)
    tm.begin()
    tree = conn.root()["objs"] = LOBTree()
    for i in range(20_000):
        tree[i] = _Obj(b"x" * obj_bytes)
    tm.commit()
    objs = [tree[i] for i in range(20_000)]
    start_tid = db.lastTransaction()
    clock, th0, calls0 = _Clock(), time.thread_time(), _CALLS[0]
    _counting(True)
    for k in range(n):
        tm.begin()
        for o in rng.sample(objs, per_txn):
            o.payload = k.to_bytes(8, "little") + b"x" * max(0, obj_bytes - 48)
        tm.commit()
    _counting(False)
    res = clock.done(n, time.thread_time() - th0) | _calls(calls0, n)
    conn.close()
    db.close()
    return res | _shape(str(path), start_tid, n)


def _calls(calls0: int, n: int) -> dict[str, Any]:
    """``--calls``: calls per event on the applying thread since ``calls0`` (deterministic for a seed,
    events and code; the CPU figures of such a run mean nothing)."""
    return {"calls_per_event": round((_CALLS[0] - calls0) / n, 1)} if COUNT_CALLS else {}


def _shape(path: str, start_tid: bytes, n: int) -> dict[str, Any]:
    from bench_ingest import written

    txns, recs, nbytes, by_class = written(path, start_tid)
    t = max(txns, 1)
    return {"txns": txns, "records_per_txn": round(recs / t, 2), "bytes_per_txn": round(nbytes / t),
            "by_class": {k: round(v[0] / t, 2) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1][0])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed-store", help="a store built by bench_store_1m.build_store (else one is built)")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--variants", default="bare,ingestor,writer")
    ap.add_argument("--profile", help="cProfile each variant's applying thread, print the top N", type=int)
    ap.add_argument("--calls", action="store_true",
                    help="count calls per event on the applying thread (deterministic; CPU then means nothing)")
    ap.add_argument("--phases", action="store_true",
                    help="split the applying thread's CPU into ZODB's steps (begin, loads, commit) and the rest")
    ap.add_argument("--warm-folder", action="store_true",
                    help="load the customers folder's buckets before the clock (what cold buckets cost)")
    args = ap.parse_args()
    global COUNT_CALLS, WARM_FOLDER, PHASES
    COUNT_CALLS, WARM_FOLDER, PHASES = args.calls, args.warm_folder, args.phases
    if PHASES:
        _time_phases()
    tmp = Path(tempfile.mkdtemp(prefix="shopkeeper-single-"))
    try:
        seed = args.seed_store
        if not seed:
            from bench_store_1m import build_store

            seed = str(tmp / "seed.fs")
            build_store(seed, args.customers, 0, txn=10_000, log=lambda m: None)
        raws = list(iter_events(args.events, n_customers=args.customers, seed=42))
        events = [validate_event(r, index=i) for i, r in enumerate(raws)]
        print(f"load {os.getloadavg()[0]:.1f}", flush=True)
        for v in args.variants.split(","):
            prof = str(tmp / f"{v}.prof") if args.profile else None
            if v in ("bare", "bare3"):  # bare3: three records per commit, a lone event's shape through the writer
                res = run_bare(tmp, len(events), 1200, 3 if v == "bare3" else 1)
            else:
                path = str(tmp / f"{v}.fs")
                _synced_copy(seed, path)
                if v.startswith("handoff"):
                    res = run_handoff(path, events, prof, v == "handoff-metrics")
                else:
                    res = (run_ingestor if v == "ingestor" else run_writer)(path, events, prof)
            print(v, res, flush=True)
            if prof and os.path.exists(prof):
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        print(f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # SIGTERM: through main's finally, which removes the temp stores


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    threading.current_thread().name = "probe"
    main()
