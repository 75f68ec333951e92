"""The store's counters kept in the change feed's chunk (generation 15, ``shopkeeper.store.counting``):
every reader sees exact counts, across savepoints, trims, concurrent writers and a store from before."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import transaction
from ZODB.POSException import ConflictError

from shopkeeper.engine import feed
from shopkeeper.engine.writer import Writer
from shopkeeper.events import validate_event
from shopkeeper.identity import Resolver
from shopkeeper.ops.verify import counts_of
from shopkeeper.records import Counters
from shopkeeper.store import CURRENT_GENERATION, Folders, Store

T0 = 1_750_000_000


def _lone(store: Store, cid: str = "c1", n: int = 1) -> None:
    """A commit as the writer makes one for a lone event: its feed entries and their counts."""
    with store.transaction() as f:
        for _ in range(n):
            feed.append(f, "interaction", cid)
        f.count("interactions", n)


def _truth(f: Folders) -> dict[str, int]:
    return {"changes": sum(1 for _ in feed.entries_after(f, 0))}


def test_lone_commits_count_in_the_pending_chunk_and_every_reader_sees_exact_counts(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.fs")) as store:
        for i in range(1, 41):
            _lone(store)
            with store.read() as f:  # another connection: the record plus the pending chunk's deltas
                assert f.counter("interactions") == i and f.counter("changes") == i == _truth(f)["changes"]
                assert dict(f.counters.items())["interactions"] == i == f.counters["interactions"]
                assert "interactions" in f.counters and counts_of(f)["changes"] == i
        with store.read() as f:
            c = f.counters
            assert type(c) is Counters and c.pending is not None and c.pending in f.root["changes"].values()
            # the record alone is behind by what the pending chunk holds
            assert 0 < c.pending.deltas["interactions"] == c["interactions"] - c._values["interactions"]


def test_the_writer_counts_lone_events_resends_and_groups_exactly(tmp_path: Path) -> None:
    """Through the hub's writer: lone events (counts in the chunk), resends (duplicates) and a group
    (a chunk of its own: counts in the record), read after each commit from another connection."""
    def ev(i: int) -> Any:
        return validate_event({"type": "page_view", "ts": T0 + i, "identities": {"email": f"u{i % 7}@example.org"},
                               "idempotency_key": f"k{i}", "data": {"url": "/"}})

    with Store.open(str(tmp_path / "s.fs")) as store:
        w = Writer(store, Resolver())
        w.start()
        applied = dups = 0
        try:
            for batch in [[ev(i)] for i in range(30)] + [[ev(3)], [ev(4)]] + [[ev(100 + i) for i in range(60)]] + \
                         [[ev(200 + i)] for i in range(20)] + [[ev(5), ev(300)]]:
                got = w.submit_events(batch).result()
                applied += sum(r.status == "applied" for r in got)
                dups += sum(r.status == "duplicate" for r in got)
                with store.read() as f:
                    assert (f.counter("interactions"), f.counter("duplicates")) == (applied, dups)
                    assert f.counter("customers") == len(f.customers)
                    assert f.counter("changes") == _truth(f)["changes"]
        finally:
            w.stop()
        assert (applied, dups) == (111, 3)


@pytest.mark.parametrize("rollback", [False, True])
def test_a_savepoint_in_a_counting_transaction_keeps_the_counts_exact(tmp_path: Path, rollback: bool) -> None:
    """A rule's plugin action runs under a savepoint (``rules.runtime``): the record stored at the
    savepoint and copied at the commit holds the counts before it, the chunk the ones after."""
    with Store.open(str(tmp_path / "s.fs")) as store:
        _lone(store)
        _lone(store)  # the chunk is pending now
        with store.transaction() as f:
            feed.append(f, "interaction", "c1")
            f.count("interactions", 1)
            sp = f.conn.transaction_manager.get().savepoint()
            f.count("interactions", 10)
            if rollback:
                sp.rollback()
            f.count("interactions", 100)
        with store.read() as f:
            assert f.counter("interactions") == 2 + 1 + (0 if rollback else 10) + 100
            assert f.counter("changes") == 3 == _truth(f)["changes"]


def test_trimming_the_feed_folds_the_pending_chunk(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.fs")) as store:
        for _ in range(5):
            _lone(store)
        with store.transaction() as f:
            assert feed.trim(f, older_than_us=None, max_entries=2) == 3  # part of the pending chunk goes
        with store.read() as f:
            assert f.counters.pending is None and f.counter("interactions") == 5
            assert f.counter("changes") == 2 == _truth(f)["changes"]
        _lone(store, n=2)
        with store.transaction() as f:
            assert feed.trim(f, older_than_us=None, max_entries=0) == 4  # all of it
        with store.read() as f:
            assert f.counter("interactions") == 7 and f.counter("changes") == 0 == _truth(f)["changes"]


def _two(store: Store) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    tms = transaction.TransactionManager(explicit=True), transaction.TransactionManager(explicit=True)
    return tuple((store.db.open(transaction_manager=tm), tm) for tm in tms)  # type: ignore[return-value]


def test_a_fold_and_a_count_moved_into_the_folded_chunk_at_once_conflict(tmp_path: Path) -> None:
    """Another writer moving counts into the pending chunk while this one folds it (a trim here): the
    fold rewrites the chunk, so the second commit conflicts instead of leaving its counts in a chunk
    the record no longer names."""
    with Store.open(str(tmp_path / "s.fs")) as store:
        _lone(store)
        _lone(store)
        (c1, tm1), (c2, tm2) = _two(store)
        tm1.begin()
        tm2.begin()
        f1, f2 = Folders(c1), Folders(c2)
        assert feed.trim(f1, older_than_us=None, max_entries=1) == 1
        feed.append(f2, "interaction", "c2")
        f2.count("interactions", 1)
        tm1.commit()
        with pytest.raises(ConflictError):
            tm2.commit()
        tm2.abort()
        tm2.begin()  # the retry sees the fold and counts in the record
        feed.append(Folders(c2), "interaction", "c2")
        Folders(c2).count("interactions", 1)
        tm2.commit()
        c1.close()
        c2.close()
        with store.read() as f:
            assert f.counter("interactions") == 3 and f.counter("changes") == 2 == _truth(f)["changes"]


def test_counts_in_the_record_and_counts_moved_into_the_chunk_at_once_both_stay(tmp_path: Path) -> None:
    """A staging hub counts in the record (its entries are staged, it writes no chunk) while the
    sequencer's commit moves its counts into the pending chunk: no conflict, nothing lost."""
    with Store.open(str(tmp_path / "s.fs")) as store:
        _lone(store)
        (c1, tm1), (c2, tm2) = _two(store)
        tm1.begin()
        tm2.begin()
        Folders(c1).count("interactions", 5)
        feed.append(Folders(c2), "interaction", "c2")
        Folders(c2).count("interactions", 1)
        tm1.commit()
        tm2.commit()
        c1.close()
        c2.close()
        with store.read() as f:
            assert f.counter("interactions") == 7 and f.counter("changes") == 2


