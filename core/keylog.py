"""A customer's spilled idempotency keys (``Customer.key_log``), one string per key since generation 8.

Why strings: the log is an ``OOTreeSet`` that a spill of ``KEY_WINDOW // 2`` keys appends to, which
rewrites its last bucket (15–30 entries). ZODB's Python ``persistent_id`` hook runs for every object a
pickle visits: three per ``(ts, key)`` tuple, one per string (docs/benchmarks.md §68, §77). An
entry is ``f"{ts:016x} {key}"``: for every timestamp since 1970 the fixed-width hex sorts as the
number, so the log stays time-ordered and a spill still appends to the last bucket or two; the
first space ends the timestamp (a key may hold spaces, a timestamp never), so an entry names one
``(ts, key)`` only, whatever the timestamp (negative for a historical import, or wider).

``Customer.key_log_v`` says what the entries are: :data:`TUPLES` (the class default: every record
written before generation 8), :data:`STRINGS`, or :data:`DATED` (strings, none logged with ts 0:
a dated event's key is then looked up once instead of twice — the second lookup, ``(0, key)``, only
finds keys the hub stamped on arrival or the generation-6 step moved from the wave-1 index).
Generation 8 is lazy: a log in tuples is read as it is and converted, in place, the next time keys
are added to it (:func:`add`).

The guarantee (docs/data-model.md, *Exactly once*) is unchanged: a key is found when logged with the
asked ts, or with 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from BTrees.OOBTree import OOTreeSet

if TYPE_CHECKING:
    from .customer import Customer

#: ``Customer.key_log_v``: the log's entries are ``(ts, key)`` tuples (records before generation 8)
TUPLES = 1
#: entry strings; some may have been logged with ts 0
STRINGS = 2
#: entry strings, none logged with ts 0
DATED = 3


def entry(ts: int, key: str) -> str:
    """The log's entry for ``key`` applied with event time ``ts`` (0: stamped on arrival)."""
    return f"{ts:016x} {key}"


def split(e: str) -> tuple[int, str]:
    """``(ts, key)`` of an entry string."""
    ts, _, key = e.partition(" ")
    return int(ts, 16), key


def has(c: Customer, key: str, ts: int) -> bool:
    """Whether ``c``'s log holds ``key`` logged with ``ts`` or with 0 (``c.key_log`` is not None)."""
    log = c.key_log
    v = c.key_log_v
    if v == TUPLES:
        return (ts, key) in log or (0, key) in log
    if entry(ts, key) in log:
        return True
    return v == STRINGS and ts != 0 and entry(0, key) in log


def entries(c: Customer) -> Iterator[tuple[int, str]]:
    """Every ``(ts, key)`` in ``c``'s log, oldest first, whatever its format."""
    log = c.key_log
    if log is None:
        return iter(())
    if c.key_log_v == TUPLES:
        return iter(log)
    return (split(e) for e in log)


def add(c: Customer, pairs: Iterable[tuple[int, str]]) -> None:
    """Log ``(ts, key)`` pairs in ``c``'s log: made if missing, converted to strings in place if it
    holds tuples (the lazy step of generation 8). The caller marks the record changed."""
    log = c.key_log
    if log is None:
        log = c.key_log = OOTreeSet()
        c.key_log_v = DATED
    elif c.key_log_v == TUPLES:
        old = list(log)
        log.clear()
        log.update([entry(ts, key) for ts, key in old])
        c.key_log_v = STRINGS if any(ts == 0 for ts, _ in old) else DATED
    zero = False
    for ts, key in pairs:
        log.add(entry(ts, key))
        if not ts:
            zero = True
    if zero and c.key_log_v == DATED:
        c.key_log_v = STRINGS
