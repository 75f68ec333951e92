"""Decide's offer records in the customer's own small log (``shopkeeper.offerlog``): written alone,
read everywhere as if folded into the customer, folded when an answer to an offer comes in.

Most tests compare a store where the records took the writer's fast path (``ShownEvent``, the
analysis processor present) with one where the same records took the ordinary loop (plain
``Event``s: what every offer record did before), so a record lost, misfiled or counted twice
shows as a difference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeeper import contact, offerlog
from shopkeeper.analysis import offers as nba
from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState
from shopkeeper.analysis.segments import SegmentSet
from shopkeeper.engine import feed
from shopkeeper.engine.decisions import ShownEvent, shown_events
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import DEFAULT_EVENT_TYPES, Event, validate_event
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store
from shopkeeper.view import customer_view

T0 = 1_750_000_000
ANN, BOB = "ann@example.org", "bob@example.org"


class Clock:
    def __init__(self) -> None:
        self.t = T0 * 1_000_000

    def __call__(self) -> int:
        self.t += 1_000
        return self.t


@pytest.fixture
def state(tmp_path: Path) -> AnalysisState:
    st = AnalysisState(tmp_path)
    st.clock = Clock()  # both stores of a comparison stamp the same times
    st.segments = SegmentSet()
    st.catalogue = nba.Catalogue(policy={"control_percent": 0, "max_offers_per_week": 2})
    st.catalogue.add({"id": "ten", "channels": ["web"], "placements": ["home"]})
    st.catalogue.add({"id": "five", "channels": ["web"], "placements": ["home"]})
    st.catalogue.add({"id": "side", "channels": ["web"], "placements": ["side"]})
    return st


def _store() -> Store:
    return Store.open("memory://", steps=builtin_evolve_steps())  # with the analysis folders (outcomes)


def _ingestor(store: Store, state: AnalysisState) -> Ingestor:
    return Ingestor(store, processors=[feed.interaction_processor, AnalysisProcessor(state)])


def _event(kind: str, who: str, i: int, **data: Any) -> Event:
    return validate_event({"type": kind, "identities": {"email": who}, "ts": T0 + i, "idempotency_key": f"{kind}{i}",
                           "data": data or {"url": "/"}})


def _shown(store: Store, who: str, cid: str, decision: str, offer: str, i: int, fast: bool = True) -> list[Event]:
    """The record a Decide by ``who`` builds (``shown_events``), as a ``ShownEvent`` (the fast path)
    or as the plain event the ordinary loop took before."""
    with store.read() as f:
        got = shown_events(f.customer(cid), [{"kind": "offer", "id": offer, "record": True, "payload": {}}], decision,
                           "web", "home", {}, DEFAULT_EVENT_TYPES, now=(T0 + i) * 1_000_000, identity=("email", who))
    assert got and all(isinstance(e, ShownEvent) for e in got)
    if fast:
        return got
    return [Event(*(getattr(e, n) for n in Event.__dataclass_fields__)) for e in got]


def _view(store: Store, cid: str) -> dict[str, Any]:
    """The 360° view, GetCustomer's message of it, FindCustomers' summary and the console's timeline page
    (its total counts the unfolded records), without the customer's id."""
    from google.protobuf.json_format import MessageToDict

    from shopkeeper.adapters.console import data as console
    from shopkeeper.hub import convert
    from shopkeeper.identity import IdentityConfig

    with store.read() as f:
        v = customer_view(f.customer(cid), recent=50)
        msg = MessageToDict(convert.customer(f.customer(cid), recent=50))
        found = MessageToDict(convert.summary(f.customer(cid)))  # FindCustomers' answer
    hub = type("ConsoleHub", (), {"read": store.read, "identity_config": IdentityConfig()})()
    page = console.timeline(hub, cid)  # the console's timeline page and its total
    for d in (v, msg, found, page):
        d.pop("customer_id" if d is page else "id")
    return {"view": v, "GetCustomer": msg, "FindCustomers": found, "console timeline": page}


