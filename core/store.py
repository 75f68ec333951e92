"""Opening a Shopkeeper store by URI, its root layout and its schema generations.

The store is a ZODB database. Everything the product knows hangs off a handful of root
folders, all BTrees so that they grow without re-pickling one big object:

=================  =====================================================================
root key           holds
=================  =====================================================================
``customers``      ``OOBTree`` customer id -> :class:`~shopkeeper.customer.Customer`
``identities``     ``OOBTree`` (namespace, normalised value) -> customer id
``idempotency``    legacy (generations 1-5: caller idempotency key -> customer id); emptied by
                   generation 6, which keeps keys in the customers' records (``Customer.has_key``)
``merges``         ``OOBTree`` merge id -> :class:`~shopkeeper.identity.MergeRecord`
``proposals``      ``OOBTree`` proposal id -> proposed merge (when merging is not automatic)
``tombstones``     ``OOBTree`` keyed hash of an erased identity -> erased at (µs)
``counters``       ``OOBTree`` name -> ``BTrees.Length`` (conflict-free under concurrency)
``meta``           ``OOBTree`` generation, store secret, created at
``changes``        ``LOBTree`` cursor -> compact change-feed entry (generation 3; see ``shopkeeper.engine.feed``)
``analysis``       ``OOBTree`` of analysis folders: models, propensities, segment sizes (generation 4)
``rule_timers``    ``OOBTree`` (due µs, customer id, timer id) -> rule: pending rule timers (generation 5)
``audience``       campaign planning's index: each customer's card and each segment's members, kept
                   by a before-commit hook (named step ``audience-index``; ``shopkeeper.audience``)
=================  =====================================================================

Generations: ``meta['generation']`` says which layout a store has; ``Store.open`` runs the
missing numbered evolve steps (:data:`EVOLVE_STEPS`), each in its own transaction, and
refuses a store newer than the code. Feature packages do not add numbered steps here (this
module imports none of them): they contribute **named steps** with
:func:`register_evolve_step` when imported; each runs once per store, after the numbered
ones, in its own transaction, and is recorded by name in ``meta['steps']`` (name -> µs
applied). ``Store.open`` runs those registered by then; the engine runs the rest once its
plugins are loaded (:meth:`Store.evolve_named`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import transaction
import ZODB
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from ZODB.Connection import Connection
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError

from . import audience
from .customer import STATUS_ACTIVE, STATUS_FORGOTTEN, STATUS_MERGED, Customer, now_us


class StoreError(Exception):
    """A store cannot be opened or used as asked; the message says why."""


# -- generations -----------------------------------------------------------------------


def _gen1(root: Any) -> None:
    """The first layout: customers, identity index, idempotency keys, merges, counters."""
    for name in ("customers", "identities", "idempotency", "merges", "counters", "meta"):
        if name not in root:
            root[name] = OOBTree()
    counters = root["counters"]
    for name in ("customers", "interactions", "duplicates"):
        if name not in counters:
            counters[name] = Length()
    meta = root["meta"]
    if "secret" not in meta:
        meta["secret"] = secrets.token_hex(32)
        meta["created_at"] = now_us()


def _gen2(root: Any) -> None:
    """Erasure and proposed merges: tombstones and a proposals folder."""
    for name in ("tombstones", "proposals"):
        if name not in root:
            root[name] = OOBTree()
    if "forgotten" not in root["counters"]:
        root["counters"]["forgotten"] = Length()


def _gen3(root: Any) -> None:
    """The hub's change feed: committed changes by cursor, for ``Watch`` and resuming."""
    from BTrees.LOBTree import LOBTree

    if "changes" not in root:
        root["changes"] = LOBTree()
    if "changes" not in root["counters"]:
        root["counters"]["changes"] = Length()


def _gen4(root: Any) -> None:
    """Analysis and personalisation: models, learned propensities, segment sizes, offer counts.

    Kept as a number so that every store's generation still means what it meant; the folders
    themselves are the named step ``analysis`` that ``shopkeeper.analysis.state`` contributes
    (it runs on stores of any generation that have not recorded it; it is idempotent)."""


def _gen5(root: Any) -> None:
    """Rules: pending rule timers by due time, (due µs, customer id, timer id) -> rule
    (see ``shopkeeper.rules.runtime``), and a counter of failed rule actions."""
    if "rule_timers" not in root:
        root["rule_timers"] = OOBTree()
    if "rule_failures" not in root["counters"]:
        root["counters"]["rule_failures"] = Length()


