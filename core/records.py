"""The domain's persistent record classes (besides ``Customer``, in :mod:`shopkeeper.customer`).

**Persistent classes live here: renaming breaks pickles.** ZODB writes a record's class as
``module.name`` into the record and into every reference to it, so a class must stay at the path
its records were written with, for as long as any store holds one. Logic modules (identity
resolution and merging, the audience index, the order and score tables) are split and renamed as
the code needs; the classes they store are defined here, in :mod:`shopkeeper.customer`
(``Customer``), and nowhere else (``tests/test_records.py``
fails on a ``Persistent`` subclass defined elsewhere).

Records written before this module existed name the logic modules (:data:`OLD_PATHS`): those
modules import the classes from here, so the old paths keep loading (checked by the test and by
the golden stores, ``tests/test_golden_store.py``). Records written now name this module.

Over 500 lines: this module is where every persistent class must live (a pickle names its module,
and ``tests/test_records.py`` refuses one elsewhere), so it grows with the classes, one job each
section; the logic that uses them lives in the modules named in each section.
"""

from __future__ import annotations

import heapq
import pickle
import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from BTrees.OOBTree import OOBTree, OOTreeSet
from persistent import Persistent
from ZODB.POSException import ConflictError

if TYPE_CHECKING:
    from .values import Consent, Fact, IdentityLink

#: every module that defines persistent classes (``tests/test_records.py`` holds the tree to this
#: list): one per package, plus ``Customer``'s own module (the analysis counters' module defined
#: ``Counters`` until generation 9 and now imports it from here: ``OLD_PATHS``)
STABLE_MODULES = ("shopkeeper.records", "shopkeeper.customer", "shopkeeper.engine.records",
                  "shopkeeper.campaigns.records")


# -- identity: merges and proposed merges (``root['merges']``, ``root['proposals']``) ----------


class MergeRecord(Persistent):
    """Lineage of one merge, with what is needed to undo it exactly (:mod:`shopkeeper.identity_merge`)."""

    def __init__(self, id: str, survivor_id: str, absorbed_id: str, at: int, reason: str, source: str) -> None:
        self.id = id
        self.survivor_id = survivor_id
        self.absorbed_id = absorbed_id
        self.at = at
        self.reason = reason
        self.source = source
        self.undone_at: int | None = None
        self.absorbed_identities: tuple[tuple[str, str], ...] = ()
        self.absorbed_links: dict[tuple[str, str], IdentityLink] = {}
        self.absorbed_origins: frozenset[str] = frozenset()
        self.absorbed_state: dict[str, Any] = {}
        self.survivor_consents: dict[tuple[str, str], Consent] = {}

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "survivor": self.survivor_id, "absorbed": self.absorbed_id, "at": self.at,
                "reason": self.reason, "source": self.source, "undone_at": self.undone_at}


class MergeProposal(Persistent):
    """A merge the resolver would make but policy leaves to a person."""

    def __init__(self, id: str, survivor_id: str, other_id: str, reason: str, at: int) -> None:
        self.id = id
        self.survivor_id = survivor_id
        self.other_id = other_id
        self.reason = reason
        self.at = at
        self.decided: str | None = None  # "accepted" / "rejected"


# -- the audience index (``root['audience']``, :mod:`shopkeeper.audience`) -------------------


class Cards(OOBTree):
    """customer id -> card (``marshal`` bytes), its order facts left out (``None``: they are in
    :class:`OrderFacts`). Buckets of up to 120 cards (OOBTree's are 30): the planner reads every bucket
    of a segment, and each record read costs far more than its size; with the order facts out, a
    card changes only with a segment, a consent, an address or a contact fact — rarely — so its
    ~9 KB bucket is rarely rewritten. Persistent class: keep its path."""

    max_leaf_size = 120
    max_internal_size = 500


