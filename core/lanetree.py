"""A customer-keyed tree cut by lane: one sub-tree per customer-id lane, so hubs sharing a store write
apart (issue 17; docs/benchmarks.md §101).

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

The class lives in :mod:`shopkeeper.records` (persistent classes stay there); import it from either.
"""

from __future__ import annotations

from typing import Any

from .records import LANE, LaneTree


def laned(tree: Any, kind: type) -> LaneTree:
    """``tree`` as a :class:`LaneTree` of ``kind`` (the store generation's step): a ``LaneTree`` as it
    is, anything else kept whole as its ``legacy``; None gives an empty one. O(1): nothing is walked."""
    if isinstance(tree, LaneTree):
        return tree
    return LaneTree(kind, legacy=tree)


__all__ = ["LANE", "LaneTree", "laned"]
