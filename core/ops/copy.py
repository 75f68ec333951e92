"""Copying a store's transactions from one storage to another (``shopkeeper storage copy``).

The loop is ZODB's own ``copyTransactionsFrom`` (``ZODB.BaseStorage.copy``, what ``zodbconvert``
runs): every transaction of the source, in order, replayed with ``restore()`` so that object
ids, pickles and transaction ids stay exactly as they were. Written out here only to report
progress and to copy a range (``start``/``stop``), which incremental ZEO backups need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ZODB.utils import p64, u64, z64

from ..store import StoreError, StoreOptions, _make_storage


@dataclass
class CopyReport:
    transactions: int = 0
    records: int = 0
    bytes: int = 0
    last_tid: bytes = z64


def is_empty(storage: Any) -> bool:
    return storage.lastTransaction() in (None, z64)


def after(tid: bytes) -> bytes:
    """The first transaction id after ``tid`` (iterator bounds are inclusive)."""
    return p64(u64(tid) + 1)


def copy_transactions(source: Any, dest: Any, *, start: bytes | None = None, stop: bytes | None = None,
                      on_progress: Callable[[CopyReport], None] | None = None) -> CopyReport:
    """Replay ``source``'s transactions ``start``..``stop`` (inclusive, None = open) into ``dest``."""
    report = CopyReport()
    it = source.iterator(start, stop)
    try:
        for txn in it:
            dest.tpc_begin(txn, txn.tid, txn.status)
            for r in txn:
                dest.restore(r.oid, r.tid, r.data, "", r.data_txn, txn)
                report.records += 1
                report.bytes += len(r.data or b"")
            dest.tpc_vote(txn)
            dest.tpc_finish(txn)
            report.transactions += 1
            report.last_tid = txn.tid
            if on_progress is not None:
                on_progress(report)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return report


def open_storage(uri: str, read_only: bool) -> tuple[Any, str]:
    """The raw ZODB storage behind ``uri`` (no database, no evolve steps: a copy keeps bytes as they are)."""
    return _make_storage(uri, StoreOptions(read_only=read_only))


def copy_storage(src_uri: str, dst_uri: str, on_progress: Callable[[CopyReport], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> CopyReport:
    """Copy every transaction of the store at ``src_uri`` into the **empty** storage at ``dst_uri``.

    The source is only read (a hub may keep serving it); the copy is consistent as of the
    source's last transaction when the copy started. ``on_start`` gets the source's size in
    bytes (a progress bar's total)."""
    source, src_desc = open_storage(src_uri, read_only=True)
    try:
        dest, dst_desc = open_storage(dst_uri, read_only=False)
        try:
            if not is_empty(dest):
                raise StoreError(f"{dst_uri}: {dst_desc} is not empty; copy into an empty storage "
                                 "(a copy replays every transaction with its original ids)")
            stop = source.lastTransaction()
            if on_start is not None:
                on_start(int(source.getSize()))
            if stop in (None, z64):
                return CopyReport()
            return copy_transactions(source, dest, stop=stop, on_progress=on_progress)
        finally:
            dest.close()
    finally:
        source.close()
