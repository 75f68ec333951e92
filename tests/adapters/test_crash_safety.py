"""Crash safety of email delivery in both adapter modes: kill -9 of the adapter and of the hub at
random points while 1,000 messages go to a real aiosmtpd server, restart, finish — and count at
the SMTP server by Message-ID: every intent arrives (0 lost) under exactly one Message-ID (0
double). A crash between the server's acceptance and the journal's fsync can make the adapter
send the *same* message again (same Message-ID, which receivers treat as one message); those
repeats are counted and reported apart.

``SHOPKEEPER_CRASH_10K=1 pytest -s tests/adapters/test_crash_safety.py -k 10k`` runs the 10k
version (seed 12) in both modes.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from shopkeeper.client import Client
from shopkeeper.hub.config import hash_key, new_key
from shopkeeper.testing import free_port, wait_for

pytestmark = pytest.mark.e2e

SHOPKEEPER = str(Path(sys.executable).parent / "shopkeeper")
MID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)", re.M | re.I)


class MessageIdSink:
    """An SMTP server that keeps the Message-ID of everything it accepts (repeats included).
    ``pipelining``: its EHLO advertises PIPELINING (RFC 2920), so the adapter sends each envelope as
    one command group — the remote run kills adapters mid-group, the in-process run mid-command."""

    def __init__(self, pipelining: bool = False) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.pipelining = pipelining
        self.grouped = 0  # envelopes whose DATA came in one write with MAIL and RCPT

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves it to a handler with this hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if b"DATA\r\n" in bytes(server._reader._buffer):
            self.grouped += 1
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        m = MID.search(envelope.content)
        with self.lock:
            self.ids.append(m.group(1).decode() if m else "<none>")
        return "250 OK"


def email_config(tmp: Path, smtp_port: int) -> dict[str, Any]:
    """The email adapter's section for a crash run: a journal in ``tmp``, short retries."""
    return {"from_addr": "shop@example.com", "smtp_port": smtp_port, "secret": "crash", "http_listen": None,
            "connections": 4, "journal": str(tmp / "journal.log"), "retry_delays": [0.2, 0.5, 1.0]}


class Cluster:
    """A hub (``shopkeeper serve``) and, in remote mode, a channel adapter (``shopkeeper adapter run
    ADAPTER``), as processes a crash test kills with SIGKILL and starts again. Used by the email,
    SMS and campaign crash tests."""

    def __init__(self, tmp: Path, mode: str, adapter: str, config: dict[str, Any]) -> None:
        self.tmp, self.mode, self.adapter_name = tmp, mode, adapter
        self.port = free_port()
        self.key = new_key()
        hub_cfg: dict[str, Any] = {"listen": f"127.0.0.1:{self.port}", "store": f"file://{tmp}/Data.fs",
                                   "log_format": "text",
                                   # the contact policy's quiet hours would hold marketing back at
                                   # night: this test is about crashes, at whatever hour it runs
                                   "contact": {"quiet_hours": None},
                                   "api_keys": [{"name": "crash", "key_sha256": hash_key(self.key),
                                                 "scopes": ["profiles:read", "interactions:write", "decide", "admin"]}]}
        if mode == "in-process":
            hub_cfg["adapters"] = {adapter: config}
        (tmp / "hub.yaml").write_text(yaml.safe_dump(hub_cfg))
        (tmp / f"{adapter}.yaml").write_text(yaml.safe_dump(config))
        self.hub: subprocess.Popen | None = None
        self.adapter: subprocess.Popen | None = None
        self.kills: Counter = Counter()

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.tmp / log, "ab")  # noqa: SIM115 - the child holds it
        return subprocess.Popen([SHOPKEEPER, *args], stdout=out, stderr=out,
                                env={**os.environ, "SHOPKEEPER_API_KEY": self.key})

    def start_hub(self) -> None:
        self.hub = self._spawn(["serve", "--config", str(self.tmp / "hub.yaml"), "--grace", "1"], "hub.log")

    def start_adapter(self) -> None:
        if self.mode == "remote":
            self.adapter = self._spawn(["adapter", "run", self.adapter_name, "--hub", f"127.0.0.1:{self.port}",
                                        "--config", str(self.tmp / f"{self.adapter_name}.yaml")], "adapter.log")

    def kill(self, which: str) -> None:
        proc = self.hub if which == "hub" else self.adapter
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        self.kills[which] += 1
        (self.start_hub if which == "hub" else self.start_adapter)()

    def stop(self) -> None:
        for proc in (self.adapter, self.hub):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def _until(what: str, fn: Any, timeout: float = 120.0) -> Any:
    """Call ``fn`` until it returns something truthy, riding out a hub that is restarting."""
    return wait_for(fn, timeout, 0.1, what, retry_on=(Exception,))


