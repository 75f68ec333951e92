"""Where a Decide's (or GetCustomer's) hub CPU goes, stage by stage, without gRPC (issue 10 item 5).

    python benchmarks/probe_decide.py --store /tmp/bench100k/Data.fs --customers 100000 --plugins
    python benchmarks/probe_decide.py --store /tmp/bench100k/Data.fs --customers 100000 --plugins --no-record
    python benchmarks/probe_decide.py --store /tmp/bench100k/Data.fs --customers 100000 --plugins --method GetCustomer

Objects loaded are counted by thread and class: the writer's per offer record, the read
connections' per call (what the writer's commits made them load again).

A hub is started in this process on a copy of ``--store`` (the copy is removed) and its servicer
is called directly, one call after another, for Zipf-drawn customers (as ``bench_hub``): what
``probe_reads.py`` measures over gRPC, split into the servicer's stages. Printed per request,
over the ``--calls`` after ``--warm`` uncounted ones: the CPU of the calling thread, of the
writer thread (the offers' ``offer_shown`` records and the control-group marks), of the whole
process, and each stage's thread CPU (the stage functions are wrapped; nested stages are
indented). CPU time, not wall time: a shared machine moves it far less. Not a benchmark: compare
stages within one run.

The store is opened by the hub as it is: a store built by an older version runs the new evolve
steps first (minutes at 100k, not counted).
"""

from __future__ import annotations

import argparse
import collections
import functools
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub import GcPauses, copy_store, draw_customers, email_of, store_emails  # noqa: E402

STAGES = [  # (module, attribute, label): the servicer's stages, outermost first
    ("shopkeeper.readpool:_Slot", "begin", "read: begin (poll invalidations)"),
    ("shopkeeper.engine.operations", "resolve_ref", "resolve the customer (index + cold loads)"),
    ("shopkeeper.hub.convert", "customer", "convert: 360° view to protobuf"),
    ("shopkeeper.engine.decisions:Pending", "apply", "pending offers applied"),
    ("shopkeeper.engine.engine:Engine", "_decide", "plugins' proposals + contact policy"),
    ("shopkeeper.analysis.offers", "decide_explained", "  offer evaluation"),
    ("shopkeeper.engine.decisions", "record", "recording (queue offer_shown)"),
    ("shopkeeper.engine.decisions", "shown_events", "  offer_shown events built"),
    ("shopkeeper.hub.convert", "dict_to_struct", "payloads to Struct"),
]


def wrap_stages(acc: collections.Counter) -> None:
    import importlib

    for where, name, label in STAGES:
        mod_name, _, cls = where.partition(":")
        owner: Any = importlib.import_module(mod_name)
        if cls:
            owner = getattr(owner, cls)
        f = getattr(owner, name)

        def timed(*a: Any, _f: Any = f, _label: str = label, **k: Any) -> Any:
            t = time.thread_time()
            try:
                return _f(*a, **k)
            finally:
                acc[_label] += time.thread_time() - t

        setattr(owner, name, functools.wraps(f)(timed))
    # the hub and the analysis plugin imported some by name: point them at the wrapped ones
    from shopkeeper.analysis import offers, plugin
    from shopkeeper.engine import operations
    from shopkeeper.hub import customers, interactions

    customers.domain = interactions.domain = operations
    plugin.decide_explained = offers.decide_explained


def profile_writer() -> Any:
    """A cProfile of the writer's group commits (the default wall-clock timer: one timed by the
    thread's CPU clock gave nonsense totals, seconds inside ``seek``; run it on a quiet machine)."""
    import cProfile

    from shopkeeper.engine.writer import Writer

    prof = cProfile.Profile()
    prof.on = False  # type: ignore[attr-defined]  # set after the warm-up
    run = Writer._run_events

    def profiled(self: Any, first: Any) -> None:
        if not prof.on:  # type: ignore[attr-defined]
            return run(self, first)
        prof.enable()
        try:
            run(self, first)
        finally:
            prof.disable()

    Writer._run_events = profiled  # type: ignore[method-assign]
    return prof


def count_loads() -> collections.Counter:
    """Objects loaded (``Connection.setstate``: a ghost unpickled, after an invalidation or a cold
    miss), counted by (thread id, class): the writer's loads per offer record, and the readers'
    reloads of what the writer's commits invalidated. Counts, which a busy machine does not distort."""
    import threading

    from ZODB.Connection import Connection

    n: collections.Counter = collections.Counter()
    real = Connection.setstate

    def counted(self: Any, obj: Any) -> Any:
        n[(threading.get_ident(), type(obj).__name__)] += 1
        return real(self, obj)

    Connection.setstate = counted  # type: ignore[method-assign]
    return n


