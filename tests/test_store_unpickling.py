"""ZODB reads records through a peekable buffer (shopkeeper.store.unpickling): same objects out."""

from __future__ import annotations

import io
from pathlib import Path

import ZODB.serialize
from zodbpickle import pickle

from shopkeeper.customer import Customer, now_us
from shopkeeper.identity import attach
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store, unpickling


def test_the_store_installs_the_peekable_buffer_for_zodb() -> None:
    assert unpickling.installed() and ZODB.serialize.BytesIO is unpickling.PeekableBytesIO


def test_two_pickles_in_one_buffer_load_one_after_the_other() -> None:
    """A record is two pickles: the unpickler prefetches through peek, then must leave the buffer
    right after the first, where the second starts."""
    first, second = ("klass", None), {"state": list(range(300)), "text": "x" * 5000}
    buf = unpickling.PeekableBytesIO(pickle.dumps(first, 3) + pickle.dumps(second, 3))
    assert buf.peek(4) == buf.getvalue()[:4] and buf.tell() == 0  # peek does not move
    u = pickle.Unpickler(buf)
    assert u.load() == first
    assert u.load() == second
    assert buf.read() == b""
    assert unpickling.PeekableBytesIO(b"").peek() == b""


def test_records_load_the_same_from_a_file(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    now = now_us()
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.transaction() as f:
        for i in range(300):
            c = f.add_customer(Customer(f"u{i:04d}", created_at=now))
            attach(f, c, ("email", f"u{i}@example.com"), "test", now)
            c.set_consent("email", "marketing", i % 2 == 0, "test")
            c.set_traits({"first_name": f"Ü{i}", "blob": "y" * (i * 50)})
            c.hard["orders"] = i
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.read() as f:  # a cold cache: every record from the file
        assert len(f.customers) == 300
        for i, (cid, c) in enumerate(f.customers.items()):
            assert cid == f"u{i:04d}" and c.hard["orders"] == i and c.traits["blob"] == "y" * (i * 50)
            assert c.identities_in("email") == [f"u{i}@example.com"] and c.may_contact("email") is (i % 2 == 0)
    assert io.BytesIO is not unpickling.PeekableBytesIO  # only ZODB's reference is replaced


def test_references_load_as_ghosts_through_the_fast_path(tmp_path: Path) -> None:
    """A cold bucket's references: ghosts of the right class and oid, one object per oid, and after
    the first of a class ZODB's own ``load_persistent`` is not called again (the fast path)."""
    uri = f"file://{tmp_path}/Data.fs"
    now = now_us()
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.transaction() as f:
        for i in range(300):
            f.add_customer(Customer(f"u{i:04d}", created_at=now))
    assert unpickling.installed()
    unpickling._ghostable.discard(Customer)  # as in a fresh process: the class is still to be seen
    calls = []
    zodb_load = unpickling._zodb_load_persistent

    def counting(self: object, oid: bytes, klass: object) -> object:
        calls.append(oid)
        return zodb_load(self, oid, klass)

    unpickling._zodb_load_persistent = counting
    try:
        with Store.open(uri, steps=builtin_evolve_steps()) as s, s.read() as f:
            ghosts = list(f.customers.values())  # every bucket loaded cold, no customer record
            assert len(ghosts) == 300 and {type(c) for c in ghosts} == {Customer}
            assert all(c._p_changed is None for c in ghosts)  # ghosts: nothing loaded yet
            assert all(f.customers[c.id] is c for c in ghosts[:5])  # (loads five) one object per oid
            assert len({c._p_oid for c in ghosts}) == 300
            assert [c.id for c in ghosts] == [f"u{i:04d}" for i in range(300)]
    finally:
        unpickling._zodb_load_persistent = zodb_load
    assert 1 <= len(calls) <= 2  # the first Customer reference (and a folder's) only, not 300


def test_a_broken_class_is_never_taken_for_a_ghostable_one() -> None:
    """A class ZODB stands in for a missing one must keep going through ZODB's path (which makes it
    ``PersistentBroken``), so the fast path never remembers it."""
    import ZODB.broken

    broken = ZODB.broken.find_global("shopkeeper_gone_module", "Gone", Broken=ZODB.broken.Broken)
    assert issubclass(broken, ZODB.broken.Broken)

    class Reader:
        _cache: dict = {}

        def __init__(self) -> None:
            self._cache = {}  # type: ignore[misc]

    r = Reader()
    r._cache = type("Cache", (dict,), {"new_ghost": lambda self, oid, obj: self.__setitem__(oid, obj)})()
    obj = unpickling._load_persistent(r, b"\0" * 7 + b"\1", broken)
    assert isinstance(obj, ZODB.broken.PersistentBroken)
    assert broken not in unpickling._ghostable
