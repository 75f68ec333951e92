"""Decide's answer: an empty answer always says why (issue 14), whatever held the offer back."""

from __future__ import annotations

from shopkeeper import contact
from shopkeeper.customer import Customer
from shopkeeper.engine.decisions import gather


def test_an_answer_without_offers_says_nothing_was_proposed() -> None:
    got = gather(Customer("c1"), "web", [{"kind": "message", "id": "welcome", "score": 0.2}])
    assert [a["id"] for a in got] == ["welcome"]
    assert got.no_offer_reason == contact.NO_CANDIDATES == "no_candidates"
    assert "no offer was proposed for web" in got.no_offer_detail


def test_an_answer_with_an_offer_has_no_reason_and_a_refusal_keeps_its_own() -> None:
    c = Customer("c1")
    offer = {"kind": "offer", "id": "ten", "score": 0.9, "payload": {}}
    assert gather(c, "web", [offer]).no_offer_reason == ""
    assert gather(c, "email", [offer]).no_offer_reason == contact.NO_CONSENT  # no email consent


def test_pending_offers_apply_until_the_store_shows_them_and_a_refused_one_leaves_at_once() -> None:
    """A Decide whose read began before the last one's record committed still sees it (``grace``);
    one the store already shows (its key in ``offer.decisions``) is not counted twice."""
    from shopkeeper.analysis.offers import current_offer, first_report, offer_log
    from shopkeeper.engine.decisions import Pending, _Shown

    pending = Pending(grace=3600)
    a, b = _Shown("d1:ten", "ten", 1_000, "web", "home"), _Shown("d2:five", "five", 2_000, "web", "home")
    pending.add("c1", [a, b])
    c = Customer("c1")
    assert pending.apply(c) == 2 and [o for _ts, o, _k in offer_log(c)] == ["ten", "five"]
    pending.settle("c1", [a], committed=True)  # committed: still applied to an older snapshot...
    pending.settle("c1", [b], committed=False)  # refused: nothing was recorded, gone now
    assert len(pending) == 1
    c = Customer("c1")
    assert pending.apply(c) == 1 and current_offer(c)["offer"] == "ten"
    assert not c.soft  # shown to the Decide in progress, not written into its copy of the record
    pending.done(c)
    assert offer_log(c) == () and current_offer(c) is None
    newer = Customer("c1")  # ...but not to a snapshot that holds it
    first_report(newer, "d1:ten", 1_000)
    assert pending.apply(newer) == 0 and offer_log(newer) == ()
    gone = Pending(grace=0)
    gone.add("c1", [a])
    gone.settle("c1", [a], committed=True)
    gone.settle("c1", [], committed=True)  # (the next answer sweeps what has left)
    assert len(gone) == 0


def test_offer_records_are_addressed_by_the_identity_the_decide_named_without_loading_identities() -> None:
    """A Decide by identity addresses its ``offer_shown`` records with that identity: the
    customer's identities record (cold for most customers) is not loaded for them (benchmarks §38)."""
    from shopkeeper.engine.decisions import shown_events
    from shopkeeper.events import DEFAULT_EVENT_TYPES

    class Untouchable:
        def keys(self, *_a: object, **_k: object) -> list:
            raise AssertionError("the customer's identities were loaded")

    c = Customer("c1")
    c.identities = Untouchable()  # type: ignore[assignment]
    offer = [{"kind": "offer", "id": "ten", "record": True, "payload": {}}]
    got = shown_events(c, offer, "d1", "web", "home", {}, DEFAULT_EVENT_TYPES, identity=("email", "a@example.com"))
    assert [(e.type, e.identities, e.data["offer"]) for e in got] == \
        [("offer_shown", [("email", "a@example.com")], "ten")]


def test_an_identity_events_refuse_falls_back_to_the_customers_own() -> None:
    """An identity the lookup accepted but an event refuses still gets the offer recorded."""
    from shopkeeper.engine.decisions import shown_events
    from shopkeeper.events import DEFAULT_EVENT_TYPES

    c = Customer("c1")
    c.identities[("email", "a@example.com")] = None
    offer = [{"kind": "offer", "id": "ten", "record": True, "payload": {}}]
    got = shown_events(c, offer, "d1", "web", "home", {}, DEFAULT_EVENT_TYPES, identity=("Email", "A@Example.com"))
    assert [e.identities for e in got] == [[("email", "a@example.com")]]


