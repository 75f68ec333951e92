"""The change feed: committed changes, persisted with the changes that caused them.

Every change the hub commits (an interaction recorded, an identity attached, a consent set,
a merge, an erasure) gets one compact entry in the store's ``changes`` ``LOBTree``
(generation 3), written *in the same transaction* as the change itself, so the feed never
claims what did not commit and never misses what did. Each entry has a **cursor**:
microseconds since the epoch, made strictly increasing, so cursors order the feed and
also date it (retention trims by age).

**One record per transaction.** A transaction's entries go into one :class:`~.records.FeedChunk`
of ``(cursor, kind, customer_id, …)`` tuples, stored under its first entry's cursor (pickled as one
``bytes``: benchmarks §72; chunks written before are ``PersistentList`` objects, read the same way). Keyed one entry
per key, as the feed was until benchmarks §44, a group commit of 500 events wrote ~18 ``LOBucket``
records and rewrote the tree's root node (7.8 KB): append-only keys leave every bucket half full
(a split keeps 30 of 60 and the left half is never written again). Now a group writes its list,
the one bucket that gains a key, and the root only when that bucket splits. Stores keep their
older entries as they are (one tuple per key, without the cursor); every reader here takes both.
A transaction whose first entry finds the newest chunk small (:data:`TAIL_ENTRIES`) appends to it
instead: a lone event's commit then writes no tree bucket (benchmarks §78).

After the commit the writer hands the new entries to a :class:`Broker`, which keeps the
most recent ones in memory and wakes live ``Watch`` streams; a watcher that fell behind
the in-memory window (or resumes from an old cursor after a restart) reads the store.

This module is domain code: it does not import gRPC.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from time import time_ns as _time_ns
from typing import Any, NamedTuple

from persistent import Persistent

from ..customer import now_us
from ..store import Folders
from .ingest import Applied
from .records import FeedChunk

# pickle aliases too: staging written before engine.records names these classes by this module
from .records import Staged as Staged
from .records import StagingHead as StagingHead

#: Every kind of change-feed entry (documented for ``Watch`` in docs/api.md, "Change-feed kinds").
#: All but ``admin`` are about one customer (``customer_id``); ``admin`` entries are store-wide
#: (``customer_id`` empty, ``event_type`` says what: :data:`ADMIN_ACTS`), so a ``Watch`` filtered
#: by customers or segments never sees them.
KINDS = ("interaction", "identify", "consent", "merge", "unmerge", "forget", "segment_entered", "segment_left",
         "customer_rules", "outbox", "import", "soft_fact", "admin", "keys_pruned")

#: what an ``admin`` entry's ``event_type`` may say: the central rules were reloaded (``detail``: the
#: new version), or a named evolve step ran on the store while a hub held it (``detail``: its name)
ADMIN_ACTS = ("rules_reload", "evolve_step")


class Change(NamedTuple):
    """One committed change; stored without the cursor (the cursor is its key)."""

    cursor: int
    kind: str
    customer_id: str
    event_type: str = ""
    channel: str = ""
    at: int = 0
    interaction_key: int = 0
    segments: tuple[str, ...] = ()
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["segments"] = list(self.segments)
        return d


def changes_tree(folders: Folders) -> Any:
    return folders.root["changes"]


class _TxnFeed:
    """What the feed knows about the current transaction: its last cursor, how many entries it
    added (the ``changes`` counter is bumped once, just before the commit), and its list of
    entries (``first``: the list's key)."""

    __slots__ = ("last", "added", "chunk", "first")

    def __init__(self, last: int) -> None:
        self.last = last
        self.added = 0
        self.chunk: FeedChunk | None = None
        self.first = 0


def _txn_feed(folders: Folders, tree: Any) -> _TxnFeed:
    txn = folders.conn.transaction_manager.get()
    try:
        return txn.data(_TxnFeed)
    except KeyError:
        pass
    state = _TxnFeed(_last_cursor(tree))  # one tree lookup per transaction, not per entry
    txn.set_data(_TxnFeed, state)
    txn.addBeforeCommitHook(_count_added, (folders, state))
    return state


def _count_added(folders: Folders, state: _TxnFeed) -> None:
    if state.added:
        folders.count("changes", state.added)
        state.added = 0


def append(folders: Folders, kind: str, customer_id: str, *, event_type: str = "", channel: str = "",
           at: int | None = None, interaction_key: int = 0, segments: Iterable[str] = (),
           detail: str = "") -> Change:
    """Add one entry to the feed in the current transaction and return it with its cursor.

    In a hub sharing its store with other hubs (:func:`stage_in`) the entry is staged instead
    and gets its store-wide cursor from the sequencer; the cursor returned is then provisional."""
    if _STAGING_HUB.data:  # its dict: a WeakKeyDictionary's own truth test is a Python __len__ per entry
        hub = _STAGING_HUB.get(folders.conn.db())
        if hub is not None:
            return _stage(folders, hub, kind, customer_id, event_type, channel, at, interaction_key,
                          tuple(segments), detail)
    tree = folders.root["changes"]
    state = _txn_feed(folders, tree)
    cursor = _time_ns() // 1000  # now_us(), inlined: this runs for every event
    if state.last >= cursor:  # clock went back, or several entries in one µs
        cursor = state.last + 1
    state.last = cursor
    # the stored entry is a plain tuple; the Change returned is the same tuple typed, made without
    # building it twice (a NamedTuple's __new__ is a Python function, ~15% of an append)
    entry = (cursor, kind, customer_id, event_type, channel, at if at is not None else cursor,
             interaction_key, segments if type(segments) is tuple else tuple(segments), detail)
    _put(tree, state, entry)
    return _tuple_new(Change, entry)


_tuple_new = tuple.__new__


def _put(tree: Any, state: _TxnFeed, entry: tuple) -> None:
    """Add ``entry`` (with its cursor first) to the transaction's list of entries, making the list
    on the first entry. The list is looked up again each time: a savepoint rolled back (a failing
    rule action) may have taken it out of the tree, and a later entry must not go into an orphan."""
    chunk = state.chunk
    if chunk is None or tree.get(state.first) is not chunk:
        chunk, state.first = _tail(tree)
        if chunk is None:
            chunk = FeedChunk()
            state.first = entry[0]
            tree[entry[0]] = chunk
        state.chunk = chunk
    chunk.append(entry)  # the chunk marks itself changed: after a savepoint stored it, the commit stores it again
    state.added += 1


#: a transaction's entries join the newest chunk while it holds fewer than this many (see _tail)
TAIL_ENTRIES = 16


def _tail(tree: Any) -> tuple[FeedChunk | None, int]:
    """The newest chunk and its key, if a transaction's entries may join it: a lone event's commit
    then rewrites that small chunk instead of adding a tree key, which re-pickled the tree's last
    bucket (~200 ``persistent_id`` calls per commit: benchmarks §78). Readers already take a chunk
    holding several commits (``entries_after`` starts at the key holding its cursor)."""
    try:
        key = tree.maxKey()
    except ValueError:  # empty
        return None, 0
    value = tree[key]
    if type(value) is FeedChunk and len(value) < TAIL_ENTRIES:
        return value, key
    return None, 0


def _entries(key: int, value: Any) -> Iterable[tuple]:
    """The entries ``(cursor, kind, …)`` stored under ``key``: a transaction's list, or one entry
    stored as the tuple without its cursor (stores written before §44)."""
    if type(value) is tuple:
        return ((key, *value),)
    return value


# -- one feed across several hubs (docs/scaleout.md) ---------------------------------------
#
# Hubs sharing a store must not all insert into ``changes`` with cursors taken from their
# clocks: a transaction that took cursor 100 can commit after one that took 105, and a watcher
# that already passed 105 would never see 100. So each hub stages its entries — one
# ``Staged`` record per transaction, in a tree only that hub writes (no conflicts between hubs)
# — and the hub holding the ``feed`` lease moves them into ``changes`` in commit order: the
# order of the staged records' commit tids (``_p_serial``), which the storage assigns in commit
# order. A staged record not visible to the sequencer's snapshot commits later, with a higher
# tid, so it is sequenced after everything already sequenced: every change once, in commit order.

STAGING = "feed_staging"  # hub id -> LOBTree seq -> Staged (written by that hub's writer only)
POSITIONS = "feed_positions"  # hub id -> last seq sequenced (written by the sequencer only)
HEADS = "feed_heads"  # hub id -> StagingHead: the fence between a hub's staging and its reclaim

#: databases whose hub stages its entries: ZODB.DB -> hub id
_STAGING_HUB: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def create_staging(root: Any) -> None:
    """The named evolve steps ``feed_staging`` and ``feed_heads`` (contributed by :mod:`.steps`)."""
    from BTrees.OOBTree import OOBTree

    for name in (STAGING, POSITIONS, HEADS):
        if name not in root:
            root[name] = OOBTree()


def stage_in(db: Any, hub_id: str | None) -> None:
    """Make the writers of ``db`` (a ``ZODB.DB``) stage feed entries as hub ``hub_id`` (None: stop)."""
    if hub_id is None:
        _STAGING_HUB.pop(db, None)
    else:
        _STAGING_HUB[db] = hub_id


class _TxnStage:
    __slots__ = ("record", "last")

    def __init__(self, record: Staged) -> None:
        self.record = record
        self.last = 0


def _stage(folders: Folders, hub: str, kind: str, customer_id: str, event_type: str, channel: str,
           at: int | None, interaction_key: int, segments: tuple[str, ...], detail: str) -> Change:
    txn = folders.conn.transaction_manager.get()
    try:
        state = txn.data(_TxnStage)
    except KeyError:
        root = folders.root
        if HEADS not in root:
            create_staging(root)
        from BTrees.LOBTree import LOBTree

        trees, heads = root[STAGING], root[HEADS]
        tree = trees.get(hub)
        if tree is None:
            tree = trees[hub] = LOBTree()
        head = heads.get(hub)
        if head is None:
            head = heads[hub] = StagingHead(_max_key(tree))
        head.last += 1  # written by every staging transaction: the fence against reclaim_staging
        state = _TxnStage(Staged())
        tree[head.last] = state.record
        txn.set_data(_TxnStage, state)
    cursor = max(now_us(), state.last + 1)  # provisional: the sequencer gives the store-wide one
    state.last = cursor
    at = at if at is not None else cursor
    state.record.entries.append((kind, customer_id, event_type, channel, at, interaction_key, segments, detail))
    return Change(cursor, kind, customer_id, event_type, channel, at, interaction_key, segments, detail)


def pending(folders: Folders) -> bool:
    """Whether any hub has staged entries not sequenced yet (a cheap read before :func:`sequence`)."""
    trees, positions = folders.root.get(STAGING), folders.root.get(POSITIONS)
    if trees is None:
        return False
    return any(_max_key(tree) > positions.get(hub, 0) for hub, tree in trees.items())


def sequence(folders: Folders, limit: int = 5000) -> list[Change]:
    """Move staged entries of every hub into ``changes`` in commit order (in the current
    transaction, on the ``feed`` lease holder's writer); returns the entries with their cursors."""
    trees, positions = folders.root.get(STAGING), folders.root.get(POSITIONS)
    if trees is None:
        return []
    records = []
    cutoff = None  # a hub with more than `limit` waiting: nothing committed after its last taken one
    for hub, tree in trees.items():
        taken = 0
        for seq, rec in tree.items(min=positions.get(hub, 0), excludemin=True):
            rec._p_activate()
            records.append((rec._p_serial, hub, seq, rec))
            taken += 1
            if taken >= limit:
                cutoff = rec._p_serial if cutoff is None else min(cutoff, rec._p_serial)
                break
    if cutoff is not None:  # the rest of that hub is sequenced next round, still in commit order
        records = [r for r in records if r[0] <= cutoff]
    records.sort(key=lambda r: r[:3])
    tree = changes_tree(folders)
    state = _txn_feed(folders, tree)
    out: list[Change] = []
    done: dict[str, int] = {}
    for _serial, hub, seq, rec in records:
        for kind, customer_id, event_type, channel, at, key, segments, detail in rec.entries:
            cursor = max(now_us(), state.last + 1)
            state.last = cursor
            change = Change(cursor, kind, customer_id, event_type, channel, at, key, segments, detail)
            _put(tree, state, tuple(change))
            out.append(change)
        done[hub] = seq
    for hub, seq in done.items():
        positions[hub] = seq
    return out


def trim_staging(folders: Folders, hub: str, batch: int = 20_000) -> int:
    """Drop this hub's staged records the sequencer has moved (run on this hub's writer)."""
    trees, positions = folders.root.get(STAGING), folders.root.get(POSITIONS)
    tree = trees.get(hub) if trees is not None else None
    if tree is None:
        return 0
    # the newest record stays even when sequenced: the next seq is counted on from it
    doomed = list(tree.keys(max=min(positions.get(hub, 0), _max_key(tree) - 1)))[:batch]
    for k in doomed:
        del tree[k]
    return len(doomed)


def hub_lease(hub: str) -> str:
    """The lease a hub sharing the store holds while it runs (``shopkeeper.engine.leases``):
    renewed by its feed thread, released at stop, lapsed when it died."""
    return f"hub:{hub}"


#: a staging tree from before the fence (no StagingHead) is reclaimed only after this long quiet
LEGACY_QUIET_US = 24 * 3600 * 1_000_000

#: a hub whose ``hub:`` lease *lapsed* (not released) is reclaimed only this long after: a lapse
#: is what a busy hub shows too (its renewal waits for the group its writer is committing — under
#: load, a group retried after a conflict took longer than the lease's 5 s margin), and reclaiming
#: a live hub costs it a conflict and its whole group applied again (benchmarks §47, §57). Nothing
#: waits for a reclaim — it only tidies the staging of hubs that are gone — so minutes are free.
LAPSED_GRACE_US = 300 * 1_000_000


def reclaim_staging(folders: Folders, now: int | None = None) -> list[str]:
    """Remove the staging of hubs that are gone (on the ``feed`` lease holder's writer): a hub's
    tree, position, head and ``hub:`` lease go when everything it staged is sequenced and its
    lease was released, or lapsed more than :data:`LAPSED_GRACE_US` ago. Returns the hubs reclaimed.

    Why it is safe even if the hub is alive after all (paused past its lease): the reclaim writes
    the hub's :class:`StagingHead`, which each of its staging transactions writes too, so one of
    the two gets a ``ConflictError`` — a staging that commits first leaves a record this retry
    sees unsequenced (nothing reclaimed); one that retries after the reclaim starts a new tree,
    sequenced from seq 1. The pack then collects the unreachable records."""
    from .leases import FOLDER as LEASES

    trees, positions, heads = folders.root.get(STAGING), folders.root.get(POSITIONS), folders.root.get(HEADS)
    if not trees:
        return []
    leases = folders.root.get(LEASES)
    now = now if now is not None else now_us()
    gone = []
    for hub, tree in list(trees.items()):
        last = _max_key(tree)
        if last > positions.get(hub, 0):
            continue  # not all sequenced yet
        lease = leases.get(hub_lease(hub)) if leases is not None else None
        if lease is not None and lease.expires and lease.expires + LAPSED_GRACE_US > now:
            continue  # the hub is alive, or its lease lapsed so lately that it may be only busy
        head = heads.get(hub) if heads is not None else None
        if head is not None:
            head.last = -1  # the fence: conflicts with any staging of this hub since our snapshot
            del heads[hub]
        elif last and now - _commit_us(tree[last]) < LEGACY_QUIET_US:
            continue  # staged by a hub from before the fence: wait until it has long been quiet
        del trees[hub]
        if hub in positions:
            del positions[hub]
        if lease is not None:
            del leases[hub_lease(hub)]
        gone.append(hub)
    return gone


def _commit_us(record: Persistent) -> int:
    from persistent.timestamp import TimeStamp

    record._p_activate()
    return int(TimeStamp(record._p_serial).timeTime() * 1_000_000)


def interaction_processor(folders: Folders, applied: Applied) -> None:
    """Ingestor processor: one ``interaction`` entry per applied event, in its transaction.

    The entry is also put on ``applied.result.outputs`` so the writer can publish it after
    the commit without reading the store again.
    """
    c = applied.customer
    it = applied.interaction
    segs = c.segments
    entry = append(folders, "interaction", c.id, event_type=it.type, channel=it.channel, at=it.ts,
                   interaction_key=it.key, segments=tuple(segs) if segs else ())
    applied.result.outputs.append(entry)


#: an event applied by a processor's fast path writes its own feed entry (``ingest.Processor``)
interaction_processor.covered_by_fast_paths = True  # type: ignore[attr-defined]


def read(folders: Folders, after: int, limit: int = 1000) -> list[Change]:
    """Up to ``limit`` entries with cursor > ``after``, oldest first."""
    out = []
    for e in entries_after(folders, after):
        out.append(e)
        if len(out) >= limit:
            break
    return out


def entries_after(folders: Folders, after: int) -> Iterable[Change]:
    """Every entry with cursor > ``after``, oldest first, loading the records as it goes (for a
    reader that stops on its own: the console's recent segment moves)."""
    tree = changes_tree(folders)
    try:
        start = tree.maxKey(after)  # the record holding ``after`` may hold later entries too
    except ValueError:
        start = None
    for k, v in tree.items(min=start):
        for e in _entries(k, v):
            if e[0] > after:
                yield Change(*e)


def drop(folders: Folders, entries: Iterable[Change]) -> int:
    """Take ``entries`` (appended in the current transaction) out of the feed again: a rule action
    rolled back without a savepoint (``shopkeeper.rules.runtime``). Returns how many were found."""
    tree = changes_tree(folders)
    gone = 0
    for e in entries:
        cursor = getattr(e, "cursor", None)
        if cursor is None:
            continue
        try:
            key = tree.maxKey(cursor)
        except ValueError:
            continue
        value = tree[key]
        if type(value) is tuple:
            if key == cursor:
                del tree[key]
                gone += 1
            continue
        for i, got in enumerate(value):
            if got[0] == cursor:
                del value[i]
                gone += 1
                break
        if not value:
            del tree[key]
    if gone and "changes" in folders.counters:
        folders.count("changes", -gone)
    return gone


def _max_key(tree: Any) -> int:
    try:
        return tree.maxKey()
    except ValueError:  # empty
        return 0


def _last_cursor(tree: Any) -> int:
    """The newest entry's cursor (the last key, or the last entry of the list stored there)."""
    try:
        key = tree.maxKey()
    except ValueError:  # empty
        return 0
    value = tree[key]
    if type(value) is tuple or not value:
        return key
    return value[-1][0]


def latest_cursor(folders: Folders) -> int:
    return _last_cursor(changes_tree(folders))


def oldest_cursor(folders: Folders) -> int:
    try:
        return changes_tree(folders).minKey()
    except ValueError:
        return 0


def trim(folders: Folders, *, older_than_us: int | None, max_entries: int | None, batch: int = 20_000) -> int:
    """Delete entries older than the cutoff and beyond ``max_entries``, oldest first, about ``batch``
    per call; a chunk of several commits (see :func:`_tail`) partly due keeps the rest under its
    new first cursor. Returns the entries deleted."""
    tree = changes_tree(folders)
    doomed: list[int] = []
    n, part, count = 0, None, folders.counter("changes")
    for k, v in tree.items():
        if n >= batch:
            break
        due = 0
        for c in (k,) if type(v) is tuple else [e[0] for e in v]:
            if not ((older_than_us is not None and c < older_than_us)
                    or (max_entries is not None and count - n - due > max_entries)):
                break
            due += 1
        n += due
        if due < (1 if type(v) is tuple else len(v)):
            part = (k, list(v)[due:]) if due else None
            break
        doomed.append(k)
    for k in doomed:
        del tree[k]
    if part is not None:
        del tree[part[0]]
        rest = tree[part[1][0][0]] = FeedChunk()
        rest.entries = part[1]
    if n:
        folders.count("changes", -n)
    return n


# the in-memory tail and the follow loop live beside the feed (``.broker``); their names stay here
from .broker import HEARTBEAT as HEARTBEAT  # noqa: E402
from .broker import Broker as Broker  # noqa: E402
from .broker import follow as follow  # noqa: E402
