"""Email adapter throughput: outbox intents -> rendered templates -> a local SMTP server, marked sent.

    python benchmarks/bench_email.py [--messages 5000] [--connections 8] [--store file|memory]
                                     [--adapter-connections N] [--switch-interval SECONDS]
                                     [--modes raw,in-process,remote] [--adapters N] [--untuned] [--sink-plain]

A hub (FileStorage in a temp dir by default) holds N customers with email consent and one
pending intent each; the SMTP sink (aiosmtpd) runs in its own process and counts messages.
The clock runs from the adapter's start until every intent is marked ``sent`` in the hub,
so the figure includes: reading the intent and the customer, the claim commit, rendering the
Jinja2 templates (text + HTML, with tracking links), SMTP delivery, the journal and the
``email_sent`` commit.

Modes, measured in the same run against the same SMTP sink:

* ``raw`` — the ceiling: ``smtplib`` on one persistent connection sending N pre-built
  messages (no hub, no rendering), and the same over ``--connections`` threads;
* ``in-process`` — the adapter inside the hub's process (``adapters: {email: …}``);
* ``remote`` — the adapter in a process of its own talking gRPC to the hub, as
  ``shopkeeper adapter run email --hub … --api-key …`` runs it.

``--adapter-connections`` gives the adapter another number of SMTP connections than the raw
baseline's threads; ``--switch-interval`` sets the GIL switch interval (``sys.setswitchinterval``,
Python's default 0.005 s) of the process the adapter runs in (the hub's for ``in-process``, its own
for ``remote``): an A/B of the GIL hand-offs that the SMTP worker threads wait on
(docs/benchmarks.md §70). Defaults change nothing.

``--adapters N`` runs the remote mode as N adapter processes, each with ``partition: K/N`` and its
own journal (one interpreter lock each for its SMTP workers; docs/benchmarks.md §86); their CPU is
summed as the adapter's.

The hub's process is tuned as ``shopkeeper serve`` tunes it (``tune_process``: the serving
collector settings, a 1 ms GIL switch interval), as ``bench_sms`` and ``bench_hub`` run theirs;
``--untuned`` leaves it at CPython's defaults (the runs before docs/benchmarks.md §88) for the A/B.
``--switch-interval`` still overrides the interval of the process the adapter runs in.

The SMTP sink advertises PIPELINING (RFC 2920), as production MTAs do, so the adapter sends each
envelope as one command group (two round trips per message instead of four); ``--sink-plain`` leaves
it out (the runs before). The raw baseline is smtplib's ``sendmail``, which never pipelines.

Each adapter mode gets its own N intents (the hub is shared), so every mode sends N messages.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import shutil
import signal
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402 - benchmarks/harness.py


def smtp_sink(port: int, counter: mp.Value, ready: mp.Event, pipelining: bool = True) -> None:  # type: ignore[valid-type]
    """aiosmtpd counting what it accepts. ``pipelining``: its EHLO advertises PIPELINING (RFC 2920),
    as Postfix, Exim and most MTAs do; aiosmtpd reads a command group in order without advertising it,
    and the adapter sends one only to a server that does (``--sink-plain``: not advertised)."""
    import asyncio

    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    class Pipelining(Count):
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001
            session.host_name = hostname  # aiosmtpd leaves it to a handler with this hook
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

    ctl = Controller(Pipelining() if pipelining else Count(), hostname="127.0.0.1", port=port)
    ctl.start()
    ready.set()
    asyncio.run(asyncio.sleep(3600))


def start_smtp_sink(pipelining: bool = True) -> tuple[int, Any, Any]:
    """Start :func:`smtp_sink` in a spawned process and wait until it listens:
    (port, shared message counter, the process — terminate it when done)."""
    from harness import free_port

    port = free_port()
    ctx = mp.get_context("spawn")
    counter, ready = ctx.Value("i", 0), ctx.Event()
    sink = ctx.Process(target=smtp_sink, args=(port, counter, ready, pipelining), daemon=True)
    sink.start()
    ready.wait(30)
    return port, counter, sink


def remote_adapter(address: str, api_key: str, cfg: dict, sent: mp.Value, stop: mp.Event,  # type: ignore[valid-type]
                   started: mp.Value, switch_interval: float = 0.0) -> None:  # type: ignore[valid-type]
    """The adapter in a process of its own (what ``shopkeeper adapter run email`` does)."""
    if switch_interval:
        sys.setswitchinterval(switch_interval)
    from shopkeeper.adapters.base import RemoteHub
    from shopkeeper.adapters.email import EmailAdapter

    hub = RemoteHub(address, api_key, touchpoint="email")
    adapter = EmailAdapter.from_config(cfg, hub)
    started.value = time.time()
    adapter.start()
    while not stop.is_set():
        sent.value = adapter.stats["sent"]
        time.sleep(0.01)
    sent.value = adapter.stats["sent"]
    adapter.stop()
    hub.close()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (Linux ``/proc``): the SMTP sink's, the
    remote adapter's — so every mode shows each process's CPU per message, not the hub's alone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_baseline(port: int, n: int, connections: int, sink_pid: int = 0) -> tuple[float, float]:
    """messages/s for (one connection, ``connections`` threads) sending pre-built messages with smtplib;
    prints the client's and (with ``sink_pid``) the SMTP server's CPU per message on one connection."""
    msgs = [(f"Subject: offer {i}\r\nFrom: shop@example.com\r\nTo: c{i}@d{i % 50}.example.com\r\n"
             f"Message-ID: <raw.{i}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
             + "Hello there, we picked something for you.\r\n" * 30).encode() for i in range(n)]

    def send(lo: int, hi: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as s:
            for i in range(lo, hi):
                s.sendmail("shop@example.com", [f"c{i}@d{i % 50}.example.com"], msgs[i])

    t0, c0, s0 = time.perf_counter(), time.process_time(), proc_cpu(sink_pid) if sink_pid else 0.0
    send(0, n)
    one = n / (time.perf_counter() - t0)
    if sink_pid:
        print(f"raw smtplib, 1 connection: client CPU {(time.process_time() - c0) / n * 1000:.2f} ms/message, "
              f"SMTP server (aiosmtpd) {(proc_cpu(sink_pid) - s0) / n * 1000:.2f} ms/message")
    step = -(-n // connections)
    threads = [threading.Thread(target=send, args=(lo, min(n, lo + step))) for lo in range(0, n, step)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return one, n / (time.perf_counter() - t0)


def setup_intents(h, n: int, tag: str) -> None:  # noqa: ANN001
    """N customers with email consent and one pending intent each."""
    from shopkeeper.engine import operations as domain

    api = h.in_process("bench")
    addrs = [f"{tag}{i}@d{i % 50}.example.com" for i in range(n)]
    for lo in range(0, n, 1000):
        api.record([{"type": "identify", "identities": {"email": a}, "traits": {"first_name": f"C{i}"},
                     "idempotency_key": f"id-{tag}{i}"} for i, a in enumerate(addrs[lo:lo + 1000], lo)])

    def grant(lo: int, hi: int):  # noqa: ANN202
        def op(folders, changes):  # noqa: ANN001, ANN202
            for a in addrs[lo:hi]:
                c = domain.resolve_ref(folders, None, ("email", a), h.hub.identity_config)
                domain.set_consent(folders, changes, c, "email", "marketing", True, "bench")
        return op

    for lo in range(0, n, 1000):
        h.hub.engine.writer.submit_op(grant(lo, lo + 1000)).result()
    for lo in range(0, n, 1000):
        api.record([{"type": "message_request", "identities": {"email": a},
                     "data": {"template": "default", "offer": f"OFFER{i % 7}", "campaign": "bench",
                              "text": "Spring is here."}, "idempotency_key": f"rq-{tag}{i}"}
                    for i, a in enumerate(addrs[lo:lo + 1000], lo)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--store", choices=("file", "memory"), default="file")
    ap.add_argument("--modes", default="raw,in-process,remote")
    ap.add_argument("--adapter-connections", type=int, default=0,
                    help="the adapter's SMTP connections (default: --connections)")
    ap.add_argument("--adapters", type=int, default=1,
                    help="remote mode: this many adapter processes, each partition K/N with its own journal")
    ap.add_argument("--switch-interval", type=float, default=0.0,
                    help="GIL switch interval (s) of the process the adapter runs in (default: Python's)")
    ap.add_argument("--sink-plain", action="store_true",
                    help="the SMTP sink does not advertise PIPELINING (the runs before this option): one command "
                         "per round trip from the adapter")
    ap.add_argument("--untuned", action="store_true",
                    help="leave the hub process at CPython's collector and GIL settings (the runs before §88) "
                         "instead of shopkeeper serve's (tune_process)")
    args = ap.parse_args()
    modes = args.modes.split(",")
    signal.signal(signal.SIGTERM, _terminated)
    tmp = Path(tempfile.mkdtemp(prefix="bench-email-"))
    held: dict[str, Any] = {}
    try:
        _run(args, modes, tmp, held)
    finally:  # on exit, failure and SIGTERM: the hub, the SMTP sink, a remote adapter, the temp store
        try:
            if held.get("hub") is not None:
                held["hub"].stop()
        finally:
            for name in [k for k in held if k.startswith("remote")] + ["sink"]:
                proc = held.get(name)
                if proc is not None and proc.is_alive():
                    proc.terminate()
                    proc.join(10)
            shutil.rmtree(tmp, ignore_errors=True)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"bench_email: signal {signum}")  # runs main's clean-up


def _run(args: argparse.Namespace, modes: list[str], tmp: Path, held: dict[str, Any]) -> None:
    """The benchmark proper; what it starts goes into ``held`` for :func:`main` to stop."""
    from harness import BenchHub

    from shopkeeper.adapters.email import EmailAdapter

    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}")
    port, counter, sink = start_smtp_sink(pipelining=not args.sink_plain)
    held["sink"] = sink
    print(f"SMTP sink: aiosmtpd {'not advertising' if args.sink_plain else 'advertising'} PIPELINING")
    ctx = mp.get_context("spawn")
    n = args.messages
    results: dict[str, float] = {}
    if "raw" in modes:
        one, many = raw_baseline(port, n, args.connections, sink.pid)
        results["raw"], results["raw-threads"] = one, many
        print(f"raw smtplib, pre-built messages: {one:,.0f} messages/s on 1 connection, "
              f"{many:,.0f} messages/s on {args.connections} threads")

    uri = f"file://{tmp}/Data.fs" if args.store == "file" else "memory://"
    h = held["hub"] = BenchHub(store_uri=uri)
    if not args.untuned:
        from shopkeeper.hub.server import tune_process

        # as `shopkeeper serve` (and bench_sms, bench_hub) run it: the serving collector settings and
        # a 1 ms GIL switch interval; before §88 the bench measured a hub nobody runs
        tune_process()
    how = "CPython's defaults" if args.untuned else "as shopkeeper serve"
    print(f"the hub process: collector threshold {gc.get_threshold()[0]}, GIL switch interval "
          f"{sys.getswitchinterval() * 1000:g} ms ({how})")
    conns = args.adapter_connections or args.connections
    cfg = {"from_addr": "shop@example.com", "smtp_port": port, "secret": "bench", "connections": conns,
           "per_domain_rate": 1e6, "per_domain_burst": 10**6, "max_in_flight": 1024}
    for mode in ("in-process", "remote"):
        if mode not in modes:
            continue
        t0 = time.perf_counter()
        setup_intents(h, n, tag=mode[0])
        print(f"[{mode}] setup: {n} customers with consent and one intent each in "
              f"{time.perf_counter() - t0:.1f} s ({uri})")
        before, sink0 = counter.value, proc_cpu(sink.pid)
        mcfg = {**cfg, "journal": str(tmp / f"journal-{mode}.log")}
        cpu0 = time.process_time()
        if mode == "in-process":
            default_interval = sys.getswitchinterval()
            if args.switch_interval:
                sys.setswitchinterval(args.switch_interval)  # the hub's process: the adapter runs in it
            t0 = time.perf_counter()
            with h.run_adapter(EmailAdapter, mcfg, "in-process") as adapter:
                while adapter.stats["sent"] < n and time.perf_counter() - t0 < 600:
                    time.sleep(0.01)
                elapsed = time.perf_counter() - t0
            sent, stats = adapter.stats["sent"], adapter.stats
            sys.setswitchinterval(default_interval)
        else:
            stop, k = ctx.Event(), args.adapters
            procs = []
            for part in range(k):
                pcfg = {**mcfg, "journal": str(tmp / f"journal-{mode}-{part}.log")}
                if k > 1:
                    pcfg["partition"] = f"{part}/{k}"
                sent_v, started = ctx.Value("i", 0), ctx.Value("d", 0.0)
                p = ctx.Process(target=remote_adapter, args=(h.address, h.api_key, pcfg, sent_v, stop, started,
                                                               args.switch_interval))
                p.start()
                procs.append((p, sent_v, started))
                held[f"remote{part}"] = p
            while not all(st.value for _p, _s, st in procs):
                time.sleep(0.005)
            first = min(st.value for _p, _s, st in procs)
            t0 = time.perf_counter() - (time.time() - first)
            adapter0 = sum(proc_cpu(p.pid) for p, _s, _st in procs)
            while sum(s.value for _p, s, _st in procs) < n and time.perf_counter() - t0 < 600:
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            sent, stats = sum(s.value for _p, s, _st in procs), f"{k} adapter process(es)"
            adapter_cpu = (sum(proc_cpu(p.pid) for p, _s, _st in procs) - adapter0) / max(sent, 1) * 1000
            stop.set()
            for p, _s, _st in procs:
                p.join(30)
        delivered = counter.value - before
        results[mode] = sent / elapsed
        cpu = (time.process_time() - cpu0) / max(sent, 1) * 1000
        sink_cpu = (proc_cpu(sink.pid) - sink0) / max(sent, 1) * 1000
        print(f"[{mode}] sent {sent} (SMTP server received {delivered}) in {elapsed:.2f} s "
              f"= {sent / elapsed:,.0f} messages/s with {conns} SMTP connections; "
              f"hub process CPU {cpu:.2f} ms/message; stats {stats}")
        print(f"[{mode}] CPU per message by process: hub {cpu:.2f} ms"
              + (f", adapter {adapter_cpu:.2f} ms" if mode == "remote" else "")
              + f", SMTP server (aiosmtpd) {sink_cpu:.2f} ms")
    print("\nsummary (same run, same SMTP server):")
    for mode in ("in-process", "remote"):
        if mode in results and "raw" in results:
            one, many = results[mode] / results["raw"], results[mode] / results["raw-threads"]
            print(f"  {mode:<10} {results[mode]:>8,.0f} messages/s = {one:.2f} x raw smtplib "
                  f"(1 connection), {many:.2f} x raw smtplib "
                  f"({args.connections} threads)")


if __name__ == "__main__":
    main()
