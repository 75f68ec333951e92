"""Windowed history aggregates in rule conditions (``sum of order amount within 90d``) read the
per-day aggregates for whole days and the history only for the two partial days at the edges:
the same figures as reading every interaction of the window, without loading the spilled
history of a busy customer on each event."""

from __future__ import annotations

import random

import pytest

from shopkeeper.customer import HISTORY_CHUNK, US_PER_DAY, Customer, Interaction
from shopkeeper.rules.loader import HistorySpec
from shopkeeper.rules.runtime import _from_history, history_value

DAY = US_PER_DAY
T0 = 20_000 * DAY + 12_345


def busy_customer(n: int = 300, days: int = 200) -> Customer:
    rng = random.Random(7)
    c = Customer("c1", created_at=T0)
    for i in range(n):
        ts = T0 + rng.randrange(days * DAY)
        kind = rng.choice(["order", "page_view", "cart_abandoned"])
        data = {"amount": round(rng.uniform(1, 400), 2), "order_id": f"o{i}"} if kind == "order" else {}
        c.add_interaction(Interaction(ts, ts, kind, "web", "", data, f"k{i}", (), c.id))
    return c


SPECS = [HistorySpec("sum", ("order",), "amount", 90 * DAY),
         HistorySpec("count", ("cart_abandoned",), None, 7 * DAY),
         HistorySpec("count", ("order", "page_view"), None, 30 * DAY)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.types[0]}")
def test_windowed_aggregates_match_the_history(spec: HistorySpec) -> None:
    c = busy_customer()
    rng = random.Random(3)
    for _ in range(60):
        at = T0 + rng.randrange(210 * DAY)
        since = at - spec.within_us
        assert history_value(c, spec, at) == pytest.approx(_from_history(c, spec, since, at + 1), abs=1e-6)


def test_a_ninety_day_window_reads_only_its_edge_days_from_the_history(monkeypatch: pytest.MonkeyPatch) -> None:
    c = busy_customer(600, 200)
    assert len(c.history) - len(c._recent) > HISTORY_CHUNK  # most of it spilled into the BTree
    read = []
    real = Customer.interactions

    def counting(self: Customer, *a: object, **kw: object):  # type: ignore[no-untyped-def]
        for it in real(self, *a, **kw):
            read.append(it)
            yield it

    monkeypatch.setattr(Customer, "interactions", counting)
    at = T0 + 150 * DAY
    history_value(c, SPECS[0], at)
    in_window = sum(1 for it in real(c, since=at - 90 * DAY, until=at + 1))
    assert in_window > 200
    assert len(read) <= 12  # two partial days of ~3 interactions each, not the whole window


def test_an_event_arriving_in_order_reads_no_history_when_the_edge_days_are_decided(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The window's last day is the event's own: when nothing of the types is newer than the event,
    that day's aggregates are the partial day; its first day, with nothing of the types, adds 0."""
    c = busy_customer(600, 200)
    last = max(it.ts for it in c.history.values())
    read = []
    real = Customer.interactions

    def counting(self: Customer, *a: object, **kw: object):  # type: ignore[no-untyped-def]
        read.append(a or kw)
        yield from real(self, *a, **kw)

    spec = SPECS[1]  # 7 days of cart_abandoned
    day_before = (last - spec.within_us) // DAY
    for t in spec.types:  # the window's first, partial day has none of them
        c.daily.get(day_before, {}).pop(t, None)
        for k in [k for k, it in c.history.items() if it.ts // DAY == day_before and it.type == t]:
            c.history.pop(k)
    monkeypatch.setattr(Customer, "interactions", counting)
    got = history_value(c, spec, last)
    assert read == []
    assert got == _from_history(c, spec, last - spec.within_us, last + 1)
    # an event older than the newest of its type: the partial day is read from the history
    got = history_value(c, SPECS[0], last - DAY // 2)
    assert read
    assert got == pytest.approx(_from_history(c, SPECS[0], last - DAY // 2 - 90 * DAY, last - DAY // 2 + 1))


def test_a_window_of_the_history_loads_only_the_buckets_it_covers() -> None:
    """Reading a few days of a long, spilled history must not load the rest of it (a BTree's
    ``len()`` walks every bucket: the view used it on each read)."""
    from shopkeeper.store import Store

    store = Store.open("memory://")
    with store.transaction() as f:
        c = busy_customer(3000, 300)
        f.customers[c.id] = c
    conn, tm = store.connect()
    try:
        tm.begin()
        conn.cacheMinimize()
        c = conn.root()["customers"]["c1"]
        c.hard  # noqa: B018 - load the record itself
        before = conn._cache.cache_non_ghost_count
        got = list(c.interactions(since=T0 + 100 * DAY, until=T0 + 101 * DAY))
        assert got
        assert conn._cache.cache_non_ghost_count - before <= 3
        tm.abort()
    finally:
        conn.close()
        store.close()
