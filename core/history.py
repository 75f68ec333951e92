"""``Customer.history``: the spilled history ``LOBTree`` and the recent interactions kept in the
customer's own record, read as one sorted mapping (see ``shopkeeper.customer``).

The spilled tree's values are each interaction's packed bytes (``values._pack_fields``, the bytes
the recent window holds) since generation 7; buckets written before hold ``Interaction`` pickles and
are read as they are (``values.stored`` reads both). Why bytes: ZODB's Python ``persistent_id`` hook
runs for every object a bucket's pickle visits — five per pickled interaction (the key, the object,
its reduce function, argument tuple and bytes), two per bytes value — and a spill rewrites a bucket
of 30–60 of them (docs/benchmarks.md §68, §77). A loaded bucket no longer unpickles every
interaction either: each is unpacked when read.

Not persistent: a view built on each access, so nothing here is ever pickled."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .offerlog import unfolded, unfolded_interactions
from .values import _pack_fields, fields_of, stored

if TYPE_CHECKING:
    from .customer import Customer, Interaction


class History:
    """A customer's whole history as one sorted mapping: ``Customer._tree`` (spilled, a ``LOBTree``)
    merged with ``Customer._recent`` (at most ``HISTORY_CHUNK`` newest, in the customer's record).
    Offers the ``LOBTree`` API the code reads with; ``min``/``max`` are inclusive, as in BTrees."""

    __slots__ = ("_c",)

    def __init__(self, customer: Customer) -> None:
        self._c = customer

    def _recent_keys(self, lo: int | None, hi: int | None) -> list[int]:
        """The recent window's keys in ``[lo, hi]``, sorted; reading keys unpacks nothing. With
        Decide's offer records not yet folded into the record (``shopkeeper.offerlog``)."""
        recent = self._c._recent
        mine = unfolded_interactions(self._c)
        if mine:
            recent = [*(recent or ()), *mine]
        if not recent:
            return []
        return sorted(k for k in recent if (lo is None or k >= lo) and (hi is None or k <= hi))

    def _recent_items(self, lo: int | None, hi: int | None) -> list[tuple[int, Interaction]]:
        # only those in range are unpacked (``shopkeeper.recent``)
        return [(k, self._mine(k)) for k in self._recent_keys(lo, hi)]

    def _mine(self, key: int) -> Interaction:
        recent = self._c._recent
        if recent and key in recent:
            return recent[key]
        return unfolded_interactions(self._c)[key]

    def newest(self, n: int) -> list[Interaction]:
        """The ``n`` newest interactions, newest first: the recent window's keys merged with the spilled
        tree's newest ``n``, found by ``maxKey`` one below the other — each reads the tree's rightmost path,
        so only its newest buckets load. Why: GetCustomer's view asks for the newest 10, and the
        newest-first walk listed every key of a history under 4,096 interactions, loading every bucket of
        the spilled tree — on PostgreSQL a round trip each; walking back a day at a time
        (:func:`reverse_keys`) loads them all too when a day holds them all, as after a burst of events
        (a 10M store after 300k events: 2.5–2.8 ms of hub CPU per GetCustomer, docs/benchmarks.md §87)."""
        if n <= 0:
            return []
        keys = self._recent_keys(None, None)
        tree = self._c._tree
        if tree is not None:
            top: list[int] = []
            try:
                k = tree.maxKey()
                while True:
                    top.append(k)
                    if len(top) >= n:
                        break
                    k = tree.maxKey(k - 1)
            except ValueError:  # an empty tree, or no key below the last one
                pass
            if top:
                keys = sorted({*keys, *top})
        return [self[k] for k in reversed(keys[-n:])]

    def items(self, min: int | None = None, max: int | None = None) -> Iterator[tuple[int, Interaction]]:
        tree = self._c._tree
        recent = self._recent_items(min, max)
        if tree is None:
            return iter(recent)
        # no len(tree) here: a BTree's length walks (and loads) every bucket of the history
        spilled = ((k, stored(v)) for k, v in tree.items(min=min, max=max))
        if not recent:
            return iter(spilled)
        return heapq.merge(spilled, recent, key=_first)

    def keys(self, min: int | None = None, max: int | None = None) -> Iterator[int]:
        """The keys alone: no recent interaction is unpacked for them."""
        tree = self._c._tree
        mine = self._recent_keys(min, max)
        if tree is None:
            return iter(mine)
        spilled = tree.keys(min=min, max=max)
        return heapq.merge(spilled, mine) if mine else iter(spilled)

    def values(self, min: int | None = None, max: int | None = None) -> Iterator[Interaction]:
        return (v for _, v in self.items(min, max))

    def field_rows(self, folded: bool = False) -> list[tuple[Any, ...]]:
        """Every interaction's fields as a plain tuple (``key, ts, type, channel, touchpoint, data, ...``),
        in key order as :meth:`values` gives them, but without an ``Interaction`` built (and kept in the
        window) for each packed one: the Parquet export reads every interaction of every customer, and
        the object per interaction was a third of its CPU (docs/benchmarks.md §54). With Decide's offer
        records not yet folded in, :meth:`values` as it is. ``folded``: the caller has looked (in the
        offer logs it read once) and ``c`` has none unfolded — one ``Connection.root()`` less per customer."""
        c = self._c
        if not folded and unfolded(c):
            return list(self.values())
        recent = c._recent
        rows = recent.fields() if recent else []
        rows.sort(key=_first)  # keys are unique in the window
        tree = c._tree
        if tree is not None:
            spilled = [(k, fields_of(v)) for k, v in tree.items()]
            if spilled and rows and spilled[-1][0] > rows[0][0]:  # interleaved (a merge): spilled first on a tie
                rows = sorted(spilled + rows, key=_first)
            elif spilled:
                rows = spilled + rows
        return [f for _, f in rows]

    def __iter__(self) -> Iterator[int]:
        return self.keys()

    def __len__(self) -> int:
        tree = self._c._tree
        return (len(tree) if tree is not None else 0) + len(self._c._recent or ()) + len(unfolded(self._c))

    def __bool__(self) -> bool:
        return bool(self._c._recent) or bool(self._c._tree) or bool(unfolded(self._c))

    def __contains__(self, key: int) -> bool:
        tree = self._c._tree
        return (key in (self._c._recent or ()) or (tree is not None and key in tree)
                or key in unfolded_interactions(self._c))

    def __getitem__(self, key: int) -> Interaction:
        recent = self._c._recent
        if recent and key in recent:
            return recent[key]
        tree = self._c._tree
        got = tree.get(key) if tree is not None else None
        if got is None:
            got = unfolded_interactions(self._c).get(key)
            if got is None:
                raise KeyError(key)
            return got
        return stored(got)

    def get(self, key: int, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def pop(self, key: int, *default: Any) -> Any:
        return self._c.pop_interaction(key, *default)

    def tree(self) -> Any:
        """The spilled history ``LOBTree``, made if missing (then the customer record changes too: it
        refers to it). The outbox makes it together with the customer's outbox, in one write."""
        c = self._c
        if c._tree is None:
            from BTrees.LOBTree import LOBTree

            c._tree = LOBTree()
        return c._tree

    def file(self, interaction: Interaction) -> Interaction:
        """Store ``interaction`` straight in the spilled tree under a free key at or after its ts,
        leaving the customer record alone (no hard facts, not among the recent ones): an outbox
        delivery report then writes one history bucket, not the record (``shopkeeper.outbox.fastpath``).
        The tree is no longer only older than the recent ones: this view merges both by key."""
        tree, recent, key = self.tree(), self._c._recent or (), interaction.ts
        while key in recent or key in tree:
            key += 1
        if key != interaction.key:
            interaction = interaction._replace(key=key)
        tree[key] = _pack_fields(interaction)
        return interaction

    def maxKey(self, key: int | None = None) -> int:
        found = [k for k in (*(self._c._recent or ()), *unfolded_interactions(self._c)) if key is None or k <= key]
        tree = self._c._tree
        if tree:  # a BTree's truth loads its first bucket only; len() would walk them all
            try:
                found.append(tree.maxKey() if key is None else tree.maxKey(key))
            except ValueError:
                pass
        if not found:
            raise ValueError("empty history" if key is None else f"no key <= {key}")
        return max(found)

    def minKey(self, key: int | None = None) -> int:
        found = [k for k in (*(self._c._recent or ()), *unfolded_interactions(self._c)) if key is None or k >= key]
        tree = self._c._tree
        if tree:
            try:
                found.append(tree.minKey() if key is None else tree.minKey(key))
            except ValueError:
                pass
        if not found:
            raise ValueError("empty history" if key is None else f"no key >= {key}")
        return min(found)


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]



def reverse_keys(tree: Any, lo: int | None, hi: int | None) -> Iterator[int]:
    """Walk a large history newest-first without materialising every key."""
    upper = hi if hi is not None else tree.maxKey() if tree else None
    if upper is None:
        return
    window = 1_000_000 * 3600 * 24  # one day of µs, doubled while nothing is found
    while True:
        start = upper - window
        if lo is not None and start < lo:
            start = lo
        chunk = list(tree.keys(min=start, max=upper))
        yield from reversed(chunk)
        if lo is not None and start <= lo:
            return
        try:
            upper = tree.maxKey(start - 1)
        except ValueError:
            return
        window *= 2
