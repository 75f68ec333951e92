"""The facts a customer's interactions add up to — hard facts, counts per type, per-day totals —
as functions over the plain dicts a ``Customer`` holds.

Why apart from :mod:`shopkeeper.customer`: the same counting serves the record's apply loop (one
interaction, ``Customer.add_interaction``, or a run of them, ``Customer.add_interactions``), the
view of Decide's offer records not folded in yet (``shopkeeper.offerlog.hard_facts``), and a rule's
rolled-back ``emit`` (:func:`take_back_daily`); one copy of the rules, and ``customer.py`` stays
under the module size limit. Nothing here is pickled under this module's name.
"""

from __future__ import annotations

from typing import Any

from .values import DAILY_KEEP_DAYS, SPEND, US_PER_DAY, Daily, Interaction


def count_hard_facts(h: dict[str, Any], type_counts: dict[str, int], it: Interaction) -> bool:
    """Count ``it`` into hard facts ``h`` and ``type_counts`` only (copies of a customer's: the view
    of Decide's offer records not folded in yet, ``shopkeeper.offerlog.hard_facts``): the counting
    of :func:`count_interaction`, without the per-type latest times and per-day totals. True for an
    order."""
    return count_interaction(h, type_counts, None, None, it)


def count_interaction(h: dict[str, Any], type_counts: dict[str, int], last_at: dict[str, int] | None,
                      daily: dict[int, dict[str, Any]] | None, it: Interaction) -> bool:
    """Everything one interaction adds to a customer's facts: the hard facts and counts per type,
    ``Customer.last_at`` (event type -> the latest timestamp of that type) and the per-day totals
    ``Customer.daily`` (either of the last two may be None: records written before they existed).
    True for an order (its owner marks the kept order indexes).

    The per-day totals are complete for the ``DAILY_KEEP_DAYS`` before the newest day; a day older
    than that is not counted (windows that far back read the history), and a newer day drops the
    days that fall out. One function, not one per part: it runs for every event of the apply loop,
    where each Python call is a measurable share (docs/benchmarks.md §84)."""
    ts, etype = it.ts, it.type
    h["interactions"] = h.get("interactions", 0) + 1
    if h["first_seen"] is None or ts < h["first_seen"]:
        h["first_seen"] = ts
    if h["last_seen"] is None or ts >= h["last_seen"]:
        h["last_seen"] = ts
        h["last_channel"] = it.channel
    type_counts[etype] = type_counts.get(etype, 0) + 1
    order = etype == "order"
    amount = 0.0
    if order:
        amount = float(it.data.get("amount", 0.0))
        h["orders"] = h.get("orders", 0) + 1
        h["total_spend"] = round(h.get("total_spend", 0.0) + amount, 2)
        if h["last_order_at"] is None or ts > h["last_order_at"]:
            h["last_order_at"] = ts
    if last_at is not None and (last_at.get(etype) or 0) <= ts:
        last_at[etype] = ts
    if daily is None:
        return order
    if type(daily) is Daily:  # its bytes as loaded are stale now
        daily.changed()
    day = ts // US_PER_DAY
    b = daily.get(day)
    if b is None:  # a day already kept is within the days kept: no max() over up to 400 days per event
        newest = max(daily) if daily else day
        if day < newest - DAILY_KEEP_DAYS:
            return order
        if day > newest:
            floor = day - DAILY_KEEP_DAYS
            for d in [d for d in daily if d < floor]:
                del daily[d]
        b = daily[day] = {}
    b[etype] = b.get(etype, 0) + 1
    if order:
        b[SPEND] = b.get(SPEND, 0.0) + amount
    return order


def take_back_daily(daily: dict[int, dict[str, Any]] | None, it: Interaction) -> bool:
    """Undo :func:`apply_daily` for ``it``; False when it was not counted (older than the days kept)."""
    day = it.ts // US_PER_DAY
    b = daily.get(day) if daily else None
    if b is None or not b.get(it.type):
        return False
    assert daily is not None
    if type(daily) is Daily:
        daily.changed()
    b[it.type] -= 1
    if it.type == "order":
        b[SPEND] = b.get(SPEND, 0.0) - float(it.data.get("amount", 0.0))
    if not b[it.type]:
        del b[it.type]
        if not any(k != SPEND for k in b):
            del daily[day]
    return True