def count_records() -> collections.Counter:
    """Offer records Decide queued (``shown_events``' results), counted as they are built."""
    from shopkeeper.engine import decisions

    n: collections.Counter = collections.Counter()
    real = decisions.shown_events

    def counted(*a: Any, **k: Any) -> Any:
        got = real(*a, **k)
        n["records"] += len(got)
        return got

    decisions.shown_events = counted
    return n


def print_loads(loads: collections.Counter, writer: int, caller: int, calls: int, records: int) -> None:
    def by(thread: int) -> tuple[int, str]:
        mine = {k[1]: v for k, v in loads.items() if k[0] == thread}
        top = ", ".join(f"{c} {v:,}" for c, v in sorted(mine.items(), key=lambda kv: -kv[1])[:5])
        return sum(mine.values()), top

    w, wtop = by(writer)
    r, rtop = by(caller)
    print(f"  objects loaded: writer {w:,} = {w / max(records, 1):.2f} per offer record ({records:,} records; "
          f"{wtop}); calling thread (the read connections) {r:,} = {r / max(calls, 1):.2f} per call ({rtop})")


def count_groups() -> collections.Counter:
    """The writer's groups (one transaction each), counted as they run:
    a group's fixed cost (the commit, the feed, the counters) is paid per group, not per record."""
    from shopkeeper.engine.writer import Writer

    n: collections.Counter = collections.Counter()
    run = Writer._run_events

    def counted(self: Any, first: Any) -> None:
        n["groups"] += 1
        return run(self, first)

    Writer._run_events = counted  # type: ignore[method-assign]
    return n


def txn_shape(storage: Any, after: bytes) -> None:
    """What the transactions committed after ``after`` stored, by record class: each record is
    pickled, written and (for a customer) loaded again — the writer's cost per group follows it."""
    from ZODB.utils import get_pickle_metadata

    kinds: collections.Counter = collections.Counter()
    size: collections.Counter = collections.Counter()
    txns = 0
    for t in storage.iterator(start=after):
        if t.tid == after:
            continue
        txns += 1
        for r in t:
            if r.data:
                k = ".".join(get_pickle_metadata(r.data))
                kinds[k] += 1
                size[k] += len(r.data)
    print(f"  {txns:,} transactions stored:")
    for k, c in kinds.most_common(15):
        print(f"    {c:7,} x {size[k] // c:7,} B  {k}")


