"""The store's own counters in one record (generation 9, ``counters-one-record``): what a lone event's
commit writes, the evolve step from an ``OOBTree`` of ``BTrees.Length``, concurrent counts merged
(docs/benchmarks.md §84)."""

from __future__ import annotations

from pathlib import Path

import transaction
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from ZODB.FileStorage import FileStorage
from ZODB.utils import get_pickle_metadata

from shopkeeper.engine.writer import Writer
from shopkeeper.events import validate_event
from shopkeeper.identity import Resolver
from shopkeeper.records import Counters
from shopkeeper.store import Store
from shopkeeper.store.folders import Folders
from shopkeeper.store.storages import StoreOptions

T0 = 1_750_000_000


def _written(path: str, after: bytes) -> tuple[int, dict[str, int]]:
    """(transactions, records by class) written to the FileStorage at ``path`` after ``after``."""
    fs = FileStorage(path, read_only=True)
    try:
        txns, by = 0, {}
        for txn in fs.iterator(start=after):
            if txn.tid == after:
                continue
            txns += 1
            for rec in txn:
                mod, cls = get_pickle_metadata(rec.data)
                by[f"{mod}.{cls}"] = by.get(f"{mod}.{cls}", 0) + 1
        return txns, by
    finally:
        fs.close()


def test_a_lone_events_commit_writes_the_counters_once_per_feed_chunk(tmp_path: Path) -> None:
    """Through the writer (the change feed on), each event alone: its customer and the feed's chunk,
    which carries the commit's counts; the counters record is written when a new chunk starts
    (generation 15: it was written by every commit, and before generation 9 as two ``Length`` records)."""
    path = str(tmp_path / "s.fs")
    evs = [validate_event({"type": "page_view", "ts": T0 + i, "identities": {"email": f"u{i % 4}@example.org"},
                           "idempotency_key": f"k{i}", "data": {"url": "/"}}) for i in range(24)]
    with Store.open(path) as store:
        w = Writer(store, Resolver())
        w.start()
        try:
            for ev in evs[:4]:  # the customers exist before the measured commits
                w.submit_events([ev]).result()
            before = store.db.lastTransaction()
            for ev in evs[4:]:
                assert w.submit_events([ev]).result()[0].status == "applied"
        finally:
            w.stop()
        with store.read() as f:
            assert f.counter("interactions") == 24 and f.counter("customers") == 4
    txns, by = _written(path, before)
    assert txns == 20
    assert by.get("BTrees.Length.Length", 0) == 0, by
    # the first 4 commits left a chunk of 4 entries: 12 more join it, the 13th commit starts a chunk
    assert by["shopkeeper.records.Counters"] == 1 == by["BTrees.LOBTree.LOBTree"], by
    # customer + feed chunk (no spill: 6 events each); once: the counters, the feed's tree, the folded chunk
    assert by["shopkeeper.engine.records.FeedChunk"] == 21 and sum(by.values()) == 2 * 20 + 3, by


def test_generation_9_moves_the_counters_with_their_values(tmp_path: Path) -> None:
    """A store at generation 8 keeps an ``OOBTree`` of ``Length``: read as it is when opened read-only
    (not evolved), moved into one ``Counters`` record, values kept, when opened to write."""
    path = str(tmp_path / "s.fs")
    with Store.open(path) as store, store.transaction() as f:
        f.root["counters"] = OOBTree({"customers": Length(3), "interactions": Length(41), "changes": Length(7)})
        f.meta["generation"] = 8
    with Store.open(path, StoreOptions(read_only=True)) as store, store.read() as f:
        assert type(f.counters) is OOBTree and f.counter("interactions") == 41 and f.counter("nothing") == 0
    with Store.open(path) as store:
        assert store.generation >= 9
        with store.transaction() as f:
            assert type(f.counters) is Counters
            assert {k: f.counter(k) for k in f.counters} == {"customers": 3, "interactions": 41, "changes": 7}
            f.count("interactions", 2)
        with store.read() as f:
            assert f.counter("interactions") == 43


def test_concurrent_counts_from_two_connections_merge(tmp_path: Path) -> None:
    """Two writers (two hubs on one store) counting in one record: the second commit merges instead of
    raising ``ConflictError``, and neither count is lost — as with one ``Length`` per counter."""
    with Store.open(str(tmp_path / "s.fs")) as store:
        tm1, tm2 = transaction.TransactionManager(explicit=True), transaction.TransactionManager(explicit=True)
        c1, c2 = store.db.open(transaction_manager=tm1), store.db.open(transaction_manager=tm2)
        tm1.begin()
        tm2.begin()
        Folders(c1).count("interactions", 5)
        Folders(c1).count("duplicates", 1)
        Folders(c2).count("interactions", 3)
        Folders(c2).count("changes", 2)
        tm1.commit()
        tm2.commit()
        c1.close()
        c2.close()
        with store.read() as f:
            assert (f.counter("interactions"), f.counter("duplicates"), f.counter("changes")) == (8, 1, 2)


def test_the_counters_record_pickles_as_one_value(tmp_path: Path, persistent_id_calls: list[int]) -> None:
    """Every commit that counts rewrites the counters record: its values are packed into one ``bytes``
    (ZODB's Python ``persistent_id`` hook visits the state dict, its key and the bytes), not a dict
    whose every key and value the hook visits — 16 calls for the store's 7 counters before, more for an
    analysis record's key tuples. Records written before (a plain ``_values`` dict) still load."""
    with Store.open(str(tmp_path / "s.fs")) as store:
        with store.transaction() as f:
            f.count("interactions", 1)
        persistent_id_calls.clear()
        with store.transaction() as f:
            f.count("interactions", 1)
            f.count("duplicates", 1)
        assert 0 < len(persistent_id_calls) <= 5, len(persistent_id_calls)
    old = Counters.__new__(Counters)
    old.__setstate__({"_values": {("offer", "_all", "shown"): 4}})  # as written before
    assert old[("offer", "_all", "shown")] == 4 and not old._p_changed
