"""Backup and restore of a RelStorage store on PostgreSQL: ``pg_dump`` / ``pg_restore``.

Why pg_dump and not a copy through ZODB: the dump is PostgreSQL's own consistent snapshot of
every RelStorage table, restored at database speed. The manifest must describe that same
snapshot while a hub keeps committing, so it is read *inside* it: RelStorage's load connection
runs each ZODB transaction in one REPEATABLE READ snapshot; that snapshot is exported
(``pg_export_snapshot()``) and handed to ``pg_dump --snapshot``, and the manifest is computed on
the same ZODB connection while the dump runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from ..store import Folders, Store, StoreError, StoreOptions
from . import verify

PG_FILE = "shopkeeper.pgdump"

log = logging.getLogger("shopkeeper.ops.pg")


def libpq(uri: str) -> tuple[str, dict[str, str]]:
    """``uri`` as a libpq URI without its password (which goes into ``PGPASSWORD``, not argv)
    or its RelStorage query options, plus the environment for the client tools."""
    p = urlparse(uri)
    env = dict(os.environ)
    netloc = p.netloc
    if p.password:
        env["PGPASSWORD"] = p.password
        netloc = netloc.replace(f":{p.password}@", "@")
    return urlunparse(("postgresql", netloc, p.path, "", "", "")), env


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise StoreError(f"{what} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _export_snapshot(conn: Any) -> str:
    """Export the snapshot RelStorage's load connection reads this ZODB transaction in."""
    storage = conn._storage  # the connection's own MVCC instance of the RelStorage
    lc = getattr(storage, "_load_connection", None)
    cursor = getattr(lc, "cursor", None)
    if cursor is None:
        raise StoreError("this RelStorage version does not expose its load connection: cannot take a "
                         "manifest consistent with pg_dump")
    cursor.execute("SELECT pg_export_snapshot()")
    return str(cursor.fetchone()[0])


def backup(uri: str, d: Path, write_manifest: Callable[..., Any],
           on_progress: Callable[[int], None] | None = None) -> Any:
    dsn, env = libpq(uri)
    out = d / PG_FILE
    tmp = d / (PG_FILE + ".tmp")
    store = Store.open(uri, StoreOptions(read_only=True))
    try:
        conn, tm = store.connect()
        tm.begin()
        try:
            folders = Folders(conn)  # loads the root: the load connection's snapshot is now fixed
            snapshot = _export_snapshot(conn)
            dump = subprocess.Popen(["pg_dump", "-Fc", "--no-owner", f"--snapshot={snapshot}", "-f", str(tmp),
                                     f"--dbname={dsn}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)
            man = verify.manifest(folders, on_progress)
            tid = conn._storage.lastTransaction()
            _, err = dump.communicate()
            if dump.returncode != 0:
                raise StoreError(f"pg_dump failed: {err.strip()}")
        finally:
            tm.abort()
            conn.close()
    finally:
        store.close()
    os.replace(tmp, out)
    return write_manifest(d, "postgresql", uri, tid, man, False)


def restore(dump: Path, uri: str) -> None:
    dsn, env = libpq(uri)
    tables = _run(["psql", "-Atc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", dsn], env,
                  "psql (is the target database empty?)")
    if tables.strip() != "0":
        raise StoreError(f"{uri}: the target database is not empty ({tables.strip()} tables); "
                         "restore into a new, empty database")
    _run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={dsn}", str(dump)], env, "pg_restore")


# -- erasure on PostgreSQL: the rewrite after a pack (docs/operations.md, "Erasure on each storage") --
#
# A history-free RelStorage pack deletes unreachable rows and the erasure overwrote the customer's
# rows, but PostgreSQL only marks old row versions dead: plain VACUUM makes their space reusable
# without zeroing it, so the erased bytes stay readable in the table's files (measured: after erase,
# pack and VACUUM the identity is still in object_state's file), and in WAL segments, which
# PostgreSQL recycles by renaming them, content and all. What removes them without VACUUM FULL's
# long exclusive lock: pg_repack rewrites object_state (and its TOAST table) into new files online
# (locks only briefly at start and swap) and drops the old files; then, with ``wal_recycle = off``,
# two WAL switches and checkpoints unlink every segment written before the rewrite.

REWRITE_TABLE = "object_state"  # the only RelStorage table holding pickles (no blobs in Shopkeeper)


def _pg_repack() -> str:
    from ..servers import pg_bindir

    found = shutil.which("pg_repack")
    if found:
        return found
    bindir = pg_bindir()
    if bindir is not None and (bindir / "pg_repack").exists():
        return str(bindir / "pg_repack")
    raise StoreError("pack.rewrite needs pg_repack on the hub's machine (Debian: postgresql-NN-repack, "
                     "the server's major version) and `CREATE EXTENSION pg_repack` in the database")


def erase_rewrite(uri: str) -> dict[str, float]:
    """After a pack: rewrite ``object_state`` with pg_repack and retire the WAL written before it,
    so no erased row stays in the database's files. Needs a role that may run pg_repack,
    ``pg_switch_wal()`` and ``CHECKPOINT`` (a superuser, or the grants in docs/operations.md) and
    the server set with ``wal_recycle = off`` — refused, naming the setting, otherwise."""
    dsn, env = libpq(uri)
    dbname = urlparse(dsn).path.lstrip("/")
    started = time.monotonic()
    if _run(["psql", "-Atc", "SHOW wal_recycle", dsn], env, "psql").strip() != "off":
        raise StoreError("the server recycles WAL segments (wal_recycle = on), so erased rows stay in "
                         "renamed segments: set wal_recycle = off (ALTER SYSTEM SET wal_recycle = off; "
                         "SELECT pg_reload_conf())")
    u = urlparse(dsn)  # pg_repack takes no connection URI: host, port, user and database apart
    where = [f"--host={u.hostname or 'localhost'}", f"--port={u.port or 5432}", f"--dbname={dbname}"]
    if u.username:
        where.append(f"--username={u.username}")
    # --no-kill-backend: give up (and try at the next pack) rather than cancel a hub's query
    _run([_pg_repack(), "--no-order", "--no-kill-backend", "--wait-timeout=60", f"--table={REWRITE_TABLE}", *where],
         env, "pg_repack")
    for _ in range(2):  # the first checkpoint moves the redo point past the rewrite; the second unlinks
        _run(["psql", "-v", "ON_ERROR_STOP=1", "-Atc", "SELECT pg_switch_wal()", "-c", "CHECKPOINT", dsn],
             env, "psql (pg_switch_wal, CHECKPOINT)")
    log.info("rewrote %s and retired old WAL after the pack", REWRITE_TABLE, extra={"database": dbname})
    return {"rewrite_seconds": time.monotonic() - started}
