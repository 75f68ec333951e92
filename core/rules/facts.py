"""The one flat message a rule program sees: an event and the customer's values it needs.

:class:`FactBuilder` computes only the fields the rules for an event type use (prefixed
``e__`` event, ``c__`` customer, ``f__`` fact, ``s__`` score, ...); history aggregates
(``h__``) are computed here, in Python, from the customer's history BTree or daily totals.
Rules, explain and the campaign audience all judge a condition through it, so a condition
means the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

from ..customer import DAILY_KEEP_DAYS, SPEND, US_PER_DAY, Customer, Interaction
from .model import HistorySpec


class FactBuilder:
    """Computes message fields for one (customer, event) lazily, each at most once."""

    __slots__ = ("customer", "event", "memo")

    def __init__(self, customer: Customer, event: dict[str, Any]) -> None:
        self.customer = customer
        self.event = event
        self.memo: dict[str, Any] = {}

    def message(self, fields: set[str], numeric: set[str], history: dict[str, HistorySpec]) -> dict[str, Any]:
        out: dict[str, Any] = {"ev": self.event["type"]}
        memo = self.memo
        for f in fields:
            if f in memo:
                v = memo[f]
            else:
                v = memo[f] = self._compute(f, history)
            if v is None:
                continue
            if f in numeric and (isinstance(v, bool) or not isinstance(v, (int, float))):
                continue  # a text where a number is compared: the condition is false in every engine
            if isinstance(v, (str, bool, int, float)):
                out[f] = v
            else:
                out[f] = str(v)
        return out

    def _compute(self, f: str, history: dict[str, HistorySpec]) -> Any:
        c, ev = self.customer, self.event
        if f == "ch":
            return ev["channel"]
        if f == "tp":
            return ev.get("touchpoint")
        if f == "first":
            return c.type_counts.get(ev["type"], 0) == 1
        prefix, _, name = f.partition("__")
        if prefix == "e":
            return ev["data"].get(name)
        if prefix == "c":
            return c.hard.get(name)
        if prefix == "n":
            return c.type_counts.get(name, 0)
        if prefix == "f":
            x = c.soft.get(name)
            return x.value if x is not None else None
        if prefix == "s":
            x = c.scores.get(name)
            return x.value if x is not None else None
        if prefix == "g":
            return name in c.segments
        if prefix == "t":
            return name in (c.rule_state.get("tags") or ())
        if prefix == "a":
            return c.traits.get(name)
        if prefix == "i":
            return bool(c.identities_in(name))
        if prefix == "k":
            ch, _, purpose = name.partition("__")
            return c.may_contact(ch, purpose or "marketing")
        if prefix == "h":
            spec = history.get(f)
            return history_value(c, spec, ev["ts"]) if spec is not None else None
        return None


def history_value(c: Customer, spec: HistorySpec, at: int) -> float | int:
    since = at - spec.within_us if spec.within_us is not None else None
    if spec.kind == "count" and since is None and not spec.where and len(spec.types) >= 1:
        return sum(c.type_counts.get(t, 0) for t in spec.types)  # all-time counts are kept as facts
    if since is not None and not spec.where:
        got = _from_daily(c, spec, since, at)
        if got is not None:
            return got
    return _from_history(c, spec, since, at + 1)


def _from_history(c: Customer, spec: HistorySpec, since: int | None, until: int) -> float | int:
    total: float = 0
    n = 0
    types = set(spec.types)
    for it in c.interactions(since=since, until=until):
        if it.type not in types:
            continue
        if spec.where and any(it.data.get(k) != v for k, v in spec.where):
            continue
        n += 1
        if spec.kind == "sum":
            v = it.data.get(spec.field or "")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total += v
    return n if spec.kind == "count" else round(total, 6)


def _from_daily(c: Customer, spec: HistorySpec, since: int, at: int) -> float | int | None:
    """A windowed count, or sum of order amounts, from the customer's per-day aggregates for the
    whole days inside ``[since, at]`` plus the history of the two partial days at its edges — the
    same figure as reading the whole window from the history, without loading the spilled
    history buckets of a 90-day window on every order. None when the aggregates cannot say (a
    sum of another field, days older than they keep, a record without them)."""
    daily = c.daily
    if daily is None or not daily:
        return None
    if spec.kind == "sum" and not (spec.types == ("order",) and spec.field == "amount"):
        return None
    first = -(-since // US_PER_DAY)  # the first whole day: starts at or after since
    end = (at + 1) // US_PER_DAY  # whole days end before at + 1
    if end - first < 1 or first < max(daily) - DAILY_KEEP_DAYS:
        return None
    head = _from_history(c, spec, since, first * US_PER_DAY)
    tail = _from_history(c, spec, end * US_PER_DAY, at + 1)
    if spec.kind == "count":
        return head + tail + sum(b.get(t, 0) for d, b in daily.items() if first <= d < end for t in spec.types)
    total = head + tail + sum(b.get(SPEND, 0.0) for d, b in daily.items() if first <= d < end)
    return round(total, 6)


def event_dict(it: Interaction, idempotency_key: str = "") -> dict[str, Any]:
    return {"type": it.type, "channel": it.channel, "ts": it.ts, "touchpoint": it.touchpoint, "key": it.key,
            "data": dict(it.data), "idempotency_key": idempotency_key or it.idempotency_key}
