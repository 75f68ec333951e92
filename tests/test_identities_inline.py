"""A customer's few identities inside their own record (generation 10, ``identities-inline``,
``shopkeeper.identitymap``; docs/benchmarks.md §90): one record fewer per new customer and one load
fewer per cold read; an old customer's ``OOBTree`` read as it is and moved inline on their next write
of identities; the step O(1) when a store opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from BTrees.OOBTree import OOBTree
from ZODB.FileStorage import FileStorage
from ZODB.utils import get_pickle_metadata

from shopkeeper.customer import Customer
from shopkeeper.identity import Resolver
from shopkeeper.identitymap import INLINE_MAX, IdentityMap, linked, unlinked
from shopkeeper.packedrecord import named
from shopkeeper.store import CURRENT_GENERATION, Store
from shopkeeper.values import IdentityLink

T0 = 1_750_000_000_000_000


def _records(path: str) -> dict[str, int]:
    """Records by class in the FileStorage at ``path``, over every transaction."""
    fs = FileStorage(path, read_only=True)
    try:
        by: dict[str, int] = {}
        for txn in fs.iterator():
            for rec in txn:
                if rec.data:
                    name = ".".join(get_pickle_metadata(rec.data))
                    by[name] = by.get(name, 0) + 1
        return by
    finally:
        fs.close()


@pytest.mark.parametrize("form", ["inline", "tree"])
def test_both_forms_answer_the_btree_api_readers_use(form: str) -> None:
    pairs = [(("email", "b@x.io"), IdentityLink("a", 2)), (("crm_id", "9"), IdentityLink("a", 1)),
             (("email", "a@x.io"), IdentityLink("a", 3)), (("phone", "+15550100"), IdentityLink("b", 4))]
    m: object = IdentityMap() if form == "inline" else OOBTree()
    for pair, link in pairs:
        m[pair] = link  # type: ignore[index]
    ref = dict(sorted(pairs))
    assert list(m.keys()) == list(ref) and list(m) == list(ref)  # type: ignore[attr-defined]
    assert list(m.items()) == list(ref.items()) and list(m.values()) == list(ref.values())  # type: ignore[attr-defined]
    assert [v for _ns, v in m.keys(min=("email", ""), max=("email", "\U0010ffff"))] == ["a@x.io", "b@x.io"]  # type: ignore[attr-defined]
    assert len(m) == 4 and ("crm_id", "9") in m and m.get(("crm_id", "0")) is None  # type: ignore[arg-type]
    assert m.pop(("crm_id", "9")) == IdentityLink("a", 1) and m.pop(("crm_id", "9"), None) is None  # type: ignore[attr-defined]
    assert len(m) == 3 and bool(m)  # type: ignore[arg-type]


def test_identities_stay_inline_while_few_and_move_into_a_btree_past_the_limit() -> None:
    c = Customer("c1", created_at=T0)
    for i in range(INLINE_MAX):
        c.link_identity(("cookie", f"k{i:02d}"), IdentityLink("web", T0 + i))
    assert type(c.identities) is IdentityMap and len(c.identities) == INLINE_MAX
    c.link_identity(("cookie", "k99"), IdentityLink("web", T0))
    assert type(c.identities) is OOBTree and len(c.identities) == INLINE_MAX + 1
    assert c.identities_in("cookie")[0] == "k00" and c.identities_in("email") == []
    c.unlink_identity(("cookie", "k99"))
    assert type(c.identities) is IdentityMap and c.identities_in("cookie") == [f"k{i:02d}" for i in range(INLINE_MAX)]
    # the forms the helpers return, one step each
    tree, link = unlinked(OOBTree({("a", "1"): 1}), ("a", "1"))
    assert type(tree) is IdentityMap and link == 1 and len(tree) == 0
    assert type(linked(IdentityMap(), ("a", "1"), 1)) is IdentityMap


def test_a_new_customer_writes_no_identities_record_and_reads_back(tmp_path: Path) -> None:
    path = str(tmp_path / "s.fs")
    with Store.open(path) as store:
        before = _records(path).get("BTrees.OOBTree.OOBTree", 0)
        with store.transaction() as f:
            for i in range(20):
                res = Resolver().resolve(f, [("email", f"p{i}@x.io"), ("crm_id", f"{i}")], source="t", at=T0)
                assert res.created
        # the identity index, the customers folder's lane tree and its lane map (generation 17), and
        # no identities tree per customer
        assert _records(path).get("BTrees.OOBTree.OOBTree", 0) - before <= 3
    with Store.open(path) as store, store.read() as f:
        c = f.customer_by_identity("crm_id", "7")
        assert c is not None and type(c.identities) is IdentityMap
        assert list(c.identities.items()) == [(("crm_id", "7"), IdentityLink("t", T0)),
                                              (("email", "p7@x.io"), IdentityLink("t", T0))]
        assert f.conn._cache.cache_non_ghost_count < 40  # no identities tree loaded beside each customer


def test_an_old_form_customer_reads_and_upgrades_on_its_next_identity_write(tmp_path: Path) -> None:
    """A customer written before generation 10 (identities in an ``OOBTree`` record of its own, as the
    wave-1 golden store holds them) reads through the same API, and the next identity linked moves the
    identities inline: the customer's record then carries them and references no tree."""
    path = str(tmp_path / "s.fs")
    with Store.open(path) as store, store.transaction() as f:
        c = f.add_customer(Customer("old", created_at=T0))
        c.__dict__["identities"] = OOBTree({("email", "o@x.io"): IdentityLink("crm", T0)})  # the old form
        f.identities[("email", "o@x.io")] = "old"
    with Store.open(path) as store:
        with store.read() as f:
            c = f.customers["old"]
            assert type(c.identities) is OOBTree and c.identities_in("email") == ["o@x.io"]
            assert "identities" in named(c.__getstate__())  # still a reference to its own record
        with store.transaction() as f:
            res = Resolver().resolve(f, [("email", "o@x.io"), ("phone", "+1 650 253 0000")], source="t", at=T0 + 1)
            assert res.customer is f.customers["old"] and res.attached == [("phone", "+16502530000")]
    with Store.open(path) as store, store.read() as f:
        c = f.customers["old"]
        assert type(c.identities) is IdentityMap and "identities" not in named(c.__getstate__())
        assert c.identity_pairs() == [("email", "o@x.io"), ("phone", "+16502530000")]
        assert f.customer_by_identity("phone", "+16502530000") is c


def test_the_generation_is_recorded_without_touching_a_customer(tmp_path: Path) -> None:
    """Opening a generation-9 store records generation 10 in one small transaction (O(1): the lead's
    10M store must still open in seconds): nothing but the meta folder is written."""
    path = str(tmp_path / "s.fs")
    with Store.open(path) as store:
        with store.transaction() as f:
            for i in range(50):
                f.add_customer(Customer(f"c{i:02d}", created_at=T0))
            f.meta["generation"] = 9
        last = store.db.storage.lastTransaction()
    with Store.open(path) as store:
        assert store.generation == CURRENT_GENERATION >= 10
    fs = FileStorage(path, read_only=True)
    try:
        written = [get_pickle_metadata(rec.data)[1] for txn in fs.iterator(start=last) if txn.tid != last
                   for rec in txn]
    finally:
        fs.close()
    # the meta folder once per step run (10, 11, ...): nothing grows with the customers
    assert "Customer" not in written and "OOBTree" in written and len(written) <= CURRENT_GENERATION - 9
