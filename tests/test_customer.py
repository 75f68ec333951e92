"""The Customer object: facts, consents, history queries, persistence shape."""

from __future__ import annotations

import pickle

from BTrees.LOBTree import LOBTree
from BTrees.OOBTree import OOBTree

from shopkeeper.customer import Customer, Interaction
from shopkeeper.packedrecord import named
from shopkeeper.store import Store

S = 1_000_000
T0 = 1_750_000_000 * S


def it(ts: int, type_: str = "page_view", channel: str = "web", **data: object) -> Interaction:
    return Interaction(ts, ts, type_, channel, "", dict(data), f"k{ts}", (), "")


def test_growing_parts_are_btrees() -> None:
    """History spills from the customer's record into an LOBTree in chunks; identities are a BTree once
    they grow past the few kept in the record (``shopkeeper.identitymap``, tests/test_identities_inline.py)."""
    from shopkeeper.customer import HISTORY_CHUNK
    from shopkeeper.identitymap import INLINE_MAX
    from shopkeeper.values import IdentityLink

    c = Customer("c1")
    for i in range(INLINE_MAX + 1):
        c.link_identity(("cookie", f"k{i}"), IdentityLink("t", 1))
    assert isinstance(c.identities, OOBTree)
    for i in range(HISTORY_CHUNK * 2 + 3):
        c.add_interaction(it(T0 + (100 - i) * S))  # out of order: the view still reads sorted
    assert isinstance(c._tree, LOBTree) and len(c._tree) == HISTORY_CHUNK * 2 and len(c._recent) == 3
    keys = list(c.history.keys())
    assert keys == sorted(keys) and len(c.history) == len(keys) == HISTORY_CHUNK * 2 + 3
    assert [x.ts for x in c.recent(3)] == [T0 + 100 * S, T0 + 99 * S, T0 + 98 * S]
    assert list(c.history.keys(min=T0 + 70 * S, max=T0 + 72 * S)) == [T0 + 70 * S, T0 + 71 * S, T0 + 72 * S]
    assert c.history.maxKey() == T0 + 100 * S and c.history.minKey() == T0 + 66 * S


def test_hard_facts_follow_interactions() -> None:
    c = Customer("c1")
    c.add_interaction(it(T0 + 5 * S, url="/"))
    c.add_interaction(it(T0 + 1 * S, "order", order_id="o1", amount=10.5, items=1))
    c.add_interaction(it(T0 + 9 * S, "order", "store", order_id="o2", amount=4.25, items=2))
    assert c.hard["orders"] == 2
    assert c.hard["total_spend"] == 14.75
    assert c.hard["first_seen"] == T0 + S
    assert c.hard["last_seen"] == T0 + 9 * S
    assert c.hard["last_channel"] == "store"
    assert c.hard["interactions"] == 3
    assert c.type_counts == {"page_view": 1, "order": 2}
    before = dict(c.hard)
    c.recompute_hard_facts()
    assert c.hard == before


def test_same_timestamp_gets_distinct_keys() -> None:
    c = Customer("c1")
    a = c.add_interaction(it(T0))
    b = c.add_interaction(it(T0))
    assert (a.key, b.key) == (T0, T0 + 1)
    assert len(list(c.interactions())) == 2


def test_history_queries_by_time_channel_type() -> None:
    c = Customer("c1")
    for i in range(10):
        c.add_interaction(it(T0 + i * S, "email_open" if i % 2 else "page_view", "email" if i % 2 else "web"))
    assert [x.ts for x in c.interactions(since=T0 + 3 * S, until=T0 + 6 * S)] == [T0 + 3 * S, T0 + 4 * S, T0 + 5 * S]
    assert all(x.channel == "email" for x in c.interactions(channel="email"))
    assert len(list(c.interactions(type="page_view"))) == 5
    assert [x.ts for x in c.recent(3)] == [T0 + 9 * S, T0 + 8 * S, T0 + 7 * S]
    assert [x.ts for x in c.interactions(newest_first=True, type="email_open")][:2] == [T0 + 9 * S, T0 + 7 * S]


