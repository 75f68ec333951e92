"""The one windowed aggregate (:mod:`shopkeeper.windows`) against a plain reading of the history.

Random customers (events out of order, spanning more days than ``DAILY_KEEP_DAYS``, some on day
boundaries), random windows (day-aligned or not, open-ended, inside one day, past what the
aggregates keep) and random types (one, several, ``'*'``, with and without ``where`` or a summed
field): the figure must be the one a scan of every interaction in the window gives — and both
callers (segments' ``Env``, rules' ``history_value``) must give it with their own anchor and
rounding.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from shopkeeper import windows
from shopkeeper.analysis.conditions import Env
from shopkeeper.customer import DAILY_KEEP_DAYS, US_PER_DAY, Customer, Interaction
from shopkeeper.rules.facts import history_value
from shopkeeper.rules.model import HistorySpec

DAY = US_PER_DAY
T0 = 20_000 * DAY
SPAN = DAILY_KEEP_DAYS + 200
TYPES = ("order", "page_view", "email_click", "cart_abandoned")


def customer(rng: random.Random, n: int) -> Customer:
    c = Customer(f"c{rng.random()}", created_at=T0)
    stamps = []
    for _ in range(n):
        day = rng.randrange(SPAN)
        ts = T0 + day * DAY + rng.choice([0, DAY - 1, rng.randrange(DAY)])
        if ts not in stamps:  # one per microsecond: a shared one is kept under the next free key, which
            # may fall in the next day while the aggregates count the event by its ts
            stamps.append(ts)
    rng.shuffle(stamps)  # out of order: last_at and the kept days see late arrivals
    for i, ts in enumerate(stamps):
        kind = rng.choice(TYPES)
        data: dict[str, Any] = {"url": rng.choice(["/a", "/b"])}
        if kind == "order":
            data["amount"] = round(rng.uniform(1, 400), 6)  # finer than cents: the callers round differently
        c.add_interaction(Interaction(ts, ts, kind, "web", "", data, f"k{i}", (), c.id))
    return c


def truth(c: Customer, types: tuple[str, ...], since: int | None, until: int | None,
          field: str | None = None, where: tuple[tuple[str, Any], ...] = ()) -> int | float:
    n, acc = 0, 0.0
    for it in c.history.values():
        if (since is not None and it.key < since) or (until is not None and it.key >= until):
            continue
        if "*" not in types and it.type not in types:
            continue
        if any(it.data.get(k) != v for k, v in where):
            continue
        n += 1
        if field is not None and isinstance(it.data.get(field), (int, float)):
            acc += it.data[field]
    return n if field is None else acc


def instant(rng: random.Random) -> int:
    day = rng.randrange(-5, SPAN + 5)
    return T0 + day * DAY + rng.choice([0, 1, DAY - 1, rng.randrange(DAY)])


def window(rng: random.Random, c: Customer) -> tuple[int, int | None]:
    a = instant(rng)
    r = rng.random()
    if r < 0.15:  # ends exactly at an event (newest of its type, or not): it is outside
        until = rng.choice(list(c.history.keys()))
        return min(a, until - 1), until
    if r < 0.3:
        return a, None
    if r < 0.45:
        return a, a + rng.randrange(1, DAY)  # inside one or two days
    return a, a + rng.randrange(1, SPAN * DAY)


def types_of(rng: random.Random) -> tuple[str, ...]:
    r = rng.random()
    if r < 0.2:
        return ("*",)
    return tuple(rng.sample(TYPES, rng.choice([1, 1, 2, 3])))


@pytest.mark.parametrize("seed", range(8))
def test_the_one_aggregate_is_the_history_scan(seed: int) -> None:
    rng = random.Random(seed)
    decided = 0
    reads: list[tuple[int | None, int | None]] = []

    def read(c: Customer, a: int | None, b: int | None) -> Any:
        reads.append((a, b))
        return c.interactions(since=a, until=b)

    for _ in range(6):
        c = customer(rng, rng.choice([5, 60, 400]))
        for _ in range(60):
            since, until = window(rng, c)
            types = types_of(rng)
            where: tuple[tuple[str, Any], ...] = (("url", "/a"),) if rng.random() < 0.15 else ()
            assert windows.total(c, types, since, until, where=where) == truth(c, types, since, until, None, where)
            s = windows.total(c, ("order",), since, until, field="amount", where=where)
            assert s == pytest.approx(truth(c, ("order",), since, until, "amount", where), abs=1e-6)
            reads.clear()
            windows.total(c, types, since, until, where=where, read=read)
            decided += (since, until) not in reads  # no read of the whole window: the aggregates said
    assert decided > 100  # the aggregates answered most windows: the test checks them, not only the scan


@pytest.mark.parametrize("seed", range(4))
def test_segments_and_rules_read_it_with_their_own_anchor_and_rounding(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(4):
        c = customer(rng, 200)
        for _ in range(40):
            now = instant(rng)
            days = rng.choice([1, 7, 30, 90, 365, DAILY_KEEP_DAYS + 50]) + rng.choice([0, 0.5])
            since = now - int(days * DAY)
            env = Env(c, now)
            t = rng.choice(("*",) + TYPES)
            assert env.count(t, days) == truth(c, (t,), since, None)  # segments: from now - days on
            assert env.spend(days) == round(truth(c, ("order",), since, None, "amount"), 2)
            within = int(days * DAY)
            types = types_of(rng)
            spec = HistorySpec("count", types, None, within)
            assert history_value(c, spec, now) == truth(c, types, now - within, now + 1)  # rules: up to the event
            spec = HistorySpec("sum", ("order",), "amount", within)
            assert history_value(c, spec, now) == round(truth(c, ("order",), now - within, now + 1, "amount"), 6)
