"""CPU per outbound message, split by thread: a probe for profiling, not a benchmark.

    python benchmarks/probe_outbound.py [--messages 300] [--mode in-process|remote|writer] [--profile writer|loop]
                                        [--untuned] [--sink-plain]

Runs the in-process email adapter over N pending intents, like ``bench_email.py``, and reports CPU
time (``time.process_time`` for the process, the writer thread's own CPU clock) per message —
the hub's bookkeeping cost (claim, sent, delivery report through the writer) apart from the
adapter's (rendering, SMTP/HTTP). CPU time is what contention distorts least, but on a shared
machine it is still noisy (±20%): compare runs of one sitting, not figures across days.
``--profile writer`` prints the writer thread's cProfile (top functions by own time), ``--profile loop``
the in-process adapter's event loop thread's. For SMS, ``bench_sms.py`` prints the same split by
thread and the Kannel daemons' CPU.

Thread names in the split: ``shopkeeper-email-loop`` the adapter's event loop (rendering, the
delivery cycle), ``shopkeeper-smtp`` the SMTP worker threads (smtplib, one connection each),
``shopkeeper-email`` the adapter's pool threads (batched reads of intent + customer, the journal's
fsync), ``shopkeeper-email-feed`` the feed follower (hands intents to the loop),
``shopkeeper-writer`` the one writer (claims and sent reports, their commits).

Each run also prints the collector's CPU per message by generation in the hub's process and,
remote, in the adapter's (``gc.callbacks``, from the adapter's start on); ``--mode writer`` splits
the writer's CPU per bookkeeping event into its commits (ZODB storing the records) and the rest
(applying the claim or the sent mark): docs/benchmarks.md §97.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import pstats
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402 - benchmarks/harness.py

from cpusampler import _fold  # noqa: E402 - one folding of numbered thread names


def _thread_cpu(thread: object) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))  # type: ignore[attr-defined]


def _tasks() -> dict[str, float]:
    """CPU seconds (user + system) of every thread of this process, summed by thread name
    (Linux ``/proc``; numbered pool threads folded together; threads Python did not start by their OS name)."""
    import os
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = _fold(names.get(tid) or stat[stat.index("(") + 1:stat.rindex(")")])
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


#: seconds spent in each stage of the delivery cycle, summed over messages (Little's law: divided by the
#: wall time it is the mean number of messages in that stage — how much is kept in flight where)
STAGES: dict[str, list[float]] = {}


def _instrument() -> None:
    """Time the delivery cycle's stages on ``ChannelAdapter`` (the read, each bookkeeping call by
    type, the send, the journal): how long a message waits where, not CPU."""
    import asyncio

    from shopkeeper.adapters import delivery

    cls = delivery.ChannelAdapter

    def timed(name_of, fn):  # noqa: ANN001, ANN202
        async def wrapper(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            t0 = time.perf_counter()
            try:
                return await fn(self, *a, **kw)
            finally:
                acc = STAGES.setdefault(name_of(*a), [0.0, 0])
                acc[0] += time.perf_counter() - t0
                acc[1] += 1
        return wrapper

    cls._read = timed(lambda *a: "read (intent + customer)", cls._read)
    cls._book = timed(lambda type_, *a: f"book {type_}", cls._book)
    orig_to_thread = asyncio.to_thread
    journal_add = delivery.DeliveryJournal.add

    async def to_thread(fn, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if getattr(fn, "__func__", None) is journal_add:
            t0 = time.perf_counter()
            try:
                return await orig_to_thread(fn, *a, **kw)
            finally:
                acc = STAGES.setdefault("journal fsync", [0.0, 0])
                acc[0] += time.perf_counter() - t0
                acc[1] += 1
        return await orig_to_thread(fn, *a, **kw)

    delivery.asyncio.to_thread = to_thread  # type: ignore[attr-defined]
    from shopkeeper.adapters.email import EmailAdapter

    EmailAdapter.asend = timed(lambda *a: "send (SMTP)", EmailAdapter.asend)
    EmailAdapter.prepare = _timed_sync("prepare (render)", EmailAdapter.prepare)
    from shopkeeper.adapters.email import smtp

    smtp.SmtpPool._send = _timed_sync("smtp on a connection", smtp.SmtpPool._send)


def _timed_sync(name: str, fn):  # noqa: ANN001, ANN202
    def wrapper(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            acc = STAGES.setdefault(name, [0.0, 0])
            acc[0] += time.perf_counter() - t0
            acc[1] += 1
    return wrapper


def _stage_lines(stages: dict[str, list[float]], wall: float) -> str:
    return "\n".join(f"  {k:<28} {v[0] / max(v[1], 1) * 1000:8.1f} ms mean over {v[1]:>5}, "
                     f"{v[0] / wall:7.1f} messages in it on average" for k, v in sorted(stages.items()))


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (the SMTP sink's, the remote adapter's)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def remote_probe(address: str, api_key: str, cfg: dict, n: int, sent: object, stop: object, started: object,
                 out: object, sample: bool = False) -> None:
    """``bench_email.remote_adapter`` with the stage timing and the adapter process's CPU by thread,
    taken when the last message is marked sent (before the threads end) and sent back on ``out``."""
    _instrument()
    import os
    import sys

    if os.environ.get("PROBE_SWITCH_INTERVAL"):  # the adapter process's GIL switch interval (s), for A/B runs
        sys.setswitchinterval(float(os.environ["PROBE_SWITCH_INTERVAL"]))
    from shopkeeper.adapters.base import RemoteHub
    from shopkeeper.adapters.email import EmailAdapter

    hub = RemoteHub(address, api_key, touchpoint="email")
    adapter = EmailAdapter.from_config(cfg, hub)
    gc_cpu = _collector_clock()
    sampler = None
    if sample:
        from cpusampler import CpuSampler

        sampler = CpuSampler()
        sampler.start()
    tasks0, t0 = _tasks(), time.perf_counter()
    started.value = time.time()  # type: ignore[attr-defined]
    adapter.start()
    gc_cpu.clear()  # the collector from here on: what a running adapter pays, not its start-up
    while not stop.is_set():  # type: ignore[attr-defined]
        sent.value = adapter.stats["sent"]  # type: ignore[attr-defined]
        if sent.value >= n:  # type: ignore[attr-defined]
            break
        time.sleep(0.01)
    if sampler is not None:
        sampler.stop()
    out.put({"tasks0": tasks0, "tasks1": _tasks(), "stages": STAGES,  # type: ignore[attr-defined]
             "wall": time.perf_counter() - t0, "fsyncs": adapter.journal.fsyncs, "gc": dict(gc_cpu),
             "sampled": sampler.report(int(sent.value)) if sampler is not None else ""})  # type: ignore[attr-defined]
    stop.wait(30)  # type: ignore[attr-defined]
    adapter.stop()
    hub.close()


def _collector_clock() -> dict[str, float]:
    """The collector's CPU in this process from now on, by generation (``gc.callbacks``: the thread
    CPU clock of the thread that triggered each collection, start to stop) and the number of passes."""
    import gc

    acc: dict[str, float] = {}
    started: list[float] = [0.0]

    def cb(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            g = f"gen{info['generation']}"
            acc[g] = acc.get(g, 0.0) + time.thread_time() - started[0]
            acc[g + " passes"] = acc.get(g + " passes", 0) + 1

    gc.callbacks.append(cb)
    return acc


def _print_profile(prof: cProfile.Profile, top: int) -> None:
    for order, n in (("tottime", top), ("cumulative", top + 20)):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(order).print_stats(n)
        print(s.getvalue())


def _print_threads(top: int, n: int) -> None:
    """yappi's per-thread profiles (CPU clock): each thread's CPU per message and its functions by
    own time — where the hub's CPU per message goes, thread by thread."""
    import yappi

    yappi.stop()
    for t in sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot):
        if t.ttot / max(n, 1) < 5e-5:
            continue
        print(f"\n== {t.name} ({t.ttot / max(n, 1) * 1000:.2f} ms/message under yappi)")
        stats = yappi.get_func_stats(ctx_id=t.id)
        stats.sort("tsub")
        for f in list(stats)[:top]:
            print(f"  {f.tsub / max(n, 1) * 1e6:8.1f} µs own {f.ttot / max(n, 1) * 1e6:8.1f} µs incl "
                  f"{f.ncall / max(n, 1):6.2f}/msg  {f.module.rsplit('/', 2)[-1]}:{f.lineno} {f.name}")
        stats.sort("ttot")
        print("  -- by inclusive time:")
        for f in list(stats)[:top]:
            print(f"  {f.ttot / max(n, 1) * 1e6:8.1f} µs incl {f.ncall / max(n, 1):6.2f}/msg  "
                  f"{f.module.rsplit('/', 2)[-1]}:{f.lineno} {f.name}")