class OrderFacts(OOBTree):
    """customer id -> the card's order facts (``marshal``-ed tuple of :data:`HARD`), only for
    customers with at least one order. Why apart from the card: every order changes them; here an
    order rewrites one bucket of small entries (~40 B each) instead of a bucket of whole cards, and
    the planner reads this tree only for a campaign whose conditions name an order fact. Buckets of
    120, like the cards: the planner reads a third of the buckets that buckets of 40 made it read,
    and an order's write stays small next to the customer record (orders are ~5% of events; with
    buckets of 40 these writes were ~12 B per ingested event, docs/benchmarks.md §31).
    Persistent class: keep its path."""

    max_leaf_size = 120
    max_internal_size = 500


class Members(OOTreeSet):
    """The customer ids of one segment — the only place a customer's segments are indexed (a card
    leaves them out). Buckets of up to 120 ids (~1.5 KB): a customer joining or leaving rewrites
    one (they were 500 ids, ~4-6 KB; smaller still meant more records per commit for the same
    bytes, as segment changes scatter over ids). Buckets written larger split on their next
    insert. Persistent class: keep its path."""

    max_leaf_size = 120
    max_internal_size = 500


class MembershipRows(OOBTree):
    """customer id -> the customer's segment memberships, ``marshal``-ed ``{segment: joined at (µs)}``
    (generation 16, ``shopkeeper.memberships``): kept apart from the customer record so that a change of
    segments only rewrites a bucket here, not the whole record. Buckets of up to 30 rows (~9 segments a
    customer, ~250 B a row): a full run rewrites each bucket once per batch; an event that moves a
    customer rewrites one of ~7 KB. Persistent class: keep its path."""

    max_leaf_size = 30
    max_internal_size = 500


# -- the order table (``root['orders']``, :mod:`shopkeeper.ordertable`) ---------------------


class OrderRows(OOBTree):
    """customer id -> packed orders. Buckets of up to 120 rows (OOBTree's are 30): a CDNOW
    buyer's row is ~50 bytes, so a bucket is a few KB and a full read loads ~200 records for
    23,570 buyers. Persistent class: keep its path."""

    max_leaf_size = 120
    max_internal_size = 500


# -- model score tables (``root['scores']``, :mod:`shopkeeper.scoretable`) ----------------


class ScoreRows(OOBTree):
    """The rows of a table: an ``OOBTree`` with buckets of up to 200 rows instead of 30.

    A batch fit rewrites every bucket; the commit cost is per record (one pickle, one storage
    write each), so bigger buckets made a CDNOW fit's commit ~3× cheaper per customer. A row is
    ~50 bytes, so a bucket stays ~10 KB: one customer's cold read loads one such bucket.
    """

    max_leaf_size = 200
    max_internal_size = 500


class ScoreTable(Persistent):
    """One model's scores for every customer it scored: id -> packed (at, source, values).

    ``names`` is fixed when the table is made; ``sources`` lists the model versions that wrote
    rows (a row stores the index). A NaN value means "not scored" and reads as absent.
    """

    #: volatile: the row layout, rebuilt after load
    _v_row: struct.Struct | None = None

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.sources: tuple[str, ...] = ()
        self.rows = ScoreRows()

    @property
    def _struct(self) -> struct.Struct:
        s = self._v_row
        if s is None:
            s = self._v_row = struct.Struct(f"<qH{len(self.names)}d")
        return s

    def source_index(self, source: str) -> int:
        try:
            return self.sources.index(source)
        except ValueError:
            self.sources = (*self.sources, source)
            return len(self.sources) - 1

    def write(self, rows: Iterable[tuple[str, tuple[float, ...]]], source: str, at: int,
              skip: Any = ()) -> int:
        """Set each (customer id, values) row, values index for index with ``names``; ids in
        ``skip`` (the erased) are left out."""
        pack = self._struct.pack
        i = self.source_index(source)
        if skip:
            data = {cid: pack(at, i, *values) for cid, values in rows if cid not in skip}
        else:
            data = {cid: pack(at, i, *values) for cid, values in rows}
        self.rows.update(data)
        return len(data)

    def read(self, cid: str) -> dict[str, Fact] | None:
        packed = self.rows.get(cid)
        if packed is None:
            return None
        return self._facts(packed)

    def _facts(self, packed: bytes) -> dict[str, Fact]:
        from .customer import Fact

        at, i, *values = self._struct.unpack(packed)
        src = self.sources[i]
        return {n: Fact(v, src, at) for n, v in zip(self.names, values, strict=True) if v == v}

    def get(self, cid: str, name: str) -> Fact | None:
        packed = self.rows.get(cid)
        if packed is None:
            return None
        from .customer import Fact

        at, i, *values = self._struct.unpack(packed)
        v = values[self.names.index(name)]
        return Fact(v, self.sources[i], at) if v == v else None


