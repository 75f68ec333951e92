"""kill -9 of the hub, or of the email adapter in its own process, while a campaign is planned
and delivered: every recipient's email reaches a real aiosmtpd server under exactly one
Message-ID (0 lost, 0 double) and no customer gets a second intent, whatever the run was doing
when the process died (snapshot, writing intents, sending).

Reuses the email crash test's machinery (processes, the Message-ID sink). 500 recipients by
default (200 when the adapter is killed: the suite's time);
``SHOPKEEPER_CAMPAIGN_CRASH_RECIPIENTS=100000`` for the issue's large run (both cases, ~15 min of
both cores: ``SHOPKEEPER_CAMPAIGN_CRASH_RECIPIENTS=100000 pytest -s -p no:cacheprovider
tests/campaigns/test_campaign_crash.py``). The kills fall at random points spread over the
delivery (after a random share of the recipients has reached the SMTP server), and the waits
grow with the number of recipients, so the large run kills mid-delivery rather than in its
first seconds and is not cut by a timeout made for the suite's size.
"""

from __future__ import annotations

import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller

from shopkeeper.client import Client
from shopkeeper.testing import free_port


def _crash_machinery() -> object:
    """tests/adapters/test_crash_safety.py, loaded by path (tests/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "adapters" / "test_crash_safety.py"
    spec = importlib.util.spec_from_file_location("shopkeeper_email_crash_machinery", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_m = _crash_machinery()
Cluster, MessageIdSink, _until = _m.Cluster, _m.MessageIdSink, _m._until  # type: ignore[attr-defined]
email_config = _m.email_config  # type: ignore[attr-defined]

pytestmark = pytest.mark.e2e

CAMPAIGN = """\
campaigns:
  - name: crash_sale
    audience:
      conditions:
        - consent.email: true
    messages:
      - {channel: email, template: default}
    holdout: 0
"""
INTENT = re.compile(r"^<sk\.(cp\.[^.]+\.[0-9a-f]+)\.")


#: the large run's size (0: the suite's sizes); its whole test may take far longer than the suite's
#: per-test timeout (pyproject.toml), so that timeout grows with it
LARGE = int(os.environ.get("SHOPKEEPER_CAMPAIGN_CRASH_RECIPIENTS", "0"))


@pytest.mark.timeout(max(300.0, LARGE * 0.06))  # 100k: 100 min at most (~15 expected)
@pytest.mark.parametrize(("mode", "victim"), [("in-process", "hub"), ("remote", "adapter")])
def test_kill_9_during_a_campaign_neither_loses_nor_doubles(tmp_path: Path, mode: str, victim: str) -> None:
    """The hub (with the email adapter inside) killed three times; or the email adapter, in its own
    process, killed three times while the hub plans, writes and hands out the campaign's intents."""
    n = LARGE or (500 if victim == "hub" else 200)
    patience = max(300.0, n / 25)  # seconds for the slowest wait: ~25 messages/s with restarts, at worst
    rnd = random.Random(16)
    sink = MessageIdSink()
    smtp_port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    ctl.start()
    cluster = Cluster(tmp_path, mode, "email", email_config(tmp_path, smtp_port))
    (tmp_path / "rules" / "campaigns").mkdir(parents=True)
    (tmp_path / "rules" / "campaigns" / "crash.yaml").write_text(CAMPAIGN)
    cfg = yaml.safe_load((tmp_path / "hub.yaml").read_text())
    cfg["rules_dir"] = str(tmp_path / "rules")
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(cfg))
    cluster.start_hub()
    client = Client(f"127.0.0.1:{cluster.port}", cluster.key, retries=10, backoff=0.1)
    try:
        _until("the hub", lambda: client.stats())
        # remote mode only; once the hub answers: an adapter started before gives up ("did not
        # start: UNAVAILABLE") and the run then waits for sends that never come
        cluster.start_adapter()
        addrs = [f"k{i}@d{i % 20}.example.com" for i in range(n)]
        for lo in range(0, n, 500):
            client.record_batch([{"type": "identify", "identities": {"email": a}, "idempotency_key": f"id-k{i}"}
                                 for i, a in enumerate(addrs[lo:lo + 500], lo)])
        with ThreadPoolExecutor(8) as pool:  # concurrent calls share the writer's commits (100k: minutes less)
            list(pool.map(lambda a: client.set_consent("email", True, email=a), addrs))
        run = client.start_campaign("crash_sale")
        # the hub's first death falls while it plans and writes intents; the others (and each of
        # the adapter's) once a random share of the recipients has reached the SMTP server
        shares = sorted(rnd.uniform(0.05, 0.9) for _ in range(3))
        for i, share in enumerate(shares):
            if victim == "hub" and i == 0:
                _until("progress", lambda: len(sink.ids) > 0 or client.campaign_run(run.id).delivered > 0)
            else:
                if len(set(sink.ids)) >= n:
                    break  # everything arrived before this share: nothing left to kill it over
                goal = min(n, max(len(set(sink.ids)) + 1, int(share * n)))
                _until(f"{goal} messages at the SMTP server", lambda g=goal: len(set(sink.ids)) >= g,
                       timeout=patience)
            cluster.kill(victim)
            _until("the hub again", lambda: client.stats())
            if len(set(sink.ids)) >= n:
                break
            time.sleep(rnd.uniform(0.05, 0.5))
        _until("the run to finish", lambda: client.campaign_run(run.id).status == "done", timeout=patience)
        _until("every message at the SMTP server", lambda: len(set(sink.ids)) >= n, timeout=patience)
        _until("no intent left pending", lambda: not client.pending_intents(["email"]), timeout=patience)
        status = client.campaign_run(run.id)
    finally:
        client.close()
        cluster.stop()
        ctl.stop()

    from shopkeeper import outbox
    from shopkeeper.store import Store

    store = Store.open(f"file://{tmp_path}/Data.fs")
    try:
        with store.read() as f:
            per_customer = {cid: [it for it in outbox.items(c) if it.payload.get("campaign") == "crash_sale"]
                            for cid, c in f.customers.items()}
    finally:
        store.close()
    items = {it.id: it for got in per_customer.values() for it in got}
    per_intent: dict[str, set[str]] = {}
    for mid in sink.ids:
        m = INTENT.match(mid)
        assert m, mid
        per_intent.setdefault(m.group(1), set()).add(mid)
    lost = [i for i in items if i not in per_intent]
    double = {i: ids for i, ids in per_intent.items() if len(ids) > 1}
    print(f"campaign crash: {n} recipients, kills {dict(cluster.kills)}, {len(sink.ids)} SMTP deliveries, "
          f"{len(set(sink.ids))} Message-IDs, counts {dict(status.counts)}")
    assert cluster.kills[victim] >= 1
    assert all(len(v) == 1 for v in per_customer.values()), "a customer got two intents of one run"
    assert len(items) == n == status.counts["intents:email"]
    assert not lost, f"{len(lost)} intents never reached the SMTP server: {lost[:5]}"
    assert not double, f"{len(double)} intents reached it under two Message-IDs: {list(double.items())[:3]}"
    assert set(per_intent) == set(items)
    assert all(it.status == outbox.SENT for it in items.values())
