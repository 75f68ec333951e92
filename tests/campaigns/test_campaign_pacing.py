"""A campaign's ``rate`` and ``backlog``: the runner writes intents no faster than the rate allows and
no further ahead of the adapters than the backlog — checked on the run's state at each wait, with a
clock that moves only when the runner waits (no timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeeper import contact, outbox
from shopkeeper.analysis.models import commit_op
from shopkeeper.campaigns import pacing, runs
from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.store import Store

from .helpers import CAMPAIGN, population, write_campaign


@pytest.fixture(autouse=True)
def _no_quiet_hours() -> Any:
    contact.configure(overrides={"quiet_hours": None})
    yield
    contact.configure(overrides={})


def campaign_with(tmp_path: Path, extra: str) -> Any:
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: 0\n" + extra))
    cs = load_campaigns(tmp_path)
    assert not cs.errors, cs.errors
    return cs.campaigns["winter_sale"]


def written(store: Store, rid: str) -> dict[str, int]:
    counts = runs.status(store, rid)["counts"]
    return {k.split(":")[1]: v for k, v in counts.items() if k.startswith("intents:")}


class FakeTime:
    """A clock that moves only when the runner waits; ``on_wait`` looks at the state then."""

    def __init__(self, on_wait: Any) -> None:
        self.now, self.waits, self.on_wait = 0.0, 0, on_wait

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.now += seconds
        self.waits += 1
        self.on_wait(self.now)
        return False


def test_a_campaign_rate_bounds_the_intents_written_at_every_moment(file_store: Store, tmp_path: Path) -> None:
    cases = population(file_store, 60)
    c = campaign_with(tmp_path, "    rate: 5/s")
    assert c.rate == {"*": 5.0}
    rid = commit_op(file_store, None, runs.create_run(c, run_id="r1", by="test"), "test")
    runs.snapshot(file_store, None, rid)
    seen: list[tuple[float, int]] = []
    t = FakeTime(lambda now: seen.append((now, sum(written(file_store, rid).values()))))
    assert runs.deliver(file_store, None, rid, clock=t.clock, sleep=t.sleep) == runs.DONE
    total = sum(written(file_store, rid).values())
    assert total == sum(1 for k in cases.values() if k in ("email", "sms_pref", "sms_only"))
    assert t.waits >= (total - 5) // 5 and seen
    for now, n in seen:  # one second's worth at once (the bucket), then 5 a second
        assert n <= 5 + 5 * now + 1e-9, (now, n)


def test_a_channel_rate_paces_that_channel(file_store: Store, tmp_path: Path) -> None:
    population(file_store, 36)
    c = campaign_with(tmp_path, "    rate: {sms: 1/min}")
    assert c.rate == {"sms": 1 / 60}
    commit_op(file_store, None, runs.create_run(c, run_id="r1", by="test"), "test")
    runs.snapshot(file_store, None, "r1")
    seen: list[tuple[float, dict[str, int]]] = []
    t = FakeTime(lambda now: seen.append((now, written(file_store, "r1"))))
    assert runs.deliver(file_store, None, "r1", clock=t.clock, sleep=t.sleep) == runs.DONE
    sms = written(file_store, "r1")["sms"]
    assert sms == 12 and t.now >= (sms - 1) * 60
    for now, got in seen:
        assert got.get("sms", 0) <= 1 + now / 60 + 1e-9, (now, got)


def test_backlog_holds_the_run_back_until_adapters_catch_up(file_store: Store, tmp_path: Path) -> None:
    population(file_store, 36)
    c = campaign_with(tmp_path, "    backlog: 3")
    commit_op(file_store, None, runs.create_run(c, run_id="r1", by="test"), "test")
    runs.snapshot(file_store, None, "r1")
    highest: list[int] = []

    def adapter_sends_one(_now: float) -> None:
        with file_store.transaction() as f:
            highest.append(pacing.open_intents(f, c, "r1"))
            m = next(iter(outbox.pending(f, ("email", "sms"), limit=1)), None)
            if m is not None:
                cust = f.customer(m.customer_id)
                outbox.apply_event(f, cust, "message_dispatch", m.channel, {"intent": m.id, "message_id": m.id})
                outbox.apply_event(f, cust, "message_sent", m.channel, {"intent": m.id, "message_id": m.id})

    t = FakeTime(adapter_sends_one)
    assert runs.deliver(file_store, None, "r1", clock=t.clock, sleep=t.sleep) == runs.DONE
    assert sum(written(file_store, "r1").values()) == 18 and t.waits >= 15
    assert max(highest) == 3  # never more than the backlog written ahead of the sends


def test_bad_rates_and_backlogs_are_file_errors(tmp_path: Path) -> None:
    for extra, msg in (("    rate: fast", "is not a rate"), ("    rate: 5/week", "write /s, /min or /h"),
                       ("    rate: 0/s", "more than 0"),
                       ("    rate: {fax: 1/s}", "no 'fax' message"), ("    backlog: -1", "`backlog` must be")):
        write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: 0\n" + extra))
        cs = load_campaigns(tmp_path)
        assert any(msg in str(e) for e in cs.errors), (extra, cs.errors)


def test_a_paced_run_takes_turns_with_the_other_runs(file_store: Store, tmp_path: Path) -> None:
    population(file_store, 24)
    slow = campaign_with(tmp_path, "    rate: 1/h")
    commit_op(file_store, None, runs.create_run(slow, run_id="slow", by="test"), "test")
    write_campaign(tmp_path, CAMPAIGN.replace("winter_sale", "other_sale").replace("holdout: 10", "holdout: 0"),
                   "other.yaml")
    other = load_campaigns(tmp_path).campaigns["other_sale"]
    commit_op(file_store, None, runs.create_run(other, run_id="other", by="test"), "test")
    runner = runs.Runner(file_store, None, turn=0.05)
    runner.run_once()  # the slow run gets its turn first ("other" sorts after it) and gives it up
    assert runs.status(file_store, "other")["status"] == runs.DONE
    assert runs.status(file_store, "slow")["status"] == runs.RUNNING
    assert sum(written(file_store, "slow").values()) == 1  # one an hour: the first is due at once
    runner.run_once()
    assert set(runner.pacers) == {"slow"} and sum(written(file_store, "slow").values()) == 1  # a finished run's go


def test_an_on_segment_entry_campaign_keeps_its_rate_and_backlog(file_store: Store, tmp_path: Path) -> None:
    """Customers entering the segment faster than the rate get their intents at the rate (the
    others wait on the feed, none lost, none twice); with a backlog, no more open than that."""
    from shopkeeper.engine import feed

    cases = population(file_store, 60)
    receivers = sum(1 for k in cases.values() if k in ("email", "sms_pref", "sms_only"))
    text = CAMPAIGN.replace("holdout: 10", "holdout: 0\n    rate: 5/s\n    backlog: 7").replace(
        "schedule: {at: 2026-12-05T10:00:00Z}", "schedule: {on_segment_entry: true}").replace(
        "end: 2027-01-31", "end: 2099-01-31")
    write_campaign(tmp_path, text)
    c = load_campaigns(tmp_path).campaigns["winter_sale"]
    assert c.schedule.kind == "segment_entry" and c.rate == {"*": 5.0} and c.backlog == 7
    rid = commit_op(file_store, None, runs.standing_run(c), "test")
    with file_store.transaction() as f:  # every customer enters the segment at once
        for cid in cases:
            feed.append(f, "segment_entered", cid, segments=("repeat_buyers",))
    t = FakeTime(lambda now: None)
    pacers: dict[str, Any] = {}
    seen: list[tuple[float, int, int]] = []
    for _ in range(200):
        runs.follow_entries(file_store, None, rid, pacers=pacers, clock=t.clock)
        with file_store.transaction() as f:
            seen.append((t.now, sum(written(file_store, rid).values()), pacing.open_intents(f, c, rid)))
            m = next(iter(outbox.pending(f, ("email", "sms"), limit=1)), None)  # an adapter sends one a step
            if m is not None:
                cust = f.customer(m.customer_id)
                outbox.apply_event(f, cust, "message_dispatch", m.channel, {"intent": m.id, "message_id": m.id})
                outbox.apply_event(f, cust, "message_sent", m.channel, {"intent": m.id, "message_id": m.id})
        if seen[-1][1] == receivers and not seen[-1][2]:
            break
        t.sleep(0.5)
    assert seen[-1][1] == receivers, seen[-5:]  # every receiver got one intent, none lost
    for now, n, open_ in seen:
        assert n <= 5 + 5 * now + 1e-9, (now, n)  # the rate
        assert open_ <= 7, (now, open_)  # the backlog
    assert max(o for _n, _w, o in seen) == 7  # the backlog was the limit at some point
    with file_store.read() as f:
        ids = [it.id for cid in cases for it in outbox.items(f.customer(cid))]
    assert len(ids) == len(set(ids)) == receivers
