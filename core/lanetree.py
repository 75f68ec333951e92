"""A customer-keyed tree cut by lane: one sub-tree per customer-id lane, so hubs sharing a store write
apart (issue 17; docs/benchmarks.md §96).

**Why.** A BTree write (``_set``, ``_del``) marks every interior node on its path read-current, and a
bucket split rewrites its parent: that is how BTrees keep a concurrent split from losing a write. So
when two hubs write one customer-keyed tree — the order facts of the audience index, the order table
— a split by one hub rewrites the root node the other hub's group marked read-current, and the other
hub's whole group (up to 5,000 events) is thrown away and applied again: RelStorage reports a
``VoteReadConflictError`` on the node, or a lock refusal naming no object. Counted over a routed
two-hub run, every conflict was on the root of ``audience['order_facts']`` or ``root['orders']``
(``bench_scaleout --probe``'s ``conflicts_where``), ~1,300–2,800 events re-applied each. Routing
customers to hubs does not help on its own: the hubs' customers sit in different buckets already,
but every bucket hangs from the one root.

**How.** A customer id begins with the lane of the database that created it
(``Folders.new_customer_id``: 3 hex digits, one per hub process), and a client routed by customer
(``shopkeeper.client.Hubs``) sends a customer's events to the hub that created it. Here each lane
has a tree of its own (``shards``: lane -> tree of ``kind``, e.g. ``OrderFacts``): a hub's writes
touch only its lanes' trees and read ``shards`` without writing it (a plain ``get`` marks nothing
read-current), so another hub's splits never rewrite a node its group read. ``shards`` itself
changes once per new lane. Keys keep their order: a lane is a key's first 3 characters, so the
shards taken in lane order give the keys in order, and readers (``items()``) see one sorted mapping.

**Lazy, O(1) on open** (the store generation that brings it wraps the tree it replaces): the tree
from before stays as ``legacy``; a key moves from it into its lane's tree on its next write, and reads
look in the lane's tree, then in ``legacy``. A key is in one of the two, never both.

Persistent class: keep its path.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from BTrees.OOBTree import OOBTree
from persistent import Persistent

#: characters of a key that name its lane (``Folders.new_customer_id``'s lane: 3 hex digits)
LANE = 3
_MISSING = object()


class LaneTree(Persistent):
    """key -> value over one tree of ``kind`` per lane (the key's first :data:`LANE` characters), plus
    the tree from before the split (``legacy``) until its keys move on their next write."""

    def __init__(self, kind: type, legacy: Any = None) -> None:
        self.kind = kind
        self.shards = OOBTree()
        self.legacy = legacy

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        shard = self.shards.get(key[:LANE])
        if shard is not None:
            value = shard.get(key, _MISSING)
            if value is not _MISSING:
                return value
        legacy = self.legacy
        return legacy.get(key, default) if legacy is not None else default

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every (key, value) in key order: the lanes' trees one after the other, merged with ``legacy``."""
        laned = (kv for shard in self.shards.values() for kv in shard.items())
        legacy = self.legacy
        if legacy is None or not legacy:
            return laned
        return heapq.merge(laned, legacy.items(), key=lambda kv: kv[0])

    def keys(self) -> Iterator[str]:
        return (k for k, _ in self.items())

    def values(self) -> Iterator[Any]:
        return (v for _, v in self.items())

    __iter__ = keys

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards.values()) + (len(self.legacy) if self.legacy is not None else 0)

    def __bool__(self) -> bool:
        return any(bool(s) for s in self.shards.values()) or bool(self.legacy)

    def trees(self) -> list[Any]:
        """The trees this one is made of: ``shards``, each lane's tree and ``legacy`` (for a caller
        that looks at records — which of them a transaction wrote)."""
        return [self.shards, *self.shards.values(), *([self.legacy] if self.legacy is not None else [])]

    # -- writes ---------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        lane = key[:LANE]
        shard = self.shards.get(lane)
        if shard is None:
            shard = self.shards[lane] = self.kind()
        shard[key] = value
        legacy = self.legacy
        if legacy is not None and key in legacy:  # moved on its first write since the split
            del legacy[key]

    def __delitem__(self, key: str) -> None:
        shard = self.shards.get(key[:LANE])
        if shard is not None and key in shard:
            del shard[key]
            return
        legacy = self.legacy
        if legacy is not None and key in legacy:
            del legacy[key]
            return
        raise KeyError(key)


def laned(tree: Any, kind: type) -> LaneTree:
    """``tree`` as a :class:`LaneTree` of ``kind`` (the store generation's step): a ``LaneTree`` as it
    is, anything else kept whole as its ``legacy``; None gives an empty one. O(1): nothing is walked."""
    if isinstance(tree, LaneTree):
        return tree
    return LaneTree(kind, legacy=tree)


__all__ = ["LANE", "LaneTree", "laned"]
