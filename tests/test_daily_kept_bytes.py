"""A customer's per-day aggregates (``Daily``) are written back as the bytes they were loaded from
until they change: a record rewritten for a segment, a consent or rule state does not re-pickle them
(docs/benchmarks.md §93) — and every change (an interaction counted, one taken back, a rebuild) is
written, never the stale bytes."""

from __future__ import annotations

import pickle
from pathlib import Path

from shopkeeper.customer import Customer, Interaction
from shopkeeper.store import Store
from shopkeeper.values import US_PER_DAY, Daily

T = 1_800_000_000 * 1_000_000


def _it(ts: int, type_: str = "page_view", amount: float | None = None) -> Interaction:
    return Interaction(0, ts, type_, "web", "", {"amount": amount} if amount is not None else {}, "", (), "")


def _reloaded(uri: str, change: object = None) -> dict:
    """The customer's ``daily`` after ``change(c)`` committed, as a fresh connection loads it."""
    if change is not None:
        with Store.open(uri) as s, s.transaction() as f:
            change(f.customers["a"])  # type: ignore[operator]
    with Store.open(uri) as s, s.read() as f:  # another open: the record as stored, not as cached
        return {d: dict(v) for d, v in f.customers["a"].daily.items()}


def test_loaded_aggregates_are_written_back_as_loaded_until_changed(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri) as s, s.transaction() as f:
        c = f.add_customer(Customer("a", created_at=T))
        c.add_interaction(_it(T))
        c.add_interaction(_it(T + 1, "order", 20.0))
    day = T // US_PER_DAY
    assert _reloaded(uri) == {day: {"page_view": 1, "order": 1, "$spend": 20.0}}

    with Store.open(uri) as s, s.read() as f:
        daily = f.customers["a"].daily
        assert type(daily) is Daily
        loaded = daily._b
        assert daily.__reduce__()[1][0] is loaded  # unchanged: the same bytes, no pickle.dumps

    def join(c: Customer) -> None:
        c.join_segment("s", T)

    assert _reloaded(uri, join) == {day: {"page_view": 1, "order": 1, "$spend": 20.0}}

    def another(c: Customer) -> None:
        c.add_interaction(_it(T + 2 * US_PER_DAY))

    assert _reloaded(uri, another) == {day: {"page_view": 1, "order": 1, "$spend": 20.0},
                                       day + 2: {"page_view": 1}}

    def more_today(c: Customer) -> None:  # a day already there, changed in place
        c.add_interaction(_it(T + 5))

    assert _reloaded(uri, more_today)[day] == {"page_view": 2, "order": 1, "$spend": 20.0}

    def take_back(c: Customer) -> None:
        c.take_back_daily(_it(T + 5))

    assert _reloaded(uri, take_back)[day] == {"page_view": 1, "order": 1, "$spend": 20.0}

    def rebuild(c: Customer) -> None:
        c.recompute_hard_facts()

    assert _reloaded(uri, rebuild) == {day: {"page_view": 2, "order": 1, "$spend": 20.0},
                                       day + 2: {"page_view": 1}}


def test_a_copy_and_an_old_pickle_load() -> None:
    d = Daily({1: {"page_view": 2}})
    packed = pickle.dumps(d, 4)
    back = pickle.loads(packed)
    assert type(back) is Daily and back == d and back._b is not None
    back.changed()
    back[2] = {"order": 1}
    assert pickle.loads(pickle.dumps(back, 4)) == {1: {"page_view": 2}, 2: {"order": 1}}
