"""The :class:`Store`: a Shopkeeper database opened by URI, evolved, and connected per thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import transaction
import ZODB
from ZODB.Connection import Connection
from ZODB.POSException import ConflictError

from .. import audience, ordertable
from .folders import Folders
from .generations import CURRENT_GENERATION, NAMED_STEPS, evolve, evolve_named
from .storages import StoreOptions, _make_storage


class Store:
    """A Shopkeeper database: open once per process, then one connection per thread."""

    def __init__(self, db: ZODB.DB, uri: str, description: str, options: StoreOptions) -> None:
        self.db = db
        self.uri = uri
        self.description = description
        self.options = options
        self._local = threading.local()

    @classmethod
    def open(cls, uri: str, options: StoreOptions | None = None, *,
             target_generation: int = CURRENT_GENERATION) -> Store:
        opts = options or StoreOptions()
        storage, description = _make_storage(uri, opts)
        for attempt in range(5):
            try:
                db = ZODB.DB(
                    storage,
                    cache_size=opts.cache_size,
                    cache_size_bytes=opts.cache_size_bytes,
                    pool_size=opts.pool_size,
                )
                break
            except ConflictError:  # another hub created the root of the same new store first
                if attempt == 4:
                    storage.close()
                    raise
                time.sleep(0.1 * (attempt + 1))
            except Exception:
                storage.close()
                raise
        store = cls(db, uri, description, opts)
        if not opts.read_only:
            tm = transaction.TransactionManager(explicit=True)
            conn = db.open(transaction_manager=tm)
            for attempt in range(5):
                try:
                    evolve(conn, tm, target_generation)
                    if target_generation == CURRENT_GENERATION:
                        evolve_named(conn, tm)
                    break
                except ConflictError:  # another hub opening the same new store evolved it first
                    tm.abort()
                    if attempt == 4:
                        conn.close()
                        db.close()
                        raise
                    time.sleep(0.1 * (attempt + 1))
                except Exception:
                    conn.close()
                    db.close()
                    raise
            conn.close()
        return store

    def evolve_named(self) -> list[str]:
        """Run the named evolve steps registered since the store was opened (features imported
        later, e.g. by loading plugins); call it before any writer runs. Returns their names."""
        if self.options.read_only or not NAMED_STEPS:
            return []
        conn, tm = self.connect()
        try:
            return evolve_named(conn, tm)
        finally:
            conn.close()

    @property
    def generation(self) -> int:
        with self.read() as f:
            return int(f.meta.get("generation", 0))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections --------------------------------------------------------------------

    def connect(self) -> tuple[Connection, transaction.TransactionManager]:
        """A new connection with its own explicit transaction manager (one per thread)."""
        tm = transaction.TransactionManager(explicit=True)
        conn = self.db.open(transaction_manager=tm)
        audience.install(conn, tm)
        ordertable.install(conn, tm)
        return conn, tm

    @contextlib.contextmanager
    def transaction(self, note: str | None = None) -> Iterator[Folders]:
        """Run the block in one transaction: commit on success, abort on any exception."""
        conn, tm = self.connect()
        try:
            tm.begin()
            if note:
                tm.get().note(note)
            try:
                yield Folders(conn)
                tm.commit()
            except BaseException:
                tm.abort()
                raise
        finally:
            conn.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Folders]:
        """A consistent read-only view; anything changed in the block is thrown away."""
        conn, tm = self.connect()
        try:
            tm.begin()
            try:
                yield Folders(conn)
            finally:
                tm.abort()
        finally:
            conn.close()

    # -- maintenance --------------------------------------------------------------------

    def pack(self, days: float = 0.0, t: float | None = None) -> None:
        """Drop object revisions not current at time ``t`` (seconds since 1970; default
        ``days`` ago). In a running hub, call it only through the writer
        (:meth:`shopkeeper.engine.Engine.pack`), which fixes ``t`` after every change
        submitted before the pack has committed. A FileStorage (ours, or a ZEO server's
        :class:`ErasureSafeFileStorage`) keeps no ``Data.fs.old`` and empties its commit buffer,
        so erased personal data does not linger next to the store."""
        if t is None:
            t = time.time() - days * 86400
        self.db.pack(t=t)

    def storage_size(self) -> int:
        return int(self.db.getSize())