def _pair(state: AnalysisState) -> tuple[Store, Store, str, str]:
    """Two stores with Ann and Bob; returns them and the customer ids of Ann in each."""
    fast, slow = _store(), _store()
    ids = []
    for s in (fast, slow):
        with _ingestor(s, state) as ing:
            ids.append(ing.apply([_event("page_view", ANN, 1), _event("page_view", BOB, 2)])[0].customer_id)
    return fast, slow, ids[0], ids[1]


def _record_both(fast: Store, slow: Store, a: str, b: str, state: AnalysisState, decision: str, offer: str,
                 i: int) -> None:
    for s, cid, is_fast in ((fast, a, True), (slow, b, False)):
        state.clock.t = (T0 + i) * 1_000_000  # type: ignore[attr-defined]
        with _ingestor(s, state) as ing:
            assert [r.status for r in ing.apply(_shown(s, ANN, cid, decision, offer, i, is_fast))] == ["applied"]


def test_an_offer_record_writes_the_customers_small_log_not_the_customer_record(state: AnalysisState) -> None:
    """The point of it all: the customer record (~4.3 KB, in every read connection's cache) is
    not rewritten by an offer record, the first one included; its log is."""
    store = _store()
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        with store.read() as f:
            serial = f.customer(ann)._p_serial
        ing.apply(_shown(store, ANN, ann, "d1", "ten", 10))  # the first makes the log
        with store.read() as f:
            assert f.customer(ann)._p_serial == serial, "the first offer record rewrote the customer record"
            log_serial = offerlog.log_of(f.customer(ann))._p_serial
        got = ing.apply(_shown(store, ANN, ann, "d2", "five", 11))
        assert [r.status for r in got] == ["applied"]
    with store.read() as f:
        c = f.customer(ann)
        assert c._p_serial == serial, "the offer record rewrote the customer record"
        assert offerlog.log_of(c)._p_serial != log_serial
        assert [e[0].data["decision_id"] for e in offerlog.unfolded(c)] == ["d1", "d2"]
    store.close()


def test_the_view_history_and_memory_show_unfolded_records_as_the_ordinary_loop_would(state: AnalysisState) -> None:
    """The 360° view (hard facts, counts, soft facts, recent interactions) of a customer whose
    records wait in the log equals the view where they took the ordinary loop; after the next
    answer to an offer (the fold) too, and the log is empty."""
    fast, slow, a, b = _pair(state)
    _record_both(fast, slow, a, b, state, "d1", "ten", 10)
    _record_both(fast, slow, a, b, state, "d2", "five", 11)
    with fast.read() as f:
        assert len(offerlog.unfolded(f.customer(a))) == 2  # (the fast path was taken)
    assert _view(fast, a) == _view(slow, b)
    with fast.read() as f, slow.read() as g:
        ca, cb = f.customer(a), g.customer(b)
        assert nba.offer_log(ca) == nba.offer_log(cb) and nba.current_offer(ca) == nba.current_offer(cb)
        assert offerlog.decision_keys(ca) == set(cb.soft["offer.decisions"].value.split())
        assert [it.type for it in ca.history.values()] == [it.type for it in cb.history.values()]
        assert ca.history.field_rows() == [tuple(it) for it in ca.history.values()]  # the export's reader too
    for s in (fast, slow):
        state.clock.t = (T0 + 20) * 1_000_000  # type: ignore[attr-defined]
        with _ingestor(s, state) as ing:
            ing.apply([_event("offer_accepted", ANN, 20, offer="five")])
    assert _view(fast, a) == _view(slow, b)
    with fast.read() as f:
        c = f.customer(a)
        assert offerlog.unfolded(c) == () and "offer.current" not in c.soft  # folded, then answered
        assert c.type_counts["offer_shown"] == 2 and c.has_key("decide.d1.ten", 0)


