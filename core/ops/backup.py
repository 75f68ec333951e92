"""Online, consistent backups and their restore, by storage (``shopkeeper backup`` / ``restore``).

================  ===========================================================================
storage           how
================  ===========================================================================
FileStorage       ``repozo`` (ZODB's own): full, then incremental files in the backup directory;
                  it reads ``Data.fs`` up to its last committed transaction, so a hub may keep
                  writing. Restore: ``repozo -R``.
ZEO               through the storage: the server's transaction iterator, copied into
                  ``Data.fs`` in the backup directory; the next backup appends the transactions
                  since (incremental). Restore: the transactions replayed into the target.
PostgreSQL        ``pg_dump -Fc`` (one snapshot of the RelStorage database); restore:
(RelStorage)      ``pg_restore`` into an empty database.
================  ===========================================================================

Every backup writes ``manifest.json`` beside it: the counts and a digest per customer of the
store **as of the last transaction the backup holds** (:mod:`.verify`). ``restore --verify``
recomputes them from the restored store and compares, customer by customer.

A backup keeps what was in the store when it was taken, erased customers included: rotate
backups within the erasure deadline you promise (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.utils import u64, z64

from ..store import Folders, StoreError
from . import verify
from .copy import after, copy_storage, copy_transactions, is_empty, open_storage
from .pg import PG_FILE

MANIFEST = "manifest.json"
INFO = "backup.json"
ZEO_FILE = "Data.fs"


@dataclass
class BackupReport:
    kind: str
    directory: Path
    tid: str
    customers: int
    incremental: bool


def kind_of(uri: str) -> str:
    scheme = urlparse(uri).scheme if "://" in uri else "file"
    kinds = {"file": "filestorage", "zeo": "zeo", "postgresql": "postgresql", "postgres": "postgresql"}
    if scheme not in kinds:
        raise StoreError(f"{uri}: cannot back up a {scheme}:// store; back up file://, zeo:// or postgresql:// stores")
    return kinds[scheme]


def file_path(uri: str) -> Path:
    if "://" not in uri:
        return Path(uri).resolve()
    p = urlparse(uri)
    return Path(p.netloc + p.path) if p.netloc else Path(p.path)


def _safe_uri(uri: str) -> str:
    p = urlparse(uri)
    return uri.replace(f":{p.password}@", ":***@") if p.password else uri


# -- manifests ------------------------------------------------------------------------------


Progress = Callable[[int], None] | None


def _manifest_of_storage(storage: Any, at: bytes | None, uri: str = "", workers: int = 1,
                         version: int = verify.DIGEST, on_progress: Progress = None) -> dict[str, Any]:
    """The manifest of an open storage, as of transaction ``at`` (None = the latest); with
    ``workers`` > 1 the digests are computed by that many processes, each opening ``uri``.
    ``on_progress`` gets the number of customers digested so far (every 1,000 or so)."""
    db = ZODB.DB(storage)
    try:
        conn = db.open(at=at) if at is not None else db.open()
        try:
            return verify.manifest_of_uri(uri, at, workers, Folders(conn), version, on_progress)
        finally:
            conn.close()
    finally:
        db.close()


def store_manifest(uri: str, workers: int = 1, version: int = verify.DIGEST,
                   on_progress: Progress = None) -> dict[str, Any]:
    """The manifest of the store at ``uri``, opened read-only (a hub may be serving it; with
    ``workers`` > 1 it must not be: each worker reads its own latest snapshot)."""
    storage, _ = open_storage(uri, read_only=True)
    return _manifest_of_storage(storage, None, uri, workers, version, on_progress)


def _write_manifest(directory: Path, kind: str, source: str, tid: bytes, man: dict[str, Any],
                    incremental: bool) -> BackupReport:
    man = {"kind": kind, "source": _safe_uri(source), "tid": tid.hex(), "taken_at": time.time(), **man}
    for name in (MANIFEST, f"manifest-{tid.hex()}.json"):
        tmp = directory / (name + ".tmp")
        tmp.write_text(json.dumps(man))
        os.replace(tmp, directory / name)
    (directory / INFO).write_text(json.dumps({"kind": kind, "source": _safe_uri(source)}))
    return BackupReport(kind, directory, tid.hex(), len(man["customers"]), incremental)


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise StoreError(f"{directory}: no backup here ({MANIFEST} missing: {exc.strerror})") from exc


# -- backup ---------------------------------------------------------------------------------


def backup(uri: str, directory: str | Path, *, full: bool = False, workers: int = 1,
           on_progress: Progress = None) -> BackupReport:
    """Back up the store at ``uri`` into ``directory`` (created if needed), online. ``workers``:
    processes computing the manifest of a FileStorage or ZEO backup (each reads the backup's own
    transaction); a PostgreSQL manifest is read in pg_dump's snapshot, by one process."""
    kind = kind_of(uri)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    info = d / INFO
    if info.exists():
        had = json.loads(info.read_text()).get("kind")
        if had != kind:
            raise StoreError(f"{d}: holds a {had} backup; back up this {kind} store into another directory")
    if kind == "filestorage":
        return _backup_filestorage(uri, d, full, workers, on_progress)
    if kind == "zeo":
        return _backup_zeo(uri, d, full, workers, on_progress)
    from . import pg

    return pg.backup(uri, d, _write_manifest, on_progress)