def test_recent_on_a_long_history_walks_backwards() -> None:
    c = Customer("c1")
    for i in range(5000):
        c.add_interaction(it(T0 + i * 3600 * S))
    assert [x.ts for x in c.recent(2)] == [T0 + 4999 * 3600 * S, T0 + 4998 * 3600 * S]
    got = [x.ts for x in c.interactions(newest_first=True, since=T0 + 10 * 3600 * S)]
    assert got == [T0 + i * 3600 * S for i in range(4999, 9, -1)]


def test_soft_facts_consents_scores_segments_carry_provenance() -> None:
    c = Customer("c1")
    c.set_soft_fact("price_sensitivity", "high", source="agent:a7", at=T0)
    assert c.soft["price_sensitivity"].value == "high"
    assert c.soft["price_sensitivity"].source == "agent:a7"
    assert not c.may_contact("email")
    c.set_consent("email", "marketing", True, source="web-form", at=T0)
    assert c.may_contact("email")
    c.set_consent("email", "marketing", False, source="unsubscribe", at=T0 + S)
    assert not c.may_contact("email")
    assert c.consent("email").source == "unsubscribe"
    c.set_score("churn", 0.25, source="model:v1")
    assert c.scores["churn"].value == 0.25
    assert c.join_segment("vip") and not c.join_segment("vip")
    assert c.leave_segment("vip") and not c.leave_segment("vip")


def test_interaction_pickles_compactly() -> None:
    x = Interaction(T0, T0, "page_view", "web", "", {"url": "/shoes"}, "a" * 32, (("email", "ann@example.org"),), "c1")
    # named tuples pickle as class + values: no per-record field names
    data = pickle.dumps(x, 3)
    assert b"idempotency_key" not in data and b"channel" not in data
    assert len(data) < len(pickle.dumps(x._asdict(), 3))
    assert pickle.loads(pickle.dumps(x, 3)) == x


def test_old_customer_records_gain_new_attributes(store: Store) -> None:
    with store.transaction() as f:
        c = Customer("old")
        del c.__dict__["traits"]  # as written by a version without traits
        del c.__dict__["merged_from"]
        f.add_customer(c)
    store.db.cacheMinimize()
    with store.read() as f:
        c = f.customer("old")
        assert c.traits == {} and c.merged_from == () and c.forgotten is None


def test_customer_survives_a_real_filestorage_reopen(tmp_path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri) as s, s.transaction() as f:
        c = f.add_customer(Customer("c1"))
        c.add_interaction(it(T0, "order", order_id="o", amount=3.0))
        c.set_consent("sms", "service", True, "form")
    with Store.open(uri) as s, s.read() as f:
        c = f.customer("c1")
        assert c.hard["total_spend"] == 3.0
        assert c.may_contact("sms", "service")


def test_interaction_records_in_older_formats_still_load() -> None:
    from shopkeeper import customer as mod

    values = (T0, T0, "order", "web", "", {"amount": 3.0}, "k", (), "c1")
    # how a plain NamedTuple pickled before interactions were packed as bytes: cls, args, NEWOBJ
    args = pickle.dumps(values, 2)[2:-1]
    first_format = b"\x80\x02cshopkeeper.customer\nInteraction\n" + args + b"\x81."
    assert pickle.loads(first_format) == Interaction(*values)
    # a packed record written before the last fields existed gets their defaults
    short = mod._pack_fields(values[:7])
    old = mod._unpack_interaction(short)
    assert old.identities == () and old.origin == "" and old.data == {"amount": 3.0}
    assert mod._unpack_interaction(mod._pack_fields(values)) == Interaction(*values)