def _gen6(root: Any, checkpoint: Callable[[], None]) -> None:
    """Exactly-once moves into the customers' own records (issue 10): every idempotency key of the
    wave-1 global index, and every key in a customer's history, goes into that customer's
    ``key_log`` (``Customer.log_key``); then the global index is replaced by an empty one, which
    nothing writes any more. In place, committing every 2,000 customers (``checkpoint``): the
    generation is recorded only at the end, and re-running the step after a crash is harmless."""
    customers = root["customers"]
    for n, c in enumerate(customers.values(), 1):
        if c.status != STATUS_FORGOTTEN:
            for it in c.history.values():
                if it.idempotency_key:
                    c.log_key(it.idempotency_key, it.ts)
        if c.recent_keys is None:
            c.recent_keys = {}
        if n % 2000 == 0:
            checkpoint()
    legacy = root["idempotency"]
    for n, (key, cid) in enumerate(legacy.items(), 1):
        c = customers.get(cid)
        hops = 0
        while c is not None and c.status == STATUS_MERGED and c.merged_into and hops < 64:
            c, hops = customers.get(c.merged_into), hops + 1
        if c is not None and c.status == STATUS_ACTIVE:  # an erased person's keys: the tombstones refuse
            c.log_key(key, 0)
        if n % 20_000 == 0:
            checkpoint()
    root["idempotency"] = OOBTree()


#: Evolve steps in order; generation N is reached by running steps 1..N. A step that takes two
#: arguments gets a ``checkpoint()`` that commits its work so far (large stores, one step).
EVOLVE_STEPS: list[Callable[..., None]] = [_gen1, _gen2, _gen3, _gen4, _gen5, _gen6]
CURRENT_GENERATION = len(EVOLVE_STEPS)

#: Named evolve steps contributed by feature packages: name -> step(root). Registration order is run order.
NAMED_STEPS: dict[str, Callable[[Any], None]] = {}


