"""The change feed: committed changes, persisted with the changes that caused them.

Every change the hub commits (an interaction recorded, an identity attached, a consent set,
a merge, an erasure) gets one compact entry in the store's ``changes`` ``LOBTree``
(generation 3), written *in the same transaction* as the change itself, so the feed never
claims what did not commit and never misses what did. The key is the entry's **cursor**:
microseconds since the epoch, made strictly increasing, so cursors order the feed and
also date it (retention trims by age).

After the commit the writer hands the new entries to a :class:`Broker`, which keeps the
most recent ones in memory and wakes live ``Watch`` streams; a watcher that fell behind
the in-memory window (or resumes from an old cursor after a restart) reads the store.

This module is domain code: it does not import gRPC.
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

from persistent import Persistent

from ..customer import now_us
from ..store import Folders
from .ingest import Applied

# pickle aliases too: staging written before engine.records names these classes by this module
from .records import Staged as Staged
from .records import StagingHead as StagingHead

#: Every kind of change-feed entry (documented for ``Watch`` in docs/api.md, "Change-feed kinds").
#: All but ``admin`` are about one customer (``customer_id``); ``admin`` entries are store-wide
#: (``customer_id`` empty, ``event_type`` says what: :data:`ADMIN_ACTS`), so a ``Watch`` filtered
#: by customers or segments never sees them.
KINDS = ("interaction", "identify", "consent", "merge", "unmerge", "forget", "segment_entered", "segment_left",
         "customer_rules", "outbox", "import", "soft_fact", "admin")

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
    """What the feed knows about the current transaction: its last cursor and how many
    entries it added (the ``changes`` counter is bumped once, just before the commit)."""

    __slots__ = ("last", "added")

    def __init__(self, last: int) -> None:
        self.last = last
        self.added = 0


def _txn_feed(folders: Folders, tree: Any) -> _TxnFeed:
    txn = folders.conn.transaction_manager.get()
    try:
        return txn.data(_TxnFeed)
    except KeyError:
        pass
    state = _TxnFeed(_max_key(tree))  # one tree lookup per transaction, not per entry
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
    tree = changes_tree(folders)
    state = _txn_feed(folders, tree)
    cursor = now_us()
    if state.last >= cursor:  # clock went back, or several entries in one µs
        cursor = state.last + 1
    state.last = cursor
    entry = Change(cursor, kind, customer_id, event_type, channel, at if at is not None else cursor,
                   interaction_key, tuple(segments), detail)
    tree[cursor] = entry[1:]  # (kind, customer_id, event_type, channel, at, interaction_key, segments, detail)
    state.added += 1
    return entry


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
            tree[cursor] = (kind, customer_id, event_type, channel, at, key, segments, detail)
            state.added += 1
            out.append(Change(cursor, kind, customer_id, event_type, channel, at, key, segments, detail))
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


def reclaim_staging(folders: Folders, now: int | None = None) -> list[str]:
    """Remove the staging of hubs that are gone (on the ``feed`` lease holder's writer): a hub's
    tree, position, head and ``hub:`` lease go when everything it staged is sequenced and its
    lease has expired (or was released). Returns the hubs reclaimed.

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
        if lease is not None and lease.expires > now:
            continue  # the hub is alive
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
    entry = append(folders, "interaction", c.id, event_type=it.type, channel=it.channel, at=it.ts,
                   interaction_key=it.key, segments=c.segments.keys() if c.segments else ())
    applied.result.outputs.append(entry)


#: an event applied by a processor's fast path writes its own feed entry (``ingest.Processor``)
interaction_processor.covered_by_fast_paths = True  # type: ignore[attr-defined]


def read(folders: Folders, after: int, limit: int = 1000) -> list[Change]:
    """Up to ``limit`` entries with cursor > ``after``, oldest first."""
    out = []
    for k, v in changes_tree(folders).items(min=after, excludemin=True):
        out.append(Change(k, *v))
        if len(out) >= limit:
            break
    return out


def _max_key(tree: Any) -> int:
    try:
        return tree.maxKey()
    except ValueError:  # empty
        return 0


def latest_cursor(folders: Folders) -> int:
    return _max_key(changes_tree(folders))


def oldest_cursor(folders: Folders) -> int:
    try:
        return changes_tree(folders).minKey()
    except ValueError:
        return 0


def trim(folders: Folders, *, older_than_us: int | None, max_entries: int | None, batch: int = 20_000) -> int:
    """Delete entries older than the cutoff and beyond ``max_entries``; at most ``batch`` per call."""
    tree = changes_tree(folders)
    doomed: list[int] = []
    if older_than_us is not None:
        for k in tree.keys(max=older_than_us, excludemax=True):
            doomed.append(k)
            if len(doomed) >= batch:
                break
    count = folders.counter("changes") - len(doomed)
    if max_entries is not None and count > max_entries and len(doomed) < batch:
        extra = min(count - max_entries, batch - len(doomed))
        start = doomed[-1] if doomed else None
        for k in tree.keys(min=start, excludemin=start is not None):
            if extra <= 0:
                break
            doomed.append(k)
            extra -= 1
    for k in doomed:
        del tree[k]
    if doomed:
        folders.count("changes", -len(doomed))
    return len(doomed)


class Broker:
    """In-memory tail of the feed and a condition variable live watchers wait on.

    ``floor`` is the highest cursor *not* held in memory: a watcher positioned at or after
    it can be served from memory; one behind it must read the store first.
    """

    def __init__(self, start_cursor: int = 0, capacity: int = 100_000) -> None:
        self._cond = threading.Condition()
        self._entries: list[Change] = []
        self._cursors: list[int] = []
        self.capacity = capacity
        self.floor = start_cursor
        self.latest = start_cursor
        self.closed = False
        self.watchers = 0

    def publish(self, entries: list[Change]) -> None:
        if not entries:
            return
        with self._cond:
            for e in entries:
                if e.cursor <= self.latest:  # already held (a store read raced a publish)
                    continue
                self._entries.append(e)
                self._cursors.append(e.cursor)
                self.latest = max(self.latest, e.cursor)
            excess = len(self._entries) - self.capacity
            if excess > self.capacity // 4:  # trim in chunks: amortised O(1) per entry
                self.floor = self._cursors[excess - 1]
                del self._entries[:excess]
                del self._cursors[:excess]
            self._cond.notify_all()

    def covers(self, after: int) -> bool:
        return after >= self.floor

    def after(self, after: int, limit: int = 1000) -> list[Change]:
        """Entries with cursor > ``after`` held in memory (call only when ``covers(after)``)."""
        with self._cond:
            i = bisect.bisect_right(self._cursors, after)
            return self._entries[i:i + limit]

    def wait(self, after: int, timeout: float) -> bool:
        """Block until something newer than ``after`` is published, the broker closes, or timeout."""
        with self._cond:
            if self.latest > after or self.closed:
                return True
            return self._cond.wait_for(lambda: self.latest > after or self.closed, timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


#: what :func:`follow` yields after ``heartbeat`` quiet seconds
HEARTBEAT = "heartbeat"


def follow(broker: Broker, reader: Any, last: int, wanted: Any, active: Any,
           heartbeat: float = 0.0) -> Iterable[Change | tuple[str, int]]:
    """Committed changes after cursor ``last`` that ``wanted(change)`` keeps, then live ones.

    The one loop behind the ``Watch`` RPC and the in-process adapter API, so both see the
    same feed the same way: entries come from the broker's memory when it still holds the
    cursor, else from the store (``reader()`` is a context manager giving ``Folders`` — the
    hub's bounded reads); it ends when ``active()`` turns false or the broker closes.
    With ``heartbeat`` > 0, ``(HEARTBEAT, cursor)`` is yielded after that many quiet seconds.
    """
    quiet_since = time.monotonic()
    while active() and not broker.closed:
        if broker.covers(last):
            batch = broker.after(last)
        else:
            with reader() as f:
                batch = read(f, last, 1000)
            if not batch:  # nothing older left in the store: continue from memory
                last = max(last, broker.floor)
        for e in batch:
            last = e.cursor
            if wanted(e):
                quiet_since = time.monotonic()
                yield e
        if batch:
            continue
        broker.wait(last, timeout=min(1.0, heartbeat) if heartbeat else 1.0)
        if heartbeat and time.monotonic() - quiet_since >= heartbeat:
            quiet_since = time.monotonic()
            yield (HEARTBEAT, last)
