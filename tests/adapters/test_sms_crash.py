"""Crash safety of SMS delivery: kill -9 of the SMS adapter (run as its own process) and of the
hub (with the adapter inside it) at random points while a few hundred messages go through a
real Kannel, restart, finish — and count at the fake SMSC by Message-ID (the test template puts
it in the text): every intent arrives (0 lost) under exactly one Message-ID (0 double).

Kannel's sendsms takes no idempotency key: after a kill between Kannel's "Accepted" and the
delivery journal's fsync, the restarted adapter waits for the message's delivery report (smsbox
retries it) instead of sending it again, so the phone side gets no repeats either.

``SHOPKEEPER_SMS_CRASH_MESSAGES=5000`` runs a larger version (default 300). Both runs are in the
suite (issue 16: the crash test kills the hub *and* each adapter; the hub's run was opt-in before):
about 15 s for the adapter's and 40–90 s for the hub's on a 2-core machine, mostly ``shopkeeper
serve`` restarting.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.client import Client

from .kannel import Kannel
from .test_crash_safety import Cluster, _until

pytestmark = pytest.mark.e2e

MID = re.compile(r"<sk\.([^.]+)\.[^>]*@sms\.shopkeeper>")


def sms_config(tmp: Path, kannel: Kannel) -> dict[str, Any]:
    """The SMS adapter's section for a crash run: a journal in ``tmp``, short retries, a text
    that carries the Message-ID (what the fake SMSC's count is keyed by)."""
    return kannel.adapter_config(journal=str(tmp / "sms-journal.log"), retry_delays=[0.2, 0.5, 1.0],
                                 templates={"code": "Your code {{ message_id }}"}, dlr_grace=5.0)


def _run(tmp: Path, mode: str, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    # smsbox retries a delivery report every second for a minute: longer than an adapter restart takes
    kannel = Kannel(tmp / "kannel", interactive=False, dlr_retries=60).start()
    cluster = Cluster(tmp, mode, "sms", sms_config(tmp, kannel))
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
def test_kill_9_of_the_hub_with_the_sms_adapter_inside(tmp_path: Path) -> None:
    _run(tmp_path, "in-process", int(os.environ.get("SHOPKEEPER_SMS_CRASH_MESSAGES", "300")), seed=22)
