"""The :class:`Store`: a Shopkeeper database opened by URI, evolved, and connected per thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import transaction
import ZODB
from transaction._transaction import Status
from ZODB.Connection import Connection
from ZODB.POSException import ConflictError

from .errors import StoreError
from .folders import Folders
from .generations import CURRENT_GENERATION, EvolveStep, apply_named, evolve, evolve_named, load_keeper
from .storages import StoreOptions, _make_storage

T = TypeVar("T")


class _CommitCount:
    """A transaction synchronizer on every connection :meth:`Store.connect` makes: counts the
    transactions that committed (or failed while committing) through them, so a read connection
    can tell that nothing changed since its snapshot without asking the storage (``ReadPool``)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def beforeCompletion(self, txn: Any) -> None:  # noqa: N802 - ISynchronizer
        pass

    def afterCompletion(self, txn: Any) -> None:  # noqa: N802
        # runs inside commit(), before it returns: before the writer acknowledges the write
        if txn.status in (Status.COMMITTED, Status.COMMITFAILED):
            with self._lock:
                self.n += 1

    def newTransaction(self, txn: Any) -> None:  # noqa: N802
        pass


def _retry_conflicts(tm: transaction.TransactionManager, run: Callable[[], T], attempts: int = 5) -> T:
    """``run()`` the store's evolve steps, again after a ConflictError: another hub opening or
    starting on the same new store ran them first (the steps are idempotent and recorded, so the
    rerun finds them done)."""
    for attempt in range(attempts):
        try:
            return run()
        except ConflictError:
            tm.abort()
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")



def _release(conn: Connection) -> None:
    """Close the connection an evolve ran on, its cache emptied first. Why: a closed connection goes
    back to the database's pool with its cache, and the next ``db.open`` (the hub's writer or a
    read connection) takes it; after a step that walked every customer, that cache held up to
    50,000 objects — on a 100k store a hub opened at 1.5 GB (docs/benchmarks.md §55)."""
    conn.cacheMinimize()
    conn.close()