def _persistent_id_calls(obj: object) -> int:
    """How many times ZODB's Python ``persistent_id`` hook runs to pickle ``obj``'s record."""
    from ZODB.serialize import ObjectWriter

    writer = ObjectWriter(obj)
    calls = 0
    hook = writer.persistent_id

    def counting(o: object) -> object:
        nonlocal calls
        calls += 1
        return hook(o)

    writer._p.persistent_id = counting
    writer.serialize(obj)
    return calls


def test_a_customer_record_packs_its_plain_parts_into_one_value() -> None:
    """The hot state pickles as one bytes value: ZODB's hook runs a handful of times, not per dict
    entry (wave 1: ~100 calls for a customer like this one)."""
    store = Store.open("memory://packing")
    with store.transaction() as f:
        c = f.add_customer(Customer("c1", created_at=T0))
    conn, tm = store.connect()
    tm.begin()
    c = conn.root()["customers"]["c1"]
    for i in range(30):
        c.add_interaction(it(T0 + i * S, "order" if i % 5 == 0 else "page_view", amount=10.0))
        c.remember_key(f"key-{i}", T0 + i * S)
    c.set_soft_fact("price_sensitivity", "low", "agent", T0)
    c.set_consent("email", "marketing", True, "web", T0)
    c.set_score("clv", 12.5, "model", T0)
    c.join_segment("vip", T0)
    c.rule_state["fired"] = {f"r{i}": [1, T0] for i in range(10)}
    assert _persistent_id_calls(c) < 25
    state = c.__getstate__()
    assert type(state) is tuple and set(named(state)) <= {"_hot", "identities", "_tree", "outbox", "key_log"}
    back = Customer.__new__(Customer)
    back.__setstate__(pickle.loads(pickle.dumps(state)))
    for name in ("id", "hard", "type_counts", "soft", "consents", "scores", "rule_state",
                 "recent_keys", "daily", "last_at", "created_at", "status"):
        assert getattr(back, name) == getattr(c, name), name
    # the memberships are a row of their own (generation 16, ``shopkeeper.memberships``), not in the record
    assert c.segments == {"vip": T0} and "segments" not in pickle.loads(state[0])
    tm.abort()
    conn.close()
    store.close()


def test_references_that_are_none_are_left_out_of_the_record(tmp_path) -> None:
    """A customer without a spilled history, a key log or an outbox pickles none of the three (each
    loads as its class default, None); once they exist they are references, read back as written. Their
    few identities are inside the packed record (generation 10)."""
    from shopkeeper.customer import HISTORY_CHUNK, KEY_WINDOW

    fresh = Customer("c0", created_at=T0)
    assert set(named(fresh.__getstate__())) == {"_hot"} and len(fresh.__getstate__()) == 1  # identities inline
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        f.add_customer(Customer("c0", created_at=T0))
        c = f.add_customer(Customer("c1", created_at=T0))
        for i in range(max(HISTORY_CHUNK, KEY_WINDOW) + 1):
            c.add_interaction(it(T0 + i * S, "page_view"))
            c.remember_key(f"key-{i}", T0 + i * S)
        assert {"_tree", "key_log"} <= set(named(c.__getstate__()))
    store.close()
    store = Store.open(str(tmp_path / "s.fs"))
    with store.read() as f:
        c0, c1 = f.customers["c0"], f.customers["c1"]
        assert c0._tree is None and c0.key_log is None and c0.outbox is None and len(c0.history) == 0
        assert len(c1.history) == max(HISTORY_CHUNK, KEY_WINDOW) + 1 and c1.has_key("key-0", T0)
    store.close()


def test_a_persistent_object_inside_a_plain_part_stays_a_reference(tmp_path) -> None:
    """Rules keep an outbox ``LOBTree`` in ``rule_state`` when no outbox plugin runs: packing must not
    copy it into the customer's record (a later change to it would be lost)."""
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        c = f.add_customer(Customer("c1", created_at=T0))
        c.rule_state["outbox"] = LOBTree()
        c.set_soft_fact("x", 1, "t", T0)
    with store.transaction() as f:
        box = f.customers["c1"].rule_state["outbox"]
        assert box._p_oid is not None  # its own record
        box[1] = {"status": "pending"}  # changes only the LOBTree's record
    store.close()
    store = Store.open(str(tmp_path / "s.fs"))
    with store.read() as f:
        c = f.customers["c1"]
        assert dict(c.rule_state["outbox"]) == {1: {"status": "pending"}} and c.soft["x"].value == 1
    store.close()


