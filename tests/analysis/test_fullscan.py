"""The full re-evaluation's card path (``shopkeeper.analysis.fullscan``) against the record path:
the same memberships (with their join times), sizes, reports and change-feed entries on the
same seeded store, over a first run, a changed definition and new events."""

from __future__ import annotations

import random
import time

import pytest

from shopkeeper import audience
from shopkeeper.analysis import fullscan
from shopkeeper.analysis.segments import SegmentSet, reevaluate, sizes
from shopkeeper.conditions import fields
from shopkeeper.engine import feed
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

DAY = 86_400
NOW = time.time() - 3600


def _store(seed: int) -> Store:
    """300 customers: ~2/3 with 1-4 orders of random amounts, the rest page views only; a random
    third granted e-mail consent (some then withdrawn)."""
    s = Store.open("memory://", steps=builtin_evolve_steps())
    rng = random.Random(seed)
    events = []
    for i in range(300):
        who = f"c{i:03d}@example.org"
        for n in range(rng.randint(1, 4) if rng.random() < 0.67 else 0):
            events.append({"type": "order", "identities": {"email": who}, "ts": NOW - rng.randint(1, 90) * DAY,
                           "data": {"order_id": f"o{i}-{n}", "amount": rng.choice([5.0, 40.0, 120.0, 300.0])},
                           "idempotency_key": f"{i}-o{n}"})
        events.append({"type": "page_view", "identities": {"email": who}, "ts": NOW - rng.randint(1, 60) * DAY,
                       "data": {"url": "/"}, "idempotency_key": f"{i}-pv"})
    with Ingestor(s) as ing:
        ing.apply([validate_event(e) for e in events])
    with s.transaction() as f:
        for c in f.customers.values():  # by address: customer ids are random, so key order differs per store
            pick = random.Random(f"{seed}-{c.identities_in('email')[0]}")
            if pick.random() < 0.35:
                c.set_consent("email", "marketing", pick.random() < 0.8, "test")
    return s


def _segments(total: int = 200) -> SegmentSet:
    segs = SegmentSet()
    segs.define("buyer", "hard.orders >= 1")
    segs.define("repeat", "hard.orders >= 3")
    segs.define("big", f"hard.total_spend >= {total}")
    segs.define("emailable", "consent('email')")
    segs.define("big_emailable", "in_segment('big') and consent('email')")  # sees 'big' of this same run
    segs.define("big_basket", "hard.orders > 0 and hard.total_spend / hard.orders > 100")
    # the two aggregates the card's order facts answer (audience.CARD_CALLS)
    segs.define("lapsed_buyer", "hard.orders > 0 and days_since('order') >= 30")
    segs.define("spent_all_time", "spend() >= 150")
    return segs


def _state(s: Store) -> tuple[dict, list]:
    """Each customer's memberships and feed entries, by e-mail address (ids are random per store)."""
    with s.read() as f:
        email = {cid: c.identities_in("email")[0] for cid, c in f.customers.items()}
        members = {email[cid]: dict(c.segments) for cid, c in f.customers.items()}
        entries = sorted((c.kind, email[c.customer_id], c.segments, c.at) for c in feed.read(f, 0, 100_000)
                         if c.kind in ("segment_entered", "segment_left"))
    return members, entries


def _more_orders(s: Store) -> None:
    with Ingestor(s) as ing:
        ing.apply([validate_event({"type": "order", "identities": {"email": f"c{i:03d}@example.org"},
                                   "ts": NOW - DAY, "data": {"order_id": f"late{i}", "amount": 250.0},
                                   "idempotency_key": f"late{i}"}) for i in range(0, 300, 7)])


def test_the_card_path_writes_what_the_record_path_writes() -> None:
    segs = _segments()
    assert fullscan.card_answerable(list(segs.defs.values()))
    cards, records = _store(7), _store(7)
    try:
        now = int(NOW * 1e6)
        runs = []
        for step in range(3):
            if step == 1:  # a changed definition: exits and entries
                segs = _segments(total=300)
            if step == 2:  # new orders: the cards move, the records too
                _more_orders(cards)
                _more_orders(records)
            a = reevaluate(cards, segs, now=now + step, batch=40)
            b = reevaluate(records, segs, now=now + step, batch=40, cards=False)
            assert a.get("path") == "cards" and "path" not in b
            runs.append((a, b))
            for r in (a, b):
                r.pop("seconds")
                r.pop("path", None)
                r.pop("loaded", None)  # (the record path counts the customers it loaded)
            assert a == b
            assert sizes(cards) == sizes(records)
            assert _state(cards) == _state(records)
        first, changed, _later = (a for a, _b in runs)
        assert first["entered"] > 300 and first["exited"] == 0
        assert changed["exited"] > 0
        members, entries = _state(cards)
        assert any("big_emailable" in m for m in members.values()) and len(entries) > 200
    finally:
        cards.close()
        records.close()


def test_an_unchanged_run_loads_no_customer_record() -> None:
    """The second run changes nothing: the card path reads cards and order facts only."""
    s = _store(3)
    try:
        segs = _segments()
        # half an hour off the events' whole days: lapsed_buyer's 30 days hold at both runs
        at = int((NOW + 1800) * 1e6)
        reevaluate(s, segs, now=at)
        from shopkeeper.customer import Customer

        loaded = []
        setstate = Customer.__setstate__

        def spy(self, state):  # noqa: ANN001
            loaded.append(1)
            setstate(self, state)

        Customer.__setstate__ = spy  # type: ignore[method-assign]
        try:
            r = reevaluate(s, segs, now=at + 1)
        finally:
            Customer.__setstate__ = setstate  # type: ignore[method-assign]
        assert r["path"] == "cards" and r["entered"] == r["exited"] == 0 and r["customers"] == 300
        assert loaded == []
    finally:
        s.close()


@pytest.mark.parametrize("when", ["spend(days=90) > 100", "days_since('page_view') >= 3", "days_since() >= 3",
                                  "days_since_first() < 14", "count('order') >= 1", "hard.interactions >= 2",
                                  "score('clv.value') >= 5", "hard.orders > 0 and days_since('call') < 7"])
def test_conditions_the_cards_do_not_answer_take_the_record_path(when: str) -> None:
    segs = SegmentSet()
    segs.define("buyer", "hard.orders >= 1")
    segs.define("other", when)
    assert not fullscan.card_answerable(list(segs.defs.values()))
    assert fullscan.card_answerable([segs.defs["buyer"]])
    assert not audience.answers_condition(segs.defs["other"].condition.tree)


def test_an_aggregate_is_not_answered_by_the_card_because_it_names_no_field() -> None:
    """The trap of closing note 6: ``fields`` reports no field for an aggregate call, so the
    fields-only check says yes for a last-seen time only the record has; the tree's check does not."""
    segs = SegmentSet()
    segs.define("lapsed_visitor", "days_since('page_view') > 3")
    segs.define("lapsed_buyer", "days_since('order') > 3")
    visitor, buyer = (segs.defs[n].condition.tree for n in ("lapsed_visitor", "lapsed_buyer"))
    assert fields(visitor) == set() and audience.answers(fields(visitor))  # the trap, kept for reference
    assert not audience.answers_condition(visitor)
    assert audience.answers_condition(buyer) and audience.needs_orders(buyer)
    assert not audience.needs_orders(segs.define("mail", "consent('email')").condition.tree)
