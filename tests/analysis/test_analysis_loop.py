"""Segments, learned propensities and next best action, end to end through the Ingestor:
events in -> segment entries/exits, scores, decisions, outcomes learned."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from shopkeeper.analysis import offers as nba
from shopkeeper.analysis.conditions import ConditionError, Env, compile_condition
from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState
from shopkeeper.analysis.propensity import ALL, counts, posterior
from shopkeeper.analysis.segments import SegmentSet, load_segments, reevaluate, size_history, sizes, tick
from shopkeeper.analysis.state import folder
from shopkeeper.customer import Customer
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event

DAY = 86_400
REPO = Path(__file__).resolve().parents[2]
NOW = time.time() - 3600


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> int:
        return int(self.t * 1e6)


def ev(kind: str, who: str, t: float, n: int, **data) -> dict:
    key = f"{who.replace('@', '.')}-{n}"
    return {"type": kind, "identities": {"email": who}, "ts": t, "data": data, "idempotency_key": key}


@pytest.fixture
def state(tmp_path: Path) -> AnalysisState:
    st = AnalysisState(tmp_path)
    st.segments = SegmentSet()
    st.segments.define("big_spenders_90d", "spend(days=90) > 100")
    st.segments.define("lapsed", "days_since('page_view') >= 30")
    st.segments.define("emailable", ["consent('email')", "hard.orders >= 1"])
    st.catalogue = nba.Catalogue(policy={"control_percent": 0, "learn_segments": ["big_spenders_90d"]})
    st.catalogue.add({"id": "ship", "channels": ["web", "phone"], "eligible": "hard.orders >= 1", "value": 5})
    st.catalogue.add({"id": "vip", "channels": ["*"], "eligible": "in_segment('big_spenders_90d')", "value": 20})
    st.catalogue.add({"id": "welcome", "channels": ["web"], "eligible": "hard.orders == 0", "value": 8})
    st.clock = Clock(NOW)
    return st


def test_conditions_compile_safely_and_report_dependencies() -> None:
    c = compile_condition("spend(days=90) > 100 and days_since('page_view') >= 30")
    assert c.deps == {"order", "page_view"} and c.time_based
    assert compile_condition("hard.orders >= 2").deps == {"order"}
    assert compile_condition("hard.interactions > 2").deps == {"*"}
    assert not compile_condition("hard.orders >= 2").time_based
    for bad, msg in [("__import__('os')", "unknown function"), ("x.y > 1", "not a customer value"),
                         ("open(1).y > 1", "unsupported expression"),
                     ("spend(days=90) >", "invalid syntax"), ("foo > 1", "unknown name"),
                     ("score('a', 'b') > 1", "wrong number")]:
        with pytest.raises(ConditionError, match=msg):
            compile_condition(bad, "t")
    cust = Customer("c1", created_at=0)
    assert not compile_condition("score('clv.value') > 3")(Env(cust, 0))  # missing score: false, not an error


def test_shipped_definitions_load() -> None:
    segs = load_segments(REPO / "rules" / "segments")
    assert {"big_spenders_90d", "lapsed_visitors", "high_value"} <= set(segs.defs)
    cat = nba.load_catalogue(REPO / "rules" / "offers")
    assert "free_shipping" in cat.offers and cat.policy["control_percent"] == 10


def test_bad_definition_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("segments:\n  - name: x\n    when: spend(days=) > 1\n")
    with pytest.raises(ConditionError, match="a.yaml"):
        load_segments(tmp_path)
    (tmp_path / "a.yaml").write_text("offers:\n  - id: x\n    colour: red\n")
    with pytest.raises(ConditionError, match="unknown keys"):
        nba.load_catalogue(tmp_path)


def test_events_update_segments_scores_and_learn_outcomes(store, state) -> None:
    proc = AnalysisProcessor(state)
    with store.transaction() as f:
        from shopkeeper.analysis.state import create_analysis_folder

        create_analysis_folder(f.root)  # generation 4 does this on a real store
    raw = [ev("page_view", "ann@example.org", NOW - 40 * DAY, 0, url="/"),
           ev("order", "ann@example.org", NOW - 10 * DAY, 1, order_id="o1", amount=80.0),
           ev("order", "ann@example.org", NOW - 5 * DAY, 2, order_id="o2", amount=70.0),
           ev("email_open", "ann@example.org", NOW - 4 * DAY, 3, campaign="spring"),
           ev("email_click", "ann@example.org", NOW - 4 * DAY, 4, campaign="spring")]
    with Ingestor(store, processors=[proc]) as ing:
        res = ing.apply([validate_event(e) for e in raw])
    assert [r.status for r in res] == ["applied"] * 5
    changes = [(o["segment"], o["change"]) for r in res for o in r.outputs if isinstance(o, dict)]
    # the same changes are on the change feed, in the event's transaction
    kinds = {"enter": "segment_entered", "exit": "segment_left"}
    fed = [(s, o.kind) for r in res for o in r.outputs if not isinstance(o, dict) for s in o.segments]
    assert sorted(fed) == sorted((s, kinds[c]) for s, c in changes)
    # lapsed is evaluated as of the clock (now): the only visit is 40 days old
    assert ("lapsed", "enter") in changes
    assert ("big_spenders_90d", "enter") in [(s, c) for s, c in changes]
    assert res[2].outputs and res[2].outputs[0]["segment"] == "big_spenders_90d"  # the second order crossed 100
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        assert set(c.segments) == {"big_spenders_90d", "lapsed"}
        assert 0 < c.scores["propensity.email_click"].value < 1
        assert folder(f, "segment_sizes")["big_spenders_90d"] == 1
    # a visit makes ann leave "lapsed" at once (incremental exit)
    with Ingestor(store, processors=[proc]) as ing:
        r = ing.apply([validate_event(ev("page_view", "ann@example.org", NOW, 5, url="/"))])[0]
    assert {"kind": "segment", "segment": "lapsed", "change": "exit", "customer_id": r.customer_id} in r.outputs
    with store.read() as f:  # the processor counts entries and exits in the sizes (1 -> 0)
        assert folder(f, "segment_sizes")["lapsed"] == 0 and folder(f, "segment_sizes")["big_spenders_90d"] == 1

    # time passes: the scheduler takes her out of big_spenders_90d when the orders age out
    report = tick(store, state.segments, now=int((NOW + 100 * DAY) * 1e6))
    assert report["exited"] >= 1
    assert sizes(store)["big_spenders_90d"] == 0
    assert any(seg == "lapsed" for _day, seg, _n in size_history(store))


def test_decide_ranks_follows_up_and_learns_from_outcomes(store, state) -> None:
    proc = AnalysisProcessor(state)
    with store.transaction() as f:
        from shopkeeper.analysis.state import create_analysis_folder

        create_analysis_folder(f.root)
    who = "bob@example.org"
    with Ingestor(store, processors=[proc]) as ing:
        ing.apply([validate_event(ev("order", who, NOW - DAY, 0, order_id="b1", amount=150.0))])
    cat = state.catalogue
    rng = random.Random(1)
    with store.read() as f:
        c = f.customer_by_identity("email", who)
        web = nba.decide(cat, c, "web", "home_hero", {}, now=Clock(NOW)(), rng=rng)
        assert web[0]["kind"] == "offer" and web[0]["id"] in {"ship", "vip"}
        assert "P(accept)" in web[0]["reason"]
        # email is outbound: no consent, no offer
        assert nba.decide(cat, c, "email", "newsletter", {}, now=Clock(NOW)(), rng=rng) == []
    chosen = web[0]["id"]
    # the web page reports it showed the offer; the call centre then follows the same offer up
    with Ingestor(store, processors=[proc]) as ing:
        ing.apply([validate_event({**ev("offer_shown", who, NOW, 1, offer=chosen, placement="home_hero"),
                                   "channel": "web"})])
    with store.read() as f:
        c = f.customer_by_identity("email", who)
        agent = nba.decide(cat, c, "phone", "agent_screen", {}, now=Clock(NOW + 60)(), rng=rng)
        if chosen in {o.id for o in cat.offers.values() if o.applies_to("phone", "agent_screen")}:
            assert agent[0]["id"] == chosen and "follow-up" in agent[0]["reason"]
    # declining suppresses the offer and is learned
    with Ingestor(store, processors=[proc]) as ing:
        ing.apply([validate_event(ev("offer_declined", who, NOW + 120, 2, offer=chosen))])
    with store.read() as f:
        c = f.customer_by_identity("email", who)
        again = nba.decide(cat, c, "web", "home_hero", {}, now=Clock(NOW + 180)(), rng=rng)
        assert all(a["id"] != chosen for a in again)
        n, k, d = counts(folder(f, "outcomes"), chosen, ALL)
        assert (n, k, d) == (1, 0, 1)


def test_propensities_are_calibrated_from_many_outcomes(store) -> None:
    from shopkeeper.analysis.propensity import record
    from shopkeeper.analysis.state import create_analysis_folder

    rng = random.Random(3)
    with store.transaction() as f:
        out = create_analysis_folder(f.root)["outcomes"]
        for _ in range(4000):
            seg = "vip" if rng.random() < 0.25 else "_none"
            record(out, "o", seg, "shown")
            if rng.random() < (0.30 if seg == "vip" else 0.05):
                record(out, "o", seg, "accepted")
        a, b = posterior(out, "o", "vip")
        assert a / (a + b) == pytest.approx(0.30, abs=0.03)
        a, b = posterior(out, "o", "_none")  # no segment: everyone's rate
        assert 0.08 < a / (a + b) < 0.14


def test_contact_policy_control_group_and_quiet_hours(state) -> None:
    cat = state.catalogue
    c = Customer("c-policy", created_at=0)
    c.hard["orders"] = 1
    now = Clock(NOW)()
    for i in range(3):
        nba.remember_outcome(c, "x", "shown", now - i * 1000, "web", "p")
    c.clear_soft_fact("offer.current")
    got = nba.decide(cat, c, "web", "home_hero", {}, now=now)
    assert got[0]["id"] == "nba-rest" and "contact policy" in got[0]["reason"]
    c2 = Customer("c-quiet", created_at=0)
    c2.hard["orders"] = 1
    c2.set_consent("phone", "marketing", True, "test")
    cat.policy["outbound_channels"] = ["phone"]
    assert nba.decide(cat, c2, "phone", "call", {"local_hour": 23}, now=now) == []
    assert nba.decide(cat, c2, "phone", "call", {"local_hour": 11}, now=now)[0]["id"] == "ship"
    # control group: stable per customer, about the configured share
    members = [nba.in_control_group(f"cust-{i}", 10, "salt") for i in range(5000)]
    assert 0.08 < sum(members) / 5000 < 0.12
    assert members == [nba.in_control_group(f"cust-{i}", 10, "salt") for i in range(5000)]


def test_full_reevaluation_when_a_definition_changes(store, state) -> None:
    with Ingestor(store) as ing:  # no processor: membership comes only from the re-evaluation
        ing.apply([validate_event(ev("order", f"c{i}@example.org", NOW - DAY, i, order_id=f"o{i}", amount=10.0 * i))
                   for i in range(20)])
    segs = SegmentSet()
    segs.define("spent_100", "hard.total_spend >= 100")
    r = reevaluate(store, segs, now=Clock(NOW)())
    assert r["sizes"]["spent_100"] == 10 and sizes(store)["spent_100"] == 10
    assert tick(store, segs, now=Clock(NOW)())["changed_definitions"] == []
    segs.define("spent_100", "hard.total_spend >= 150")
    r = tick(store, segs, now=Clock(NOW)())
    assert r["changed_definitions"] == ["spent_100"] and r["exited"] == 5 and sizes(store)["spent_100"] == 5


def test_a_stopped_reevaluation_records_no_partial_sizes(store, state) -> None:
    """The scheduler passes the hub's shut-down signal: a run that is stopped before it finishes
    must not record sizes counted over a part of the customers, nor mark its definitions done."""
    import threading

    with Ingestor(store) as ing:
        ing.apply([validate_event(ev("order", f"c{i}@example.org", NOW - DAY, i, order_id=f"o{i}", amount=10.0 * i))
                   for i in range(20)])
    segs = SegmentSet()
    segs.define("spent_100", "hard.total_spend >= 100")
    stop = threading.Event()
    stop.set()
    r = tick(store, segs, now=Clock(NOW)(), stop=stop)
    assert r["stopped"] is True and r["customers"] == 0
    assert "spent_100" not in sizes(store)
    # the next (unstopped) run still sees the definition as changed and evaluates everyone
    r = tick(store, segs, now=Clock(NOW)())
    assert r["changed_definitions"] == ["spent_100"] and r["sizes"]["spent_100"] == 10