def test_records_written_before_packing_still_load() -> None:
    c = Customer("c1", created_at=T0)
    c.set_score("clv", 3.0, "m", T0)
    plain = dict(c.__dict__)  # what wave 1 wrote: the plain instance dict
    back = Customer.__new__(Customer)
    back.__setstate__(plain)
    assert back.scores["clv"].value == 3.0 and back.id == "c1"


def test_recent_history_round_trips_through_the_record(tmp_path) -> None:
    """The recent interactions travel packed in the customer's record; a key popped and reused (a rule
    action taken back, then another event at the same µs) is re-packed, not served from the cache."""
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        c = f.add_customer(Customer("c1", created_at=T0))
        for i in range(5):
            c.add_interaction(it(T0 + i * S, url=f"/{i}"))
    with store.transaction() as f:
        c = f.customers["c1"]
        c.history.pop(T0 + 4 * S)
        c.add_interaction(it(T0 + 4 * S, "order", amount=3.0))
    store.close()
    store = Store.open(str(tmp_path / "s.fs"))
    with store.read() as f:
        got = [(x.type, x.data) for x in f.customers["c1"].history.values()]
    assert got == [("page_view", {"url": f"/{i}"}) for i in range(4)] + [("order", {"amount": 3.0})]
    store.close()


def test_rule_state_and_own_rules_change_only_through_the_customer_and_are_saved(file_store: Store) -> None:
    """rule_state and rules are plain dicts in the record: each method marks it changed, so a
    second connection (after the cache is gone) reads what the first wrote."""
    with file_store.transaction() as f:
        f.add_customer(Customer("r1"))
    with file_store.transaction() as f:
        c = f.customers["r1"]
        c.put_rule_state("tags", "vip", {"rule": "r", "at": 1})
        c.put_rule_state("timers", "t1", {"due": 5})
        c.set_rule_state("failures", [{"rule": "x"}])
        c.set_own_rule("mine", {"rule": {}, "version": "v"})
    file_store.db.cacheMinimize()
    with file_store.transaction() as f:
        c = f.customers["r1"]
        assert c.rule_state["tags"] == {"vip": {"rule": "r", "at": 1}} and c.rules == {"mine": {"rule": {},
                                                                                            "version": "v"}}
        assert c.pop_rule_state("timers", "t1") == {"due": 5} and c.pop_rule_state("timers", "t1") is None
        assert c.drop_own_rule("mine") and not c.drop_own_rule("mine")
    file_store.db.cacheMinimize()
    with file_store.read() as f:
        c = f.customers["r1"]
        assert c.rule_state["timers"] == {} and c.rules == {} and c.rule_state["failures"] == [{"rule": "x"}]


