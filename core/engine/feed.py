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
from collections.abc import Iterable
from typing import Any, NamedTuple

from ..customer import now_us
from ..store import Folders
from .ingest import Applied

KINDS = ("interaction", "identify", "consent", "merge", "unmerge", "forget", "segment_entered", "segment_left")


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
    """Add one entry to the feed in the current transaction and return it with its cursor."""
    tree = changes_tree(folders)
    state = _txn_feed(folders, tree)
    cursor = now_us()
    if state.last >= cursor:  # clock went back, or several entries in one µs
        cursor = state.last + 1
    state.last = cursor
    entry = Change(cursor, kind, customer_id, event_type, channel, at if at is not None else cursor,
                   interaction_key, tuple(segments), detail)
    tree[cursor] = (kind, customer_id, event_type, channel, entry.at, interaction_key, entry.segments, detail)
    state.added += 1
    return entry


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