class Store:
    """A Shopkeeper database: open once per process, then one connection per thread.

    ``steps`` are the plugins' named evolve steps (``shopkeeper.plugins.evolve_steps(pm)``):
    run at open when missing, and their ``keep`` hooks installed on every connection. The
    engine adds its plugins' steps when it starts (:meth:`add_steps`); an offline tool passes
    them to :meth:`open` (``cli_common.open_store_or_exit`` does). An index a step keeps current
    on every write (``keep``) is kept by every process that writes: the store records its keeper
    by name (``meta['kept']``) and loads it at open even when no steps were passed, as a pickle
    names its class; this package itself imports no plugin."""

    def __init__(self, db: ZODB.DB, uri: str, description: str, options: StoreOptions) -> None:
        self.db = db
        self.uri = uri
        self.description = description
        self.options = options
        self._local = threading.local()
        self.steps: dict[str, EvolveStep] = {}
        self._keeps: tuple = ()
        self._kept: dict[str, str] = {}  # steps this store records as kept on every write -> keeper
        self._loaded: dict[str, Any] = {}  # keepers loaded by their recorded name (no steps given)
        #: the ``submit_op`` of the writer holding this store (:meth:`held_by`), None when none runs
        self._writer_submit: Callable[..., Any] | None = None
        self._writer_thread: threading.Thread | None = None
        self._commit_count = _CommitCount()
        #: only this process can change the storage (FileStorage, memory): polling finds nothing new
        #: unless :attr:`commits` moved
        self.single_process = "://" not in uri or uri.split("://", 1)[0] in ("file", "memory", "demo")

    @classmethod
    def open(cls, uri: str, options: StoreOptions | None = None, *,
             target_generation: int = CURRENT_GENERATION, steps: Iterable[EvolveStep] = ()) -> Store:
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
        store._take(steps)
        if not opts.read_only:
            tm = transaction.TransactionManager(explicit=True)
            conn = db.open(transaction_manager=tm)
            def run() -> None:
                evolve(conn, tm, target_generation)
                if target_generation == CURRENT_GENERATION:
                    evolve_named(conn, tm, store.steps.values())

            try:
                _retry_conflicts(tm, run)
            except Exception:
                conn.close()
                db.close()
                raise
            _release(conn)
        store._read_kept()
        return store

    def _take(self, steps: Iterable[EvolveStep]) -> None:
        for step in steps:
            if not isinstance(step, EvolveStep):
                raise TypeError(f"an evolve step must be a shopkeeper.store.EvolveStep, not {step!r}")
            self.steps[step.name] = step
        given = {n: s.keep for n, s in self.steps.items() if s.keep is not None}
        self._keeps = (*given.values(), *(k for n, k in self._loaded.items() if n not in given and k is not None))

    def _read_kept(self) -> None:
        conn = self.db.open(transaction_manager=transaction.TransactionManager(explicit=True))
        try:
            conn.transaction_manager.begin()
            meta = conn.root().get("meta")
            self._kept = dict((meta.get("kept") or {}).items()) if meta is not None else {}
            conn.transaction_manager.abort()
        finally:
            conn.close()
        for name, path in self._kept.items():
            keep = self.steps[name].keep if name in self.steps else None
            if keep is None and name not in self._loaded:
                self._loaded[name] = load_keeper(path)
        self._take(())

    def held_by(self, submit_op: Callable[..., Any] | None, thread: threading.Thread | None = None) -> None:
        """A hub's writer holds this store from now on (its ``submit_op``, on ``thread``), or no
        longer (None). Called by the writer itself (``shopkeeper.engine.writer``): this package
        imports no engine."""
        self._writer_submit = submit_op
        self._writer_thread = thread if submit_op is not None else None

    def add_steps(self, steps: Iterable[EvolveStep] = ()) -> list[str]:
        """Take ``steps`` (the plugins' named steps, the engine's among them, once the engine has
        loaded them) and run those the store has not recorded. Returns the names run.

        Before any writer runs (the engine's start, an offline tool) each step commits in its own
        transaction here. Once a writer holds the store (:meth:`held_by`: a plugin's steps added to
        a running hub) each step is an operation of that writer — the one thread that commits — and
        is published on the change feed as an ``admin`` entry (``event_type`` ``evolve_step``,
        ``detail`` the step's name), so ``Watch`` subscribers and ``shopkeeper_committed`` plugins
        hear of the new folders like of any change. A step that keeps an index current on every
        write (``keep``) is refused then: the writer's open connections would not run its keeper;
        add it before the hub starts (a plugin's ``shopkeeper_evolve_steps``)."""
        submit = self._writer_submit
        if submit is not None and not self.options.read_only:
            return self._add_steps_held(list(steps), submit)
        self._take(steps)
        if self.options.read_only:
            return []
        conn, tm = self.connect(check=False)
        try:
            ran = _retry_conflicts(tm, lambda: evolve_named(conn, tm, self.steps.values()))
        finally:
            _release(conn)
        self._read_kept()
        return ran

    def _add_steps_held(self, steps: list[EvolveStep], submit: Callable[..., Any]) -> list[str]:
        if threading.current_thread() is self._writer_thread:  # it would wait for itself for ever
            raise StoreError(f"{self.uri}: add_steps was called inside a writer operation; call it from "
                             "another thread (a plugin's start-up hook), which submits each step to the writer")
        unkept = sorted(s.name for s in steps if s.keep is not None and self.steps.get(s.name) is not s)
        if unkept:
            raise StoreError(f"{self.uri}: evolve step(s) {', '.join(unkept)} keep an index current on every "
                             "write, which the running hub's writer would not do: restart the hub with the "
                             "plugin installed instead of adding the step to a running store")
        self._take(steps)

        def op(folders: Folders, changes: Any, step: EvolveStep) -> bool:
            done = apply_named(folders.root, step)
            if done and changes is not None:
                changes.add("admin", "", event_type="evolve_step", detail=step.name)
            return bool(done)

        ran = [s.name for s in list(self.steps.values())
               if submit(lambda f, ch, step=s: op(f, ch, step)).result()]
        self._read_kept()
        return ran

    @property
    def commits(self) -> int:
        """Transactions committed through this store's connections in this process (a counter)."""
        return self._commit_count.n

    def change_token(self) -> object:
        """A value that differs after any commit of this process: where only this process writes
        the storage (:attr:`single_process`), its last transaction id (in memory: FileStorage's
        ``_ltid``, whatever connection committed); else :attr:`commits` (commits made through
        :meth:`connect`). A read connection whose snapshot began at the same token has nothing
        new from this process to poll for (``ReadPool``)."""
        return self.db.storage.lastTransaction() if self.single_process else self._commit_count.n

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

    def connect(self, *, check: bool = True) -> tuple[Connection, transaction.TransactionManager]:
        """A new connection with its own explicit transaction manager (one per thread), with the
        ``keep`` hook of every named step installed.

        Refused (:class:`StoreError`) when the store records a step kept on every write (an index)
        whose keeper this process was not given: its writes would leave that data stale. Reads
        (:meth:`read`) and read-only stores are not refused."""
        if check and not self.options.read_only:
            missing = sorted(n for n in self._kept if self._loaded.get(n) is None
                             and (n not in self.steps or self.steps[n].keep is None))
            if missing:
                raise StoreError(
                    f"{self.uri}: this store keeps {', '.join(missing)} current on every write, but "
                    f"{', '.join(sorted({self._kept[n] or '?' for n in missing}))} cannot be imported (is the "
                    "plugin that owns it installed?); writing without it would leave that data stale")
        tm = transaction.TransactionManager(explicit=True)
        tm.registerSynch(self._commit_count)
        conn = self.db.open(transaction_manager=tm)
        for keep in self._keeps:
            keep(conn, tm)
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
        conn, tm = self.connect(check=False)
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