def test_caps_and_follow_ups_count_records_not_folded_in_yet(state: AnalysisState) -> None:
    """Decide reads the offer memory with the unfolded records: the follow-up of the offer last
    shown and the weekly cap (offers shown in 7 days, from the same offer log as the per-offer
    caps) — as it would with them in the record."""
    fast, slow, a, b = _pair(state)
    _record_both(fast, slow, a, b, state, "d1", "ten", 10)
    now = (T0 + 100) * 1_000_000
    for s, cid in ((fast, a), (slow, b)):
        with s.read() as f:
            acts, _why = nba.decide_explained(state.catalogue, f.customer(cid), "web", "home", {}, now)
            assert [(x["id"], x["payload"].get("follow_up")) for x in acts] == [("ten", True)]
            acts, _why = nba.decide_explained(state.catalogue, f.customer(cid), "web", "side", {}, now)
            assert [x["id"] for x in acts] == ["side"]  # no follow-up of ten here: a new offer
    _record_both(fast, slow, a, b, state, "d2", "five", 11)
    for s, cid in ((fast, a), (slow, b)):
        with s.read() as f:
            acts, why = nba.decide_explained(state.catalogue, f.customer(cid), "web", "side", {}, now)
            assert why.code == contact.CAPPED, (s is fast, acts)  # two shown this week, at most 2


def test_a_touch_points_report_of_the_same_decision_is_counted_once(state: AnalysisState) -> None:
    """A touch point that also reports ``offer_shown`` for Decide's decision (its ``decision_id``)
    is not counted again, whether the hub's record is folded in or still in the log."""
    from shopkeeper.analysis.propensity import ALL, counts
    from shopkeeper.analysis.state import folder

    fast, slow, a, b = _pair(state)
    _record_both(fast, slow, a, b, state, "d1", "ten", 10)
    for s in (fast, slow):
        with _ingestor(s, state) as ing:
            assert [r.status for r in ing.apply([_event("offer_shown", ANN, 12, offer="ten", decision_id="d1")])] \
                == ["applied"]
    for s, cid in ((fast, a), (slow, b)):
        with s.read() as f:
            assert counts(folder(f, "outcomes"), "ten", ALL)[0] == 1
            assert [o for _t, o, k in nba.offer_log(f.customer(cid)) if k == "shown"] == ["ten"]
    assert _view(fast, a) == _view(slow, b)


def test_a_redelivered_record_is_a_duplicate_in_the_log_and_after_the_fold(state: AnalysisState) -> None:
    store = _store()
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        rec = _shown(store, ANN, ann, "d1", "ten", 10)
        assert [r.status for r in ing.apply(rec)] == ["applied"]
        assert [r.status for r in ing.apply(rec)] == ["duplicate"]
        ing.apply([_event("offer_declined", ANN, 11, offer="ten")])  # folds (an answer comes after the offer)
        assert [r.status for r in ing.apply(rec)] == ["duplicate"]
    with store.read() as f:
        c = f.customer(ann)
        assert [it.type for it in c.history.values()].count("offer_shown") == 1 and offerlog.unfolded(c) == ()


def test_a_full_log_is_folded_by_the_ordinary_loop(state: AnalysisState) -> None:
    """The log holds at most ``FOLD_AT`` records: the next one takes the ordinary loop, which folds
    the log into the record first; nothing is lost or doubled."""
    store = _store()
    n = offerlog.FOLD_AT + 1
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        for i in range(n):
            assert [r.status for r in ing.apply(_shown(store, ANN, ann, f"d{i}", "five", 10 + i))] == ["applied"]
    with store.read() as f:
        c = f.customer(ann)
        assert offerlog.unfolded(c) == ()
        assert c.type_counts["offer_shown"] == n and c.hard["interactions"] == n + 1
        assert sorted(it.data["decision_id"] for it in c.history.values() if it.type == "offer_shown") == \
            sorted(f"d{i}" for i in range(n))


