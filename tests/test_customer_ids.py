"""New customer ids append within a database's lane (``Folders.new_customer_id``): an import's new
customers land in the last buckets of the customer-keyed trees, and two hubs creating customers at
once still write different buckets (issue 17) — docs/benchmarks.md §90."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import transaction
import ZODB
from BTrees.OOBTree import OOBTree, OOBucket
from ZODB.POSException import ConflictError

from shopkeeper.customer import Customer
from shopkeeper.store import Store
from shopkeeper.store import folders as folders_mod
from shopkeeper.store.folders import Folders


def test_a_databases_new_ids_append_and_keep_their_form(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.fs")) as store, store.transaction() as f:
        ids = [f.new_customer_id() for _ in range(500)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", cid) for cid in ids)
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert {cid[:3] for cid in ids} == {folders_mod.lane_of(store.db)}


def test_two_databases_draw_different_lanes(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.fs")) as store:
        other = ZODB.DB(None)
        try:
            assert folders_mod.lane_of(store.db) != folders_mod.lane_of(other)
            assert folders_mod.lane_of(store.db) == folders_mod.lane_of(store.db)
        finally:
            other.close()


def test_two_hubs_creating_customers_at_once_do_not_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two databases on one storage (two hubs) each create 5 customers in one transaction in a
    populated store, then both commit: with a lane each, their new ids sit in different buckets of the
    customers tree, and the second commit goes through. (One shared last bucket merges a few inserts
    from each, but a split of it under either conflicts; a split of any bucket changes the parent node,
    as with random ids.)"""
    with Store.open(str(tmp_path / "s.fs")) as store:
        with store.transaction() as f:  # 3,000 customers with the older random ids
            rng = random.Random(15)
            for _ in range(3000):
                f.add_customer(Customer(f"{rng.getrandbits(64):016x}", created_at=1))
        draws = iter(["1000", "8000"])  # lanes far apart in the populated tree
        monkeypatch.setattr(folders_mod.secrets, "token_hex", lambda n: next(draws))
        db2 = ZODB.DB(store.db.storage)
        tm1, tm2 = transaction.TransactionManager(explicit=True), transaction.TransactionManager(explicit=True)
        c1, c2 = store.db.open(transaction_manager=tm1), db2.open(transaction_manager=tm2)
        try:
            tm1.begin()
            tm2.begin()
            made, touched = [], []
            for conn in (c1, c2):
                f = Folders(conn)
                for _ in range(5):
                    made.append(f.add_customer(Customer(f.new_customer_id(), created_at=2)).id)
                # (generation 17: the folder is a LaneTree, so a lane's tree may be the node written)
                touched.append({o._p_oid for o in conn._registered_objects if isinstance(o, (OOBucket, OOBTree))})
            assert touched[0] and touched[1] and not touched[0] & touched[1]
            tm1.commit()
            try:
                tm2.commit()
            except ConflictError:
                tm2.abort()
                raise
        finally:
            c1.close()
            c2.close()
    with Store.open(str(tmp_path / "s.fs")) as store, store.read() as f:  # a fresh cache: both commits there
        assert all(cid in f.customers for cid in made) and f.counter("customers") == 3010