def test_a_control_mark_commits_with_the_next_group_and_holds_after_a_restart(tmp_path) -> None:
    """A control-group Decide's mark (``nba.control_since``) lingers like an offer record: it
    shares the next group's transaction instead of a transaction and fsync of its own
    (benchmarks §39), and it is durable like any commit."""
    from shopkeeper.analysis.offers import FIRST_CONTROL_DECISION
    from shopkeeper.engine.decisions import record
    from shopkeeper.engine.writer import Writer
    from shopkeeper.events import DEFAULT_EVENT_TYPES, validate_event
    from shopkeeper.identity import IdentityConfig, Resolver
    from shopkeeper.store import Store

    def ev(i: int, email: str) -> object:
        return validate_event({"type": "page_view", "identities": {"email": email}, "ts": 1_750_000_000 + i,
                               "idempotency_key": f"k{i}", "data": {"url": "/"}})

    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    w = Writer(store, Resolver(IdentityConfig()))
    w.start()
    try:
        cid = w.submit_events([ev(1, "ann@example.org")]).result(10)[0].customer_id
        txns = len(list(store.db.storage.iterator()))
        control = [{"kind": "message", "id": "nba-control", "record": True, "payload": {"group": "control"}}]
        with store.read() as f:
            assert record(w, f.customer(cid), control, "web", "home", {}, DEFAULT_EVENT_TYPES, linger=3600) == ""
        assert [r.status for r in w.submit_events([ev(2, "bob@example.org")]).result(10)] == ["applied"]
        assert len(list(store.db.storage.iterator())) == txns + 1  # the mark and Bob's event: one commit
        with store.read() as f:
            assert FIRST_CONTROL_DECISION in f.customer(cid).soft
    finally:
        w.stop()
        store.close()
    with Store.open(uri) as again, again.read() as f:
        assert f.customer(cid).soft[FIRST_CONTROL_DECISION].source == "decide"


def test_a_control_mark_is_published_on_the_change_feed() -> None:
    """The mark changes the customer (a soft fact ``GetCustomer`` shows), so a ``Watch`` subscriber
    mirroring customers must hear of it: one ``soft_fact`` entry, in the store's feed and published
    after the commit, naming the fact (``detail``) and the decision's time (``at``)."""
    from shopkeeper.analysis.offers import FIRST_CONTROL_DECISION
    from shopkeeper.engine import feed
    from shopkeeper.engine.decisions import record
    from shopkeeper.engine.writer import Writer
    from shopkeeper.events import DEFAULT_EVENT_TYPES, validate_event
    from shopkeeper.identity import IdentityConfig, Resolver
    from shopkeeper.store import Store

    published: list[feed.Change] = []
    store = Store.open("memory://")
    w = Writer(store, Resolver(IdentityConfig()), on_committed=published.extend)
    w.start()
    try:
        ev = validate_event({"type": "page_view", "identities": {"email": "ann@example.org"}, "ts": 1_750_000_000,
                             "idempotency_key": "k1", "data": {"url": "/"}})
        cid = w.submit_events([ev]).result(10)[0].customer_id
        control = [{"kind": "message", "id": "nba-control", "record": True, "payload": {"group": "control"}}]
        with store.read() as f:
            record(w, f.customer(cid), control, "web", "home", {}, DEFAULT_EVENT_TYPES, linger=0.01)
        w.submit_op(lambda f, ch: None).result(10)  # after the mark's group
        marks = [e for e in published if e.kind == "soft_fact"]
        assert [(e.customer_id, e.detail) for e in marks] == [(cid, FIRST_CONTROL_DECISION)]
        with store.read() as f:
            assert marks[0].at == f.customer(cid).soft[FIRST_CONTROL_DECISION].at
            assert [e.kind for e in feed.read(f, 0)] == ["interaction", "soft_fact"]
    finally:
        w.stop()
        store.close()


def _offer_records(store, cid: str, decision_id: str) -> list:
    """The ``offer_shown`` records a Decide by Ann's email builds for ``cid``, read as Decide reads."""
    from shopkeeper.engine.decisions import shown_events
    from shopkeeper.events import DEFAULT_EVENT_TYPES

    offer = [{"kind": "offer", "id": "ten", "record": True, "payload": {}}]
    with store.read() as f:
        return shown_events(f.customer(cid), offer, decision_id, "web", "home", {}, DEFAULT_EVENT_TYPES,
                            identity=("email", "ann@example.org"))


