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

from collections.abc import Iterable
from time import time_ns as _time_ns
from typing import Any, NamedTuple

from ..store import Folders, counting
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
    """Before the commit: count the transaction's entries, then put its counts in its chunk instead of
    rewriting the counters' record when that chunk is the pending one (:mod:`shopkeeper.store.counting`)."""
    if state.added:
        folders.count("changes", state.added)
        state.added = 0
    chunk = state.chunk
    if chunk is not None and folders.root["changes"].get(state.first) is chunk:  # (not dropped or rolled back)
        counting.settle(folders.counters, chunk, len(chunk) < TAIL_ENTRIES)


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
            del tree[key]  # (a pending chunk's deltas still count: the counters name the chunk itself)
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
    if doomed or part is not None:  # the counters' pending chunk may go: folded, not kept alive by them
        counting.fold(folders.counters)
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

# one feed across several hubs: staging and the sequencer live beside the feed (``.staging``)
from .staging import _STAGING_HUB as _STAGING_HUB  # noqa: E402
from .staging import HEADS as HEADS  # noqa: E402
from .staging import LAPSED_GRACE_US as LAPSED_GRACE_US  # noqa: E402
from .staging import LEGACY_QUIET_US as LEGACY_QUIET_US  # noqa: E402
from .staging import POSITIONS as POSITIONS  # noqa: E402
from .staging import STAGING as STAGING  # noqa: E402
from .staging import _stage as _stage  # noqa: E402
from .staging import create_staging as create_staging  # noqa: E402
from .staging import hub_lease as hub_lease  # noqa: E402
from .staging import pending as pending  # noqa: E402
from .staging import reclaim_staging as reclaim_staging  # noqa: E402
from .staging import sequence as sequence  # noqa: E402
from .staging import stage_in as stage_in  # noqa: E402
from .staging import trim_staging as trim_staging  # noqa: E402
