"""SMS adapter throughput: outbox intents -> Kannel's sendsms -> the fake SMSC, marked sent, with
every delivery report recorded.

    python benchmarks/bench_sms.py [--messages 5000] [--connections 32] [--store file|memory]
                                   [--modes raw,raw-dlr,in-process,remote]

A real Kannel (bearerbox + smsbox + fakesmsc receiving only, set up by the tests' own
``tests/adapters/kannel.py``; ``sh scripts/install-test-deps.sh`` installs it) and a hub
(FileStorage in a temp dir by default) holding N customers with SMS consent and one pending
intent each. The clock runs from the adapter's start until every intent is marked ``sent``
**and** every delivery report (``sms_delivered``, Kannel's ``dlr-url`` back to the adapter) is
recorded in the hub, so the figure includes: reading the intent and the customer, number
validation, sender rule, encoding and segment count, the claim commit, the sendsms request,
the journal, the ``message_sent`` commit, and the report's HTTP request and commit.

Modes, against the same Kannel:

* ``raw`` — the ceiling: N sendsms requests with pre-built parameters over ``--connections``
  (httpx, asyncio), no hub and no delivery reports;
* ``raw-dlr`` — Kannel's ceiling for what the target counts: the same requests asking for a
  delivery report each (``dlr-mask=1``, a ``dlr-url`` to a minimal keep-alive HTTP receiver in
  this process), timed until every report has arrived. When the hub's figure is near this one,
  Kannel and its fake SMSC are the limit, and the same-run ratio is the figure to read;
* ``in-process`` — the adapter inside the hub's process (``adapters: {sms: …}``);
* ``remote`` — the adapter in a process of its own talking gRPC to the hub, as
  ``shopkeeper adapter run sms --hub … --api-key …`` runs it.

Target (issue 16): at least 500 messages/s with delivery reports recorded.

A run that stops progressing fails after ``--stall`` seconds (default 30) with what stalled — no
sent marks, or no delivery reports, for that long — instead of waiting out a time limit; Kannel,
the hub, the remote adapter processes and the temporary directory are cleaned up on that failure,
on any other, and on SIGTERM or Ctrl-C (exit status 1 with the reason on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import io
import multiprocessing as mp
import os
import pstats
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402 - benchmarks/harness.py
sys.path.insert(0, str(ROOT / "tests" / "adapters"))  # noqa: E402 - kannel.py: the tests' Kannel runner


class Stalled(RuntimeError):
    """A run made no progress for ``--stall`` seconds: the message says what stalled."""


class Progress:
    """Watches a run's two counts (intents marked sent, delivery reports recorded) and says when it
    is done; raises :class:`Stalled` naming the count that has not moved for ``stall`` seconds,
    so that a run whose every intent was set aside (claims refused, sends failing, reports not
    coming back) fails in seconds with the reason instead of waiting out a time limit."""

    def __init__(self, mode: str, n: int, stall: float, clock=time.monotonic) -> None:  # noqa: ANN001
        self.mode, self.n, self.stall, self.clock = mode, n, stall, clock
        now = clock()
        self.seen = {"sent marks": (0, now), "delivery reports": (0, now)}

    def done(self, sent: int, reports: int, detail=None) -> bool:  # noqa: ANN001 - detail: () -> str
        """True once ``n`` are sent and reported; raises :class:`Stalled` if a count that is not
        there yet has not changed for ``stall`` seconds."""
        if sent >= self.n and reports >= self.n:
            return True
        now = self.clock()
        for what, value in (("sent marks", sent), ("delivery reports", reports)):
            last, since = self.seen[what]
            if value != last:
                self.seen[what] = (value, now)
            elif value < self.n and now - since >= self.stall:
                raise Stalled(f"[{self.mode}] stalled: no {what} for {now - since:.0f} s — {sent}/{self.n} "
                              f"intents marked sent, {reports}/{self.n} delivery reports recorded"
                              + (f"; {detail()}" if detail else ""))
        return False


def remote_adapter(address: str, api_key: str, cfg: dict, done: mp.Value, reports: mp.Value,  # type: ignore[valid-type]
                   stop: mp.Event, started: mp.Value, out: mp.Queue, profile: bool) -> None:  # type: ignore[valid-type]
    """The adapter in a process of its own (what ``shopkeeper adapter run sms`` does); puts its
    CPU seconds by thread (and the loop's profile) on ``out`` when told to stop."""
    from probe_outbound import _tasks

    import shopkeeper.adapters.sms.endpoint  # noqa: F401 - imported at start: a one-off, not per message
    from shopkeeper.adapters.base import RemoteHub
    from shopkeeper.adapters.sms import SmsAdapter

    hub = RemoteHub(address, api_key, touchpoint="sms")
    hub.outbox_batch = _counting(hub.outbox_batch, reads := [0, 0])  # type: ignore[method-assign]
    adapter = SmsAdapter.from_config(cfg, hub)
    tasks0 = _tasks()
    started.value = time.time()
    adapter.start()
    prof = _profile_loop(adapter) if profile else None
    while not stop.is_set():
        done.value, reports.value = adapter.stats["sent"], adapter.stats.get("reports", 0)
        time.sleep(0.01)
    tasks1 = _tasks()
    out.put(({k: v - tasks0.get(k, 0.0) for k, v in tasks1.items()}, _profile_text(adapter, prof), reads))
    adapter.stop()
    hub.close()


def _counting(fn, counts: list[int]):  # noqa: ANN001, ANN202
    """``fn`` (an ``outbox_batch``) counting its calls and the refs they read into ``counts``."""
    def counted(refs, **kw):  # noqa: ANN001, ANN003, ANN202
        counts[0] += 1
        counts[1] += len(refs)
        return fn(refs, **kw)
    return counted


def writes(h, tid0: bytes | None, n: int) -> str:  # noqa: ANN001
    """What the hub's writer stored since ``tid0``: transactions and records per message, records by
    class (FileStorage only; the fold of a report into its sent mark's job shows here)."""
    import collections

    from ZODB.utils import get_pickle_metadata, p64, u64

    storage = h.hub.engine.store.db.storage
    if tid0 is None or not hasattr(storage, "iterator"):
        return ""
    by_class: collections.Counter[str] = collections.Counter()
    txns = 0
    for txn in storage.iterator(p64(u64(tid0) + 1), storage.lastTransaction()):  # not one being written
        txns += 1
        for r in txn:
            if r.data:
                by_class[get_pickle_metadata(r.data)[1]] += 1
    return (f"transactions {txns / n:.3f}/message, records {sum(by_class.values()) / n:.2f}/message: "
            + ", ".join(f"{k} {v / n:.2f}" for k, v in by_class.most_common(6)))


def _profile_loop(adapter) -> cProfile.Profile:  # noqa: ANN001
    """cProfile (thread CPU clock) of the adapter's event loop thread, from now on."""
    prof = cProfile.Profile(time.thread_time)
    adapter.loop.call_soon_threadsafe(prof.enable)
    return prof


def _profile_text(adapter, prof: cProfile.Profile | None, top: int = 45) -> str:  # noqa: ANN001
    if prof is None:
        return ""
    done = threading.Event()

    def off() -> None:
        prof.disable()
        done.set()

    adapter.loop.call_soon_threadsafe(off)
    done.wait(5)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


async def raw_baseline(url: str, n: int, connections: int, user: str, password: str) -> float:
    """sendsms requests/s with pre-built parameters (no hub, no delivery reports)."""
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    sem = asyncio.Semaphore(connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def one(i: int) -> None:
            async with sem:
                r = await client.get(url, params={"username": user, "password": password, "from": "ShopCo",
                                                  "to": f"+4474009{i:05d}", "text": f"Raw {i}: spring is here.",
                                                  "charset": "UTF-8", "coding": "0"})
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


async def raw_dlr_baseline(url: str, n: int, connections: int, user: str, password: str,
                           port: int, stall: float = 30.0) -> tuple[float, float]:
    """(sendsms requests/s, messages/s until every delivery report arrived): pre-built requests
    with ``dlr-mask=1`` and a ``dlr-url`` to a minimal HTTP receiver on ``port`` that counts them."""
    got: set[str] = set()
    done = asyncio.Event()

    async def receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                if target.startswith("/dlr"):
                    got.add(target.partition("i=")[2].partition("&")[0])
                    if len(got) >= n:
                        done.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    server = await asyncio.start_server(receiver, "127.0.0.1", port)
    parsed = urllib.parse.urlsplit(url)

    def request(i: int) -> bytes:
        q = urllib.parse.urlencode({"username": user, "password": password, "from": "ShopCo",
                                    "to": f"+4474008{i:05d}", "text": f"Raw {i}: spring is here.",
                                    "charset": "UTF-8", "coding": "0", "dlr-mask": "1",
                                    "dlr-url": f"http://127.0.0.1:{port}/dlr?i={i}&type=%d"})
        return f"GET {parsed.path}?{q} HTTP/1.1\r\nHost: {parsed.netloc}\r\n\r\n".encode()

    # pre-built request bytes over keep-alive connections, each one request at a time: the client's
    # CPU per request is a few µs, so what is measured is Kannel (httpx cost ~5 ms of CPU per request
    # here, more than bearerbox + smsbox + fakesmsc together: §37)
    reqs = [request(i) for i in range(n)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in reqs:
        queue.put_nowait(r)

    async def conn() -> None:
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        try:
            while not queue.empty():
                writer.write(queue.get_nowait())
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1]
                length = int(head.lower().partition(b"content-length:")[2].split(b"\r\n", 1)[0] or 0)
                if length:
                    await reader.readexactly(length)
                if not status.startswith(b"2"):
                    raise RuntimeError(f"sendsms answered {head[:200]!r}")
        finally:
            writer.close()

    async with server:
        t0 = time.perf_counter()
        await asyncio.gather(*(conn() for _ in range(connections)))
        sent = time.perf_counter() - t0
        watch = Progress("raw-dlr", n, stall)
        while not watch.done(n, len(got)):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), 0.1)
        took = time.perf_counter() - t0
        server.close()  # smsbox's keep-alive connections end with the server (no task left waiting)
        for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            t.cancel()
        return n / sent, n / took