def _writer_only(h: object, n: int) -> None:
    """The bookkeeping alone: a claim, then an ``email_sent``, for each of the N intents, recorded
    through the in-process hub API in batches of 100; the writer thread's CPU per event."""
    from shopkeeper import outbox

    api = h.in_process("email")  # type: ignore[attr-defined]
    with h.hub.read() as f:  # type: ignore[attr-defined]
        msgs = [(m, f.customers[m.customer_id].identities_in("email")[0])
                for m in outbox.pending(f, ("email",), limit=n)]
    wthread = h.hub.engine.writer.thread  # type: ignore[attr-defined]
    import transaction._transaction as txn

    commit_cpu = [0.0]
    orig_commit = txn.Transaction.commit

    def commit(self):  # noqa: ANN001, ANN202 - the writer's commits, timed on its own CPU clock
        t0 = time.thread_time()
        try:
            return orig_commit(self)
        finally:
            commit_cpu[0] += time.thread_time() - t0

    txn.Transaction.commit = commit
    for type_ in ("message_dispatch", "email_sent"):
        commit_cpu[0] = 0.0
        w0, c0 = _thread_cpu(wthread), time.process_time()
        for lo in range(0, len(msgs), 100):
            got = api.record([{"type": type_, "channel": "email", "identities": {"email": email},
                               "data": {"intent": m.id, "message_id": f"<{m.id}@probe>"},
                               "idempotency_key": f"{type_}:{m.id}"} for m, email in msgs[lo:lo + 100]])
            bad = [r for r in got if r["status"] != "applied"]
            assert not bad, bad[:3]
        w1, c1 = _thread_cpu(wthread), time.process_time()
        print(f"{type_}: writer thread CPU {(w1 - w0) / len(msgs) * 1e6:.0f} µs/event (its commits "
              f"{commit_cpu[0] / len(msgs) * 1e6:.0f}, the rest applying), process "
              f"{(c1 - c0) / len(msgs) * 1e6:.0f} µs/event ({len(msgs)} events, batches of 100; noisy)")
    txn.Transaction.commit = orig_commit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--mode", choices=("in-process", "remote", "writer"), default="in-process",
                    help="remote: the adapter in a process of its own (gRPC); the CPU shown is the hub's alone; "
                         "writer: no adapter, claims then email_sent recorded in batches of 100 (the writer alone)")
    ap.add_argument("--profile", choices=("none", "writer", "loop", "threads"), default="none",
                    help="loop: the in-process adapter's event loop thread (rendering, SMTP, bookkeeping events); "
                         "threads: every thread of the hub, CPU clock, with yappi (pip install yappi), "
                         "functions by own time per thread")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sample", action="store_true",
                    help="a sampling CPU profile by thread (benchmarks/cpusampler.py) of the hub and, remote, "
                         "of the adapter process: CPU per message by function, without cProfile's per-call cost")
    ap.add_argument("--sink-plain", action="store_true",
                    help="the SMTP sink does not advertise PIPELINING: one command per round trip (the A/B)")
    ap.add_argument("--untuned", action="store_true",
                    help="leave the hub process at CPython's collector and GIL settings instead of "
                         "shopkeeper serve's (tune_process), as bench_email --untuned")
    args = ap.parse_args()

    from bench_email import setup_intents, start_smtp_sink
    from harness import BenchHub

    from shopkeeper.adapters.email import EmailAdapter
    from shopkeeper.engine import writer as writer_mod

    prof = cProfile.Profile(time.thread_time)  # CPU of the writer thread, not wall time (GIL waits)
    profiling = {"on": False}
    if args.profile == "writer":  # profile the writer's jobs only while the adapter runs
        orig_events, orig_op = writer_mod.Writer._run_events, writer_mod.Writer._run_op

        def run_events(self, job):  # noqa: ANN001, ANN202
            if not profiling["on"]:
                return orig_events(self, job)
            return prof.runcall(orig_events, self, job)

        def run_op(self, job):  # noqa: ANN001, ANN202
            if not profiling["on"]:
                return orig_op(self, job)
            return prof.runcall(orig_op, self, job)

        writer_mod.Writer._run_events, writer_mod.Writer._run_op = run_events, run_op

    import collections
    import threading

    from ZODB.Connection import Connection

    loads: collections.Counter = collections.Counter()  # ZODB object loads by thread, while the adapter runs
    orig_setstate = Connection.setstate

    def setstate(self, obj):  # noqa: ANN001, ANN202
        if profiling["on"]:
            loads[_fold(threading.current_thread().name)] += 1
        return orig_setstate(self, obj)

    Connection.setstate = setstate
    from ZODB.FileStorage import FileStorage

    records = collections.Counter()  # records the writer stores per message, by what they are
    orig_store = FileStorage.store

    def store(self, oid, serial, data, version, txn):  # noqa: ANN001, ANN202
        if profiling["on"]:
            from ZODB.utils import get_pickle_metadata

            records[".".join(get_pickle_metadata(data)).rsplit(".", 2)[-1]] += 1
        return orig_store(self, oid, serial, data, version, txn)

    FileStorage.store = store
    if args.mode == "in-process":
        _instrument()
    signal.signal(signal.SIGTERM, _terminated)
    tmp = Path(tempfile.mkdtemp(prefix="probe-out-"))
    sink = h = p = None
    try:
        port, counter, sink = start_smtp_sink(pipelining=not args.sink_plain)
        ctx = mp.get_context("spawn")
        h = BenchHub(store_uri=f"file://{tmp}/Data.fs")
        if not args.untuned:  # as shopkeeper serve and bench_email run the hub (docs/benchmarks.md §88)
            from shopkeeper.hub.server import tune_process

            tune_process()
        n = args.messages
        setup_intents(h, n, tag="p")
        print(f"delivering {n} messages (pid {__import__('os').getpid()})", file=sys.stderr, flush=True)
        if args.mode == "writer":
            profiling["on"] = True
            _writer_only(h, n)
            profiling["on"] = False
            if args.profile == "writer":
                _print_profile(prof, args.top)
            return
        cfg = {"from_addr": "shop@example.com", "smtp_port": port, "secret": "bench",
               "connections": args.connections, "per_domain_rate": 1e6, "per_domain_burst": 10**6,
               "max_in_flight": 1024, "journal": str(tmp / "journal.log")}
        wthread = h.hub.engine.writer.thread
        tasks0, sink0 = _tasks(), _proc_cpu(sink.pid)
        w0, cpu0, t0 = _thread_cpu(wthread), time.process_time(), time.perf_counter()
        commits0 = h.hub.engine.writer.ingestor.stats.batches
        hub_gc = _collector_clock()
        profiling["on"] = True
        sampler = None
        if args.sample:
            from cpusampler import CpuSampler

            sampler = CpuSampler()
            sampler.start()
        if args.profile == "threads":
            import yappi

            yappi.set_clock_type("cpu")
            yappi.start()
        if args.mode == "in-process":
            with h.run_adapter(EmailAdapter, cfg, "in-process") as adapter:
                if args.profile == "loop":  # cProfile follows the thread that enables it: the loop's
                    adapter.loop.call_soon_threadsafe(prof.enable)
                while adapter.stats["sent"] < n and time.perf_counter() - t0 < 300:
                    time.sleep(0.01)
                profiling["on"] = False
                if args.profile == "loop":
                    adapter.loop.call_soon_threadsafe(prof.disable)
                    time.sleep(0.2)
                w1, cpu1, t1 = _thread_cpu(wthread), time.process_time(), time.perf_counter()
                tasks1 = _tasks()
            sent = adapter.stats["sent"]
        else:
            sent_v, stop, started = ctx.Value("i", 0), ctx.Event(), ctx.Value("d", 0.0)
            out = ctx.Queue()
            p = ctx.Process(target=remote_probe, args=(h.address, h.api_key, cfg, n, sent_v, stop, started, out,
                                                             args.sample))
            p.start()
            while sent_v.value < n and time.perf_counter() - t0 < 300:
                time.sleep(0.01)
            profiling["on"] = False
            w1, cpu1, t1 = _thread_cpu(wthread), time.process_time(), time.perf_counter()
            tasks1 = _tasks()
            sent = sent_v.value
            got = out.get(timeout=60)
            stop.set()
            p.join(30)
            STAGES.update(got["stages"])
            aper = {k: (v - got["tasks0"].get(k, 0.0)) / max(sent, 1) * 1000 for k, v in got["tasks1"].items()}
            gcs = got["gc"]
            print("remote adapter: collector CPU " + ", ".join(
                f"{g} {gcs[g] / max(sent, 1) * 1000:.3f} ms/message ({int(gcs[g + ' passes'])} passes)"
                for g in ("gen0", "gen1", "gen2") if g in gcs))
            print(f"remote adapter: journal fsyncs {got['fsyncs']} ({got['fsyncs'] / max(sent, 1):.2f} per message)")
            print(f"remote adapter process CPU {sum(aper.values()):.2f} ms/message; by thread: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in sorted(aper.items(), key=lambda kv: -kv[1]) if v >= 0.05))
        if sampler is not None:
            sampler.stop()
        sink1 = _proc_cpu(sink.pid)
        batches = h.hub.engine.writer.ingestor.stats.batches - commits0
        print(f"sent {sent}/{n} in {t1 - t0:.2f} s wall; SMTP received {counter.value}; "
              f"writer event groups {batches}")
        print(f"process CPU {(cpu1 - cpu0) / max(sent, 1) * 1000:.2f} ms/message; "
              f"writer thread CPU {(w1 - w0) / max(sent, 1) * 1000:.2f} ms/message "
              f"(noisy: compare runs of one sitting)")
        per = {k: (v - tasks0.get(k, 0.0)) / max(sent, 1) * 1000 for k, v in tasks1.items()}
        print("by thread (ms/message): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                   sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05))
        print("hub process: collector CPU " + ", ".join(
            f"{g} {hub_gc[g] / max(sent, 1) * 1000:.3f} ms/message ({int(hub_gc[g + ' passes'])} passes)"
            for g in ("gen0", "gen1", "gen2") if g in hub_gc))
        per_msg = {k: v / max(sent, 1) for k, v in loads.most_common()}
        print("ZODB loads per message by thread (counts, not times): "
              + ", ".join(f"{k} {v:.2f}" for k, v in per_msg.items()) + f"; all {sum(per_msg.values()):.2f}")
        print(f"SMTP sink (aiosmtpd) process CPU {(sink1 - sink0) / max(sent, 1) * 1000:.2f} ms/message")
        nrec = sum(records.values())
        print(f"records stored per message {nrec / max(sent, 1):.2f} in {batches} writer groups "
              f"({sent / max(batches, 1):.1f} messages per group): "
              + ", ".join(f"{k} {v / max(sent, 1):.2f}" for k, v in records.most_common(8)))
        print(f"where messages wait (wall {t1 - t0:.2f} s):\n" + _stage_lines(STAGES, t1 - t0))
        if args.profile in ("writer", "loop"):
            _print_profile(prof, args.top)
        if sampler is not None:
            print("\nsampled CPU by thread, hub process:\n" + sampler.report(sent, args.top))
            if args.mode == "remote" and got.get("sampled"):
                print("\nsampled CPU by thread, remote adapter process:\n" + got["sampled"])
        if args.profile == "threads":
            _print_threads(args.top, sent)
    finally:  # on exit, failure and SIGTERM: the hub, the remote adapter, the SMTP sink, the temp store
        try:
            if h is not None:
                h.stop()
        finally:
            for proc in (p, sink):
                if proc is not None and proc.is_alive():
                    proc.terminate()
                    proc.join(10)
            shutil.rmtree(tmp, ignore_errors=True)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"probe_outbound: signal {signum}")  # runs main's clean-up


if __name__ == "__main__":
    main()
