"""The change feed's in-memory tail (:class:`Broker`) and the one loop that follows the feed
(:func:`follow`): what live ``Watch`` streams and in-process adapters wait on after the writer's
commit. Beside :mod:`.feed` (which re-exports both names), which owns the stored feed.

This module is domain code: it does not import gRPC.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .feed import Change, read


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
        #: loops following the feed now (:meth:`following`): ``Watch`` streams, in-process watchers
        self.followers = 0
        #: called when the first follower arrives, before it reads ``latest`` (a shared hub's feed
        #: thread fills this broker only while someone follows: it catches up here, :meth:`skip_to`)
        self.on_first_follower: Callable[[], None] | None = None
        self._attach = threading.Lock()

    @contextlib.contextmanager
    def following(self) -> Iterator[Broker]:
        """Held by whoever follows the feed, from before it reads ``latest`` until it stops. Why:
        on a hub sharing its store, publishing costs a read of the store's feed per round (~7 µs per
        event on a second hub, docs/benchmarks.md §101); with nobody following it is not done, and
        the first follower brings ``latest`` up to the store's before it positions itself, so it
        misses nothing committed after it arrived and replays nothing from before."""
        with self._attach:  # a second follower waits until the first one's catch-up is done
            if not self.followers and self.on_first_follower is not None:
                self.on_first_follower()
            self.followers += 1
        try:
            yield self
        finally:
            with self._attach:
                self.followers -= 1

    def skip_to(self, cursor: int) -> None:
        """Nothing held up to ``cursor``: entries up to it are read from the store (``floor``), later
        ones published from here on. A no-op when the broker is already there."""
        with self._cond:
            if cursor > self.latest:
                self._entries.clear()
                self._cursors.clear()
                self.floor = self.latest = cursor

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