def _two_customers(ing) -> tuple[str, str]:
    from shopkeeper.events import validate_event

    got = ing.apply([validate_event({"type": "page_view", "identities": {"email": e}, "ts": 1_750_000_000 + i,
                                     "idempotency_key": f"k{i}", "data": {"url": "/"}})
                     for i, e in enumerate(("ann@example.org", "bob@example.org"))])
    return got[0].customer_id, got[1].customer_id


def test_the_writer_files_an_offer_record_on_the_customer_decide_resolved_without_the_identities_index(
        monkeypatch) -> None:
    """An offer record carries the customer ``Decide`` resolved (``resolved_id``): the writer
    neither walks the identities index (cold buckets in a big store, benchmarks §55) nor resolves
    again, and exactly-once still holds (a redelivery is a duplicate)."""
    from shopkeeper.engine import ingest
    from shopkeeper.engine.ingest import Ingestor
    from shopkeeper.store import Folders, Store

    looked: list[object] = []

    class Spy:
        def __init__(self, tree: object) -> None:
            self.tree = tree

        def get(self, key: object, default: object = None) -> object:
            looked.append(key)
            return self.tree.get(key, default)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            looked.append(name)
            return getattr(self.tree, name)

    class SpiedFolders(Folders):
        __slots__ = ()

        def __init__(self, conn: object) -> None:
            super().__init__(conn)  # type: ignore[arg-type]
            self.identities = Spy(self.identities)  # type: ignore[assignment]

    store = Store.open("memory://")
    with Ingestor(store) as ing:
        ann, _bob = _two_customers(ing)
        records = _offer_records(store, ann, "d1")
        monkeypatch.setattr(ingest, "Folders", SpiedFolders)
        resolved: list[object] = []
        real = ing.resolver.resolve
        monkeypatch.setattr(ing.resolver, "resolve", lambda *a, **k: resolved.append(a) or real(*a, **k))
        got = ing.apply(records)
        assert [(r.status, r.customer_id) for r in got] == [("applied", ann)]
        assert looked == [] and resolved == []
        assert [r.status for r in ing.apply(records)] == ["duplicate"]
    with store.read() as f:
        assert [it.type for it in f.customer(ann).history.values()].count("offer_shown") == 1
    store.close()


def test_an_offer_record_for_a_customer_merged_away_since_lands_on_the_survivor_exactly_once() -> None:
    """Between Decide's read and the writer's apply Ann was merged into Bob: the record resolved
    to Ann is filed on Bob (not on Ann's empty shell), and its redelivery is still a duplicate."""
    from shopkeeper.engine.ingest import Ingestor
    from shopkeeper.engine.operations import merge_customers
    from shopkeeper.store import Folders, Store

    store = Store.open("memory://")
    with Ingestor(store) as ing:
        ann, bob = _two_customers(ing)
        first, second = _offer_records(store, ann, "d1"), _offer_records(store, ann, "d2")
        assert [r.customer_id for r in ing.apply(first)] == [ann]

        class Changes:
            def add(self, *_a: object, **_k: object) -> None:
                pass

        conn, tm = store.connect()
        with tm:
            merge_customers(Folders(conn), Changes(), bob, ann, "test", "test")
        conn.close()
        got = ing.apply(second + first)
        assert [(r.status, r.customer_id) for r in got] == [("applied", bob), ("duplicate", bob)]
    with store.read() as f:
        shown = [it.data["decision_id"] for it in f.customer(bob).history.values() if it.type == "offer_shown"]
        assert sorted(shown) == ["d1", "d2"]
        assert f.customers[ann].status == "merged" and not len(f.customers[ann].history)
    store.close()


def test_an_offer_record_for_a_customer_erased_since_is_refused_and_not_recreated() -> None:
    """Ann asked to be forgotten between Decide's read and the writer's apply: the record resolved
    to Ann is refused (the tombstone), her erased record stays empty and nobody new is created."""
    from shopkeeper.engine.ingest import Ingestor
    from shopkeeper.privacy import forget
    from shopkeeper.store import Folders, Store

    store = Store.open("memory://")
    with Ingestor(store) as ing:
        ann, _bob = _two_customers(ing)
        records = _offer_records(store, ann, "d1")
        conn, tm = store.connect()
        with tm:
            forget(Folders(conn), Folders(conn).customers[ann])
        conn.close()
        got = ing.apply(records)
        assert [r.status for r in got] == ["rejected"] and "forgotten" in got[0].error
    with store.read() as f:
        assert f.customers[ann].status == "forgotten" and not len(f.customers[ann].history)
        assert len(f.customers) == 2
    store.close()
