"""A customer's segment memberships, kept apart from the customer record (generation 16,
``segment-memberships``; issue 10's "full re-evaluation ≤ 60 µs per customer").

**Why.** On a first run, or a scheduler's run 45 days on, nearly every customer's membership moves.
With the memberships inside the customer's packed record, each such customer was loaded, its whole
hot state re-pickled and the record committed for a change of a few names (docs/benchmarks.md §100:
loading ~30%, the commit ~25% of such a run). Here they are one row per customer in
``root['memberships']``, a :class:`~shopkeeper.records.MembershipRows` tree, each row ``marshal``-ed
``{segment: joined at (µs)}``. A segments-only change rewrites a bucket of ~30 rows and the segments'
member sets (:mod:`shopkeeper.audience`), not the record: a re-evaluation
judges a customer from a peek at its record (:mod:`shopkeeper.analysis.peek`) and writes its row
without building the ``Customer`` at all.

**One tree, not a lane tree** (:mod:`shopkeeper.lanetree`), measured: on a store with random
customer ids (stores from before generation 10, and the probes' stores) a lane tree spreads the rows
over up to 4,096 small trees, one record per ~5 customers, and a scheduler's re-run that reads every
row cost ~10 µs more per customer (docs/benchmarks.md §108). Two hubs moving customers of one segment
conflict on that segment's member set (:class:`~shopkeeper.records.Members`, one tree) either way; the
rows and the member sets can be cut by lane together, later, by a generation that wraps this tree as
a ``LaneTree``'s ``legacy`` in O(1).

**Readers are unchanged**: ``Customer.segments`` reads the row (the property in
:mod:`shopkeeper.customer`), so Decide, conditions, views, the export and the hub's ``GetCustomer``
see the same mapping as before. The member sets are patched where the row is written (the audience
index's before-commit hook no longer needs a customer's old segments from its card).

**Lazy, O(1) on open**: generation 16 only adds the empty tree. A record written before it keeps its
memberships in the record (``segments`` in its state) and is read from there until its segments next
change; that write moves them here (and rewrites the record once). A store without the tree (one not
evolved, a customer not in a store) keeps them in the record as before.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from typing import Any

from ZODB.utils import z64

from .records import Members, MembershipRows

#: the root key of the memberships tree
ROOT = "memberships"
#: the connection attribute caching ``(memberships tree, audience member sets or None)``
CACHED = _CACHED = "_shopkeeper_memberships"

_loads = marshal.loads
_dumps = marshal.dumps


def new_tree() -> MembershipRows:
    """An empty memberships tree (generation 16's step)."""
    return MembershipRows()


def _trees(conn: Any) -> tuple[Any, Any] | None:
    """(the memberships tree, the audience index's member sets or None) of ``conn``; None without the
    tree. Found once per connection (both are persistent objects of that connection, stable by oid)."""
    got = conn.__dict__.get(_CACHED) if conn is not None else None
    if got is None:
        if conn is None:
            return None
        root = conn.get(z64)
        tree = root.get(ROOT)
        if tree is None:
            return None
        index = root.get("audience")
        got = (tree, index["segments"] if index is not None else None)
        if index is not None:  # cached only once both are there (the audience step may come later)
            conn.__dict__[_CACHED] = got
    return got


def tree_of(conn: Any) -> MembershipRows | None:
    """The memberships tree of ``conn``'s store (None: a store before generation 16, or no connection)."""
    got = _trees(conn)
    return got[0] if got is not None else None


def row(tree: Any, cid: str) -> dict[str, int]:
    """A fresh ``{segment: joined at}`` of customer ``cid`` (empty without a row)."""
    packed = tree.get(cid)
    return _loads(packed) if packed is not None else {}


def put(conn: Any, cid: str, before: Iterable[str], after: dict[str, int]) -> None:
    """Make ``after`` the memberships of ``cid`` (``before``: the segments it was in) and patch the
    audience index's member sets by the difference. ``conn`` must have the tree (:func:`tree_of`)."""
    tree, sets = _trees(conn)  # type: ignore[misc]
    if after:
        tree[cid] = _dumps(after)
    elif cid in tree:
        del tree[cid]
    if sets is not None:
        patch(sets, cid, before, after)


class Batch:
    """Rows written as customers are judged, the member sets patched once per segment at the end (a
    re-evaluation's batch: one ``update`` of a segment's set with every customer that entered it,
    instead of set arithmetic and a lookup per customer and segment — ~9 entries per customer on a
    first run). ``conn`` must have the tree. Call :meth:`flush` before the transaction commits."""

    __slots__ = ("tree", "sets", "added", "removed")

    def __init__(self, conn: Any) -> None:
        self.tree, self.sets = _trees(conn)  # type: ignore[misc]
        self.added: dict[str, list[str]] = {}
        self.removed: dict[str, list[str]] = {}

    def put(self, cid: str, after: dict[str, int], entered: Iterable[str], left: Iterable[str]) -> None:
        """Make ``after`` the memberships of ``cid``, which ``entered`` and ``left`` those segments."""
        tree = self.tree
        if after:
            tree[cid] = _dumps(after)
        elif cid in tree:
            del tree[cid]
        for name in entered:
            got = self.added.get(name)
            if got is None:
                got = self.added[name] = []
            got.append(cid)
        for name in left:
            got = self.removed.get(name)
            if got is None:
                got = self.removed[name] = []
            got.append(cid)

    def flush(self) -> None:
        sets = self.sets
        if sets is not None:
            for name, cids in self.removed.items():
                m = sets.get(name)
                if m is not None:
                    for cid in cids:
                        if cid in m:
                            m.remove(cid)
            for name, cids in self.added.items():
                m = sets.get(name)
                if m is None:
                    m = sets[name] = Members()
                m.update(cids)
        self.added.clear()
        self.removed.clear()


def patch(sets: Any, cid: str, before: Iterable[str], after: Iterable[str]) -> None:
    """Take ``cid`` out of the member sets of ``before`` it is no longer in, add it to ``after``'s new ones."""
    before, after = set(before), set(after)
    for s in before - after:
        m = sets.get(s)
        if m is not None and cid in m:
            m.remove(cid)
    for s in after - before:
        m = sets.get(s)
        if m is None:
            m = sets[s] = Members()
        m.add(cid)


def current_txn(conn: Any) -> Any:
    """``conn``'s current transaction: what a customer's working copy of its memberships is valid for
    (``Customer.edit_segments``). Outside a transaction (an explicit manager), a new object each call:
    nothing matches it, so no working copy outlives its transaction."""
    try:
        return conn.transaction_manager.get()
    except Exception:  # an explicit transaction manager outside a transaction
        return object()


__all__ = ["ROOT", "Batch", "current_txn", "new_tree", "patch", "put", "row", "tree_of"]
