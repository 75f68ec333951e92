"""Backup and restore of a RelStorage store on PostgreSQL: ``pg_dump`` / ``pg_restore``.

Why pg_dump and not a copy through ZODB: the dump is PostgreSQL's own consistent snapshot of
every RelStorage table, restored at database speed. The manifest must describe that same
snapshot while a hub keeps committing, so it is read *inside* it: RelStorage's load connection
runs each ZODB transaction in one REPEATABLE READ snapshot; that snapshot is exported
(``pg_export_snapshot()``) and handed to ``pg_dump --snapshot``, and the manifest is computed on
the same ZODB connection while the dump runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from ..store import Folders, Store, StoreError, StoreOptions
from . import verify

PG_FILE = "shopkeeper.pgdump"


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


def backup(uri: str, d: Path, write_manifest: Callable[..., Any]) -> Any:
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
            man = verify.manifest(folders)
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
