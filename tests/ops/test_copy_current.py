"""``storage copy --current``: a store's current records only, into PostgreSQL or a new file
(issue 17: a 1M FileStorage holds 9.5 GB of revisions; replaying them all into PostgreSQL did not
fit a session, its current records do)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub.conftest import event, record, start_hub
from ZODB.FileStorage import FileStorage

from shopkeeper.customer import Customer
from shopkeeper.ops.backup import _manifest_of_storage, store_manifest
from shopkeeper.ops.copy import copy_storage
from shopkeeper.ops.verify import compare
from shopkeeper.store import Store, StoreOptions

from .test_backup_restore import Busy, cli

pytestmark = pytest.mark.e2e


def revisions(path: Path) -> int:
    fs = FileStorage(str(path), read_only=True)
    try:
        return sum(1 for txn in fs.iterator() for _ in txn)
    finally:
        fs.close()


def test_current_copy_of_a_served_store_is_its_state_as_of_one_transaction(tmp_path: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    """A hub keeps committing during the copy: the PostgreSQL copy equals the source as of the
    transaction the copy names, customer by customer, and holds fewer records than the source's
    revisions (no history)."""
    path = tmp_path / "src" / "Data.fs"
    store = Store.open(f"file://{path}")
    r = start_hub(store=store)
    try:
        c = r.client("admin")
        for i in range(30):
            record(c, event(email=f"k{i % 6}@example.com", key=f"k{i}", url=f"/p{i}"))
        dst = pg_server.create_database()
        with Busy(c, "busy-cur") as busy:
            rep = copy_storage(f"file://{path}", dst, current=True)
        assert busy.sent > 0
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    as_of = _manifest_of_storage(FileStorage(str(path), read_only=True), rep.source_tid)
    got = store_manifest(dst)
    cmp = compare(as_of, got)
    assert cmp.ok, cmp.lines()
    assert len(got["customers"]) >= 6
    assert rep.records < revisions(path)


def test_a_current_copy_allocates_new_object_ids_above_the_copied_ones(tmp_path: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    """The copy writes object ids the destination never handed out: a store opened on it must not
    give a new object one of them (it would overwrite a copied customer)."""
    src = f"file://{tmp_path}/Data.fs"
    with Store.open(src) as s, s.transaction() as f:
        for i in range(50):
            f.add_customer(Customer(f"c{i:04d}"))
    for dst in (pg_server.create_database(), f"file://{tmp_path}/copy/Data.fs"):
        code, out = cli("storage", "copy", "--current", "--quiet", "--verify", src, dst)
        assert code == 0 and "verified" in out, out
        before = store_manifest(dst)
        with Store.open(dst) as s, s.transaction() as f:
            for i in range(20):
                f.add_customer(Customer(f"new{i:04d}"))
        after = store_manifest(dst)
        assert {k: after["customers"][k] for k in before["customers"]} == before["customers"], dst
        assert len(after["customers"]) == 70


def test_current_copy_leaves_out_unreachable_records(tmp_path: Path) -> None:
    """What a pack would collect is not copied: a customer removed from the tree is gone."""
    path = tmp_path / "Data.fs"
    with Store.open(f"file://{path}") as s:
        with s.transaction() as f:
            for i in range(10):
                f.add_customer(Customer(f"c{i}"))
        with s.transaction() as f:
            del f.customers["c3"]
    rep = copy_storage(f"file://{path}", f"file://{tmp_path}/copy/Data.fs", current=True)
    with Store.open(f"file://{tmp_path}/copy/Data.fs", StoreOptions(read_only=True)) as s, s.read() as f:
        assert sorted(f.customers.keys()) == [f"c{i}" for i in range(10) if i != 3]
    fs = FileStorage(str(path), read_only=True)
    try:
        live = len(fs._index)  # every oid ever written, the removed customer's included
    finally:
        fs.close()
    assert rep.records < live
