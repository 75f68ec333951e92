"""Copying a store from one storage to another (``shopkeeper storage copy``).

Two ways:

- **every transaction** (the default): ZODB's own ``copyTransactionsFrom``
  (``ZODB.BaseStorage.copy``, what ``zodbconvert`` runs): every transaction of the source, in
  order, replayed with ``restore()`` so that object ids, pickles and transaction ids stay
  exactly as they were. Written out here only to report progress and to copy a range
  (``start``/``stop``), which incremental ZEO backups need. Its cost is the source's *history*:
  an unpacked FileStorage holds every revision of every record (a 1M bulk-built store: 9.5 GB of
  revisions for ~4 GB of current records), and each is sent to the destination.
- **current records only** (``current=True``, ``storage copy --current``): the records reachable
  from the root as of the source's last transaction, found by walking references from the root
  (what a pack keeps), written in large transactions. Object ids and pickles are kept (references
  are object ids, so the copy is the same store); transaction ids are new and no history comes
  along — the shape of a packed store. This is how a large FileStorage goes into PostgreSQL
  (docs/benchmarks.md §79).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from BTrees.LLBTree import LLTreeSet
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import p64, u64, z64

from ..store import StoreError, StoreOptions, _make_storage


@dataclass
class CopyReport:
    transactions: int = 0
    records: int = 0
    bytes: int = 0
    last_tid: bytes = z64
    #: the source transaction the copy is consistent with (``current``: the state as of it)
    source_tid: bytes = z64


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


#: records per transaction of a current-records copy: big enough that commits are a small part of
#: the time, small enough that a transaction's buffered pickles stay well below the memory of a hub
CURRENT_TXN_RECORDS = 20_000
CURRENT_TXN_BYTES = 64 << 20


def copy_current(source: Any, dest: Any, stop: bytes,
                 on_progress: Callable[[CopyReport], None] | None = None,
                 txn_records: int = CURRENT_TXN_RECORDS) -> CopyReport:
    """Write into the empty ``dest`` every record reachable from the root of ``source`` as of
    transaction ``stop`` (its state as of then: ``loadBefore``, so a hub may go on writing the
    source), with its object id, in transactions of up to ``txn_records`` records or
    :data:`CURRENT_TXN_BYTES`. Unreachable records (garbage a pack would drop) are left out.

    The set of oids seen is an ``LLTreeSet`` (~10 B per object: ~35 MB at 1M customers, where a
    Python set of ints would take ~250 MB); the walk is depth-first, so a customer and its
    sub-objects tend to land in one transaction."""
    report = CopyReport(source_tid=stop)
    before = after(stop)
    seen = LLTreeSet()
    seen.insert(0)
    todo = [z64]
    txn: TransactionMetaData | None = None
    in_txn = in_bytes = 0

    def finish() -> None:
        nonlocal txn, in_txn, in_bytes
        if txn is None:
            return
        dest.tpc_vote(txn)
        report.last_tid = dest.tpc_finish(txn) or report.last_tid
        report.transactions += 1
        txn, in_txn, in_bytes = None, 0, 0
        if on_progress is not None:
            on_progress(report)

    try:
        while todo:
            oid = todo.pop()
            got = source.loadBefore(oid, before)
            if got is None:
                raise POSKeyError(oid)  # referenced as of ``stop`` but absent then: a damaged source
            data = got[0]
            if txn is None:
                txn = TransactionMetaData(b"", f"shopkeeper storage copy --current of {stop.hex()}".encode())
                dest.tpc_begin(txn)
            dest.store(oid, z64, data, "", txn)  # a new object in the empty destination
            report.records += 1
            report.bytes += len(data)
            in_txn += 1
            in_bytes += len(data)
            for ref in referencesf(data):
                if seen.insert(u64(ref)):
                    todo.append(ref)
            if in_txn >= txn_records or in_bytes >= CURRENT_TXN_BYTES:
                finish()
        finish()
    except BaseException:
        if txn is not None:
            dest.tpc_abort(txn)
        raise
    return report


def last_committed(storage: Any) -> bytes:
    """The last transaction ``storage`` can read. A FileStorage opened read-only while its writer
    is between vote and finish reports that writer's transaction as ``lastTransaction()`` (ZODB's
    ``read_index`` sets it before it sees the unfinished status) without indexing its records, so
    a copy "as of" it silently held the transaction before (seen in
    ``test_current_copy_of_a_served_store_is_its_state_as_of_one_transaction``). The transaction
    that ends where the storage's index ends is the one it holds."""
    pos, name = getattr(storage, "_pos", None), getattr(storage, "_file_name", None)
    if pos is None or name is None or pos <= 4:
        return storage.lastTransaction()
    with open(name, "rb") as fh:
        fh.seek(pos - 8)
        tl = u64(fh.read(8))
        fh.seek(pos - 8 - tl)
        return fh.read(8)


def open_storage(uri: str, read_only: bool) -> tuple[Any, str]:
    """The raw ZODB storage behind ``uri`` (no database, no evolve steps: a copy keeps bytes as they are)."""
    return _make_storage(uri, StoreOptions(read_only=read_only))


def copy_storage(src_uri: str, dst_uri: str, on_progress: Callable[[CopyReport], None] | None = None,
                 on_start: Callable[[int], None] | None = None, current: bool = False) -> CopyReport:
    """Copy every transaction of the store at ``src_uri`` (with ``current``: only its current
    records, see :func:`copy_current`) into the **empty** storage at ``dst_uri``.

    The source is only read (a hub may keep serving it); the copy is consistent as of the
    source's last transaction when the copy started. ``on_start`` gets the source's size in
    bytes (a progress bar's total; with ``current`` the copy writes less than that)."""
    source, src_desc = open_storage(src_uri, read_only=True)
    try:
        dest, dst_desc = open_storage(dst_uri, read_only=False)
        try:
            if not is_empty(dest):
                raise StoreError(f"{dst_uri}: {dst_desc} is not empty; copy into an empty storage "
                                 "(a copy replays every transaction with its original ids)")
            stop = last_committed(source) if current else source.lastTransaction()
            if on_start is not None:
                on_start(int(source.getSize()))
            if stop in (None, z64):
                return CopyReport()
            if current:
                return copy_current(source, dest, stop, on_progress=on_progress)
            return copy_transactions(source, dest, stop=stop, on_progress=on_progress)
        finally:
            dest.close()
    finally:
        source.close()
