"""A customer's recent interactions as stored — packed — and unpacked only when read.

Why: ``Customer`` keeps its newest interactions in its own record (``Customer._recent``, at most
``HISTORY_CHUNK``), each as the packed bytes of ``Interaction.__reduce__`` (``_pack_fields``). Most
loads of a customer never look at them — an event's apply loop appends one, a segment condition
reads the aggregates, an export or a re-evaluation reads a few — yet unpacking all of them on
every load was one ``pickle.loads`` per interaction (docs/benchmarks.md §49, §51). A
:class:`RecentWindow` keeps the bytes as loaded, unpacks an interaction the first time it is read,
and hands the same bytes back to ``Customer.__getstate__`` for every interaction nobody replaced:
an untouched window is written back byte for byte, without a pickle call.

Not persistent and never pickled itself: ``Customer.__getstate__`` stores :meth:`packed` (a plain
``dict`` key -> bytes, the record's format since the window moved into the record), so nothing in
a stored record names this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .values import Interaction, _pack_fields, fields_of, unpack


class RecentWindow:
    """key -> ``Interaction``, a small mapping (the ``dict`` API the customer and its history view use)
    over two dicts: ``_packed`` has every key, in the stored order, with its packed bytes or None while
    they are not known (added or replaced since the load); ``_items`` holds the ones unpacked or added."""

    __slots__ = ("_packed", "_items")

    def __init__(self, packed: dict[int, bytes | None] | None = None) -> None:
        self._packed: dict[int, bytes | None] = {} if packed is None else packed
        self._items: dict[int, Interaction] = {}

    @classmethod
    def stored(cls, recent: Mapping[int, Any]) -> RecentWindow:
        """The window of a loaded record: ``recent`` maps keys to packed bytes (or, in records written
        before the window was packed, to ``Interaction``s, packed again on the next write)."""
        if not recent or type(next(iter(recent.values()))) is bytes:
            return cls(dict(recent) if type(recent) is not dict else recent)
        w = cls(dict.fromkeys(recent))
        w._items.update(recent)
        return w

    def packed(self) -> dict[int, bytes]:
        """Every interaction's packed bytes, for the record and for the spill into the history tree,
        whose buckets hold the same bytes (generation 7): those loaded and not replaced as they were; the
        others packed now, once (kept, so a later write while they stay recent does not pack again)."""
        packed = self._packed
        if None in packed.values():
            items = self._items
            for k, b in packed.items():
                if b is None:
                    packed[k] = _pack_fields(items[k])
        return packed  # type: ignore[return-value]

    def add(self, it: Interaction, tree: Any) -> tuple[Interaction, int]:
        """Store ``it`` under the first key at or after its timestamp that neither this window nor
        ``tree`` (the spilled history, or None) holds; returns it as stored (its key set) and the
        window's new size. ``Customer.add_interactions``' step, in one call instead of a membership
        test, an assignment and a ``len`` through this class's methods (docs/benchmarks.md §84)."""
        packed = self._packed
        key = it.ts
        while key in packed or (tree is not None and key in tree):
            key += 1
        if key != it.key:
            it = it._replace(key=key)
        packed[key] = None
        self._items[key] = it
        return it, len(packed)

    # -- the mapping ----------------------------------------------------------------------

    def __getitem__(self, key: int) -> Interaction:
        it = self._items.get(key)
        if it is None:
            it = self._items[key] = unpack(self._packed[key])  # KeyError when absent
        return it

    def get(self, key: int, default: Any = None) -> Any:
        return self[key] if key in self._packed else default

    def __setitem__(self, key: int, value: Interaction) -> None:
        self._packed[key] = None
        self._items[key] = value

    def pop(self, key: int, *default: Any) -> Any:
        if key not in self._packed:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        del self._packed[key]
        del self._items[key]
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._packed

    def __len__(self) -> int:
        return len(self._packed)

    def __bool__(self) -> bool:
        return bool(self._packed)

    def __iter__(self) -> Iterator[int]:
        return iter(self._packed)

    def keys(self) -> Any:
        return self._packed.keys()

    def values(self) -> list[Interaction]:
        return [self[k] for k in self._packed]

    def items(self) -> list[tuple[int, Interaction]]:
        return [(k, self[k]) for k in self._packed]

    def fields(self) -> list[tuple[int, tuple[Any, ...]]]:
        """(key, the interaction's fields as a plain tuple), in the stored order: what a bulk reader
        takes, without unpacking into (and keeping) an ``Interaction`` each."""
        items = self._items
        return [(k, items[k] if b is None or k in items else fields_of(b)) for k, b in self._packed.items()]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecentWindow | Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RecentWindow {len(self._packed)} interactions, {len(self._items)} unpacked>"