def register_evolve_step(name: str, step: Callable[[Any], None]) -> None:
    """Contribute a named, idempotent evolve step ``step(root)`` (call it at import time).

    Why named, not numbered: a feature package (analysis, a third-party plugin) can add the
    root folders it needs without this module importing it and without packages competing
    for the next generation number. Each step runs once per store, in its own transaction,
    and is recorded in ``meta['steps']``; renaming a step runs it again.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"an evolve step needs a name, not {name!r}")
    NAMED_STEPS[name] = step


register_evolve_step("audience-index", audience.build)


def evolve_named(conn: Connection, tm: transaction.TransactionManager) -> list[str]:
    """Run every registered named step the store behind ``conn`` has not recorded; return their names."""
    root = conn.root()
    ran = []
    for name, step in list(NAMED_STEPS.items()):
        tm.begin()
        meta = root["meta"]
        if name in (meta.get("steps") or ()):
            tm.abort()
            continue
        step(root)
        if "steps" not in meta:
            meta["steps"] = OOBTree()
        meta["steps"][name] = now_us()
        tm.get().note(f"shopkeeper: evolve step {name}")
        tm.commit()
        ran.append(name)
    return ran


def evolve(conn: Connection, tm: transaction.TransactionManager, target: int = CURRENT_GENERATION) -> int:
    """Bring the store behind ``conn`` to generation ``target``; return the generation before."""
    root = conn.root()
    meta = root.get("meta")
    found = int(meta.get("generation", 0)) if meta is not None else 0
    if found > CURRENT_GENERATION:
        raise StoreError(
            f"store is at generation {found} but this Shopkeeper only knows up to "
            f"{CURRENT_GENERATION}; upgrade Shopkeeper before opening it"
        )
    def checkpoint() -> None:
        tm.commit()
        tm.begin()

    for gen in range(found + 1, target + 1):
        tm.begin()
        step = EVOLVE_STEPS[gen - 1]
        if step.__code__.co_argcount == 2:
            step(root, checkpoint)
        else:
            step(root)
        root["meta"]["generation"] = gen
        tm.get().note(f"shopkeeper: evolve to generation {gen}")
        tm.commit()
    return found


# -- folders bound to one connection ---------------------------------------------------


class Folders:
    """The root folders as seen through one connection (one thread)."""

    __slots__ = ("conn", "root", "customers", "identities", "idempotency", "merges", "proposals",
                 "tombstones", "counters", "meta")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        root = self.root = conn.root()
        self.customers: OOBTree = root["customers"]
        self.identities: OOBTree = root["identities"]
        self.idempotency: OOBTree = root["idempotency"]
        self.merges: OOBTree = root["merges"]
        # folders added by later generations are None on a store that is not evolved yet
        self.proposals: OOBTree = root.get("proposals")
        self.tombstones: OOBTree = root.get("tombstones")
        self.counters: OOBTree = root["counters"]
        self.meta: OOBTree = root["meta"]

    def count(self, name: str, delta: int = 1) -> None:
        self.counters[name].change(delta)

    def counter(self, name: str) -> int:
        c = self.counters.get(name)
        return c() if c is not None else 0

    def customer(self, customer_id: str, follow_merges: bool = True) -> Customer | None:
        """The customer with this id; an absorbed id leads to the survivor."""
        c = self.customers.get(customer_id)
        hops = 0
        while follow_merges and c is not None and c.status == STATUS_MERGED and c.merged_into and hops < 64:
            c = self.customers.get(c.merged_into)
            hops += 1
        return c

    def customer_by_identity(self, namespace: str, value: str) -> Customer | None:
        cid = self.identities.get((namespace, value))
        return self.customer(cid) if cid is not None else None

    def new_customer_id(self) -> str:
        while True:
            cid = secrets.token_hex(8)
            if cid not in self.customers:
                return cid

    def add_customer(self, customer: Customer) -> Customer:
        if customer.id in self.customers:
            raise StoreError(f"customer id {customer.id!r} already exists")
        self.customers[customer.id] = customer
        self.conn.add(customer)  # a new customer is in the transaction's added objects (audience index)
        self.count("customers")
        return customer


# -- opening by URI --------------------------------------------------------------------


@dataclass
class StoreOptions:
    """Knobs that trade memory for speed; the defaults keep a hub under ~1 GB at 1M customers."""

    cache_size: int = 50_000  # objects kept per connection between transactions
    cache_size_bytes: int = 256 * 1024 * 1024  # and the same cache bounded in bytes
    pool_size: int = 16  # connections kept open for threads to reuse
    read_only: bool = False


def _make_storage(uri: str, opts: StoreOptions) -> tuple[Any, str]:
    """Build a ZODB storage for ``uri`` and return it with a printable description."""
    if "://" not in uri:
        uri = "file://" + str(Path(uri).resolve())
    parsed = urlparse(uri)
    scheme = parsed.scheme
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if scheme == "file":
        path = Path(parsed.netloc + parsed.path) if parsed.netloc else Path(parsed.path)
        if not path.name:
            raise StoreError(f"{uri}: a file:// URI must name the storage file, e.g. file:///var/lib/shopkeeper/Data.fs")
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            storage = ErasureSafeFileStorage(str(path), read_only=opts.read_only)
        except Exception as exc:  # locked by another process, unreadable, corrupt
            raise StoreError(f"{uri}: cannot open FileStorage: {exc}") from exc
        return storage, f"FileStorage {path}"
    if scheme == "memory":
        from ZODB.MappingStorage import MappingStorage

        return MappingStorage(parsed.netloc or "memory"), "MappingStorage (in memory, not durable)"
    if scheme == "demo":
        from ZODB.DemoStorage import DemoStorage

        return DemoStorage(), "DemoStorage (in memory, not durable)"
    if scheme == "zeo":
        from ZEO.ClientStorage import ClientStorage

        if parsed.hostname:
            addr: Any = (parsed.hostname, parsed.port or 8100)
        else:
            addr = parsed.path
        try:
            storage = ClientStorage(
                addr,
                storage=query.get("storage", "1"),
                wait_timeout=float(query.get("timeout", "30")),
                read_only=opts.read_only,
                cache_size=int(query.get("cache_size", str(64 * 1024 * 1024))),
            )
        except Exception as exc:
            raise StoreError(f"{uri}: cannot connect to ZEO server: {exc}") from exc
        return storage, f"ZEO {addr}"
    if scheme in ("postgresql", "postgres"):
        try:
            from relstorage.adapters.postgresql import PostgreSQLAdapter  # type: ignore[import-not-found]
            from relstorage.options import Options  # type: ignore[import-not-found]
            from relstorage.storage import RelStorage  # type: ignore[import-not-found]
        except ImportError as exc:
            raise StoreError(
                f"{uri}: PostgreSQL storage needs RelStorage; install it with "
                "`pip install 'shopkeeper[postgresql]'`"
            ) from exc
        options = Options(keep_history=False, read_only=opts.read_only, **_relstorage_options(uri, query))
        adapter = PostgreSQLAdapter(dsn=_pg_dsn(parsed), options=options)
        for attempt in range(5):
            try:
                storage = RelStorage(adapter, options=options)
                break
            except Exception as exc:  # server down, database missing, authentication refused
                if "already exists" in str(exc) and attempt < 4:
                    # several hubs started at once on an empty database race to create RelStorage's
                    # schema; the loser finds it made by the winner when it tries again
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise StoreError(f"{uri}: cannot open the PostgreSQL store: {str(exc).strip()}") from exc
        return storage, f"RelStorage PostgreSQL {parsed.hostname}:{parsed.port or 5432}{parsed.path} (history-free)"
    raise StoreError(
        f"{uri}: unknown storage scheme {scheme!r}; use file:///path/Data.fs, memory://, "
        "zeo://host:port or postgresql://user@host/db"
    )


#: ``postgresql://`` URI query parameters -> (RelStorage option, type, default). RelStorage's own
#: defaults (a 10 MB pickle cache) suit a small site; a hub re-reads its hot customers all day,
#: so the local cache is larger by default. See docs/scaleout.md.
RELSTORAGE_QUERY: dict[str, tuple[str, type, Any]] = {
    "cache_local_mb": ("cache_local_mb", int, 256),  # the process-wide pickle cache shared by its connections
    "cache_local_object_max": ("cache_local_object_max", int, 16384),  # larger pickles are not cached
    "cache_local_dir": ("cache_local_dir", str, None),  # persist the cache there at close: warm restarts
    "cache_prefix": ("cache_prefix", str, None),  # names the cache files (one per database)
    "cache_delta_size_limit": ("cache_delta_size_limit", int, None),  # polled invalidations kept in memory
    "commit_lock_timeout": ("commit_lock_timeout", int, 30),  # seconds a commit waits for the lock
}


def _relstorage_options(uri: str, query: dict[str, str]) -> dict[str, Any]:
    """RelStorage options from the URI's query (``-`` or ``_`` in names); an unknown one is an error."""
    out: dict[str, Any] = {}
    for raw, value in query.items():
        name = raw.replace("-", "_")
        if name not in RELSTORAGE_QUERY:
            raise StoreError(f"{uri}: unknown PostgreSQL store option {raw!r}; known: "
                             + ", ".join(sorted(k.replace("_", "-") for k in RELSTORAGE_QUERY)))
        option, kind, _ = RELSTORAGE_QUERY[name]
        try:
            out[option] = kind(value)
        except ValueError:
            raise StoreError(f"{uri}: option {raw!r} must be {kind.__name__}, not {value!r}") from None
    for option, _kind, default in RELSTORAGE_QUERY.values():
        if option not in out and default is not None:
            out[option] = default
    if out.get("cache_local_dir") and not out.get("cache_prefix"):
        raise StoreError(f"{uri}: cache-local-dir needs cache-prefix (it names this database's cache files)")
    return out