def test_an_erased_customers_unfolded_offers_go_with_the_rest(state: AnalysisState) -> None:
    from shopkeeper.privacy import forget

    store = _store()
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        ing.apply(_shown(store, ANN, ann, "d1", "ten", 10))
    with store.read() as f:
        log = offerlog.log_of(f.customer(ann))
        assert log is not None and log.entries
        log_oid = log._p_oid
    with store.transaction() as f:
        forget(f, f.customers[ann])
    with store.read() as f:
        c = f.customers[ann]
        assert offerlog.log_of(c) is None and not len(c.history) and offerlog.soft_facts(c) == {}
        assert customer_view(c)["hard_facts"]["interactions"] == 0
        assert f.conn.get(log_oid).entries == ()  # the log itself holds nothing until a pack drops it


def test_a_merge_takes_the_absorbed_customers_unfolded_offers_to_the_survivor(state: AnalysisState) -> None:
    from shopkeeper.identity_merge import merge

    store = _store()
    with _ingestor(store, state) as ing:
        got = ing.apply([_event("page_view", ANN, 1), _event("page_view", BOB, 2)])
        ann, bob = got[0].customer_id, got[1].customer_id
        ing.apply(_shown(store, ANN, ann, "d1", "ten", 10))
    with store.transaction() as f:
        merge(f, f.customers[bob], f.customers[ann], reason="test", source="test")
    with store.read() as f:
        survivor, shell = f.customers[bob], f.customers[ann]
        assert [it.data.get("decision_id") for it in survivor.history.values() if it.type == "offer_shown"] == ["d1"]
        assert nba.current_offer(survivor)["offer"] == "ten" and survivor.has_key("decide.d1.ten", 0)
        assert offerlog.unfolded(shell) == () and not len(shell.history)


def test_the_fast_path_publishes_the_records_change_feed_entry(state: AnalysisState, store: Store) -> None:
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        got = ing.apply(_shown(store, ANN, ann, "d1", "ten", 10))
    assert [(e.kind, e.customer_id, e.event_type) for e in got[0].outputs] == [("interaction", ann, "offer_shown")]
    with store.read() as f:
        assert offerlog.unfolded(f.customer(ann))  # (the fast path was taken)
        assert [(e.kind, e.event_type) for e in feed.read(f, 0)][-1] == ("interaction", "offer_shown")


def test_a_segment_over_a_score_leaves_decides_records_on_the_fast_path(state: AnalysisState) -> None:
    """Score conditions list the offer outcomes among their event types (a processor may refit a
    score on them); no processor runs on the fast path, so such a segment does not stop it."""
    state.segments.define("valuable", "score.clv.value >= 500")
    store = _store()
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        ing.apply(_shown(store, ANN, ann, "d1", "five", 10))
    with store.read() as f:
        assert offerlog.unfolded(f.customer(ann))


def test_a_segment_naming_offer_shown_gets_decides_records_through_the_ordinary_loop(state: AnalysisState) -> None:
    state.segments.define("shown_twice", "count('offer_shown', days=30) >= 2")
    store = _store()
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        for i in range(2):
            ing.apply(_shown(store, ANN, ann, f"d{i}", "five", 10 + i))
    with store.read() as f:
        c = f.customer(ann)
        assert offerlog.log_of(c) is None and "shown_twice" in c.segments


def test_the_export_behind_the_uplift_report_lists_unfolded_records(state: AnalysisState, tmp_path: Path) -> None:
    """The uplift report starts a treated customer at their first ``offer_shown`` in
    ``interactions.parquet``: a record still in the log is in it, and the customer's counts too."""
    import pyarrow.parquet as pq

    from shopkeeper.analysis.export import export_parquet

    store = _store()
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        ing.apply(_shown(store, ANN, ann, "d1", "ten", 10))
    with store.read() as f:
        assert offerlog.unfolded(f.customer(ann))
    export_parquet(store, tmp_path / "x", control_percent=0)
    rows = pq.read_table(tmp_path / "x" / "interactions.parquet").to_pylist()
    assert [(r["type"], r["offer"]) for r in rows if r["customer_id"] == ann] == \
        [("page_view", None), ("offer_shown", "ten")]
    cust = pq.read_table(tmp_path / "x" / "customers.parquet").to_pylist()
    assert [r["interactions"] for r in cust if r["id"] == ann] == [2]


