"""Campaign runs: an audience snapshot, one intent per recipient in large writer groups,
holdout recorded, pause/resume/cancel, and a resume that never writes a second intent."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from shopkeeper import contact, outbox
from shopkeeper.analysis.models import commit_op
from shopkeeper.campaigns import runs
from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

from .helpers import CAMPAIGN, add, population, write_campaign


@pytest.fixture(autouse=True)
def _no_quiet_hours() -> Any:
    contact.configure(overrides={"quiet_hours": None})
    yield
    contact.configure(overrides={})


def campaign_of(tmp_path: Path, holdout: int = 0) -> Any:
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", f"holdout: {holdout}"))
    return load_campaigns(tmp_path).campaigns["winter_sale"]


def campaign_intents(store: Store, run_id: str | None = None) -> dict[str, list[Any]]:
    """customer id -> the campaign intents in their outbox."""
    out: dict[str, list[Any]] = {}
    with store.read() as f:
        for cid, c in f.customers.items():
            got = [it for it in outbox.items(c) if it.payload.get("campaign") == "winter_sale"
                   and (run_id is None or it.payload.get("run") == run_id)]
            if got:
                out[cid] = got
    return out


def start(store: Store, campaign: Any, run_id: str = "r1") -> str:
    return commit_op(store, None, runs.create_run(campaign, run_id=run_id, by="test"), "test")


def test_a_run_writes_one_intent_per_recipient_and_records_the_rest(file_store: Store, tmp_path: Path) -> None:
    cases = population(file_store, 60)
    c = campaign_of(tmp_path, holdout=20)
    rid = start(file_store, c)
    assert runs.drive(file_store, None, rid, batch=7) == runs.DONE
    st = runs.status(file_store, rid)
    got = campaign_intents(file_store, rid)
    sendable = [cid for cid, k in cases.items() if k in ("email", "sms_pref", "sms_only")]
    held = st["counts"].get("holdout", 0)
    assert held > 0 and len(got) + held == len(sendable), (st, len(got))
    assert all(len(v) == 1 for v in got.values())
    for cid, (it,) in got.items():
        assert it.id == runs.intent_id(rid, cid) and it.status == outbox.PENDING
        assert it.channel == ("email" if cases[cid] == "email" else "sms")
        assert it.payload["run"] == rid and it.source == "campaign:winter_sale"
    assert st["counts"]["no_consent"] == sum(1 for k in cases.values() if k == "no_consent")
    assert st["counts"]["undeliverable"] == sum(1 for k in cases.values() if k == "no_address")
    assert st["counts"]["intents:email"] + st["counts"]["intents:sms"] == len(got)
    with file_store.read() as f:
        plan = runs.get_run(f, rid).plan
        holdouts = [cid for cid, (_ch, code, _d, _x) in plan.items() if code == "holdout"]
    assert len(holdouts) == held and not set(holdouts) & set(got)  # holdout: recorded, no intent


def test_the_audience_is_a_snapshot_at_one_point_in_time(store: Store, tmp_path: Path) -> None:
    population(store, 12)
    c = campaign_of(tmp_path)
    rid = start(store, c)
    n = runs.snapshot(store, None, rid)
    with store.transaction() as f:  # joins the segment after the snapshot
        add(f, "late", email="late@example.com", consents={"email": True})
    runs.deliver(store, None, rid)
    got = campaign_intents(store, rid)
    assert "late" not in got and n == 10  # 12 minus 2 outside the segment


def test_resume_after_a_crash_writes_no_second_intent(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    s = Store.open(uri, steps=builtin_evolve_steps())
    population(s, 48)
    c = campaign_of(tmp_path)
    rid = start(s, c)
    stop = threading.Event()
    batches: list[int] = []

    def crash_after_two(n: int, status: str) -> None:
        batches.append(n)
        if len(batches) == 2:
            stop.set()

    runs.snapshot(s, None, rid)
    assert runs.deliver(s, None, rid, batch=5, stop=stop, progress=crash_after_two) == runs.RUNNING
    s.close()  # the process dies here: what is committed is all there is
    s = Store.open(uri, steps=builtin_evolve_steps())
    try:
        assert runs.status(s, rid)["delivered"] == 10  # two batches of five planned customers
        assert 0 < len(campaign_intents(s, rid)) <= 10
        assert runs.drive(s, None, rid, batch=5) == runs.DONE
        first = campaign_intents(s, rid)
        # a batch applied again (as after a crash between its commit and the caller hearing of it)
        with s.transaction() as f:
            r = runs.get_run(f, rid)
            r.cursor, r.status = None, runs.RUNNING
        runs.deliver(s, None, rid, batch=100)
        again = campaign_intents(s, rid)
        assert {k: [i.id for i in v] for k, v in again.items()} == {k: [i.id for i in v] for k, v in first.items()}
        assert all(len(v) == 1 for v in again.values()) and len(again) == 24  # email + sms cases
    finally:
        s.close()


def test_pause_resume_and_cancel(store: Store, tmp_path: Path) -> None:
    population(store, 48)
    c = campaign_of(tmp_path)
    rid = start(store, c)
    runs.snapshot(store, None, rid)

    def pause_after_first(n: int, status: str) -> None:
        if status == runs.RUNNING:
            commit_op(store, None, runs.pause(rid), "test")

    assert runs.deliver(store, None, rid, batch=4, progress=pause_after_first) == runs.PAUSED
    written = len(campaign_intents(store, rid))
    assert 0 < written < 24
    with pytest.raises(runs.RunError, match="it cannot be paused"):
        commit_op(store, None, runs.pause(rid), "test")
    assert runs.drive(store, None, rid) == runs.PAUSED  # a paused run stays put
    commit_op(store, None, runs.resume(rid), "test")
    assert runs.deliver(store, None, rid, batch=4, progress=lambda n, st: None) == runs.DONE
    assert len(campaign_intents(store, rid)) == 24

    rid2 = start(store, c, "r2")
    runs.snapshot(store, None, rid2)
    runs.deliver(store, None, rid2, batch=4, progress=lambda n, st: commit_op(store, None, runs.pause(rid2), "t")
                 if st == runs.RUNNING else None)
    commit_op(store, None, runs.cancel(rid2), "test")
    cancelled = runs.cancel_intents(store, None, rid2)
    got = campaign_intents(store, rid2)
    assert cancelled == len(got) > 0 and all(v[0].status == outbox.CANCELLED for v in got.values())
    with pytest.raises(runs.RunError, match="cannot be resumed"):
        commit_op(store, None, runs.resume(rid2), "test")
