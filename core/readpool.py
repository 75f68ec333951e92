"""A bounded pool of read connections that stay open, for a server answering many small reads.

``Store.read()`` opens a connection from ZODB's pool, begins a transaction, builds the root
folders, then aborts and closes again: fine for a CLI, but for a hub answering hundreds of
``GetCustomer``/``Decide`` calls a second that round trip (``DB.open``, the transaction
manager's synchronizer registration, ``conn.root()`` and eight root lookups, ``close`` with its
callbacks) was a tenth of the servicer's CPU per request. Here each of at most ``size``
connections keeps its own explicit transaction manager and its :class:`~shopkeeper.store.Folders`;
a read only begins and aborts a transaction on it (``begin`` is what brings in other
transactions' invalidations, so every read still sees a consistent, current snapshot).

The most recently returned connection is handed out first (its cache is the warmest), and at
most ``size`` reads run at once — more wait for a connection: a warm one soon beats a new one
whose cache is empty (each request would load every record from disk).

Each connection's cache is bounded by ``cache_objects`` loaded objects (``limits.read_cache_objects``
in the hub), not by the store's default for every connection: the pool multiplies it by ``size``,
and ZODB's other bound, ``cache_size_bytes``, counts pickle bytes where a loaded customer takes
several times that in the heap (docs/benchmarks.md §55, §59). So the read caches together hold at
most ``size × cache_objects`` objects, whatever the store's size or the read pattern.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from ZODB.utils import z64

from .store import Folders, Store


class ReadPoolClosed(Exception):
    """The pool was closed (the hub is stopping): no new reads."""


class _Slot:
    __slots__ = ("conn", "tm", "folders", "root")

    def __init__(self, store: Store, cache_objects: int | None = None) -> None:
        self.conn, self.tm = store.connect()
        if cache_objects is not None:
            # as ``DB.setCacheSize`` sets it on pooled connections; trimmed at each read's abort
            self.conn._cache.cache_size = cache_objects
        self.folders: Folders | None = None
        self.root: Any = None

    def begin(self) -> Folders:
        self.tm.begin()
        root = self.root
        # The root mapping only changes when an evolve step adds a folder; an invalidated root is
        # a ghost again (``_p_changed is None``), and the folders are then looked up afresh.
        if self.folders is None or root._p_changed is None:
            self.folders = Folders(self.conn)
            self.root = self.conn.get(z64)
        return self.folders

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.tm.abort()
        # back in the database's pool, the connection may serve a writer: the store's own bound again
        self.conn._cache.cache_size = self.conn.db().getCacheSize()
        self.conn.close()


class ReadPool:
    """At most ``size`` read transactions at once, each on a pooled connection that stays open."""

    def __init__(self, store: Store, size: int, cache_objects: int | None = None) -> None:
        self.store = store
        self.size = max(1, size)
        #: loaded objects each connection keeps between reads (None: the store's ``cache_size``)
        self.cache_objects = None if cache_objects is None else max(1, cache_objects)
        self._idle: list[_Slot] = []  # a stack: the last one returned is the warmest
        self._made = 0
        self._closed = False
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def read(self) -> Iterator[Folders]:
        """A consistent read-only view; anything changed in the block is thrown away."""
        slot = self._take()
        clean = False
        try:
            folders = slot.begin()
            try:
                yield folders
            finally:
                slot.tm.abort()
                clean = True
        finally:
            self._give(slot, clean)

    def _take(self) -> _Slot:
        with self._cond:
            while True:
                if self._closed:
                    raise ReadPoolClosed("the store's read pool is closed (shutting down)")
                if self._idle:
                    return self._idle.pop()
                if self._made < self.size:
                    self._made += 1
                    break
                self._cond.wait()
        try:
            return _Slot(self.store, self.cache_objects)
        except BaseException:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def _give(self, slot: _Slot, clean: bool) -> None:
        """Back on the stack (also after the block raised: its abort has run), unless its
        ``begin`` or ``abort`` failed or the pool is closed: then it is closed, and a new one
        is made when needed."""
        with self._cond:
            if clean and not self._closed:
                self._idle.append(slot)
                self._cond.notify()
                return
            self._made -= 1
            self._cond.notify()
        slot.close()

    def close(self) -> None:
        """Close every idle connection; those in use are closed when their read ends."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._made -= len(idle)
            self._cond.notify_all()
        for slot in idle:
            slot.close()
