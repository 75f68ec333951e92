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

The guarantee (docs/data-model.md, *Exactly once*): a key is found when logged with the asked ts,
or with 0, for at least :data:`WINDOW_US` (7 days) after it was logged.

**Pruning** (the log grew forever before): a customer has at most two logs, ``key_log`` (taking
keys since ``key_log_at``, the writer's clock) and ``key_log_old`` (the one before). When a spill
finds the current log older than :data:`WINDOW_US`, the old log is dropped — every key in it was
logged before ``key_log_at`` ≤ now − window —, the current one becomes the old one and a new one is
started: O(1), in the transaction that writes the customer anyway, no walk, no per-entry time.
A key is so kept between 7 and 14 days after it was logged. Only the ingest loop prunes (it
publishes a ``keys_pruned`` change-feed entry for it); merges and folds keep their keys longer.
A log written before pruning has ``key_log_at`` 0: its clock starts at its next spill (lazy: no
evolve walk; the named step ``key-log-pruning`` only records that older code must not open it).

``ExactlyOnce`` is ``Customer``'s part for all of this (split out of ``shopkeeper.customer``, a
module at the layout cap; stored records still name ``shopkeeper.customer.Customer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from BTrees.OOBTree import OOTreeSet

from .offerlog import KEY_PREFIX as OFFER_KEY_PREFIX
from .offerlog import has_key as has_offer_key
from .values import US_PER_DAY, now_us

if TYPE_CHECKING:
    from .customer import Customer

#: ``Customer.key_log_v``: the log's entries are ``(ts, key)`` tuples (records before generation 8)
TUPLES = 1
#: entry strings; some may have been logged with ts 0
STRINGS = 2
#: entry strings, none logged with ts 0
DATED = 3

#: Idempotency keys a customer keeps in their own record (``Customer.recent_keys``); the oldest half
#: spills, as ``(event ts, key)``, into ``Customer.key_log`` when there are more. See docs/data-model.md.
KEY_WINDOW = 16

#: how long a spilled key is kept at least (the replay window docs/data-model.md promises): 7 days
WINDOW_US = 7 * US_PER_DAY


def entry(ts: int, key: str) -> str:
    """The log's entry for ``key`` applied with event time ``ts`` (0: stamped on arrival)."""
    return f"{ts:016x} {key}"


def split(e: str) -> tuple[int, str]:
    """``(ts, key)`` of an entry string."""
    ts, _, key = e.partition(" ")
    return int(ts, 16), key


def has(c: Customer, key: str, ts: int) -> bool:
    """Whether ``c``'s logs hold ``key`` logged with ``ts`` or with 0 (``c.key_log`` is not None)."""
    log = c.key_log
    v = c.key_log_v
    if v == TUPLES:  # (never rotated: a log is converted before it is rotated)
        return (ts, key) in log or (0, key) in log
    e = entry(ts, key)
    old = c.key_log_old
    if e in log or (old is not None and e in old):
        return True
    if v == STRINGS and ts != 0:
        e = entry(0, key)
        return e in log or (old is not None and e in old)
    return False


def entries(c: Customer) -> Iterator[tuple[int, str]]:
    """Every ``(ts, key)`` in ``c``'s log, oldest first, whatever its format."""
    log = c.key_log
    if log is None:
        return iter(())
    if c.key_log_v == TUPLES:
        return iter(log)
    old = c.key_log_old
    if old is not None:
        return (split(e) for logs in (old, log) for e in logs)
    return (split(e) for e in log)


def add(c: Customer, pairs: Iterable[tuple[int, str]], now: int = 0) -> int:
    """Log ``(ts, key)`` pairs in ``c``'s log: made if missing, converted to strings in place if it
    holds tuples (the lazy step of generation 8). With ``now`` (the writer's clock, µs), first prune
    (see the module notes); returns 0, or when keys were dropped, the time every dropped key was
    logged before. The caller marks the record changed."""
    log = c.key_log
    dropped = 0
    if log is None:
        log = c.key_log = OOTreeSet()
        c.key_log_v = DATED
        if now or c.key_log_at:  # (left to the class default, 0, when it is already)
            c.key_log_at = now
    elif c.key_log_v == TUPLES:
        old = list(log)
        log.clear()
        log.update([entry(ts, key) for ts, key in old])
        c.key_log_v = STRINGS if any(ts == 0 for ts, _ in old) else DATED
    if now:
        since = c.key_log_at
        if not since:  # a log from before pruning, or made by a merge: its clock starts now
            c.key_log_at = now
        elif now - since >= WINDOW_US:
            if c.key_log_old is not None:
                dropped = since  # every key of the old log was logged before the current one began
            c.key_log_old = log
            log = c.key_log = OOTreeSet()
            c.key_log_at = now
    zero = False
    for ts, key in pairs:
        log.add(entry(ts, key))
        if not ts:
            zero = True
    if zero and c.key_log_v == DATED:
        c.key_log_v = STRINGS
    return dropped


class ExactlyOnce:
    """``Customer``'s idempotency keys: the newest :data:`KEY_WINDOW` in the record, older ones in its
    key logs (see the module notes and docs/data-model.md, *Exactly once*)."""

    __slots__ = ()

    #: exactly-once: the idempotency keys of the newest events applied to this customer, key -> event
    #: ts (0 for a ts the hub stamped on arrival), in arrival order, at most ``KEY_WINDOW``; written
    #: with the record that the event changes anyway. None on records written before generation 6
    recent_keys: dict[str, int] | None = None
    #: older keys as ``(event ts or 0, key)``, created on the first spill: time-ordered, so a spill
    #: appends to the last bucket or two instead of dirtying one bucket of a global index per event
    key_log: OOTreeSet | None = None
    #: what the key logs' entries are: tuples in records before generation 8 (see above)
    key_log_v: int = TUPLES
    #: the log before ``key_log`` (pruning: dropped whole when ``key_log`` is a window old); None until then
    key_log_old: OOTreeSet | None = None
    #: when ``key_log`` began taking keys (µs, the writer's clock); 0: not known (before pruning)
    key_log_at: int = 0

    def has_key(self: Customer, key: str, ts: int) -> bool:  # type: ignore[misc]
        """Whether an event with idempotency ``key`` (and event timestamp ``ts``) was applied here:
        any of the newest ``KEY_WINDOW`` keys whatever its ts, older ones with the same ts (a resend of
        the same event) or stamped on arrival."""
        rk = self.recent_keys
        if rk and key in rk:
            return True
        if self.key_log is not None and has(self, key, ts):
            return True
        # Decide's offer records not folded in yet (``shopkeeper.offerlog``); their keys carry its prefix,
        # tested here first so that no other event pays a call for it
        return key.startswith(OFFER_KEY_PREFIX) and has_offer_key(self, key)

    def remember_key(self: Customer, key: str, ts: int, prune: bool = False) -> int:  # type: ignore[misc]
        """Record that the event with ``key`` was applied to this customer (``ts`` 0: stamped by the hub).
        ``prune``: a spill may drop keys logged more than a window ago (the ingest loop's, which
        publishes it); returns what :func:`add` does (0: nothing dropped)."""
        rk = self.recent_keys
        if rk is None:
            rk = self.recent_keys = {}
        rk[key] = ts
        dropped = 0
        if len(rk) > KEY_WINDOW:
            dropped = add(self, [(rk.pop(k), k) for k in list(islice(rk, KEY_WINDOW // 2))],
                          now_us() if prune else 0)
        self._p_changed = True
        return dropped

    def log_key(self: Customer, key: str, ts: int) -> None:  # type: ignore[misc]
        """Record an old key straight in ``key_log`` (the generation-6 evolve step moving wave-1 keys)."""
        add(self, ((ts, key),))
        self._p_changed = True  # the record points at a new key_log

    def remember_keys_of(self: Customer, other: Customer) -> None:  # type: ignore[misc]
        """Take a copy of ``other``'s keys (merge, unmerge, moved identities): keys are unique per
        event, so a key too many here is harmless, a key missing would apply a redelivery twice."""
        if other.key_log:
            add(self, entries(other))
        for key, ts in (other.recent_keys or {}).items():
            if not self.has_key(key, ts):
                self.remember_key(key, ts)

    def forget_keys(self: Customer) -> None:  # type: ignore[misc]
        """Erasure: keys can carry references (Message-IDs, decision ids); tombstones refuse redeliveries."""
        self.recent_keys = {}
        self.key_log = None
        self.key_log_old = None
        self._p_changed = True
