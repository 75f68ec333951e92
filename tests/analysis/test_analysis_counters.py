"""Outcome counters and segment sizes: one record per kind per group commit, and concurrent
writers (several hubs over one store) merge instead of conflicting."""

from __future__ import annotations

import time
from pathlib import Path

import transaction
from ZODB.utils import get_pickle_metadata

from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState
from shopkeeper.analysis.segments import SegmentSet, sizes
from shopkeeper.analysis.state import count, create_analysis_folder, folder
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.store import Store


def _events(n: int) -> list:
    t = time.time() - 3600
    out = []
    for i in range(n):
        who = f"u{i}@example.org"
        out.append(validate_event({"type": "email_open", "identities": {"email": who}, "ts": t + i,
                                   "data": {"campaign": f"c{i}"}, "idempotency_key": f"o{i}"}))
        out.append(validate_event({"type": "order", "identities": {"email": who}, "ts": t + i,
                                   "data": {"order_id": f"x{i}", "amount": 500.0}, "idempotency_key": f"x{i}"}))
    return out


def _written_by_class(path: str, after: bytes) -> dict[str, int]:
    from ZODB.FileStorage import FileStorage

    fs = FileStorage(path, read_only=True)
    try:
        by: dict[str, int] = {}
        for txn in fs.iterator(start=after):
            if txn.tid == after:
                continue
            for rec in txn:
                mod, cls = get_pickle_metadata(rec.data)
                by[f"{mod}.{cls}"] = by.get(f"{mod}.{cls}", 0) + 1
        return by
    finally:
        fs.close()


def test_a_group_commit_writes_the_counters_once_whatever_the_number_of_keys(tmp_path: Path) -> None:
    state = AnalysisState(tmp_path)
    state.segments = SegmentSet()
    for i in range(10):
        state.segments.define(f"spent{i}", f"hard.total_spend >= {i * 10}")
    path = str(tmp_path / "Data.fs")
    store = Store.open(f"file://{path}")
    with store.transaction() as f:
        create_analysis_folder(f.root)
    before = store.db.lastTransaction()
    with Ingestor(store, processors=[AnalysisProcessor(state)]) as ing:
        res = ing.apply(_events(30))  # 30 campaigns × shown, 10 segments entered
    assert {r.status for r in res} == {"applied"}
    with store.read() as f:
        assert count(folder(f, "outcomes"), ("email:c7", "_all", "shown")) == 1
    assert sizes(store) == {f"spent{i}": 30 for i in range(10)}
    store.close()
    by = _written_by_class(path, before)
    assert by.get("BTrees.Length.Length", 0) == 0  # the store's own counters are one record too (generation 9)
    assert by.get("shopkeeper.records.Counters") == 3  # outcomes + segment sizes + the store's counters


def test_concurrent_increments_from_two_writers_merge(tmp_path: Path) -> None:
    store = Store.open(f"file://{tmp_path}/Data.fs")
    with store.transaction() as f:
        create_analysis_folder(f.root)
    tm1, tm2 = transaction.TransactionManager(explicit=True), transaction.TransactionManager(explicit=True)
    c1, c2 = store.db.open(transaction_manager=tm1), store.db.open(transaction_manager=tm2)
    tm1.begin()
    tm2.begin()
    s1 = c1.root()["analysis"]["segment_sizes"]
    s2 = c2.root()["analysis"]["segment_sizes"]
    s1.change("a", 2)
    s1.change("b", 1)
    s2.change("a", 5)
    s2.change("c", -1)
    tm1.commit()
    tm2.commit()  # would raise ConflictError without the per-key merge
    c1.close()
    c2.close()
    assert sizes(store) == {"a": 7, "b": 1, "c": -1}
    store.close()


def test_the_evolve_step_moves_length_counters_into_one_record() -> None:
    from BTrees.Length import Length
    from BTrees.OOBTree import OOBTree

    from shopkeeper.analysis.counters import Counters
    from shopkeeper.analysis.state import counters_in_one_record

    old = OOBTree({("offer", "_all", "shown"): Length(4)})
    root = {"analysis": OOBTree({"outcomes": old, "segment_sizes": OOBTree({"vip": Length(2)})})}
    counters_in_one_record(root)
    a = root["analysis"]
    assert isinstance(a["outcomes"], Counters) and isinstance(a["segment_sizes"], Counters)
    assert count(a["outcomes"], ("offer", "_all", "shown")) == 4 and a["segment_sizes"]["vip"] == 2
    counters_in_one_record(root)  # idempotent
    assert a["segment_sizes"].items() == [("vip", 2)]


def test_the_console_segments_page_reads_the_sizes(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from shopkeeper.adapters.console.data import segments_page

    store = Store.open(f"file://{tmp_path}/Data.fs")
    with store.transaction() as f:
        create_analysis_folder(f.root)["segment_sizes"].change("vip", 3)
    page = segments_page(SimpleNamespace(read=store.read), sample=10)
    assert page["sizes"] == {"vip": 3}
    store.close()