def _repozo(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "ZODB.scripts.repozo", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise StoreError(f"repozo {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")


def _last_tid_of_file(path: Path) -> bytes:
    """The id of the last transaction in a FileStorage file or repozo increment: each transaction
    record ends with its own length, so the last one is found from the end."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        if end <= 4:
            return z64
        fh.seek(end - 8)
        tl = u64(fh.read(8))
        fh.seek(end - 8 - tl)
        return fh.read(8)


def _wait_for_a_new_second(d: Path) -> None:
    """repozo names its files by the UTC second they were taken in, and its restore walks them
    newest name first until it meets a full ``.fs``: an increment taken in the same second as the
    file before it sorts *before* that file (``X.deltafs`` < ``X.fs``) and is silently left out
    of restores. So a backup never starts in the second of the newest file already there."""
    names = [p.stem for p in d.iterdir() if p.suffix in (".fs", ".deltafs", ".fsz", ".deltafsz")]
    if not names:
        return
    newest = max(names)
    while time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime()) <= newest:
        time.sleep(0.05)


def _backup_filestorage(uri: str, d: Path, full: bool, workers: int = 1, on_progress: Progress = None) -> BackupReport:
    path = file_path(uri)
    if not path.exists():
        raise StoreError(f"{uri}: no such file")
    before = set(d.glob("*.fs")) | set(d.glob("*.deltafs"))
    _wait_for_a_new_second(d)
    _repozo("-B", "-f", str(path), "-r", str(d), *(["-F"] if full else ["-Q"]))
    files = sorted(set(d.glob("*.fs")) | set(d.glob("*.deltafs")))
    if not files:
        raise StoreError(f"{uri}: repozo wrote no backup file")
    new = sorted(set(files) - before)
    tid = _last_tid_of_file(files[-1])
    # the manifest is read from the live file as of exactly that transaction (read-only: the hub goes on)
    man = _manifest_of_storage(FileStorage(str(path), read_only=True), tid, f"file://{path}", workers,
                               on_progress=on_progress)
    return _write_manifest(d, "filestorage", uri, tid, man, incremental=bool(new) and new[-1].suffix == ".deltafs")


def _backup_zeo(uri: str, d: Path, full: bool, workers: int = 1, on_progress: Progress = None) -> BackupReport:
    target = d / ZEO_FILE
    if full and target.exists():
        for suffix in ("", ".index", ".tmp", ".lock"):
            Path(str(target) + suffix).unlink(missing_ok=True)
    source, _ = open_storage(uri, read_only=True)
    try:
        dest = FileStorage(str(target))
        try:
            incremental = not is_empty(dest)
            stop = source.lastTransaction()
            start = after(dest.lastTransaction()) if incremental else None
            if stop not in (None, z64) and (start is None or start <= stop):
                copy_transactions(source, dest, start=start, stop=stop)
        finally:
            dest.close()
    finally:
        source.close()
    dest = FileStorage(str(target), read_only=True)
    tid = dest.lastTransaction()
    # the server's transactions verbatim
    man = _manifest_of_storage(dest, None, f"file://{target}", workers, on_progress=on_progress)
    return _write_manifest(d, "zeo", uri, tid, man, incremental)


# -- restore --------------------------------------------------------------------------------


def restore(directory: str | Path, uri: str, on_progress: Callable[[Any], None] | None = None) -> str:
    """Restore the latest backup in ``directory`` into the **empty** store at ``uri``; return its kind."""
    d = Path(directory)
    man = read_manifest(d)
    kind = man["kind"]
    target = kind_of(uri)
    if kind == "postgresql":
        from . import pg

        if target != "postgresql":
            raise StoreError(f"{d}: a PostgreSQL dump restores into a postgresql:// store, not {uri}")
        pg.restore(d / PG_FILE, uri)
        return kind
    if target == "filestorage" and file_path(uri).exists():
        raise StoreError(f"{uri}: exists; restore into a new file (nothing is overwritten)")
    if kind == "filestorage":
        if target == "filestorage":
            file_path(uri).parent.mkdir(parents=True, exist_ok=True)
            _repozo("-R", "-r", str(d), "-o", str(file_path(uri)))
            # repozo writes no Data.fs.index: open it once read-write so the index is built and saved
            # here, not rebuilt in memory by every read-only opener (--verify's workers, a hub's start)
            # — a full scan of the file each (minutes at 1M customers)
            FileStorage(str(file_path(uri))).close()
            return kind
        with tempfile.TemporaryDirectory() as tmp:  # repozo restores a file; replay it into the target
            _repozo("-R", "-r", str(d), "-o", f"{tmp}/Data.fs")
            copy_storage(f"file://{tmp}/Data.fs", uri, on_progress=on_progress)
        return kind
    if target == "filestorage":
        file_path(uri).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(d / ZEO_FILE, file_path(uri))
        return kind
    copy_storage(f"file://{d / ZEO_FILE}", uri, on_progress=on_progress)
    return kind


def verify_restore(directory: str | Path, uri: str, workers: int = 1,
                   on_progress: Progress = None) -> verify.Comparison:
    """Compare the store at ``uri`` (just restored: nobody writes it) with the backup's manifest,
    customer by customer, the digests computed by ``workers`` processes in the manifest's own
    digest version (a backup taken before version 2 verifies as version 1)."""
    want = read_manifest(Path(directory))
    return verify.compare(want, store_manifest(uri, workers, int(want.get("digest", 1)), on_progress))