#: pickled paths of records written before this module existed -> the class's name here; the
#: module named must keep importing the class (a pickle alias)
OLD_PATHS: dict[str, str] = {
    "shopkeeper.identity.MergeRecord": "MergeRecord",
    "shopkeeper.identity.MergeProposal": "MergeProposal",
    "shopkeeper.audience.Cards": "Cards",
    "shopkeeper.audience.OrderFacts": "OrderFacts",
    "shopkeeper.audience.Members": "Members",
    "shopkeeper.ordertable.OrderRows": "OrderRows",
    "shopkeeper.scoretable.ScoreRows": "ScoreRows",
    "shopkeeper.scoretable.ScoreTable": "ScoreTable",
    "shopkeeper.analysis.counters.Counters": "Counters",
}


class OfferLog(Persistent):
    """One customer's ``Decide`` offer records not yet folded into their record, oldest first
    (the logic: :mod:`shopkeeper.offerlog`).

    ``entries``: ``(interaction, counted, at, key_ts)`` tuples — the interaction as the loop would
    have recorded it; whether the analysis processor counted it as a first report of its decision;
    the writer's clock when it was recorded (the time ``offer.decisions`` is stamped with); the ts
    its idempotency key is kept under (0: stamped on arrival). A tuple, replaced on each change."""

    def __init__(self) -> None:
        self.entries: tuple[tuple[Any, bool, int, int], ...] = ()

    def __repr__(self) -> str:
        return f"<OfferLog {len(self.entries)} unfolded>"


# -- counters: the store's own (``root['counters']``, generation 9) and the analysis processor's -----


