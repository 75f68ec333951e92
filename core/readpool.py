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

**Affinity** (``read(key=…)``, the hub's ``limits.read_affinity``): a read about one customer names
it, and is served by that key's own connection (:func:`affinity_slot`) when it is idle, else by the
warmest idle one. Without it every connection served every customer under load, so a popular
customer was loaded and unpickled once per connection and each cache held the same hot customers:
the effective cache was ``1/size`` of the memory spent (docs/benchmarks.md §91).

A key's connection is chosen by **range**, not by hash: the pool cuts the key space of the tree
the key is looked up in (an identity in ``identities``, a customer id in ``customers``) at that
tree's root separators into ``size`` equal shares. So each connection also walks only its share of
the tree's interior nodes — at 10M customers a tree has ~5,000-10,000 interior nodes of ~125
children each, and loading one costs ~125 ghosts (CPU) which it then pins in the cache (RSS): hashed
keys made every connection load and pin every node.

**Polls only when something changed** (``poll_interval``, the hub's ``limits.read_poll_interval``):
a read's ``begin`` is what brings in other transactions' changes, and on RelStorage it is a
``BEGIN``, a poll query and, at the read's end, a ``ROLLBACK``: three round trips to PostgreSQL,
~0.26 of ~1.1 ms of the hub's CPU per cold read at 10M (docs/benchmarks.md §99, §107). A connection whose
last read changed nothing keeps its snapshot open instead, and the next read on it reuses that
snapshot while **this process** committed nothing since it began (:meth:`Store.change_token`:
exact, as the writer acknowledges a write only after its commit) and — on a storage other
processes write too (PostgreSQL, ZEO) — it is younger than ``poll_interval`` seconds, which bounds
how late **another process's** commits (a second hub, a CLI import) are seen. ``0``, the default,
polls at every read there, as before; a storage only this process writes (FileStorage, memory)
needs no bound and never polls in vain. An idle connection's snapshot is ended once older than the
bound (:meth:`ReadPool.expire`), so PostgreSQL is not left with a transaction open for hours.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from ZODB.utils import z64

from .store import Folders, Store

log = logging.getLogger("shopkeeper.readpool")


class ReadPoolClosed(Exception):
    """The pool was closed (the hub is stopping): no new reads."""


class _Slot:
    __slots__ = ("conn", "tm", "folders", "root", "index", "store", "began", "token")

    def __init__(self, store: Store, cache_objects: int | None = None, index: int = 0) -> None:
        self.index = index  # its place in the pool: the home of the keys affinity_slot maps to it
        self.store = store
        self.began: float | None = None  # monotonic time its open snapshot began; None: none open
        self.token: object = None  # the store's change token when it began
        self.conn, self.tm = store.connect()
        if cache_objects is not None:
            # as ``DB.setCacheSize`` sets it on pooled connections; trimmed at each read's abort
            self.conn._cache.cache_size = cache_objects
        self.folders: Folders | None = None
        self.root: Any = None

    def begin(self, fresh_for: float = 0.0) -> Folders:
        """The folders of a current snapshot: the one still open when no commit of this process
        came since it began and it is younger than ``fresh_for`` seconds, else a new one."""
        if self.began is not None:
            if self.store.change_token() == self.token and time.monotonic() - self.began < fresh_for:
                return self.folders  # type: ignore[return-value]
            self.end()
        self.token = self.store.change_token()  # before the poll: a commit after it is polled next time
        self.tm.begin()
        self.began = time.monotonic()
        root = self.root
        # The root mapping only changes when an evolve step adds a folder; an invalidated root is
        # a ghost again (``_p_changed is None``), and the folders are then looked up afresh.
        if self.folders is None or root._p_changed is None:
            self.folders = Folders(self.conn)
            self.root = self.conn.get(z64)
        return self.folders

    def end(self) -> None:
        """End the snapshot: abort (RelStorage rolls its load connection back)."""
        self.began = None
        self.tm.abort()

    def finish(self, keep: bool) -> None:
        """After a read that did not raise: keep the snapshot open for the next read when ``keep``
        and the read changed nothing (a change must be thrown away), else end it."""
        if keep and not self.conn._registered_objects:
            self.conn._cache.incrgc()  # what the abort's afterCompletion does: trim to the bound
        else:
            self.end()

    def close(self) -> None:
        self.began = None
        with contextlib.suppress(Exception):
            self.tm.abort()
        # back in the database's pool, the connection may serve a writer: the store's own bound again
        self.conn._cache.cache_size = self.conn.db().getCacheSize()
        self.conn.close()


class ReadPool:
    """At most ``size`` read transactions at once, each on a pooled connection that stays open."""

    def __init__(self, store: Store, size: int, cache_objects: int | None = None, affinity: bool = True,
                 poll_interval: float = 0.0) -> None:
        self.store = store
        #: how long a read may reuse a connection's open snapshot while this process committed nothing
        #: (for ever where no other process writes the storage: see the module's docstring)
        self.poll_interval = float("inf") if store.single_process else max(0.0, poll_interval)
        self.size = max(1, size)
        #: loaded objects each connection keeps between reads (None: the store's ``cache_size``)
        self.cache_objects = None if cache_objects is None else max(1, cache_objects)
        #: reads that name a key go to its own connection when it is idle (False: the warmest idle one)
        self.affinity = affinity
        self._slots: list[_Slot | None] = [None] * self.size  # by index; None: not open (yet)
        self._making: set[int] = set()  # indices whose connection is being opened
        self._idle: list[int] = []  # a stack of indices: the last one returned is the warmest
        self._closed = False
        self._cond = threading.Condition()
        #: per part of the key space (an identity namespace; "" for customer ids), the ``size - 1``
        #: keys that cut it into shares (:meth:`home`)
        self._bounds: dict[object, list[Any]] = {}
        self._until_bounds = 0  # reads left before the bounds are taken again (the roots split rarely)
        self._stop = threading.Event()
        if 0 < self.poll_interval < float("inf"):  # idle snapshots on a shared storage end in time
            threading.Thread(target=self._expire_idle, name="shopkeeper-read-expiry", daemon=True).start()

    def home(self, key: object) -> int:
        """The connection a read about ``key`` prefers: its range of the tree when known, else by hash.
        An identity ``(namespace, value)`` is placed among its namespace's keys (each namespace cut
        in ``size``: else the connections whose range held another namespace's keys sat idle)."""
        part = key[0] if isinstance(key, tuple) and key else "" if isinstance(key, str) else None
        bounds = self._bounds.get(part) if part is not None else None
        if bounds:
            try:
                return bisect_right(bounds, key)
            except TypeError:  # a key of another shape than the tree's (a malformed reference)
                pass
        return affinity_slot(key, self.size)

    def _take_bounds(self, folders: Folders) -> None:
        self._until_bounds = BOUNDS_EVERY
        if self.size < 2:
            return
        bounds: dict[object, list[Any]] = {"": cut(root_separators(folders.customers), self.size)}
        by_namespace: dict[object, list[Any]] = {}
        for key in root_separators(folders.identities):
            if isinstance(key, tuple) and key:
                by_namespace.setdefault(key[0], []).append(key)
        for namespace, keys in by_namespace.items():
            bounds[namespace] = cut(keys, self.size)
        self._bounds = bounds

    @property
    def _made(self) -> int:
        """Connections open or being opened."""
        return sum(s is not None for s in self._slots) + len(self._making)

    @contextlib.contextmanager
    def read(self, key: object = None) -> Iterator[Folders]:
        """A consistent read-only view; anything changed in the block is thrown away.

        ``key`` (e.g. the customer reference a request names) picks the connection whose cache
        has that customer when it is idle; a read never waits for it while another one is idle."""
        slot = self._take(self.home(key) if key is not None and self.affinity else None)
        clean = False
        try:
            folders = slot.begin(self.poll_interval)
            if self.affinity:
                self._until_bounds -= 1
                if self._until_bounds <= 0:
                    # only locality hangs on the ranges: a read never fails for want of them
                    with contextlib.suppress(Exception):
                        self._take_bounds(folders)
            try:
                yield folders
            except BaseException:
                slot.end()
                clean = True
                raise
            slot.finish(keep=self.poll_interval > 0)
            clean = True
        finally:
            self._give(slot, clean)

    def _take(self, home: int | None = None) -> _Slot:
        with self._cond:
            while True:
                if self._closed:
                    raise ReadPoolClosed("the store's read pool is closed (shutting down)")
                if home is not None:
                    if home in self._idle:
                        self._idle.remove(home)
                        return self._slots[home]  # type: ignore[return-value]
                    if self._slots[home] is None and home not in self._making:
                        index = home
                        break
                if self._idle:
                    return self._slots[self._idle.pop()]  # type: ignore[return-value]
                index = next((i for i, s in enumerate(self._slots) if s is None and i not in self._making), -1)
                if index >= 0:
                    break
                self._cond.wait()
            self._making.add(index)
        try:
            slot = _Slot(self.store, self.cache_objects, index)
        except BaseException:
            with self._cond:
                self._making.discard(index)
                self._cond.notify()
            raise
        with self._cond:
            self._making.discard(index)
            self._slots[index] = slot
        return slot

    def _give(self, slot: _Slot, clean: bool) -> None:
        """Back on the stack (also after the block raised: its abort has run), unless its
        ``begin`` or ``abort`` failed or the pool is closed: then it is closed, and a new one
        is made when needed."""
        with self._cond:
            if clean and not self._closed:
                self._idle.append(slot.index)
                self._cond.notify()
                return
            if self._slots[slot.index] is slot:
                self._slots[slot.index] = None
            self._cond.notify()
        slot.close()

    def warm_index(self, stop: threading.Event | None = None) -> int:
        """Each connection loads the interior nodes of its own share of the identity index and the
        customers tree (the ranges :meth:`home` cuts), a level at a time with the storage's bulk
        ``prefetch`` (RelStorage: one query per batch); returns the nodes loaded.

        Why: at 10M customers the two trees have ~16,000 bottom interior nodes, and a new hub loads
        them one cold read at a time — 0.48 of a cold read's 1.72 loads after 24,000 reads, none of
        them a reload (docs/benchmarks.md §107): a running hub has them all, a restarted one pays
        for them for its first ~100,000 reads. Loading them at once takes ~5 s of CPU at 10M and
        pins what a running hub pins anyway (the buckets' ghosts). A small tree (root over buckets)
        has nothing to warm. Runs beside reads: it waits for each connection to be idle."""
        if self.size < 2 or not self.affinity:
            return 0
        loaded = 0
        for index in range(self.size):
            if stop is not None and stop.is_set():
                break
            if index == 1 and not loaded:
                break  # the first share had no interior nodes below the roots: nor have the others
            slot = self._take_exact(index)
            if slot is None:
                break
            clean = False
            try:
                folders = slot.begin(self.poll_interval)
                if not self._bounds:
                    with contextlib.suppress(Exception):  # as in read(): only locality hangs on the ranges
                        self._take_bounds(folders)
                for tree in (folders.identities, folders.customers):
                    loaded += self._warm_share(slot, tree)
                slot.finish(keep=self.poll_interval > 0)
                clean = True
            finally:
                if not clean:
                    with contextlib.suppress(Exception):
                        slot.end()
                    clean = True
                self._give(slot, clean)
        return loaded

    def start_warming(self) -> None:
        """:meth:`warm_index` on a daemon thread of its own (the hub, once started); ended by :meth:`close`."""
        threading.Thread(target=self._warm_quietly, name="shopkeeper-read-warm", daemon=True).start()

    def _warm_quietly(self) -> None:
        try:
            self.warm_index(self._stop)
        except Exception:
            if not self._closed:  # a hub stopping under it closes the store: not worth a traceback
                log.warning("warming the read connections' index nodes failed", exc_info=True)

    def _warm_share(self, slot: _Slot, tree: Any) -> int:
        shards = getattr(tree, "shards", None)
        if shards is not None:  # a LaneTree (the customers folder since generation 17): legacy and every lane
            return sum(self._warm_share(slot, t) for t in (tree.legacy, *shards.values()) if t is not None)
        state = tree.__getstate__()
        if not isinstance(state, tuple) or not state or len(state[0]) < 3 or not hasattr(state[0][0], "_p_oid"):
            return 0  # empty, a root over buckets, or not a BTree: nothing to warm
        items = state[0]
        nodes = [child for j, child in enumerate(items[0::2])
                 if self.home(items[2 * j - 1] if j else items[1]) == slot.index]
        loaded = 0
        while nodes and not type(nodes[0]).__name__.endswith("Bucket"):
            below: list[Any] = []
            for k in range(0, len(nodes), WARM_BATCH):
                batch = nodes[k:k + WARM_BATCH]
                slot.conn.prefetch(batch)
                for node in batch:
                    sub = node.__getstate__()  # loads it
                    if sub and sub[0]:
                        below.extend(sub[0][0::2])
                loaded += len(batch)
            nodes = below
        return loaded

    def _take_exact(self, index: int) -> _Slot | None:
        """Connection ``index`` itself (opened if need be), when it is idle; None once the pool closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if index in self._idle:
                    self._idle.remove(index)
                    return self._slots[index]
                if self._slots[index] is None and index not in self._making:
                    break
                self._cond.wait()
        return self._take(index)

    def _expire_idle(self) -> None:
        while not self._stop.wait(self.poll_interval):
            with contextlib.suppress(Exception):  # a connection whose abort failed is closed by _give
                self.expire()

    def expire(self) -> int:
        """End the open snapshot of every idle connection older than ``poll_interval`` (the hub calls
        this periodically on a shared storage); returns how many were ended."""
        if self.poll_interval == float("inf"):
            return 0
        now, ended = time.monotonic(), 0
        with self._cond:
            stale = [i for i in self._idle if (s := self._slots[i]) is not None and s.began is not None
                     and now - s.began >= self.poll_interval]
            for i in stale:
                self._idle.remove(i)
        for i in stale:
            slot = self._slots[i]
            ok = False
            try:
                slot.end()  # type: ignore[union-attr]
                ok = True
                ended += 1
            finally:
                self._give(slot, ok)  # type: ignore[arg-type]
        return ended

    def close(self) -> None:
        """Close every idle connection; those in use are closed when their read ends."""
        self._stop.set()
        with self._cond:
            self._closed = True
            idle = [self._slots[i] for i in self._idle]
            for i in self._idle:
                self._slots[i] = None
            self._idle = []
            self._cond.notify_all()
        for slot in idle:
            slot.close()  # type: ignore[union-attr]


def affinity_slot(key: object, size: int) -> int:
    """The connection a read about ``key`` prefers: the same in every process and run (``repr``
    and CRC-32, not ``hash``, which is salted per process for strings)."""
    return zlib.crc32(repr(key).encode()) % size


#: reads between two looks at the trees' roots for the affinity's ranges
BOUNDS_EVERY = 4096
#: interior nodes fetched in one bulk ``prefetch`` when warming a connection's share (:meth:`ReadPool.warm_index`)
WARM_BATCH = 500


def root_separators(tree: Any) -> list[Any]:
    """The keys between the children of ``tree``'s root, in order; each root child holds about as
    many entries (B-trees split so). Empty for an empty tree or one whose root is a bucket."""
    shards = getattr(tree, "shards", None)
    if shards is not None:  # a LaneTree (the customers folder since generation 17): its lanes' in order
        seps = sorted(root_separators(tree.legacy)) if tree.legacy is not None else []
        for n, (lane, shard) in enumerate(shards.items()):
            seps += [lane] * (n > 0) + root_separators(shard)
        return sorted(seps)
    state = tree.__getstate__()
    if not state or len(state[0]) < 3 or not hasattr(state[0][0], "_p_oid"):
        return []
    return list(state[0][1::2])  # (child, key, child, key, ..., child)


def cut(separators: list[Any], size: int) -> list[Any]:
    """``size - 1`` of ``separators`` that cut their range into ``size`` shares of about as many
    children; empty when there are too few to cut (a small tree: hashing serves as well)."""
    if len(separators) < size - 1 or size < 2:
        return []
    children = len(separators) + 1
    return [separators[children * k // size - 1] for k in range(1, size)]