def test_two_writers_naming_a_pending_chunk_at_once_do_not_merge() -> None:
    """The record's conflict resolution merges plain counts, but not two folds: each added the same
    chunk's deltas to its values."""
    def state(values: dict[str, int], folds: int = 0, pending: Any = None) -> dict[str, Any]:
        s: dict[str, Any] = {"_packed": pickle.dumps(values, 5)}
        if folds:
            s["folds"] = folds
        if pending is not None:
            s["pending"] = pending
        return s

    c = Counters()
    old = state({"interactions": 10}, 1, "A")
    merged = c._p_resolveConflict(old, state({"interactions": 12}, 1, "A"), state({"interactions": 15}, 2, "B"))
    assert pickle.loads(merged["_packed"]) == {"interactions": 17} and (merged["folds"], merged["pending"]) == (2, "B")
    merged = c._p_resolveConflict(old, state({"interactions": 15}, 2, "B"), state({"interactions": 12}, 1, "A"))
    assert pickle.loads(merged["_packed"]) == {"interactions": 17} and (merged["folds"], merged["pending"]) == (2, "B")
    with pytest.raises(ConflictError):
        c._p_resolveConflict(old, state({"interactions": 15}, 2, "B"), state({"interactions": 16}, 2, "C"))


def test_a_store_from_before_opens_without_a_walk_and_counts_on(tmp_path: Path, storage_loads: Any) -> None:
    """Generation 15 is lazy: a counters record from before names no pending chunk, and the first lone
    commit into a chunk names it."""
    uri = str(tmp_path / "s.fs")
    with Store.open(uri) as s:
        with s.transaction() as f:
            for i in range(300):
                feed.append(f, "interaction", f"c{i}")
            f.count("interactions", 300)
        with s.transaction() as f:  # as the code before the generation left it
            f.counters.pending = None
            f.meta["generation"] = 14
    with storage_loads.counting():
        with Store.open(uri) as s:
            assert s.generation == CURRENT_GENERATION >= 15  # (16: segment-memberships)
    assert storage_loads.count < 40  # the root, meta and a few folders: no feed chunk read
    with Store.open(uri) as s:
        with s.read() as f:
            assert f.counters.pending is None and f.counter("interactions") == 300 == f.counter("changes")
        _lone(s)
        _lone(s)
        with s.read() as f:
            assert f.counters.pending is not None and f.counters.pending.deltas == {"interactions": 1, "changes": 1}
            assert f.counter("interactions") == 302 == f.counter("changes") == _truth(f)["changes"]


def test_a_group_commit_counts_in_the_record_and_leaves_the_pending_chunk_alone(tmp_path: Path) -> None:
    """A group's chunk is its own (no later commit joins a chunk of ``TAIL_ENTRIES`` or more): naming it
    pending would rewrite the pending chunk on every group commit; it counts in the record as before."""
    with Store.open(str(tmp_path / "s.fs")) as store:
        _lone(store)
        _lone(store)
        with store.read() as f:
            pending = f.counters.pending._p_oid
        _lone(store, "c2", n=feed.TAIL_ENTRIES + 4)  # joins the pending chunk: counts moved into it
        before = store.db.lastTransaction()
        _lone(store, "c3", n=500)
        last = [rec for txn in store.db.storage.iterator(start=before) if txn.tid != before for rec in txn]
        with store.read() as f:
            assert f.counters.pending._p_oid == pending and f.counters.pending.deltas["interactions"] == 1 + 20
            assert f.counter("interactions") == 522 == f.counter("changes")
    assert pending not in {rec.oid for rec in last}
    assert f.counters._p_oid in {rec.oid for rec in last}