class Counters(Persistent):
    """key -> int, one record whose concurrent changes are merged per key.

    Why one record: the analysis processor counts outcomes and segment sizes on nearly every event,
    and the store counts customers, interactions, duplicates and change-feed entries on every
    commit; as one ``BTrees.Length`` per key a group commit rewrote dozens of records, and a lone
    event's commit two of its four (docs/benchmarks.md §78, §84). Why not a plain dict: two hub
    processes over one store (RelStorage, ZEO) count concurrently, and a plain record would raise
    ``ConflictError`` on every such commit. :meth:`_p_resolveConflict` merges the two writes key by
    key, as ``BTrees.Length`` does for one number: the committed value plus this transaction's own
    change (``new - old``) for every key, so concurrent increments never conflict and none is lost;
    a ``set`` racing with increments is applied as the difference it made, as ``Length.set`` was.
    Records written before this class moved here name ``shopkeeper.analysis.counters.Counters``.

    **Counts kept in the change feed's chunk** (the store's counters, generation 15): a commit that
    writes the feed's chunk anyway — every commit of the hub's writer — puts its counts in that chunk
    (``deltas``) instead of rewriting this record, as long as the chunk is the one this record names
    (``pending``); the first commit into a new chunk folds the old one's deltas in here and names the
    new one (:meth:`settle`). So a lone event's commit writes this record once per chunk (~16 commits)
    instead of every time, and the counts stay exact: the chunk is written in the same transaction as
    what it counts, and every read adds the pending chunk's deltas (one record, whatever the store's
    size). The logic: :mod:`shopkeeper.store.counting`."""

    #: the change-feed chunk whose ``deltas`` are not in the values yet (None: none); ``folds`` counts
    #: the times it moved, so that two writers folding at once conflict instead of merging
    pending: Any = None
    folds = 0
    #: this transaction's changes (volatile; None once changed otherwise: ``counting.settle`` then writes it)
    _v_delta: dict[Any, int] | None = None

    def __init__(self, values: dict[Any, int] | None = None) -> None:
        self._values: dict[Any, int] = dict(values or {})

    def _merged(self) -> dict[Any, int]:
        values = self._values
        pending = self.pending
        deltas = pending.deltas if pending is not None else None
        if not deltas:
            return values
        merged = dict(values)
        for key, delta in deltas.items():
            merged[key] = merged.get(key, 0) + delta
        return merged

    def get(self, key: Any, default: int = 0) -> int:
        pending = self.pending
        if pending is None:  # (every record but the store's, and a store's when nothing is pending)
            return self._values.get(key, default)
        return self._merged().get(key, default)

    def __getitem__(self, key: Any) -> int:
        return self._merged()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._merged()

    def __len__(self) -> int:
        return len(self._merged())

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._merged()))

    def keys(self) -> list[Any]:
        return list(self._merged())

    def items(self) -> list[tuple[Any, int]]:
        return list(self._merged().items())

    def change(self, key: Any, delta: int) -> None:
        values = self._values
        values[key] = values.get(key, 0) + delta
        if self.pending is None:  # nothing to move this transaction's changes into (every record but the store's)
            self._p_changed = True
            return
        if self._p_changed:
            mine = self._v_delta
            if mine is not None:
                mine[key] = mine.get(key, 0) + delta
        else:  # this transaction's first change
            self._v_delta = {key: delta}
            self._p_changed = True

    def set(self, key: Any, value: int) -> None:
        pending = self.pending
        deltas = pending.deltas if pending is not None else None
        self._values[key] = value - (deltas.get(key, 0) if deltas else 0)
        self._p_changed = True
        self._v_delta = None  # not a change settle can move: the record is written

    def moved(self, delta: dict[Any, int]) -> None:
        """This transaction's changes ``delta`` went into the pending chunk (``counting.settle``): out of
        the values again, and the record unchanged — ZODB's commit skips a registered object that is
        (``Connection._commit``), so it is not written."""
        values = self._values
        for key, change in delta.items():
            values[key] -= change
        self._v_delta = None
        self._p_changed = False

    def fold_in(self, deltas: dict[Any, int] | None, pending: Any) -> None:
        """The pending chunk's ``deltas`` added to the values, and ``pending`` named instead (``counting.fold``)."""
        values = self._values
        for key, change in (deltas or {}).items():
            values[key] = values.get(key, 0) + change
        self.pending = pending
        self.folds += 1
        self._v_delta = None

    def __getstate__(self) -> dict[str, Any]:
        """The values packed into one ``bytes`` by the C pickler: ZODB's Python ``persistent_id`` hook
        runs for every object a record's pickle visits — two per key and value of a plain dict, six for
        an analysis key tuple — and this record is rewritten by every commit that counts (§84)."""
        state: dict[str, Any] = {"_packed": pickle.dumps(self._values, 5)}
        if self.pending is not None:
            state["pending"] = self.pending
        if self.folds:
            state["folds"] = self.folds
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        own = {"_values": _values_of(state)}
        for name in ("pending", "folds"):
            if name in state:
                own[name] = state[name]
        super().__setstate__(own)

    def _p_resolveConflict(self, old: dict | None, committed: dict, new: dict) -> dict:
        """The committed values plus this transaction's own changes, key by key (each state packed or,
        written before §84, a plain ``_values`` dict). Two writers that both moved the pending chunk
        do not merge (each folded the same deltas): the second retries."""
        old = old or {}
        o = _values_of(old) if old else {}
        folds = old.get("folds", 0)
        new_folded, committed_folded = new.get("folds", 0) != folds, committed.get("folds", 0) != folds
        if new_folded and committed_folded:
            raise ConflictError("both transactions folded the counters' pending chunk")
        merged = _values_of(committed)
        for key, value in _values_of(new).items():
            delta = value - o.get(key, 0)
            if delta:
                merged[key] = merged.get(key, 0) + delta
        resolved: dict[str, Any] = {"_packed": pickle.dumps(merged, 5)}
        source = new if new_folded else committed
        for name in ("pending", "folds"):
            if name in source:
                resolved[name] = source[name]
        return resolved