def test_an_old_record_without_a_log_read_as_before() -> None:
    """A customer written before the log existed has none (the class default): nothing merges."""
    from shopkeeper.customer import Customer

    c = Customer("c1")
    c.__setstate__({"id": "c1", "soft": {}, "hard": {"interactions": 0}, "type_counts": {}})
    assert offerlog.log_of(c) is None and offerlog.unfolded(c) == () and nba.offer_log(c) == ()


def test_a_hubs_rules_stand_aside_for_decides_records_unless_a_central_rule_reacts() -> None:
    """In a hub with the built-in plugins the rules processor wants every interaction; it stands
    aside for ``offer_shown`` while no central rule (nor ``rules test``'s observer) reacts to it."""
    from shopkeeper.engine.engine import Engine
    from shopkeeper.plugins import get_plugin_manager

    with Store.open("memory://") as store:
        engine = Engine(store, get_plugin_manager(load_entrypoints=False)).start()
        try:
            ing = engine.writer.ingestor
            assert ing._fast_path("offer_shown") is not None
            rules = next(p for p in ing.processors if hasattr(p, "waives"))
            rules.service.observe = lambda *_a: None
            assert ing._fast_path("offer_shown") is None
        finally:
            engine.stop()


def test_a_customer_with_rules_of_their_own_gets_decides_records_through_the_ordinary_loop(
        state: AnalysisState) -> None:
    store = _store()
    with _ingestor(store, state) as ing:
        ann = ing.apply([_event("page_view", ANN, 1)])[0].customer_id
        with store.transaction() as f:
            f.customers[ann].set_own_rule("mine", {"when": "offer_shown"})
        assert [r.status for r in ing.apply(_shown(store, ANN, ann, "d1", "ten", 10))] == ["applied"]
    with store.read() as f:
        c = f.customer(ann)
        assert offerlog.log_of(c) is None and c.type_counts["offer_shown"] == 1


def test_the_parquet_export_shows_unfolded_records_as_the_ordinary_loop_would(state: AnalysisState,
                                                                             tmp_path: Path) -> None:
    """The export reads the offer logs once (not from the root per customer, docs/benchmarks.md §93)
    and still writes a customer's unfolded records — their interactions and the hard facts counting
    them — as where they took the ordinary loop."""
    import pyarrow.parquet as pq

    from shopkeeper.analysis.export import export_parquet

    fast, slow, a, b = _pair(state)
    _record_both(fast, slow, a, b, state, "d1", "ten", 10)
    _record_both(fast, slow, a, b, state, "d2", "five", 11)
    with fast.read() as f:
        assert len(offerlog.unfolded(f.customer(a))) == 2  # (the fast path was taken)
    got = []
    for s, cid, name in ((fast, a, "fast"), (slow, b, "slow")):
        export_parquet(s, tmp_path / name, control_percent=0, control_salt="t")
        cust = [{k: v for k, v in r.items() if k != "id"}
                for r in pq.read_table(tmp_path / name / "customers.parquet").to_pylist() if r["id"] == cid]
        its = [{k: v for k, v in r.items() if k != "customer_id"}
               for r in pq.read_table(tmp_path / name / "interactions.parquet").to_pylist() if r["customer_id"] == cid]
        got.append((cust, its))
    assert got[0] == got[1]
    assert [r["type"] for r in got[0][1]].count("offer_shown") == 2 and got[0][0][0]["interactions"] == 3
