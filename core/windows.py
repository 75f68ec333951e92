"""Windowed counts and sums over one customer's interactions: the one implementation.

Segments and offers (``count('order', days=30)``, ``spend(days=90)`` in
:mod:`shopkeeper.analysis.conditions`) and the rules' ``history:`` conditions
(:mod:`shopkeeper.rules.facts`) both ask "how many interactions of these types, or what sum of
this field, in ``[since, until)``". Both are on the ingest path, so the answer comes from the
customer's per-day aggregates (``Customer.daily``) for the whole days of the window and from the
history only for the partial days at its edges, and only when the aggregates cannot decide them.
Each caller keeps its own language-level rounding and time anchor (segments: now, 2 decimals;
rules: the event's time, 6 decimals); this module returns the raw figure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .values import DAILY_KEEP_DAYS, SPEND, US_PER_DAY, Interaction

#: the type that means any interaction type
ANY = "*"

#: reads the interactions with keys in ``[since, until)`` (``until`` None: no end)
Reader = Callable[[Any, "int | None", "int | None"], Iterable[Interaction]]


def _read_history(c: Any, since: int | None, until: int | None) -> Iterable[Interaction]:
    return c.interactions(since=since, until=until)


def total(c: Any, types: Sequence[str], since: int | None, until: int | None = None,
          field: str | None = None, where: Sequence[tuple[str, Any]] = (),
          read: Reader = _read_history) -> int | float:
    """How many interactions of ``types`` (``("*",)``: any) have a key in ``[since, until)``
    (None: no bound) and match every ``(key, value)`` of ``where`` — or, with ``field``, the sum of
    that data field over them (numbers only). Unrounded: the caller rounds as its language says.

    ``read(c, since, until)`` reads history when the aggregates cannot decide (a caller that has
    already read a window passes it in)."""
    # From the per-day aggregates unless they cannot say (a sum of anything but
    # order amounts, days older than they keep, a record without them, a window inside one day,
    # a ``where``): then the whole window is read.
    # Whole days inside the window come from the aggregates. So do the partial days at its edges
    # when the aggregates decide them: the first when that day has none of the types (the usual
    # case 90 days back), the last when no interaction of the types is at or after ``until``
    # (``Customer.last_at``: events arriving in order). Otherwise that partial day's history is read.
    if since is None or where:
        return scan(read(c, since, until), types, field, where)
    daily = c.daily
    if not daily:
        # none kept: nothing in any window if the customer never had an interaction (the usual
        # empty case, answered without reading the history); a record without them reads it
        if daily is not None and not c.hard.get("interactions"):
            return 0
        return scan(read(c, since, until), types, field, where)
    # one type (or order amounts): ``key`` is the day's figure, ``seen`` the type whose presence
    # on an edge day decides it; several types or any type go the general way (``key`` None)
    anyt = ANY in types
    if field is not None:
        if field != "amount" or len(types) != 1 or types[0] != "order":
            return scan(read(c, since, until), types, field, where)
        key: str | None = SPEND
        seen = "order"
    elif len(types) == 1 and not anyt:
        key = seen = types[0]
    else:
        key = None
    first = -(-since // US_PER_DAY)  # the first whole day: starts at or after since
    oldest_complete = max(daily) - DAILY_KEEP_DAYS
    if first < oldest_complete:
        return scan(read(c, since, until), types, field, where)
    end = None if until is None else until // US_PER_DAY  # whole days end before until
    if end is not None and end - first < 1:
        return scan(read(c, since, until), types, field, where)

    head: int | float = 0
    if since != first * US_PER_DAY:
        b = daily.get(first - 1) if first - 1 >= oldest_complete else _UNKNOWN
        if b is _UNKNOWN or (b and (b.get(seen) if key is not None else _has_any(b, types, anyt))):
            head = scan(read(c, since, first * US_PER_DAY), types, field)
        # else nothing of these types that day: nothing in its part inside the window either
    whole: int | float = 0
    if key is not None:  # the usual case, kept tight: it runs per windowed condition per event
        if end is None:
            for d, b in daily.items():
                if d >= first:
                    whole += b.get(key, 0)
            return head + whole
        for d, b in daily.items():
            if first <= d < end:
                whole += b.get(key, 0)
    else:
        for d, b in daily.items():
            if d >= first and (end is None or d < end):
                whole += _of_day(b, types, anyt)
        if end is None:
            return head + whole
    last_at = c.last_at
    if last_at is not None and (max(last_at.values(), default=0) if anyt else
                                max((last_at.get(t) or 0) for t in types)) < until:
        b = daily.get(end)  # the day's aggregates hold nothing at or after until
        tail: int | float = (b.get(key, 0) if key is not None else _of_day(b, types, anyt)) if b else 0
    else:
        tail = scan(read(c, end * US_PER_DAY, until), types, field)
    return head + tail + whole




def scan(items: Iterable[Interaction], types: Sequence[str], field: str | None = None,
         where: Sequence[tuple[str, Any]] = ()) -> int | float:
    """The count (or sum of ``field``) over ``items`` of ``types`` that match ``where``: the
    plain reading of the history that the aggregates stand in for."""
    anyt = ANY in types
    wanted = frozenset(types)
    n = 0
    acc: float = 0
    for it in items:
        if not anyt and it.type not in wanted:
            continue
        if where and any(it.data.get(k) != v for k, v in where):
            continue
        n += 1
        if field is not None:
            v = it.data.get(field)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                acc += v
    return n if field is None else acc


_UNKNOWN: dict[str, Any] = {}


def _of_day(b: dict[str, Any], types: Sequence[str], anyt: bool) -> int:
    return sum(v for k, v in b.items() if k != SPEND) if anyt else sum(b.get(t, 0) for t in types)


def _has_any(b: dict[str, Any], types: Sequence[str], anyt: bool) -> bool:
    return any(k != SPEND for k in b) if anyt else any(b.get(t) for t in types)