def _values_of(state: dict[str, Any]) -> dict[Any, int]:
    """A ``Counters`` state's values: packed since §84, a plain dict in records written before."""
    packed = state.get("_packed")
    return pickle.loads(packed) if packed is not None else dict(state.get("_values", {}))


# -- customer-keyed trees cut by customer-id lane (:mod:`shopkeeper.lanetree`) ----------------

#: characters of a key that name its lane (``Folders.new_customer_id``'s lane: 3 hex digits)
LANE = 3
_MISSING = object()


class LaneTree(Persistent):
    """key -> value over one tree of ``kind`` per lane (the key's first :data:`LANE` characters), plus
    the tree from before the split (``legacy``) until its keys move on their next write. Why, and how
    hubs writing their own customers then touch no common node: :mod:`shopkeeper.lanetree`."""

    def __init__(self, kind: type, legacy: Any = None) -> None:
        self.kind = kind
        self.shards = OOBTree()
        self.legacy = legacy

    # -- reads ----------------------------------------------------------------------------

    def _shard(self, lane: str) -> Any:
        """The lane's tree or None, remembered per connection (``_v_``: a lane's tree, once committed,
        stays) — only once it is stored (``_p_oid``): a tree made by a transaction that aborts is not
        in ``shards`` afterwards, and reading it would miss every key of its lane."""
        shard = self.shards.get(lane)
        if shard is not None and shard._p_oid is not None:
            try:
                self._v_lanes[lane] = shard
            except AttributeError:
                self._v_lanes = {lane: shard}
        return shard

    def get(self, key: str, default: Any = None) -> Any:
        # the writer reads a customer per event here: one Python frame and one C call when the lane
        # is known (a dict subscript is no call), as near the plain tree's one C call as it gets
        lane = key[:LANE]
        try:
            shard = self._v_lanes[lane]
            if shard._p_oid is None:  # stored by a savepoint, then aborted (an abort unsets the oid)
                shard = self._shard(lane)
        except (AttributeError, KeyError):
            shard = self._shard(lane)
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

    def items(self, min: Any = None, max: Any = None, excludemin: bool = False,
              excludemax: bool = False) -> Iterator[tuple[str, Any]]:
        """(key, value) in key order: the lanes' trees one after the other, merged with ``legacy``;
        ``min``/``max``/``excludemin``/``excludemax`` bound the keys as a BTree's ``items`` does (the
        customers folder's readers page by them). Only the lanes the bounds reach are opened."""
        bounds: dict[str, Any] = {}
        if min is not None:
            bounds.update(min=min, excludemin=excludemin)
        if max is not None:
            bounds.update(max=max, excludemax=excludemax)
        lanes = self.shards.items(*(k[:LANE] if k is not None else None for k in (min, max)))
        laned = (kv for _, shard in lanes for kv in shard.items(**bounds))
        legacy = self.legacy
        if legacy is None or not legacy:
            return laned
        return heapq.merge(laned, legacy.items(**bounds), key=lambda kv: kv[0])

    def keys(self, min: Any = None, max: Any = None, excludemin: bool = False,
             excludemax: bool = False) -> Iterator[str]:
        return (k for k, _ in self.items(min, max, excludemin, excludemax))

    def values(self, min: Any = None, max: Any = None, excludemin: bool = False,
               excludemax: bool = False) -> Iterator[Any]:
        return (v for _, v in self.items(min, max, excludemin, excludemax))

    __iter__ = keys

    def __len__(self) -> int:
        """Walks every lane's tree and ``legacy``, as a BTree's own ``len`` walks its buckets: no
        worse than the tree it replaced, but keep it off hot paths (the store's counters count)."""
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