def test_no_code_marks_another_object_changed() -> None:
    """State changes only through the owning class's methods (issue 19): the rules code set
    ``_p_changed`` on customers in 12 places (and untag forgot to), ``history`` and
    ``identity.attach`` did too. An object may mark itself changed (``self._p_changed``, inside its
    own methods: ``Customer``, ``Counters``); any other assignment to ``_p_changed`` under ``core/``
    or ``adapters/`` fails here. Reading it (is it a ghost?) is fine."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for path in sorted([*(root / "core").rglob("*.py"), *(root / "adapters").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for t in targets:
                if (isinstance(t, ast.Attribute) and t.attr == "_p_changed"
                        and not (isinstance(t.value, ast.Name) and t.value.id == "self")):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == [], ("use the owning class's methods (Customer.link_identity, pop_interaction, "
                         f"put_rule_state, set_own_rule, ...), not _p_changed: {found}")


def test_stored_values_are_still_named_by_their_old_module(tmp_path) -> None:
    """Why: ``Interaction``, ``Fact``, ``Consent``, ``IdentityLink`` and ``Daily`` moved to
    ``shopkeeper.values``; records must keep naming ``shopkeeper.customer`` so the version before
    the move reads what this one writes (two hubs on one store during an upgrade)."""
    from shopkeeper.customer import Consent, Daily, Fact, IdentityLink

    c = Customer("v1", created_at=1)
    c.add_interaction(Interaction(0, 5, "order", "web", data={"amount": 3.0}))
    c.set_soft_fact("preferred_channel", "email", "test", at=1)
    c.set_consent("email", "marketing", True, "test", at=1)
    c.daily = Daily({0: {"order": 1}})
    blob = pickle.dumps((c.__getstate__(), IdentityLink("test", 1)), 4)
    assert b"shopkeeper.values" not in blob and blob.count(b"shopkeeper.customer") >= 1
    inner = pickle.loads(named(c.__getstate__())["_hot"])
    for v in (inner["soft"]["preferred_channel"], inner["consents"][("email", "marketing")]):
        assert type(v) in (Fact, Consent) and b"shopkeeper.values" not in pickle.dumps(v, 4)
    assert pickle.loads(blob)[1] == IdentityLink("test", 1)


class _PickleCalls:
    """``shopkeeper.values``' pickle module with its interaction packs and unpacks counted (an
    interaction packs as a tuple; the per-day aggregates, packed there too, as a dict)."""

    def __init__(self) -> None:
        self.packs = self.unpacks = 0

    def dumps(self, obj: object, *a: object, **k: object) -> bytes:
        self.packs += type(obj) is tuple
        return pickle.dumps(obj, *a, **k)

    def loads(self, data: bytes, *a: object, **k: object) -> object:
        got = pickle.loads(data, *a, **k)
        self.unpacks += type(got) is tuple
        return got


def test_recent_interactions_stay_packed_until_read(tmp_path, monkeypatch) -> None:
    """A load unpacks no recent interaction (a re-evaluation, an export or an event that only appends
    reads few or none), a read unpacks the one it reads, and a record written without touching its
    window stores the same bytes without packing anything again."""
    import shopkeeper.values as values

    uri = str(tmp_path / "s.fs")
    with Store.open(uri) as s, s.transaction() as f:
        c = f.add_customer(Customer("c1", created_at=T0))
        for i in range(10):
            c.add_interaction(it(T0 + i * S, url=f"/{i}"))
    with Store.open(uri) as s, s.read() as f:
        stored = pickle.loads(named(f.customers["c1"].__getstate__())["_hot"])["_recent"]
    calls = _PickleCalls()
    monkeypatch.setattr(values, "pickle", calls)
    with Store.open(uri) as s:
        with s.transaction() as f:
            c = f.customers["c1"]
            c.join_segment("vip", T0)  # the record is written, its window untouched
            assert c.hard["interactions"] == 10 and calls.unpacks == 0
            assert list(c.history.keys()) == [T0 + i * S for i in range(10)] and calls.unpacks == 0
        assert calls.packs == 0
        with s.read() as f:
            c = f.customers["c1"]
            assert pickle.loads(named(c.__getstate__())["_hot"])["_recent"] == stored
            assert c.history[T0 + 3 * S].data == {"url": "/3"} and calls.unpacks == 1
            assert [x.data["url"] for x in c.history.values()] == [f"/{i}" for i in range(10)]
            assert calls.unpacks == 10
        calls.packs = 0
        with s.transaction() as f:
            f.customers["c1"].add_interaction(it(T0 + 20 * S, "order", amount=2.0))
        assert calls.packs == 1  # the new one only
    with Store.open(uri) as s, s.read() as f:
        c = f.customers["c1"]
        assert [x.type for x in c.history.values()] == ["page_view"] * 10 + ["order"]
        assert c.history.get(T0 + 20 * S).data == {"amount": 2.0} and c.history.get(T0 - 1) is None


def test_a_window_stored_unpacked_loads_and_is_packed_on_its_next_write() -> None:
    """Records written before the recent interactions were packed hold ``Interaction``s in ``_recent``:
    they load as they are and are written packed; pop and get answer as a dict does."""
    from shopkeeper.recent import RecentWindow

    a, b = it(T0, url="/a"), it(T0 + S, "order", amount=1.0)
    w = RecentWindow.stored({a.key: a, b.key: b})
    assert w[a.key] is a and list(w) == [a.key, b.key] and len(w) == 2
    assert w.packed() == {a.key: Interaction.__reduce__(a)[1][0], b.key: Interaction.__reduce__(b)[1][0]}
    again = RecentWindow.stored(dict(w.packed()))
    assert again == w and again.get(T0 - 1) is None and again.pop(T0 - 1, "none") == "none"
    assert again.pop(b.key) == b and b.key not in again and again.items() == [(a.key, a)]
    try:
        again.pop(b.key)
        raise AssertionError("popping a missing key must raise KeyError")
    except KeyError:
        pass


def test_a_spill_and_its_bucket_rewrite_pack_only_the_new_interactions(tmp_path, monkeypatch) -> None:
    """An interaction keeps the packed bytes it was loaded from (or packed into once, for the window):
    the spill into the history tree and the rewrite of the tree's bucket hand them back instead of
    packing every interaction of the bucket again, and what is stored is the same bytes."""
    from shopkeeper import recent, values
    from shopkeeper.customer import HISTORY_CHUNK

    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        c = f.add_customer(Customer("c1", created_at=0))
        for i in range(3 * HISTORY_CHUNK - 1):  # two spills into one bucket, a window nearly full again
            c.add_interaction(Interaction(0, 1_000 + i, "page_view", "web", data={"i": i}))
    with store.read() as f:
        before = {k: it for k, it in f.customers["c1"].history.items()}
    store.close()
    packs: list[object] = []
    pack = values._pack_fields

    def counting(it: object) -> bytes:
        packs.append(it)
        return pack(it)  # type: ignore[arg-type]

    monkeypatch.setattr(values, "_pack_fields", counting)
    monkeypatch.setattr(recent, "_pack_fields", counting)
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:  # the window spills into the tree's bucket, which is rewritten
        f.customers["c1"].add_interaction(Interaction(0, 9_000, "order", "web", data={"amount": 5.0}))
    assert packs == [Interaction(9_000, 9_000, "order", "web", data={"amount": 5.0})]  # the new one alone
    # (on the old code also the bucket's 32 and the window's 15 again)
    with store.transaction() as f:
        f.customers["c1"].add_interaction(Interaction(0, 9_001, "page_view", "web"))
    assert len(packs) == 2  # the new one, once
    monkeypatch.undo()
    store.close()
    store = Store.open(str(tmp_path / "s.fs"))
    with store.read() as f:
        got = dict(f.customers["c1"].history.items())
    assert {k: got[k] for k in before} == before and len(got) == len(before) + 2
    assert got[max(got)].key == 9_001 and got[9_000].data == {"amount": 5.0}
    store.close()


def test_packing_reuses_its_pickler_without_carrying_anything_over() -> None:
    """``pack_plain`` reuses one pickler per thread: each result is what a fresh pickler makes (no memo
    entry of an earlier value referred to), also right after a value it had to refuse midway."""
    from shopkeeper.packing import pack_plain

    shared = {"k": "v" * 50}
    first = pack_plain({"a": shared, "b": [1, 2]})
    assert pack_plain({"a": shared, "b": [1, 2]}) == first == pickle.dumps({"a": shared, "b": [1, 2]}, 4)
    assert pack_plain({"x": [1, 2], "t": OOBTree()}) is None
    assert pickle.loads(pack_plain({"x": shared}) or b"") == {"x": shared}
