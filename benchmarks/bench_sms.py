"""SMS adapter throughput: outbox intents -> Kannel's sendsms -> the fake SMSC, marked sent, with
every delivery report recorded.

    python benchmarks/bench_sms.py [--messages 5000] [--connections 8] [--store file|memory]
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
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402 - benchmarks/harness.py
sys.path.insert(0, str(ROOT / "tests" / "adapters"))  # noqa: E402 - kannel.py: the tests' Kannel runner


def remote_adapter(address: str, api_key: str, cfg: dict, done: mp.Value, reports: mp.Value,  # type: ignore[valid-type]
                   stop: mp.Event, started: mp.Value) -> None:  # type: ignore[valid-type]
    """The adapter in a process of its own (what ``shopkeeper adapter run sms`` does)."""
    from shopkeeper.adapters.base import RemoteHub
    from shopkeeper.adapters.sms import SmsAdapter

    hub = RemoteHub(address, api_key, touchpoint="sms")
    adapter = SmsAdapter.from_config(cfg, hub)
    started.value = time.time()
    adapter.start()
    while not stop.is_set():
        done.value, reports.value = adapter.stats["sent"], adapter.stats.get("reports", 0)
        time.sleep(0.01)
    adapter.stop()
    hub.close()


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
                           port: int) -> tuple[float, float]:
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
        await asyncio.wait_for(done.wait(), 600)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--store", choices=("file", "memory"), default="file")
    ap.add_argument("--modes", default="raw,raw-dlr,in-process,remote")
    ap.add_argument("--smsbox-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra setting of kannel.conf's smsbox group for an A/B run, e.g. "
                         "immediate-sendsms-reply=true (smsbox answers before bearerbox acknowledges: "
                         "faster, but a message bearerbox then refuses is lost to the adapter)")
    args = ap.parse_args()
    modes = args.modes.split(",")

    from harness import BenchHub
    from kannel import PASSWORD, USER, Kannel
    from probe_outbound import _tasks

    from shopkeeper.adapters.sms import SmsAdapter

    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    options = dict(o.split("=", 1) for o in args.smsbox_option)
    kannel = Kannel(tmp / "kannel", interactive=False, smsbox_options=options).start()
    if options:
        print(f"smsbox options: {options}")
    n = args.messages
    try:
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
                                                              PASSWORD, free_port()))
            print(f"raw sendsms with a delivery report each: requests {sent_rate:,.0f}/s, every report back at "
                  f"{ceiling:,.0f} messages/s on {args.connections} connections; "
                  f"{cpu_line(kannel, before, cpu0, n)}")
        uri = f"file://{tmp}/Data.fs" if args.store == "file" else "memory://"
        h = BenchHub(store_uri=uri)
        cfg = kannel.adapter_config(connections=args.connections, max_in_flight=1024, dlr_mask=1,
                                    templates={"offer": "Spring is here: {{ offer }} for you. Reply STOP to opt out"})
        ctx = mp.get_context("spawn")
        for tag, mode in enumerate(("in-process", "remote"), start=1):
            if mode not in modes:
                continue
            t0 = time.perf_counter()
            setup_intents(h, n, tag)
            print(f"[{mode}] setup: {n} customers with consent and one intent each in "
                  f"{time.perf_counter() - t0:.1f} s ({uri})")
            mcfg = {**cfg, "journal": str(tmp / f"journal-{mode}.log")}
            cpu0, before, tasks0 = time.process_time(), daemon_cpu(kannel), _tasks()
            if mode == "in-process":
                t0 = time.perf_counter()
                with h.run_adapter(SmsAdapter, mcfg, "in-process") as adapter:
                    while (adapter.stats["sent"] < n or adapter.stats.get("reports", 0) < n) \
                            and time.perf_counter() - t0 < 600:
                        time.sleep(0.01)
                    elapsed = time.perf_counter() - t0
                    tasks1 = _tasks()  # the adapter's threads end with it
                sent, reports, stats = adapter.stats["sent"], adapter.stats.get("reports", 0), adapter.stats
            else:
                done, reps, stop, started = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Event(), ctx.Value("d", 0.0)
                p = ctx.Process(target=remote_adapter, args=(h.address, h.api_key, mcfg, done, reps, stop, started))
                p.start()
                while not started.value:
                    time.sleep(0.005)
                t0 = time.perf_counter() - (time.time() - started.value)
                while (done.value < n or reps.value < n) and time.perf_counter() - t0 < 600:
                    time.sleep(0.01)
                elapsed = time.perf_counter() - t0
                sent, reports, stats = done.value, reps.value, "-"
                tasks1 = _tasks()
                stop.set()
                p.join(30)
            cpu = (time.process_time() - cpu0) / max(sent, 1) * 1000
            rate = min(sent, reports) / elapsed
            vs = f" = {rate / ceiling:.2f}x raw sendsms with reports in this run" if ceiling else ""
            print(f"[{mode}] sent {sent}, delivery reports recorded {reports}, in {elapsed:.2f} s "
                  f"= {rate:,.0f} messages/s with reports{vs} (target 500/s); hub process CPU "
                  f"{cpu:.2f} ms/message; stats {stats}")
            print(f"[{mode}] {cpu_line(kannel, before, cpu0, n)} (this process = the hub)")
            per = {k: (v - tasks0.get(k, 0.0)) / max(sent, 1) * 1000 for k, v in tasks1.items()}
            print(f"[{mode}] hub by thread (ms/message): " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05))
        got = len(kannel.settle())
        print(f"fake SMSC received {got} SMS in all")
        h.stop()
    finally:
        kannel.stop()


if __name__ == "__main__":
    main()
