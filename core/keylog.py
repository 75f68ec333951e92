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

**Key-only lookups** (generation 13, ``key-fingerprints``): the log is ordered by event time, so
``(ts, key)`` finds a resend only when it carries the first delivery's ts; a client that stamps
its events at send time (the Node example's ``ts: new Date()``) resent a run of more than 16 events
as new ones (issue 10). Beside each log the customer keeps a 4-byte fingerprint of every key in it
(``key_fp``, ``key_fp_old``: CRC-32 of the key's UTF-8, sorted little-endian 32-bit integers in one
``bytes`` value of the record that is written anyway — no record of its own, no ``persistent_id``
call, 4 B per key for the 7–14 days a key is kept; a binary search finds one, a spill merges its
8 in with one copy). A fingerprint miss proves the key is in neither log (no log probed);
a hit is confirmed exactly: the entry with the asked ts, else a scan of the logs for the key
(only true duplicates and one new event in ~2**32 / keys pay it). A key-sorted log was the other
way: random keys would dirty a bucket of it per spilled key (issue 10's write shape).
Lazy: a log from before has ``key_fp`` None and is looked up as before (by ``(ts, key)``, or
``(0, key)``) until its next spill, merge or evolve write, which fingerprints both logs once.

The guarantee (docs/data-model.md, *Exactly once*): a key is found whatever the ts for at least
:data:`WINDOW_US` (7 days) after it was logged (a log not yet fingerprinted: when logged with the
asked ts, or with 0).

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

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any
from zlib import crc32

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

_LITTLE = sys.byteorder == "little"

#: how long a spilled key is kept at least (the replay window docs/data-model.md promises): 7 days
WINDOW_US = 7 * US_PER_DAY


def entry(ts: int, key: str) -> str:
    """The log's entry for ``key`` applied with event time ``ts`` (0: stamped on arrival)."""
    return f"{ts:016x} {key}"


def split(e: str) -> tuple[int, str]:
    """``(ts, key)`` of an entry string."""
    ts, _, key = e.partition(" ")
    return int(ts, 16), key


def fingerprint(key: str) -> int:
    """The fingerprint ``key_fp`` holds for ``key``: CRC-32 of its UTF-8 (stable across processes,
    unlike ``hash``; a lone surrogate, which JSON allows, encoded as it is)."""
    return crc32(key.encode("utf-8", "surrogatepass"))


def _view(fps: bytes) -> Sequence[int]:
    """``fps`` as the sorted unsigned 32-bit integers it holds (little-endian on disk: zero-copy here)."""
    if _LITTLE:
        return memoryview(fps).cast("I")
    a = array("I", fps)  # (a big-endian host: a copy, swapped)
    a.byteswap()
    return a


def _holds(fps: bytes, fp: int) -> bool:
    """Whether the sorted fingerprints ``fps`` hold ``fp``: a binary search, O(log keys)."""
    v = _view(fps)
    i = bisect_left(v, fp)
    return i < len(v) and v[i] == fp


def with_fingerprints(fps: bytes, keys: Iterable[str]) -> bytes:
    """``fps`` with the fingerprints of ``keys`` merged in, still sorted: one copy of ``fps`` (a
    spill adds 8; slices of a memoryview, joined in C), not a Python-level sort of them all."""
    new = sorted([crc32(k.encode("utf-8", "surrogatepass")) for k in keys])
    if not fps:
        return b"".join([x.to_bytes(4, "little") for x in new])
    v, raw = _view(fps), memoryview(fps)
    pieces: list[Any] = []
    at = 0
    for x in new:
        i = bisect_left(v, x, at)
        pieces.append(raw[4 * at:4 * i])
        pieces.append(x.to_bytes(4, "little"))
        at = i
    pieces.append(raw[4 * at:])
    return b"".join(pieces)


def _scan(c: Customer, key: str) -> bool:
    """Whether an entry of ``c``'s (string) logs names ``key``, whatever its ts: a fingerprint hit's
    confirmation, paid by true duplicates sent with another ts. Newest first: a retry's originals
    were logged lately, so each log is read back in windows of event time that grow fourfold from
    its newest entry (every window a range of the tree: O(log n) to reach), the last one all the
    rest — together every entry, whatever its ts."""
    for log in (c.key_log, c.key_log_old):
        if not log:
            continue
        top = split(log.maxKey())[0]
        width = 1 << 20  # µs (~1 s), then ×4 a window
        bound = None  # every entry from here up has been read
        while True:
            lo = top - width
            if lo <= 0 or top >= 16 ** 16:  # the rest (a negative or very wide ts sorts apart: all of it)
                part = log.keys() if bound is None else log.keys(max=bound, excludemax=True)
            else:
                start = entry(lo, "")
                part = log.keys(min=start) if bound is None else log.keys(min=start, max=bound, excludemax=True)
            for e in part:
                if e.endswith(key) and e.partition(" ")[2] == key:
                    return True
            if lo <= 0 or top >= 16 ** 16:
                break
            bound = start
            width <<= 2
    return False


def has(c: Customer, key: str, ts: int) -> bool:
    """Whether ``c``'s logs hold ``key``: whatever its ts once fingerprinted (generation 13), else
    logged with ``ts`` or with 0 (``c.key_log`` is not None)."""
    log = c.key_log
    v = c.key_log_v
    fps = c.key_fp
    if fps is not None:
        fp = crc32(key.encode("utf-8", "surrogatepass"))  # (:func:`fingerprint` and :func:`_holds` inlined:
        v = memoryview(fps).cast("I") if _LITTLE else _view(fps)  # every new event pays this)
        i = bisect_left(v, fp)
        if i == len(v) or v[i] != fp:
            fps = c.key_fp_old
            if not fps or not _holds(fps, fp):
                return False  # in neither log: every logged key's fingerprint is in one of the two
        e = entry(ts, key)  # a resend with the first delivery's ts: one probe, no scan
        old = c.key_log_old
        if e in log or (old is not None and e in old):
            return True
        return _scan(c, key)
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
        c.key_fp = b""
        if now or c.key_log_at:  # (left to the class default, 0, when it is already)
            c.key_log_at = now
    elif c.key_log_v == TUPLES:
        old = list(log)
        log.clear()
        log.update([entry(ts, key) for ts, key in old])
        c.key_log_v = STRINGS if any(ts == 0 for ts, _ in old) else DATED
    if c.key_fp is None:  # a log from before generation 13: fingerprinted once, here (lazy)
        c.key_fp = with_fingerprints(b"", (split(e)[1] for e in log))
        old_log = c.key_log_old
        c.key_fp_old = with_fingerprints(b"", (split(e)[1] for e in old_log)) if old_log is not None else b""
    if now:
        since = c.key_log_at
        if not since:  # a log from before pruning, or made by a merge: its clock starts now
            c.key_log_at = now
        elif now - since >= WINDOW_US:
            if c.key_log_old is not None:
                dropped = since  # every key of the old log was logged before the current one began
            c.key_log_old = log
            c.key_fp_old = c.key_fp
            log = c.key_log = OOTreeSet()
            c.key_fp = b""
            c.key_log_at = now
    zero = False
    keys = []
    for ts, key in pairs:
        if log.add(entry(ts, key)):  # (a merge's copy of a key already here adds no fingerprint)
            keys.append(key)
        if not ts:
            zero = True
    if keys:
        c.key_fp = with_fingerprints(c.key_fp, keys)
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
    #: a 4-byte fingerprint per key in ``key_log`` (generation 13: key-only lookups, see the module
    #: notes); None: no log, or a log from before, looked up by ``(ts, key)`` until its next write
    key_fp: bytes | None = None
    #: the same for ``key_log_old``
    key_fp_old: bytes = b""

    def has_key(self: Customer, key: str, ts: int) -> bool:  # type: ignore[misc]
        """Whether an event with idempotency ``key`` was applied here, whatever its timestamp ``ts``:
        the newest ``KEY_WINDOW`` in the record, older ones in the key logs (kept 7–14 days); a log
        not yet fingerprinted (before generation 13) finds them only with the same ts or stamped."""
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
        self.key_fp = None
        self.key_fp_old = b""
        self._p_changed = True
