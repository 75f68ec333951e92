"""The membership function of many segments reads each aggregate once per evaluation: the
generated code keeps every distinct ``days_since``/``count``/``spend``/``score`` read in a local
of the function, computed on first use (docs/benchmarks.md §81) — and judges exactly as each
condition alone does, including a read that raises and conditions that skip a read."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from shopkeeper.analysis.conditions import Env
from shopkeeper.analysis.segments import SegmentSet
from shopkeeper.customer import Customer, Interaction

DAY = 86_400_000_000
NOW = 1_800_000_000 * 1_000_000
CONDITIONS = {
    "lapsed_7": "days_since('page_view') >= 7",
    "lapsed_30": "days_since('page_view') >= 30",
    "no_order_30": "hard.orders > 0 and days_since('order') >= 30",
    "no_order_60": "hard.orders > 0 and days_since('order') >= 60",
    "spend_90": "spend(days=90) > 100",
    "spend_90_big": "spend(days=90) > 300",
    "clicks": "count('email_click', days=30) >= 1",
    "clicks_3": "count('email_click', days=30) >= 3",
    "odd_type": "count('a(b)', days=30) >= 1 or days_since('a(b)') < 3",  # a call's text with parentheses
    "valuable": "score('clv.value') >= 10",
    "very_valuable": "score('clv.value') >= 50 and hard.orders >= 2",
    "combo": "in_segment('valuable') or in_segment('spend_90')",
    "broken": "spend(days=90) / (hard.orders - hard.orders) > 1",  # ZeroDivisionError: false
    "visited": "days_since() < 10",
}


class CountingEnv(Env):
    __slots__ = ("calls",)

    def __init__(self, customer: Any, now: int) -> None:
        super().__init__(customer, now)
        self.calls: Counter = Counter()

    # the aggregates themselves: the membership function calls them (its locals are the memo); the
    # Env's memoising wrappers are counted apart, and the membership function must not call them (§93)
    def count(self, type_: str, days: float | None) -> int:
        self.calls["count", type_, days] += 1
        return super().count(type_, days)

    def spend(self, days: float | None) -> float:
        self.calls["spend", days] += 1
        return super().spend(days)

    def days_since(self, type_: str | None) -> float | None:
        self.calls["days_since", type_] += 1
        return super().days_since(type_)

    def memo_count(self, type_: str, days: float) -> int:
        self.calls["wrapper"] += 1
        return super().memo_count(type_, days)

    def memo_spend(self, days: float) -> float:
        self.calls["wrapper"] += 1
        return super().memo_spend(days)

    def memo_days_since(self, type_: str | None) -> float | None:
        self.calls["wrapper"] += 1
        return super().memo_days_since(type_)

    def memo_score(self, name: str) -> Any:
        self.calls["score", name] += 1
        return super().memo_score(name)


def _customers() -> list[Customer]:
    rng = random.Random(3)
    out = []
    for i in range(40):
        c = Customer(f"c{i}", created_at=NOW - 200 * DAY)
        for n in range(rng.choice([0, 1, 4, 12])):
            t = rng.choice(["page_view", "order", "email_click", "a(b)"])
            ts = NOW - rng.randint(0, 120) * DAY - n
            c.add_interaction(Interaction(ts, ts, t, "web", "", {"amount": rng.choice([20.0, 150.0])}
                                          if t == "order" else {}, f"{i}-{n}", (), c.id))
        if i % 3:
            c.set_score("clv.value", float(rng.choice([1, 20, 80])), "test", NOW - DAY)
        out.append(c)
    return out


def test_the_membership_of_many_segments_reads_each_aggregate_once_and_judges_as_each_alone() -> None:
    segs = SegmentSet()
    for name, cond in CONDITIONS.items():
        segs.define(name, cond)
    defs = list(segs.defs.values())
    entered = 0
    for c in _customers():
        alone: dict[str, int] = {}
        for d in defs:  # one by one, each with its own Env, a later in_segment seeing an earlier one
            c.segments = dict(alone)
            if d.condition(Env(c, NOW)):
                alone[d.name] = NOW
        c.segments = {}
        env = CountingEnv(c, NOW)
        segs.evaluate(c, defs, NOW, env)
        assert set(c.segments) == set(alone), c.id
        entered += len(alone)
        assert env.calls and max(env.calls.values()) == 1, (c.id, env.calls)
        assert "wrapper" not in env.calls, (c.id, env.calls)  # the locals are the memo: no second one
    assert entered > 40
