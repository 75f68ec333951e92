"""Responses in the report: a failed delivery report ends a sent text ``failed``; a STOP counts for the
campaign whose message it answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeeper import contact, outbox
from shopkeeper.analysis.models import commit_op
from shopkeeper.campaigns import runs
from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.campaigns.report import run_report
from shopkeeper.customer import Interaction
from shopkeeper.store import Store

from .helpers import CAMPAIGN, add, write_campaign


@pytest.fixture(autouse=True)
def _no_quiet_hours() -> Any:
    contact.configure(overrides={"quiet_hours": None})
    yield
    contact.configure(overrides={})


@pytest.fixture
def campaign(tmp_path: Path) -> Any:
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: 0"))
    return load_campaigns(tmp_path).campaigns["winter_sale"]


def run(store: Store, campaign: Any, rid: str) -> str:
    commit_op(store, None, runs.create_run(campaign, run_id=rid, by="test"), "test")
    assert runs.drive(store, None, rid) == runs.DONE
    return rid


def texters(store: Store, n: int = 2) -> None:
    with store.transaction() as f:
        for i in range(n):
            add(f, f"t{i}", phone=f"+49151120000{i}", consents={"sms": True}, preferred="sms")


def event(store: Store, cid: str, type_: str, data: dict[str, Any], channel: str = "sms") -> None:
    """What the ingest path does with an adapter's event: the outbox transition, then the interaction."""
    with store.transaction() as f:
        c = f.customer(cid)
        outbox.apply_event(f, c, type_, channel, data)
        ts = max([*c.history.keys(), outbox.get(c, data["intent"]).updated_at if data.get("intent") else 0]) + 1
        c.add_interaction(Interaction(0, ts, type_, channel, "sms", data))


def send(store: Store, cid: str, iid: str, mid: str) -> None:
    event(store, cid, "message_dispatch", {"intent": iid, "message_id": mid})
    event(store, cid, "message_sent", {"intent": iid, "message_id": mid})


def status(store: Store, cid: str, iid: str) -> str:
    with store.read() as f:
        return outbox.get(f.customer(cid), iid).status


def funnel(store: Store, rid: str) -> dict[str, int]:
    with store.read() as f:
        return run_report(f, rid)["funnel"]["sms"]


def test_an_undelivered_report_ends_a_sent_text_failed_and_the_report_counts_it(file_store: Store,
                                                                                campaign: Any) -> None:
    texters(file_store)
    rid = run(file_store, campaign, "r1")
    a, b = runs.intent_id(rid, "t0"), runs.intent_id(rid, "t1")
    send(file_store, "t0", a, "m-a")
    send(file_store, "t1", b, "m-b")
    event(file_store, "t1", "sms_undelivered", {"intent": b, "message_id": "m-old", "status": "undelivered"})
    assert status(file_store, "t1", b) == outbox.SENT  # the report of another send of it moves nothing
    event(file_store, "t0", "sms_delivered", {"intent": a, "message_id": "m-a", "status": "delivered"})
    event(file_store, "t1", "sms_undelivered", {"intent": b, "message_id": "m-b", "status": "undelivered",
                                                 "reason": "absent subscriber"})
    assert status(file_store, "t0", a) == outbox.SENT
    assert status(file_store, "t1", b) == outbox.FAILED
    with file_store.read() as f:
        assert outbox.get(f.customer("t1"), b).error == "undelivered: absent subscriber"
    row = funnel(file_store, rid)
    assert row["sent"] == 2 and row["delivered"] == 1 and row["failed"] == 1 and row["bounced"] == 1, row


def test_a_stop_counts_for_the_campaign_whose_text_it_answers(file_store: Store, campaign: Any) -> None:
    texters(file_store, 1)
    first = run(file_store, campaign, "r1")
    send(file_store, "t0", runs.intent_id(first, "t0"), "m-1")
    second = run(file_store, campaign, "r2")  # a later text to the same phone
    send(file_store, "t0", runs.intent_id(second, "t0"), "m-2")
    event(file_store, "t0", "unsubscribe", {"keyword": "STOP"})
    assert funnel(file_store, second)["stop"] == 1
    assert funnel(file_store, first)["stop"] == 0  # it answered the second text, not the first


def two_campaigns(tmp_path: Path) -> tuple[Any, Any]:
    base = CAMPAIGN.replace("holdout: 10", "holdout: 0")
    write_campaign(tmp_path, base.replace("winter_sale", "low_sale").replace("priority: 10", "priority: 1"), "low.yaml")
    write_campaign(tmp_path, base.replace("winter_sale", "high_sale"), "high.yaml")
    got = load_campaigns(tmp_path).campaigns
    return got["low_sale"], got["high_sale"]


def claim(store: Store, cid: str, iid: str) -> str:
    with store.transaction() as f:
        refused = outbox.apply_event(f, f.customer(cid), "message_dispatch", "sms", {"intent": iid, "message_id": iid})
    return refused.code if refused is not None else "claimed"


def test_priority_wins_a_contested_cap_slot_at_planning_and_at_the_claim(file_store: Store, tmp_path: Path) -> None:
    low, high = two_campaigns(tmp_path)
    contact.configure(overrides={"quiet_hours": None, "max_messages_per_week": 1})
    texters(file_store, 2)
    # t0: the low-priority campaign planned first; the high one still gets the slot, and at the
    # claims the low one gives it up — whichever adapter claims first
    lo = run(file_store, low, "lo")
    hi = run(file_store, high, "hi")
    assert runs.status(file_store, hi)["counts"].get("intents:sms") == 2
    assert claim(file_store, "t0", runs.intent_id(lo, "t0")) == contact.CAPPED
    assert claim(file_store, "t0", runs.intent_id(hi, "t0")) == "claimed"
    assert status(file_store, "t0", runs.intent_id(lo, "t0")) == outbox.SUPPRESSED
    # t1: the high one claimed first; the low one is capped by the contact it made
    assert claim(file_store, "t1", runs.intent_id(hi, "t1")) == "claimed"
    assert claim(file_store, "t1", runs.intent_id(lo, "t1")) == contact.CAPPED
    # planned the other way round: the high one queued first keeps the slot, the low one is capped
    with file_store.transaction() as f:
        add(f, "t2", phone="+491511200009", consents={"sms": True})
    run(file_store, high, "hi2")
    run(file_store, low, "lo2")
    assert runs.status(file_store, "lo2")["counts"].get("capped") == 3  # t0, t1 contacted; t2 held by hi2
    assert claim(file_store, "t2", runs.intent_id("hi2", "t2")) == "claimed"
