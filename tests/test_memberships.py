"""Segment memberships apart from the customer record (``shopkeeper.memberships``, store generation 16
``segment-memberships``): a store from before opens without a walk, its records keep their memberships
until they next change — which moves them into the customer's row and rewrites the record once —, a
segments-only change writes the row and the member sets and not the record, and readers see one mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopkeeper import audience, memberships
from shopkeeper.customer import STATUS_FORGOTTEN, Customer
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import CURRENT_GENERATION, Store

T0 = 1_790_000_000_000_000


def _members(f: Any, name: str) -> set[str]:
    m = audience.members_of(f.root, name)
    return set(m) if m is not None else set()


def test_a_store_from_before_opens_without_a_walk_and_memberships_move_on_their_next_change(
        tmp_path: Path, storage_loads: Any) -> None:
    uri = str(tmp_path / "s.fs")
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            del f.root[memberships.ROOT]
            f.meta["generation"] = 15
    # customers written while the store had no tree keep their memberships in their records
    with Store.open(uri, target_generation=15) as s:  # generation 15 as it is: no tree
        with s.transaction() as f:
            for i in range(200):
                c = f.add_customer(Customer(f"c{i:03d}", created_at=0))
                c.join_segment("all", T0)
                if i % 2:
                    c.join_segment("odd", T0 + i)
        with s.read() as f:
            assert f.meta["generation"] == 15 and memberships.ROOT not in f.root
            assert f.customers["c001"].__dict__["segments"] == {"all": T0, "odd": T0 + 1}
    with storage_loads.counting():
        with Store.open(uri, steps=builtin_evolve_steps()) as s:
            assert s.generation == CURRENT_GENERATION
    assert storage_loads.count < 60  # the root, meta and a few folders: the 200 customers not walked
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.read() as f:
            tree = f.root[memberships.ROOT]
            assert not tree  # nothing moved at open
            assert f.customers["c001"].segments == {"all": T0, "odd": T0 + 1}  # read from the record
            assert f.customers["c002"].segments == {"all": T0}
        with s.transaction() as f:
            c = f.customers["c001"]
            assert c.leave_segment("odd") and c.join_segment("new", T0 + 5)
        with s.read() as f:
            c = f.customers["c001"]
            assert "segments" not in c.__dict__  # the record was rewritten without them
            assert memberships.row(f.root[memberships.ROOT], "c001") == {"all": T0, "new": T0 + 5}
            assert c.segments == {"all": T0, "new": T0 + 5}
            assert "c001" not in _members(f, "odd") and "c001" in _members(f, "new") and "c003" in _members(f, "odd")
            assert f.customers["c003"].segments == {"all": T0, "odd": T0 + 3}  # untouched: still the record's


def test_a_segments_only_change_writes_the_row_not_the_record(tmp_path: Path, monkeypatch: Any) -> None:
    with Store.open(str(tmp_path / "s.fs"), steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            for i in range(3):
                f.add_customer(Customer(f"c{i:03d}", created_at=0))
        pickled: list[str] = []
        getstate = Customer.__getstate__
        monkeypatch.setattr(Customer, "__getstate__", lambda c: (pickled.append(c.id), getstate(c))[1])
        with s.transaction() as f:
            c = f.customers["c001"]
            c.join_segment("vip", T0)
            segs = c.edit_segments()  # the live mapping: a later read in this transaction sees a change
            segs["late"] = T0 + 1
            assert c.segments == {"vip": T0, "late": T0 + 1}
            c.segments_changed(True, False, ("vip",))
        assert pickled == []
        with s.read() as f:
            assert f.customers["c001"].segments == {"vip": T0, "late": T0 + 1}
            assert _members(f, "vip") == _members(f, "late") == {"c001"}
            assert audience.card_of(f.customers["c001"])[1] == ("late", "vip")
        with s.transaction() as f:  # erased: out of every member set (the record is written: its status)
            c = f.customers["c001"]
            c.segments = {}
            c.status = STATUS_FORGOTTEN
        with s.read() as f:
            assert f.customers["c001"].segments == {} and not _members(f, "vip") and not _members(f, "late")
            assert "c001" not in f.root[memberships.ROOT]


def test_a_customer_merged_away_leaves_every_member_set(tmp_path: Path) -> None:
    """A customer whose card was written before it joined more segments (segments-only changes leave the
    card as it was) is taken out of all of them when it stops being active."""
    with Store.open(str(tmp_path / "s.fs"), steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            f.add_customer(Customer("c001", created_at=0)).join_segment("a", T0)
        with s.transaction() as f:
            f.customers["c001"].join_segment("b", T0)
        with s.transaction() as f:
            f.customers["c001"].status = "merged"
        with s.read() as f:
            assert not _members(f, "a") and not _members(f, "b")
            assert f.customers["c001"].segments == {"a": T0, "b": T0}  # kept, as a merged record kept them


def test_an_event_s_segment_update_sees_its_own_earlier_entries(tmp_path: Path) -> None:
    """The incremental path (``SegmentSet.evaluate``, what ``update`` runs): a segment whose condition
    names another sees an entry made earlier in the same evaluation, and the row holds both after one store."""
    from shopkeeper.analysis.segments import SegmentSet

    segs = SegmentSet()
    segs.define("a", "count('order') >= 0")
    segs.define("b", "in_segment('a')")
    with Store.open(str(tmp_path / "s.fs"), steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            f.add_customer(Customer("c001", created_at=0))
        with s.transaction() as f:
            got = segs.evaluate(f.customers["c001"], list(segs.defs.values()), T0)  # a, then b
        assert got == [("a", "enter"), ("b", "enter")]
        with s.read() as f:
            assert memberships.row(f.root[memberships.ROOT], "c001") == {"a": T0, "b": T0}
            assert _members(f, "a") == _members(f, "b") == {"c001"}
