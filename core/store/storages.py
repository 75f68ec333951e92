"""Storages by URI (FileStorage, memory, ZEO, RelStorage on PostgreSQL) and their options.

Also :class:`ErasureSafeFileStorage`, the FileStorage every ``file://`` store and the ZEO
server use, whose pack leaves no erased personal data beside the store.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from ZODB.FileStorage import FileStorage

from .errors import StoreError


@dataclass
class StoreOptions:
    """Knobs that trade memory for speed. ``cache_size`` (objects) is the bound that holds: a
    loaded object takes 4-8 KB of RSS at 1M customers against ZODB's 1.1-1.5 KB estimate, so
    ``cache_size_bytes`` rarely acts first (docs/benchmarks.md §59). A serving hub bounds its read
    connections separately (``limits.read_cache_objects``, docs/operations.md "Memory")."""

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
