"""Crash safety of SMS delivery: kill -9 of the SMS adapter (run as its own process) and of the
hub (with the adapter inside it) at random points while a few hundred messages go through a
real Kannel, restart, finish — and count at the fake SMSC by Message-ID (the test template puts
it in the text): every intent arrives (0 lost) under exactly one Message-ID (0 double).

Kannel's sendsms takes no idempotency key: after a kill between Kannel's "Accepted" and the
delivery journal's fsync, the restarted adapter waits for the message's delivery report (smsbox
retries it) instead of sending it again, so the phone side gets no repeats either.

``SHOPKEEPER_SMS_CRASH_MESSAGES=5000`` runs a larger version (default 300);
``SHOPKEEPER_SMS_CRASH_HUB=1`` adds the run that kills the hub (adapter in-process). The run
takes about two minutes on a loaded 2-core machine, mostly ``shopkeeper`` processes starting.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopkeeper.client import Client
from shopkeeper.hub.config import hash_key, new_key
from shopkeeper.testing import free_port

from .kannel import Kannel
from .test_crash_safety import _until

pytestmark = pytest.mark.e2e

SHOPKEEPER = str(Path(sys.executable).parent / "shopkeeper")
MID = re.compile(r"<sk\.([^.]+)\.[^>]*@sms\.shopkeeper>")


class Cluster:
    """``shopkeeper serve`` and, in remote mode, ``shopkeeper adapter run sms``: processes to kill."""

    def __init__(self, tmp: Path, mode: str, kannel: Kannel) -> None:
        self.tmp, self.mode = tmp, mode
        self.port = free_port()
        self.key = new_key()
        sms = kannel.adapter_config(journal=str(tmp / "sms-journal.log"), retry_delays=[0.2, 0.5, 1.0],
                                    templates={"code": "Your code {{ message_id }}"}, dlr_grace=5.0)
        hub_cfg: dict[str, Any] = {"listen": f"127.0.0.1:{self.port}", "store": f"file://{tmp}/Data.fs",
                                   "log_format": "text", "contact": {"quiet_hours": None},
                                   "api_keys": [{"name": "crash", "key_sha256": hash_key(self.key),
                                                 "scopes": ["profiles:read", "interactions:write", "decide", "admin"]}]}
        if mode == "in-process":
            hub_cfg["adapters"] = {"sms": sms}
        (tmp / "hub.yaml").write_text(yaml.safe_dump(hub_cfg))
        (tmp / "sms.yaml").write_text(yaml.safe_dump(sms))
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
            self.adapter = self._spawn(["adapter", "run", "sms", "--hub", f"127.0.0.1:{self.port}",
                                        "--config", str(self.tmp / "sms.yaml")], "adapter.log")

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


def _run(tmp: Path, mode: str, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    # smsbox retries a delivery report every second for a minute: longer than an adapter restart takes
    kannel = Kannel(tmp / "kannel", interactive=False, dlr_retries=60).start()
    cluster = Cluster(tmp, mode, kannel)
    cluster.start_hub()
    client = Client(f"127.0.0.1:{cluster.port}", cluster.key, retries=10, backoff=0.1)
    phones = [f"+447400{i:06d}" for i in range(1, n + 1)]
    try:
        _until("the hub", lambda: client.stats())
        for lo in range(0, n, 500):
            client.record_batch([{"type": "identify", "identities": {"phone": p}, "idempotency_key": f"id-{p}"}
                                 for p in phones[lo:lo + 500]])
        for p in phones:
            client.set_consent("sms", True, identity=("phone", p))
        cluster.start_adapter()
        step = max(1, n // 6)
        targets = ["adapter"] if mode == "remote" else ["hub"]
        for i, lo in enumerate(range(0, n, step)):  # intents arrive while the adapter works and processes die
            batch = phones[lo:lo + step]
            _until("the batch to be queued", lambda b=batch: client.record_batch(
                [{"type": "message_request", "channel": "sms", "identities": {"phone": p},
                  "idempotency_key": f"rq-{p}", "data": {"template": "code", "intent": f"c{p[1:]}"}} for p in b]))
            if i % 2 == 1:
                # somewhere in the middle of delivering: once Kannel has some of this batch
                seen = len(kannel.received())
                _until("part of the batch at the SMSC", lambda s=seen: len(kannel.received()) > s, timeout=240)
                cluster.kill(rnd.choice(targets))
        _until("every message at the fake SMSC", lambda: len({m["text"] for m in kannel.received()}) >= n, 180)
        _until("no intent left pending", lambda: not client.pending_intents(["sms"]), timeout=300)
        got = kannel.settle()
    finally:
        client.close()
        cluster.stop()
        kannel.stop()

    from shopkeeper import outbox
    from shopkeeper.store import Store

    store = Store.open(f"file://{tmp}/Data.fs")
    try:
        with store.read() as f:
            items = {it.id: it for c in f.customers.values() for it in outbox.items(c)}
    finally:
        store.close()
    per_intent: dict[str, set[str]] = {}
    for m in got:
        found = MID.search(m["text"])
        assert found, f"an SMS the test did not send reached the fake SMSC: {m}"
        per_intent.setdefault(found.group(1), set()).add(found.group(0))
    lost = [i for i in items if i not in per_intent]
    double = {i: ids for i, ids in per_intent.items() if len(ids) > 1}
    texts = [m["text"] for m in got]
    repeats = len(texts) - len(set(texts))
    print(f"sms {mode}: {n} intents, kills {dict(cluster.kills)}, {len(texts)} SMS at the fake SMSC, "
          f"{len(set(texts))} Message-IDs, same-Message-ID repeats {repeats}")
    assert len(items) == n
    assert sum(cluster.kills.values()) >= 3, "the run must kill processes while delivering"
    assert not lost, f"{len(lost)} intents never reached the fake SMSC: {lost[:5]}"
    assert not double, f"{len(double)} intents reached it under two Message-IDs: {list(double.items())[:3]}"
    assert repeats == 0, f"{repeats} SMS reached the phones twice (a send Kannel had taken was sent again)"
    wrong = {i: it.status for i, it in items.items() if it.status != outbox.SENT}
    assert not wrong, f"intents not marked sent: {list(wrong.items())[:5]}"
    assert all(it.message_id in per_intent[i] for i, it in items.items()), "the hub recorded another Message-ID"


def test_kill_9_of_the_sms_adapter_neither_loses_nor_doubles(tmp_path: Path) -> None:
    _run(tmp_path, "remote", int(os.environ.get("SHOPKEEPER_SMS_CRASH_MESSAGES", "300")), seed=21)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SHOPKEEPER_SMS_CRASH_HUB"), reason="set SHOPKEEPER_SMS_CRASH_HUB=1 to also "
                    "kill the hub running the adapter in-process (each restart of `shopkeeper serve` takes seconds)")
def test_kill_9_of_the_hub_with_the_sms_adapter_inside(tmp_path: Path) -> None:
    _run(tmp_path, "in-process", int(os.environ.get("SHOPKEEPER_SMS_CRASH_MESSAGES", "300")), seed=22)
