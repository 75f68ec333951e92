"""The customer-keyed trees two hubs write, one tree per customer-id lane (``shopkeeper.lanetree``,
store generation ``lane-trees``): hubs writing their own customers no longer conflict on the root
node another hub's bucket split rewrites, readers see one mapping in key order, and a store from
before opens without a walk, its keys moving on their next write."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import transaction
import ZODB
from transaction.interfaces import NoTransaction
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError

from shopkeeper.lanetree import LaneTree
from shopkeeper.records import OrderFacts


def _id(lane: str, n: int) -> str:
    return f"{lane}{n:013x}"  # as Folders.new_customer_id makes them: lane, then a stamp that grows


def test_a_lane_tree_reads_like_one_sorted_mapping_and_moves_legacy_keys_on_write() -> None:
    legacy = OrderFacts()
    for k in ("aaa1", "bbb1", "ccc1"):
        legacy[k] = k.encode()
    t = LaneTree(OrderFacts, legacy=legacy)
    t["bbb0"] = b"new"
    t["aaa1"] = b"moved"  # a legacy key written: into its lane's tree, out of legacy
    assert "aaa1" not in legacy and t.shards["aaa"]["aaa1"] == b"moved"
    assert list(t.items()) == [("aaa1", b"moved"), ("bbb0", b"new"), ("bbb1", b"bbb1"), ("ccc1", b"ccc1")]
    assert list(t.keys()) == sorted(t.keys()) and len(t) == 4
    assert t.get("ccc1") == b"ccc1" and "ccc1" in t and t.get("zzz") is None and "zzz" not in t
    del t["ccc1"]  # from legacy
    del t["bbb0"]  # from a lane
    assert list(t.keys()) == ["aaa1", "bbb1"]
    with pytest.raises(KeyError):
        del t["bbb0"]
    with pytest.raises(KeyError):
        t["bbb0"]  # noqa: B018


def _split_by_two_writers(tmp_path: Path, make: Any) -> None:
    """Two connections (two hubs) each add 300 keys of their own lane to one tree that already
    holds 600 in several buckets, in overlapping transactions: both add enough to split buckets."""
    db = ZODB.DB(FileStorage(str(tmp_path / "t.fs")))
    conns = []
    try:
        tm0 = transaction.TransactionManager(explicit=True)
        c0 = db.open(transaction_manager=tm0)
        tm0.begin()
        tree = c0.root()["t"] = make()
        for n in range(300):
            tree[_id("a1f", 2 * n)] = b"x" * 40
            tree[_id("b07", 2 * n)] = b"x" * 40
        tm0.commit()
        c0.close()
        for lane in ("a1f", "b07"):
            tm = transaction.TransactionManager(explicit=True)
            c = db.open(transaction_manager=tm)
            tm.begin()
            t = c.root()["t"]
            for n in range(300):
                t[_id(lane, 2 * n + 1)] = b"y" * 40
            conns.append((c, tm))
        for _, tm in conns:
            tm.commit()
    finally:
        for c, tm in conns:
            with contextlib.suppress(NoTransaction):
                tm.abort()
            c.close()
        db.close()


def test_two_hubs_adding_their_own_customers_split_buckets_without_a_conflict(tmp_path: Path) -> None:
    _split_by_two_writers(tmp_path, lambda: LaneTree(OrderFacts))


def test_the_plain_tree_conflicts_there(tmp_path: Path) -> None:
    """What the lanes remove: the same writes to one ``OrderFacts`` conflict on its root node."""
    with pytest.raises(ConflictError):
        _split_by_two_writers(tmp_path, OrderFacts)
