"""Generation 12 (``customer-tuple-state``): a customer record's state is a tuple, ``(hot, identities,
_tree, key_log, outbox, key_log_old)`` with trailing Nones left out, not a dict whose key strings
ZODB's ``persistent_id`` hook visits too. A record in the dict form (every record written before)
loads as it is and is written as a tuple on the customer's next write; nothing is walked at open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ZODB.serialize import ObjectWriter

from shopkeeper.customer import HISTORY_CHUNK, KEY_WINDOW, Customer, IdentityLink, Interaction
from shopkeeper.identitymap import IdentityMap
from shopkeeper.packedrecord import _HOT, _SLOTS, PackedRecord, named
from shopkeeper.packing import pack_plain
from shopkeeper.store import CURRENT_GENERATION, Store

T0 = 1_790_000_000_000_000


def _dict_form(self: Customer) -> dict[str, Any]:
    """What the code before generation 12 wrote: the references by name, the packed value as ``_hot``."""
    plain = super(PackedRecord, self).__getstate__()
    refs = {k: plain.pop(k) for k in _SLOTS if plain.get(k) is not None and type(plain[k]) is not IdentityMap}
    plain.pop("key_log_old", None)
    recent = plain.get("_recent")
    if recent is not None:
        plain["_recent"] = recent.packed()
    refs[_HOT] = pack_plain(plain)
    return refs


def _busy(c: Customer) -> None:
    for i in range(max(HISTORY_CHUNK, KEY_WINDOW) + 3):  # a spilled history and a key log
        c.add_interaction(Interaction(T0 + i, T0 + i, "page_view", "web", "", {"url": f"/{i}"}))
        c.remember_key(f"k{i}", T0 + i)


def _pid_calls(obj: Any) -> int:
    writer = ObjectWriter(obj)
    calls = [0]
    hook = writer.persistent_id

    def counting(o: object) -> object:
        calls[0] += 1
        return hook(o)

    writer._p.persistent_id = counting
    writer.serialize(obj)
    return calls[0]


def _dict_pid_calls(c: Customer, monkeypatch: Any) -> int:
    with monkeypatch.context() as m:
        m.setattr(Customer, "__getstate__", _dict_form)
        return _pid_calls(c)


def test_a_customer_with_history_and_a_key_log_costs_the_hook_few_calls(
        tmp_path: Path, monkeypatch: Any) -> None:
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        c = f.add_customer(Customer("c", created_at=0))
        _busy(c)
        f.add_customer(Customer("f", created_at=0)).link_identity(("email", "f@example.org"), IdentityLink("test", 0))
    with store.transaction() as f:
        c = f.customers["c"]
        c._p_activate()
        assert len(c.__getstate__()) == 4  # hot, (identities inline), _tree, key_log: the rest left out
        tuple_calls = _pid_calls(c)
        dict_calls = _dict_pid_calls(c, monkeypatch)
        fresh = f.customers["f"]  # identities only (inline, in the packed value): most customers
        fresh._p_activate()
        fresh_calls = (_pid_calls(fresh), _dict_pid_calls(fresh, monkeypatch))
    assert tuple_calls <= 10 < 12 <= dict_calls, (tuple_calls, dict_calls)
    assert fresh_calls[0] < fresh_calls[1], fresh_calls
    store.close()


def test_an_old_dict_form_record_reads_and_is_written_as_a_tuple_next(tmp_path: Path, monkeypatch: Any) -> None:
    uri = str(tmp_path / "s.fs")
    with monkeypatch.context() as m:
        m.setattr(Customer, "__getstate__", _dict_form)
        with Store.open(uri) as s, s.transaction() as f:
            c = f.add_customer(Customer("c", created_at=0))
            _busy(c)
            c.set_traits({"name": "Ann"})
    with Store.open(uri) as s:
        assert s.generation == CURRENT_GENERATION
        with s.read() as f:  # a dict-form record, as generation 11 left it
            c = f.customers["c"]
            raw, _ = s.db.storage.load(c._p_oid)
            assert b"_hot" in raw
            assert c.traits == {"name": "Ann"} and c.has_key("k0", T0) and len(c.history) == 19
            before = (dict(c.hard), [it.key for it in c.history.values()], dict(c.recent_keys))
        with s.transaction() as f:
            f.customers["c"].set_traits({"city": "Leeds"})  # the next write
        with s.read() as f:
            c = f.customers["c"]
            raw, _ = s.db.storage.load(c._p_oid)
            assert b"_hot" not in raw and type(c.__getstate__()) is tuple
            assert (dict(c.hard), [it.key for it in c.history.values()], dict(c.recent_keys)) == before
            assert c.traits == {"name": "Ann", "city": "Leeds"} and c.has_key("k0", T0)
            assert set(named(c.__getstate__())) == {"_hot", "_tree", "key_log"}  # (identities inline: in _hot)


def test_a_plain_attribute_holding_a_persistent_object_keeps_the_dict_form() -> None:
    from BTrees.OOBTree import OOBTree

    c = Customer("c", created_at=0)
    c.rule_state["odd"] = OOBTree()  # (no code does this; the record must still keep it a reference)
    state = c.__getstate__()
    assert type(state) is dict and "rule_state" in state
    back = Customer.__new__(Customer)
    back.__setstate__(state)
    assert isinstance(back.rule_state["odd"], OOBTree)


def test_generations_10_to_12_open_a_store_without_walking_it(tmp_path: Path, storage_loads: Any) -> None:
    """The steps are recorded, not run over the customers: a store at generation 9 (the lead's 10M
    PostgreSQL store) opens in the loads it took before, whatever its size."""

    from shopkeeper.plugins import builtin_evolve_steps

    uri = str(tmp_path / "s.fs")
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.transaction() as f:
        for i in range(200):
            _busy(f.add_customer(Customer(f"c{i}", created_at=0)))
        f.meta["generation"] = 9
    with storage_loads.counting(), Store.open(uri, steps=builtin_evolve_steps()) as s:
        assert s.generation == CURRENT_GENERATION
    assert storage_loads.count < 60  # the root, meta and a few folders; 200 customers walked: > 200
