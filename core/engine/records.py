"""The engine's persistent record classes: leases and the change feed's staging.

**Persistent classes live here: renaming breaks pickles.** ZODB writes a record's class as
``module.name`` into the record and into every reference to it, so a class must stay at the path
its records were written with, for as long as any store holds one. Logic modules (``leases``,
``feed``) are split and renamed as the code needs; the classes they store are defined here and
nowhere else (``tests/test_records.py`` fails on a ``Persistent`` subclass defined elsewhere).

Records written before this module existed name the logic modules (``shopkeeper.engine.leases.Lease``,
``shopkeeper.engine.feed.Staged``, ``...feed.StagingHead``): those modules import the classes from
here, so the old paths keep loading (:data:`OLD_PATHS`, checked by the test and by the golden
stores). Records written now name this module.
"""

from __future__ import annotations

import pickle
from typing import Any

from persistent import Persistent


class Lease(Persistent):
    """One lease: who holds it until when (µs since the epoch); see :mod:`.leases`."""

    def __init__(self, holder: str = "", expires: int = 0) -> None:
        self.holder = holder
        self.expires = expires


class Staged(Persistent):
    """One hub transaction's change-feed entries, waiting to be sequenced (see :mod:`.feed`)."""

    def __init__(self) -> None:
        self.entries: list[tuple] = []


class StagingHead(Persistent):
    """A hub's last staged seq, and the fence that makes reclaiming its staging safe: every
    transaction that stages writes it, and :func:`.feed.reclaim_staging` writes it too, so a hub's
    staging and the removal of its tree never both commit — the storage refuses the second
    (a ``ConflictError``, retried by that writer, which then sees the other's result)."""

    def __init__(self, last: int = 0) -> None:
        self.last = last


class FeedChunk(Persistent):
    """One transaction's change-feed entries, ``(cursor, kind, customer_id, …)`` plain tuples (see
    :mod:`.feed`), pickled as one ``bytes``. Kept as a ``PersistentList`` (until the ninth session),
    ZODB's pickler called its Python ``persistent_id`` hook on every tuple and every field — 12 of
    the 29 calls per event of a group commit with the processors on (benchmarks §72) — for values
    that are never persistent. Here the entries go through the C pickler alone (no hook: a
    persistent object in an entry would be copied, not referenced, so :meth:`append` takes plain
    values only, as ``feed`` makes them). Only this object marks itself changed.

    ``deltas`` (generation 15): counts of the store's counters committed with this chunk and not yet
    folded into ``root['counters']`` — they count only while that record names this chunk pending
    (:mod:`shopkeeper.store.counting`). Pickled beside the entries, ``(entries, deltas)``, when there are any."""

    #: counter name -> change, see above (None: none)
    deltas: dict[str, int] | None = None

    def __init__(self) -> None:
        self.entries: list[tuple] = []

    def add_deltas(self, deltas: dict[str, int]) -> None:
        mine = self.deltas
        if mine is None:
            self.deltas = dict(deltas)
            return
        for key, delta in deltas.items():
            mine[key] = mine.get(key, 0) + delta
        self._p_changed = True

    def append(self, entry: tuple) -> None:
        self.entries.append(entry)
        self._p_changed = True  # after a savepoint stored the chunk, the commit stores it again

    def take_deltas(self) -> dict[str, int] | None:
        """The deltas, cleared; the chunk is written even without any (a fold's mark, ``counting.settle``)."""
        deltas = self.deltas
        self.deltas = None
        self._p_changed = True
        return deltas

    def __delitem__(self, i: int) -> None:
        del self.entries[i]
        self._p_changed = True

    def __getitem__(self, i: int) -> tuple:
        return self.entries[i]

    def __iter__(self) -> Any:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> bytes:
        deltas = self.deltas
        return pickle.dumps((self.entries, deltas) if deltas else self.entries, protocol=5)

    def __setstate__(self, state: bytes) -> None:
        got = pickle.loads(state)
        if type(got) is tuple:  # (entries, deltas)
            self.__dict__["entries"], self.__dict__["deltas"] = got
        else:
            self.__dict__["entries"] = got


#: pickled paths of records written before this module existed -> the class's name here; the
#: module named must keep importing the class (a pickle alias)
OLD_PATHS: dict[str, str] = {
    "shopkeeper.engine.leases.Lease": "Lease",
    "shopkeeper.engine.feed.Staged": "Staged",
    "shopkeeper.engine.feed.StagingHead": "StagingHead",
}