def daemon_cpu(kannel) -> dict[str, float]:  # noqa: ANN001
    """CPU seconds (user + system) so far of each Kannel daemon (``/proc``): whether Kannel or the
    client side is the ceiling of a run (§37: Kannel used a few % of a core at the raw-dlr rate)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, proc in kannel.procs.items():
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            out[name] = 0.0
    return out


def cpu_line(kannel, before: dict[str, float], cpu0: float, n: int) -> str:  # noqa: ANN001
    """``CPU ms/message: bearerbox …, smsbox …, fakesmsc …, this process …`` since ``before``/``cpu0``."""
    after = daemon_cpu(kannel)
    parts = [f"{k} {(after[k] - before.get(k, 0.0)) / max(n, 1) * 1000:.2f}" for k in sorted(after)]
    parts.append(f"this process {(time.process_time() - cpu0) / max(n, 1) * 1000:.2f}")
    return "CPU ms/message: " + ", ".join(parts)


def setup_intents(h, n: int, tag: int) -> None:  # noqa: ANN001
    """N customers with SMS consent and one pending intent each (numbers +4474<tag>…, valid GB mobiles)."""
    from shopkeeper.engine import operations as domain

    api = h.in_process("bench")
    phones = [f"+4474{tag}{i:07d}" for i in range(n)]
    for lo in range(0, n, 1000):
        api.record([{"type": "identify", "identities": {"phone": p}, "idempotency_key": f"id-{p}"}
                    for p in phones[lo:lo + 1000]])

    def grant(lo: int, hi: int):  # noqa: ANN202
        def op(folders, changes):  # noqa: ANN001, ANN202
            for p in phones[lo:hi]:
                c = domain.resolve_ref(folders, None, ("phone", p), h.hub.identity_config)
                domain.set_consent(folders, changes, c, "sms", "marketing", True, "bench")
        return op

    for lo in range(0, n, 1000):
        h.hub.engine.writer.submit_op(grant(lo, lo + 1000)).result()
    for lo in range(0, n, 1000):
        api.record([{"type": "message_request", "channel": "sms", "identities": {"phone": p},
                     "data": {"template": "offer", "offer": f"OFFER{i % 7}", "campaign": "bench"},
                     "idempotency_key": f"rq-{p}"} for i, p in enumerate(phones[lo:lo + 1000], lo)])


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"bench_sms: stopped by signal {signum}")  # runs the clean-up of main's finally blocks


def run_mode(h, kannel, mode: str, mcfg: dict, n: int, args, ceiling: float) -> None:  # noqa: ANN001
    """One adapter mode over ``n`` fresh intents; prints rate, CPU per message by process and thread."""
    from probe_outbound import _tasks

    import shopkeeper.adapters.sms.endpoint  # noqa: F401 - imported at start: a one-off, not per message
    from shopkeeper.adapters.hubapi import InProcessHub
    from shopkeeper.adapters.sms import SmsAdapter

    storage = h.hub.engine.store.db.storage
    tid0 = storage.lastTransaction() if hasattr(storage, "iterator") else None
    ingest = h.hub.engine.writer.ingestor.stats
    groups0 = ingest.batches
    cpu0, before, tasks0 = time.process_time(), daemon_cpu(kannel), _tasks()
    adapter_threads: dict[str, float] = {}
    profile = ""
    reads = [0, 0]
    if mode == "in-process":
        t0 = time.perf_counter()
        batch_read = InProcessHub.outbox_batch
        # counted from the adapter's start on (its read batcher takes the method then)
        InProcessHub.outbox_batch = lambda api, refs, **kw: _counting(  # type: ignore[method-assign]
            functools.partial(batch_read, api), reads)(refs, **kw)
        cm = h.run_adapter(SmsAdapter, mcfg, "in-process")
        try:
            adapter = cm.__enter__()
        finally:
            InProcessHub.outbox_batch = batch_read  # type: ignore[method-assign]
        with contextlib.ExitStack() as stack:
            stack.push(cm)
            prof = _profile_loop(adapter) if args.profile else None
            watch = Progress(mode, n, args.stall)
            while not watch.done(adapter.stats["sent"], adapter.stats.get("reports", 0),
                                 lambda: f"the adapter's stats {adapter.stats}"):
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            tasks1 = _tasks()  # the adapter's threads end with it
            profile = _profile_text(adapter, prof)
        sent, reports, stats = adapter.stats["sent"], adapter.stats.get("reports", 0), adapter.stats
    else:
        ctx = mp.get_context("spawn")
        k = args.adapters  # adapter processes, each delivering its partition of the intents
        stop, out = ctx.Event(), ctx.Queue()
        done, reps, started = ([ctx.Value(t, 0) for _ in range(k)] for t in ("i", "i", "d"))
        procs = []
        for i in range(k):
            cfg = mcfg if k == 1 else {**mcfg, "partition": f"{i}/{k}", "journal": f"{mcfg['journal']}.{i}",
                                       **({"http_listen": "127.0.0.1:0"} if i else {})}
            procs.append(ctx.Process(target=remote_adapter, args=(h.address, h.api_key, cfg, done[i], reps[i], stop,
                                                                  started[i], out, args.profile)))
            procs[-1].start()
        try:
            while not all(v.value for v in started):
                if not all(p.is_alive() for p in procs):
                    raise RuntimeError("a remote adapter exited before it started")
                time.sleep(0.005)
            t0 = time.perf_counter() - (time.time() - min(v.value for v in started))
            watch = Progress(mode, n, args.stall)
            while not watch.done(sum(v.value for v in done), sum(v.value for v in reps)):
                if not all(p.is_alive() for p in procs):
                    raise RuntimeError(f"[{mode}] a remote adapter process exited during the run "
                                       f"(exit codes {[p.exitcode for p in procs]})")
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            sent, reports, stats = sum(v.value for v in done), sum(v.value for v in reps), "-"
            tasks1 = _tasks()
            stop.set()
            adapter_threads, profile, reads = {}, "", [0, 0]
            for _ in procs:
                threads, prof, counts = out.get(timeout=60)
                for name, secs in threads.items():
                    adapter_threads[name] = adapter_threads.get(name, 0.0) + secs
                profile += prof
                reads = [reads[0] + counts[0], reads[1] + counts[1]]
            for p in procs:
                p.join(30)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(10)
    kannel_after = daemon_cpu(kannel)
    m = max(sent, 1)
    hub_cpu = (time.process_time() - cpu0) / m * 1000
    rate = min(sent, reports) / elapsed
    vs = f" = {rate / ceiling:.2f}x raw sendsms with reports in this run" if ceiling else ""
    print(f"[{mode}] sent {sent}, delivery reports recorded {reports}, in {elapsed:.2f} s "
          f"= {rate:,.0f} messages/s with reports{vs} (target 500/s); hub process CPU "
          f"{hub_cpu:.2f} ms/message; stats {stats}")
    print(f"[{mode}] {cpu_line(kannel, before, cpu0, n)} (this process = the hub)")
    per = {k: (v - tasks0.get(k, 0.0)) / m * 1000 for k, v in tasks1.items()}
    print(f"[{mode}] hub by thread (ms/message): " + ", ".join(
        f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05))
    total = hub_cpu + sum(kannel_after[k] - before.get(k, 0.0) for k in kannel_after) / m * 1000
    if adapter_threads:
        adapter_cpu = sum(adapter_threads.values()) / m * 1000
        total += adapter_cpu
        print(f"[{mode}] adapter process{'es' if args.adapters > 1 else ''} CPU {adapter_cpu:.2f} ms/message"
              f"{f' ({args.adapters} processes together)' if args.adapters > 1 else ''}, by thread: " + ", ".join(
            f"{k} {v / m * 1000:.2f}" for k, v in sorted(adapter_threads.items(), key=lambda kv: -kv[1])
            if v / m * 1000 >= 0.05))
    # the machine's bound: every process's CPU per message against the cores (2 here: 1000 ms * 2 / total)
    print(f"[{mode}] all processes (hub{', adapter' if adapter_threads else ''}, Kannel) {total:.2f} ms CPU "
          f"per message: at most {os.cpu_count() * 1000 / max(total, 1e-9):,.0f} messages/s on "
          f"{os.cpu_count()} cores if nothing else ran")
    groups = ingest.batches - groups0
    print(f"[{mode}] the writer: {groups / m:.3f} groups/message ({ingest.batches - groups0} groups); "
          f"{writes(h, tid0, m)}; the adapter's batched reads: {reads[0] / m:.3f}/message "
          f"({reads[1] / max(reads[0], 1):.1f} intents each)")
    if profile:
        print(f"[{mode}] the adapter's event loop, cProfile (thread CPU):\n{profile}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=32,
                    help="sendsms connections of the raw modes and the adapter (the adapter's default; "
                         "§63 and before ran 8)")
    ap.add_argument("--store", choices=("file", "memory"), default="file")
    ap.add_argument("--modes", default="raw,raw-dlr,in-process,remote")
    ap.add_argument("--smsbox-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra setting of kannel.conf's smsbox group for an A/B run, e.g. "
                         "immediate-sendsms-reply=true (smsbox answers before bearerbox acknowledges: "
                         "faster, but a message bearerbox then refuses is lost to the adapter)")
    ap.add_argument("--adapter-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an adapters.sms setting for the adapter modes (YAML value), e.g. dlr_mask=27")
    ap.add_argument("--adapters", type=int, default=1,
                    help="remote adapter processes, each delivering its partition of the intents "
                         "(adapters.sms.partition K/N): one interpreter per core")
    ap.add_argument("--profile", action="store_true",
                    help="print a cProfile (thread CPU clock) of the adapter's event loop for each adapter mode")
    ap.add_argument("--stall", type=float, default=30.0, metavar="SECONDS",
                    help="fail a run when no intent was marked sent, or no delivery report recorded, for this "
                         "long (default 30)")
    ap.add_argument("--untuned", action="store_true",
                    help="leave the hub process at CPython's collector and GIL settings (the runs before §85) instead "
                         "of shopkeeper serve's (tune_process)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (store, Kannel's logs)")
    args = ap.parse_args()
    modes = args.modes.split(",")

    import yaml
    from harness import BenchHub
    from kannel import PASSWORD, USER, Kannel

    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}")
    signal.signal(signal.SIGTERM, _terminated)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    options = dict(o.split("=", 1) for o in args.smsbox_option)
    kannel = h = None
    failed = ""
    n = args.messages
    try:
        kannel = Kannel(tmp / "kannel", interactive=False, smsbox_options=options)
        kannel.start()  # its daemons are killed below even when one of them fails to come up
        if options:
            print(f"smsbox options: {options}")
        if "raw" in modes:
            before, cpu0 = daemon_cpu(kannel), time.process_time()
            rate = asyncio.run(raw_baseline(kannel.sendsms_url, n, args.connections, USER, PASSWORD))
            print(f"raw sendsms, pre-built requests, no delivery reports: {rate:,.0f} messages/s "
                  f"on {args.connections} connections; {cpu_line(kannel, before, cpu0, n)}")
        ceiling = 0.0
        if "raw-dlr" in modes:
            from shopkeeper.testing import free_port

            before, cpu0 = daemon_cpu(kannel), time.process_time()
            sent_rate, ceiling = asyncio.run(raw_dlr_baseline(kannel.sendsms_url, n, args.connections, USER,
                                                              PASSWORD, free_port(), args.stall))
            print(f"raw sendsms with a delivery report each: requests {sent_rate:,.0f}/s, every report back at "
                  f"{ceiling:,.0f} messages/s on {args.connections} connections; "
                  f"{cpu_line(kannel, before, cpu0, n)}")
        uri = f"file://{tmp}/Data.fs" if args.store == "file" else "memory://"
        h = BenchHub(store_uri=uri)
        if not args.untuned:
            from shopkeeper.hub.server import tune_process

            # as `shopkeeper serve` (and bench_hub) do: the hub process an in-hub adapter runs in has
            # the serving collector settings and a 1 ms GIL switch interval; before this the bench ran
            # the in-hub adapter under CPython's defaults, which no serving hub has
            tune_process()
        how = "CPython's defaults" if args.untuned else "as shopkeeper serve"
        print(f"the hub process: collector threshold {gc.get_threshold()[0]}, GIL switch interval "
              f"{sys.getswitchinterval() * 1000:g} ms ({how})")
        extra = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.adapter_option)}
        cfg = kannel.adapter_config(**{"connections": args.connections, "max_in_flight": 1024, "dlr_mask": 1,
                                       "templates": {"offer": "Spring is here: {{ offer }} for you. "
                                                              "Reply STOP to opt out"}, **extra})
        if extra:
            print(f"adapter options: {extra}")
        for tag, mode in enumerate(("in-process", "remote"), start=1):
            if mode not in modes:
                continue
            t0 = time.perf_counter()
            setup_intents(h, n, tag)
            print(f"[{mode}] setup: {n} customers with consent and one intent each in "
                  f"{time.perf_counter() - t0:.1f} s ({uri})")
            run_mode(h, kannel, mode, {**cfg, "journal": str(tmp / f"journal-{mode}.log")}, n, args, ceiling)
        got = len(kannel.settle())
        print(f"fake SMSC received {got} SMS in all")
    except Stalled as exc:
        failed = str(exc)
    finally:
        # a second SIGTERM (or Ctrl-C) must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if h is not None:
                h.stop()
        finally:
            if kannel is not None:
                kannel.stop()
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        raise SystemExit(f"bench_sms: {failed}; Kannel, the hub and the temporary directory were cleaned up")


if __name__ == "__main__":
    main()
