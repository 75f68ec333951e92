"""Many named counters in one record that merges concurrent increments: ``Counters``.

Why: the analysis processor counts outcomes (offer × segment × shown/accepted/declined, e-mail
campaigns) and segment sizes on nearly every event. As one ``BTrees.Length`` per key, a group
commit of 500 events rewrote ~56 of them — a third of all its records. One ``Counters`` record
per kind is written once per group commit, whatever the number of keys touched.

Why not a plain dict in a persistent record: two hub processes over one store (RelStorage, ZEO)
increment the same counters concurrently, and a plain record would raise ``ConflictError`` on every
such commit. ``Counters._p_resolveConflict`` merges the two writes key by key, the way
``BTrees.Length`` does for one number: the result is the committed value plus this transaction's
own change (``new - old``) for every key. So concurrent increments never conflict and none is
lost; a ``set`` (the exact sizes a full re-evaluation records) racing with increments behaves as
``Length.set`` did: it is applied as the difference it made.

The record holds every key of its kind (hundreds to a few thousand: offers × learning segments ×
3 outcomes, e-mail campaigns × 2): tens of KB at most, rewritten once per group commit that
counts something. This module is stable: pickles name ``shopkeeper.analysis.counters.Counters``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from persistent import Persistent


class Counters(Persistent):
    """key -> int, one record; concurrent changes are merged per key (see the module notes)."""

    def __init__(self, values: dict[Any, int] | None = None) -> None:
        self._values: dict[Any, int] = dict(values or {})

    def get(self, key: Any, default: int = 0) -> int:
        return self._values.get(key, default)

    def __getitem__(self, key: Any) -> int:
        return self._values[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._values))

    def keys(self) -> list[Any]:
        return list(self._values)

    def items(self) -> list[tuple[Any, int]]:
        return list(self._values.items())

    def change(self, key: Any, delta: int) -> None:
        values = self._values
        values[key] = values.get(key, 0) + delta
        self._p_changed = True

    def set(self, key: Any, value: int) -> None:
        self._values[key] = value
        self._p_changed = True

    def _p_resolveConflict(self, old: dict | None, committed: dict, new: dict) -> dict:
        """The committed values plus this transaction's own changes, key by key."""
        o = (old or {}).get("_values", {})
        merged = dict(committed.get("_values", {}))
        for key, value in new.get("_values", {}).items():
            delta = value - o.get(key, 0)
            if delta:
                merged[key] = merged.get(key, 0) + delta
        return {**committed, "_values": merged}


__all__ = ["Counters"]