def _run(tmp: Path, mode: str, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    sink = MessageIdSink(pipelining=mode == "remote")
    smtp_port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    ctl.start()
    cluster = Cluster(tmp, mode, "email", email_config(tmp, smtp_port))
    cluster.start_hub()
    client = Client(f"127.0.0.1:{cluster.port}", cluster.key, retries=10, backoff=0.1)
    try:
        _until("the hub", lambda: client.stats())
        addrs = [f"c{i}@d{i % 20}.example.com" for i in range(n)]
        for lo in range(0, n, 500):
            client.record_batch([{"type": "identify", "identities": {"email": a}, "idempotency_key": f"id-c{i}"}
                                 for i, a in enumerate(addrs[lo:lo + 500], lo)])
        for a in addrs:
            client.set_consent("email", True, email=a)
        cluster.start_adapter()
        batches = [addrs[lo:lo + n // 10] for lo in range(0, n, n // 10)]
        targets = ["hub"] + (["adapter"] if mode == "remote" else [])
        queued = 0
        for i, batch in enumerate(batches):  # intents arrive while the adapter works and processes die
            _until("the batch to be queued", lambda b=batch: client.record_batch(
                [{"type": "message_request", "identities": {"email": a}, "idempotency_key": "rq-" + a.partition("@")[0],
                  "data": {"template": "default", "intent": f"crash-{a.partition('@')[0]}"}} for a in b]))
            queued += len(batch)
            if i % 3 == 1:
                time.sleep(rnd.uniform(0.05, 0.6))  # somewhere in the middle of delivering
                cluster.kill(rnd.choice(targets))
        # 300 s for the suite's 1k; the 10k remote run was still delivering (~87%) when 300 s ran out at load 14
        _until("every message at the SMTP server", lambda: len(set(sink.ids)) >= n, timeout=max(300.0, n * 0.12))
        _until("no intent left pending", lambda: not client.pending_intents(["email"]), timeout=120)
    finally:
        client.close()
        cluster.stop()
        ctl.stop()

    from shopkeeper import outbox
    from shopkeeper.store import Store

    store = Store.open(f"file://{tmp}/Data.fs")
    try:
        with store.read() as f:
            items = {it.id: it for c in f.customers.values() for it in outbox.items(c)}
    finally:
        store.close()
    per_intent: dict[str, set[str]] = {}
    for mid in sink.ids:
        intent = mid.strip("<>").split(".")[1]
        per_intent.setdefault(intent, set()).add(mid)
    lost = [i for i in items if i not in per_intent]
    double = {i: ids for i, ids in per_intent.items() if len(ids) > 1}
    repeats = len(sink.ids) - len(set(sink.ids))
    print(f"{mode}: {n} intents, kills {dict(cluster.kills)}, {len(sink.ids)} SMTP deliveries, "
          f"{len(set(sink.ids))} Message-IDs, same-Message-ID repeats {repeats}")
    assert len(items) == n
    assert sum(cluster.kills.values()) >= 3, "the run must kill processes while delivering"
    assert (sink.grouped > 0) == sink.pipelining, f"{sink.grouped} envelopes sent as one command group"
    assert not lost, f"{len(lost)} intents never reached the SMTP server: {lost[:5]}"
    assert not double, f"{len(double)} intents reached it under two Message-IDs: {list(double.items())[:3]}"
    wrong = {i: it.status for i, it in items.items() if it.status != outbox.SENT}
    assert not wrong, f"intents not marked sent: {list(wrong.items())[:5]}"
    assert all(it.message_id in per_intent[i] for i, it in items.items()), "the hub recorded another Message-ID"


@pytest.mark.parametrize("mode", ["in-process", "remote"])
def test_kill_9_during_delivery_neither_loses_nor_doubles(tmp_path: Path, mode: str) -> None:
    _run(tmp_path, mode, int(os.environ.get("SHOPKEEPER_CRASH_MESSAGES", "1000")), seed=11)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the suite's 300 s per test ends a 10k run on a loaded machine half way
@pytest.mark.skipif(not os.environ.get("SHOPKEEPER_CRASH_10K"), reason="set SHOPKEEPER_CRASH_10K=1 for the 10k run")
@pytest.mark.parametrize("mode", ["in-process", "remote"])
def test_kill_9_during_delivery_of_10k(tmp_path: Path, mode: str) -> None:
    _run(tmp_path, mode, 10_000, seed=12)