def _pg_dsn(parsed: Any) -> str:
    parts = [f"dbname={parsed.path.lstrip('/')}"]
    if parsed.hostname:
        parts.append(f"host={parsed.hostname}")
    if parsed.port:
        parts.append(f"port={parsed.port}")
    if parsed.username:
        parts.append(f"user={parsed.username}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    return " ".join(parts)


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


class ErasureSafeFileStorage(FileStorage):
    """A FileStorage whose pack leaves no erased personal data in any file beside it.

    FileStorage keeps the pre-pack file as ``Data.fs.old`` unless told not to, and its commit
    buffer ``Data.fs.tmp`` still holds the records of the largest earlier transaction after a
    pack (it is only ever overwritten from the start). Both would keep an erased person's
    records readable. Used for ``file://`` stores and by a ZEO server serving one
    (``shopkeeper storage serve``), where the pack runs in the server's process.
    """

    def __init__(self, file_name: str, **kw: Any) -> None:
        kw["pack_keep_old"] = False
        super().__init__(file_name, **kw)

    def pack(self, t: float, referencesf: Any, gc: bool | None = None) -> Any:
        done = super().pack(t, referencesf, gc)
        old = self._file_name + ".old"
        if os.path.exists(old):
            os.remove(old)
        _clear_commit_buffer(self)
        return done


def _clear_commit_buffer(storage: Any) -> None:
    """Empty FileStorage's ``Data.fs.tmp``: it buffers each transaction's records before they
    are copied into ``Data.fs`` and is only ever overwritten from the start, so after an erasure
    and a pack it still held the erased person's records from an earlier, larger transaction.
    Truncated under the commit lock, which every transaction holds while it uses the buffer."""
    tfile = getattr(storage, "_tfile", None)
    lock = getattr(storage, "_commit_lock", None)
    if tfile is None or lock is None:
        return
    with lock:
        tfile.seek(0)
        tfile.truncate()
        tfile.flush()
        os.fsync(tfile.fileno())
