"""One writer: every commit of a hub process is the engine writer's, and every one is published.

Background work (rule timers, the segment scheduler) decides *when* on its own thread and
hands the change to the writer, so what it commits reaches ``Watch``, ``shopkeeper_committed``
and the in-process adapters while the hub runs. The suite-wide ``CommitGuard`` fixture
(``tests/conftest.py``) fails any test in which another thread commits to a hub's store.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller

from shopkeeper import hookimpl, outbox
from shopkeeper._proto.v1 import watch_pb2
from shopkeeper.events import validate_event
from shopkeeper.hub.server import Hub
from shopkeeper.store import Store
from shopkeeper.testing import CommitGuard

from .conftest import event, free_port, make_config, record, start_hub

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400


class SmtpSink:
    """A real SMTP server's handler (aiosmtpd): keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp() -> Any:
    sink = SmtpSink()
    sink.port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=sink.port)
    ctl.start()
    yield sink
    ctl.stop()


def test_timer_fired_cart_reminder_is_emailed_while_the_hub_runs(shopkeeper_hub_factory: Any, smtp: SmtpSink,
                                                                  tmp_path: Path) -> None:
    """The shipped cart-abandonment rule: its 24 h absence timer fires on the timer thread, the
    ``send_message`` intent is committed by the writer, published, picked up by the in-process
    email adapter and delivered to a real SMTP server — no restart."""
    h = shopkeeper_hub_factory({
        "rules_dir": str(ROOT / "rules"),
        "adapters": {"email": {
            "from_addr": "shop@example.com", "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "secret": "s",
            "journal": str(tmp_path / "journal.log"), "retry_delays": [0.05],
            "templates": {"cart_reminder": {"subject": "{{ first_name }}, your cart is waiting",
                                            "text": "You left {{ cart_value }} in your cart.\n{{ unsubscribe_url }}",
                                            "html": "<p>You left {{ cart_value }} in your cart.</p>"}}}},
    })
    ann = ("email", "ann@example.com")
    h.send({"type": "identify", "identities": {"email": ann[1]}, "traits": {"first_name": "Ann"}})
    h.grant(ann)
    # a checkout started 25 hours ago, with no order since: the timer is due as soon as it is set
    res = h.send({"type": "checkout_started", "identities": {"email": ann[1]}, "ts": time.time() - 25 * 3600,
                  "data": {"cart_value": 80}})
    assert res[0]["status"] == "applied", res
    h.wait_for(lambda: smtp.messages, what="the cart reminder at the SMTP server")
    msg = smtp.messages[0]
    assert msg["To"] == ann[1]
    assert msg["Subject"] == "Ann, your cart is waiting"
    cid = h.customer(ann)["id"]

    def statuses() -> list[str]:
        with h.hub.store.read() as f:
            return [i.status for i in outbox.items(f.customer(cid)) if i.template == "cart_reminder"]

    h.wait_for(lambda: statuses() == ["sent"], what="the reminder intent marked sent")
    assert "cart_abandoned" in [i["type"] for i in h.interactions(ann)]  # the rule's emitted event


SEGMENTS = """\
segments:
  - name: lapsed
    description: no page view for 30 days
    when: days_since('page_view') >= 30
"""


def test_scheduled_segment_entry_reaches_a_watch_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page view 30 days ago less two seconds: not ``lapsed`` when recorded; the scheduler's
    next run (on its own thread, committed by the writer) enters the customer, and the entry
    arrives on a live ``Watch`` stream."""

    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "lapsed.yaml").write_text(SEGMENTS)
    monkeypatch.setenv("SHOPKEEPER_SEGMENT_TICK_SECONDS", "0.2")
    r = start_hub(rules_dir=str(tmp_path))
    try:
        client = r.client("admin")
        stream = client.watch.Watch(watch_pb2.WatchRequest(from_oldest=True, kinds=["segment_entered"]),
                                    metadata=client.md, timeout=30)
        got: list[Any] = []
        done = threading.Event()

        def follow() -> None:
            try:
                for change in stream:
                    got.append(change)
                    done.set()
                    return
            except grpc.RpcError:
                done.set()

        threading.Thread(target=follow, daemon=True).start()
        ev = event("page_view", "lapsing@example.com", key="lapse-1", url="/")
        ev.ts.FromMicroseconds(int((time.time() - 30 * DAY + 2) * 1e6))
        rec = record(client, ev)
        with r.hub.read() as f:
            assert "lapsed" not in f.customer(rec.customer_id).segments  # not by the event itself
        assert done.wait(30), "no segment_entered change on the Watch stream"
        stream.cancel()
        assert got and got[0].kind == "segment_entered", got
        assert got[0].customer_id == rec.customer_id
        assert list(got[0].segments) == ["lapsed"]
        assert got[0].event_type == ""  # entered by the scheduler, not by an event
    finally:
        for ch in r.channels:
            ch.close()
        r.hub.stop(grace=0.5)


def test_the_guard_catches_a_commit_outside_the_writer(shopkeeper_commit_guard: CommitGuard) -> None:
    """The suite-wide guard itself: a commit from the test's thread while a hub's writer runs
    is recorded (and would fail the test); a commit by the writer is not."""
    store = Store.open("memory://")
    r = start_hub(store)
    try:
        r.hub.writer.submit_op(lambda f, ch: f.meta.__setitem__("by_writer", 1)).result(10)
        assert shopkeeper_commit_guard.violations == []
        with r.hub.store.transaction(note="test: behind the writer's back") as f:
            f.meta["behind_the_back"] = 1
        assert len(shopkeeper_commit_guard.violations) == 1
        assert "MainThread" in shopkeeper_commit_guard.violations[0]
        assert "behind the writer's back" in shopkeeper_commit_guard.violations[0]
    finally:
        r.hub.stop(grace=0.5)
        shopkeeper_commit_guard.violations.clear()  # seen: do not fail this test for it
    with store.transaction() as f:  # the hub is gone: an offline commit is fine
        f.meta["offline"] = 1
    store.close()
    assert shopkeeper_commit_guard.violations == []


class TagsThenBreaks:
    """Contributes a processor, then fails its start-up: disabled, its processor must not run."""

    @hookimpl
    def shopkeeper_processors(self, hub: Any) -> list[Any]:
        def tag(folders: Any, applied: Any) -> None:
            applied.customer.set_traits({"tagged_by_broken_plugin": True})

        return [tag]

    @hookimpl
    def shopkeeper_startup(self, hub: Any) -> None:
        hub.writer.submit_op(lambda f, ch: None).result(10)  # the writer already runs at start-up
        raise RuntimeError("cannot reach the vendor")


def test_a_plugin_disabled_at_startup_loses_its_processors_too() -> None:
    """Processors are collected before start-up (the writer must run for plugins to use it);
    a plugin whose start-up then fails must not keep changing every event."""
    store = Store.open("memory://")
    hub = Hub(make_config(free_port()), store=store, plugins=(TagsThenBreaks(),), load_entrypoints=False).start()
    try:
        assert any("cannot reach the vendor" in why for why in hub.disabled.values()), hub.disabled
        ev = validate_event({"type": "page_view", "identities": {"email": "pat@example.com"},
                             "idempotency_key": "p1", "data": {"url": "/"}}, hub.event_types)
        [res] = hub.writer.submit_events([ev]).result(10)
        assert res.status == "applied", res
        with hub.read() as f:
            assert "tagged_by_broken_plugin" not in f.customer(res.customer_id).traits
    finally:
        hub.stop(grace=0.1)
        store.close()