def thread_user_sys(t: Any) -> tuple[float, float]:
    """The thread's user and system CPU seconds (``/proc``, clock ticks): a commit's fsync and the
    storage's reads are charged to the writer as system time."""
    import os

    fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def thread_cpu(t: Any) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(t.ident))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="a FileStorage Data.fs (copied, never changed)")
    ap.add_argument("--customers", type=int, required=True, help="customers drawn from (Zipf, as bench_hub)")
    ap.add_argument("--method", choices=("Decide", "GetCustomer"), default="Decide")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--plugins", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="Decide records nothing (the comparison run)")
    ap.add_argument("--tmp-dir", default=None)
    ap.add_argument("--switch-ms", type=float, default=None, help="the GIL switch interval (ms) to run with")
    ap.add_argument("--offer-linger-ms", type=float, default=None,
                    help="how long the offer records wait for company (Engine.offer_linger; default 50 ms)")
    ap.add_argument("--txn-shape", action="store_true",
                    help="print what the counted part's transactions stored: records by class, bytes each")
    ap.add_argument("--profile-writer", metavar="FILE", default=None,
                    help="cProfile the writer's group commits into FILE (pstats; wall clock, quiet machine)")
    a = ap.parse_args()
    from shopkeeper import plugins as plugins_module

    if not a.plugins:
        plugins_module.BUILTIN_PLUGINS = ()
    if a.no_record:
        from shopkeeper.engine import decisions

        decisions.offers_to_record = lambda actions: []
    acc: collections.Counter = collections.Counter()
    wrap_stages(acc)
    loads = count_loads()
    recorded = count_records()
    prof = profile_writer() if a.profile_writer else None
    groups = count_groups()
    from shopkeeper._proto.v1 import common_pb2, customers_pb2, interactions_pb2
    from shopkeeper.hub.config import HubConfig
    from shopkeeper.hub.customers import CustomersServicer
    from shopkeeper.hub.interactions import InteractionsServicer
    from shopkeeper.hub.server import Hub, tune_process
    from shopkeeper.servers import free_port

    tmp = Path(tempfile.mkdtemp(prefix="probe_decide_", dir=a.tmp_dir))
    hub = None
    try:
        copy_store(a.store, str(tmp / "Data.fs"))
        names = store_emails(str(tmp / "Data.fs"), a.customers)
        emails = [email_of(i, names) for i in draw_customers(a.customers, a.warm + a.calls, 11)]
        hub = Hub(HubConfig(listen=f"127.0.0.1:{free_port()}", store=f"file://{tmp}/Data.fs"),
                  load_entrypoints=a.plugins).start()
        tune_process()
        if a.switch_ms is not None:
            sys.setswitchinterval(a.switch_ms / 1000)
        if a.offer_linger_ms is not None:
            hub.engine.offer_linger = a.offer_linger_ms / 1000

        class Context:  # what the servicers ask of a gRPC context on this path
            def time_remaining(self) -> float:
                return 30.0

            def abort(self, code: Any, details: str) -> None:
                raise RuntimeError(code, details)

        ctx = Context()
        ref = lambda e: common_pb2.CustomerRef(identity=common_pb2.Identity(namespace="email", value=e))  # noqa: E731
        if a.method == "GetCustomer":
            call = CustomersServicer(hub).GetCustomer
            reqs = [customers_pb2.GetCustomerRequest(customer=ref(e)) for e in emails]
        else:
            call = InteractionsServicer(hub).Decide
            reqs = [interactions_pb2.DecideRequest(customer=ref(e), touchpoint="web", placement="home")
                    for e in emails]
        for r in reqs[:a.warm]:
            call(r, ctx).SerializeToString()
        time.sleep(0.5)  # the warm-up's records commit
        acc.clear()
        groups.clear()
        loads.clear()
        recorded.clear()
        pauses = GcPauses()
        if prof is not None:
            prof.on = True  # type: ignore[attr-defined]
        writer = hub.writer.thread
        last_tid = hub.store.db.lastTransaction()
        p0, t0, w0 = time.process_time(), time.thread_time(), thread_cpu(writer)
        ws0 = thread_user_sys(writer)
        waits: list[float] = []  # per call: wall time minus this thread's CPU (waiting for the GIL, mostly)
        walls: list[float] = []
        for r in reqs[a.warm:]:
            c, w = time.thread_time(), time.perf_counter()
            call(r, ctx).SerializeToString()
            walls.append(time.perf_counter() - w)
            waits.append(walls[-1] - (time.thread_time() - c))
        t1 = time.thread_time()
        time.sleep(0.5 + hub.engine.offer_linger)  # the last records commit (lingering)
        p1, w1 = time.process_time(), thread_cpu(writer)
        ws1 = thread_user_sys(writer)
        per = lambda s: round(s / a.calls * 1e6)  # noqa: E731
        what = f"{a.method}{' (recording off)' if a.no_record else ''}"
        print(f"{what}, {a.calls} calls: process {per(p1 - p0):,} µs CPU per call; calling thread "
              f"{per(t1 - t0):,}; writer thread {per(w1 - w0):,}")
        q = lambda xs, p: round(sorted(xs)[min(len(xs) - 1, int(len(xs) * p))] * 1e3, 2)  # noqa: E731
        print(f"  wall per call p50 {q(walls, 0.5)} ms, p99 {q(walls, 0.99)} ms; of which not on this thread's "
              f"CPU (GIL, I/O) p50 {q(waits, 0.5)} ms, p99 {q(waits, 0.99)} ms (switch interval "
              f"{sys.getswitchinterval() * 1e3:g} ms)")
        print(f"  writer: {groups['groups']:,} groups (transactions), "
              f"{per((w1 - w0) * a.calls / max(groups['groups'], 1)):,} µs writer CPU each, of which in the "
              f"kernel (fsync, reads) {per((ws1[1] - ws0[1]) * a.calls / max(groups['groups'], 1)):,} µs")
        print(f"  gc pauses [count, ms, longest ms, CPU ms, longest CPU ms]: {pauses.snapshot()}")
        import threading

        print_loads(loads, writer.ident, threading.get_ident(), a.calls, recorded["records"])
        if a.txn_shape:
            txn_shape(hub.store.db.storage, last_tid)
        for _where, _name, label in STAGES:
            if acc[label]:
                print(f"  {label:<45} {per(acc[label]):6,} µs")
        if prof is not None:
            prof.create_stats()
            prof.dump_stats(a.profile_writer)
            print(f"writer profile in {a.profile_writer}")
    finally:
        if hub is not None:
            hub.stop(grace=1.0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
