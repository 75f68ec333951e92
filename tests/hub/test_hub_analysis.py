"""The analysis plugin through a real hub: Decide records what it offered (so the next channel
follows the same offer up, without double counting when the touch point reports it too), and
segment entries/exits appear on the change feed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopkeeper._proto.v1 import interactions_pb2, watch_pb2
from shopkeeper.analysis import plugin as analysis
from shopkeeper.analysis.offers import current_offer, offer_log
from shopkeeper.analysis.state import create_analysis_folder
from shopkeeper.hub.convert import dict_to_struct
from shopkeeper.hub.server import Hub
from shopkeeper.store import Store
from shopkeeper.testing import wait_for
from shopkeeper.view import customer_view

from .conftest import Running, event, free_port, ident, make_config, record

pytestmark = pytest.mark.e2e

OFFERS = """
policy:
  control_percent: 0
  follow_up_days: 7
offers:
  - id: free_shipping
    title: Free shipping on your next order
    channels: [web, phone]
    value: 100
"""
SEGMENTS = """
segments:
  - name: browsers
    when: count('page_view') >= 2
"""


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "offers").mkdir()
    (tmp_path / "offers" / "catalogue.yaml").write_text(OFFERS)
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "segments.yaml").write_text(SEGMENTS)
    store = Store.open("memory://")
    with store.transaction() as f:
        create_analysis_folder(f.root)
    port = free_port()
    h = Hub(make_config(port, rules_dir=str(tmp_path)), store=store, load_entrypoints=False)
    h.start()
    r = Running(h, f"127.0.0.1:{h.port}", [])
    yield r
    for ch in r.channels:
        ch.close()
    h.stop(grace=0.5)
    store.close()


def decide(client, touchpoint: str, placement: str, channel: str) -> list:
    req = interactions_pb2.DecideRequest(customer=ident("email", "ann@example.com"), touchpoint=touchpoint,
                                         placement=placement, context=dict_to_struct({"channel": channel}))
    return [a for a in client.interactions.Decide(req, metadata=client.md).actions if a.kind == "offer"]


def shown_log(running: Running) -> list:
    with running.hub.store.read() as f:
        c = f.customer_by_identity("email", "ann@example.com")
        # the offer memory as Decide reads it: the record's, and Decide's records not folded in yet
        return [e for e in offer_log(c) if e[2] == "shown"]


def test_decide_records_the_offer_and_the_call_centre_follows_it_up(hub: Running) -> None:
    admin = hub.client("admin")
    record(admin, event("page_view", key="p1", url="/"))
    web = decide(admin, "web", "home_hero", "web")
    assert [a.id for a in web] == ["free_shipping"]
    decision_id = web[0].payload["decision_id"]
    assert decision_id
    # recorded by the hub (queued to the writer, not waited for by Decide): poll until committed
    wait_for(lambda: shown_log(hub), 5, what="the offer_shown record")
    assert len(shown_log(hub)) == 1
    with hub.hub.store.read() as f:
        c = f.customer_by_identity("email", "ann@example.com")
        assert current_offer(c)["channel"] == "web"
        assert customer_view(c)["interaction_counts"].get("offer_shown") == 1
    # the agent's screen on the phone channel: the same offer, as a follow-up, not a new draw
    agent = decide(admin, "callcentre", "agent_screen", "phone")
    assert [a.id for a in agent] == ["free_shipping"]
    assert agent[0].payload["follow_up"] and "follow-up: shown on web/home_hero" in agent[0].reason
    # the web page also reports what it showed, with the decision id: counted once
    shown = event("offer_shown", key="web-shown-1", offer="free_shipping", placement="home_hero",
                  decision_id=decision_id)
    assert record(admin, shown).outcome
    assert len(shown_log(hub)) == 1
    from shopkeeper.analysis.propensity import ALL, counts
    from shopkeeper.analysis.state import folder

    with hub.hub.store.read() as f:
        assert counts(folder(f, "outcomes"), "free_shipping", ALL)[0] == 1


def test_segment_entries_and_exits_are_on_the_change_feed(hub: Running) -> None:
    admin = hub.client("admin")
    record(admin, event("page_view", key="s1", url="/"))
    after = hub.hub.broker.latest
    record(admin, event("page_view", key="s2", url="/a"))
    stream = admin.watch.Watch(watch_pb2.WatchRequest(after_cursor=after, kinds=["segment_entered"]),
                               metadata=admin.md, timeout=5)
    got = next(iter(stream))
    stream.cancel()
    assert got.kind == "segment_entered" and list(got.segments) == ["browsers"] and got.detail == "browsers"
    assert got.event_type == "page_view"


def test_closed_loop_through_the_hub_scores_and_learned_outcomes(hub: Running) -> None:
    """Events in over gRPC -> CLV/RFM re-scored with the fitted model's version, email and offer
    outcomes learned: the scores the next Decide ranks by move with every interaction."""
    from shopkeeper._proto.v1 import interactions_pb2 as ipb
    from shopkeeper.analysis.models import fit_models
    from shopkeeper.analysis.propensity import ALL, counts, posterior
    from shopkeeper.analysis.state import folder

    admin = hub.client("admin")
    day = 86_400
    now = time.time()
    batch = ipb.EventBatch(batch_id="orders", events=[])
    for n in range(40):  # a small customer base with purchase histories to fit on
        for k in range(1 + n % 4):
            ev = event("order", email=f"c{n}@example.com", key=f"o{n}-{k}", order_id=f"o{n}-{k}",
                       amount=10.0 + n + k)
            ev.ts.FromSeconds(int(now - (200 - 30 * k - n) * day))
            batch.events.append(ev)
    [ack] = list(admin.interactions.StreamInteractions(iter([batch]), metadata=admin.md))
    assert ack.applied == len(batch.events)
    report = fit_models(hub.hub.store, submit=hub.hub.writer.submit_op)  # the hub runs: through its writer
    assert report["clv"] is not None, report.get("clv_error")
    version = report["clv"]["version"]

    before = None
    with hub.hub.store.read() as f:
        c = f.customer_by_identity("email", "c3@example.com")
        before = c.scores["clv.expected_purchases"]
        assert before.source.startswith("model:")
    record(admin, event("order", email="c3@example.com", key="new-order", order_id="n1", amount=80.0))
    with hub.hub.store.read() as f:
        c = f.customer_by_identity("email", "c3@example.com")
        after = c.scores["clv.expected_purchases"]
        assert after.at > before.at and after.value != before.value  # re-scored by the event itself
        assert after.source == f"model:{version}"
        assert {"rfm.r", "rfm.f", "rfm.m", "clv.p_alive", "churn.risk"} <= set(c.scores)

    # email outcomes: a click raises this customer's click propensity
    record(admin, event("email_open", email="c3@example.com", key="e1", campaign="autumn"))
    with hub.hub.store.read() as f:
        p_open = f.customer_by_identity("email", "c3@example.com").scores["propensity.email_click"].value
    record(admin, event("email_click", email="c3@example.com", key="e2", campaign="autumn"))
    with hub.hub.store.read() as f:
        p_click = f.customer_by_identity("email", "c3@example.com").scores["propensity.email_click"].value
    assert 0 < p_open < p_click < 1

    # offer outcomes: shown then accepted moves the offer's posterior up
    with hub.hub.store.read() as f:
        a0, b0 = posterior(folder(f, "outcomes"), "free_shipping", ALL)
    record(admin, event("offer_shown", email="c3@example.com", key="os1", offer="free_shipping", placement="home"))
    record(admin, event("offer_accepted", email="c3@example.com", key="oa1", offer="free_shipping"))
    with hub.hub.store.read() as f:
        outcomes = folder(f, "outcomes")
        assert counts(outcomes, "free_shipping", ALL)[:2] == (1, 1)
        a1, b1 = posterior(outcomes, "free_shipping", ALL)
    assert a1 / (a1 + b1) > a0 / (a0 + b0)


def test_a_control_group_customers_first_decision_is_noted_without_an_interaction(hub: Running,
                                                                                   tmp_path: Path) -> None:
    """The uplift report measures outcomes from each customer's first decision: a control-group
    customer's first decision leaves its time (soft fact nba.control_since), and nothing in the
    contact history the agent sees, nothing learned, nothing to follow up."""
    (tmp_path / "offers" / "catalogue.yaml").write_text(OFFERS.replace("control_percent: 0", "control_percent: 100"))
    analysis.state_for(hub.hub).reload()
    admin = hub.client("admin")
    record(admin, event("page_view", key="p1", url="/"))
    req = interactions_pb2.DecideRequest(customer=ident("email", "ann@example.com"), touchpoint="web",
                                         placement="home_hero", context=dict_to_struct({"channel": "web"}))
    before = time.time_ns() // 1000
    actions = list(admin.interactions.Decide(req, metadata=admin.md).actions)
    assert [(a.kind, a.id) for a in actions] == [("message", "nba-control")]

    def marked() -> int | None:
        with hub.hub.store.read() as f:
            fact = f.customer_by_identity("email", "ann@example.com").soft.get("nba.control_since")
            return fact.value if fact is not None else None

    first = wait_for(marked, 5, what="nba.control_since")
    assert before <= first <= time.time_ns() // 1000
    admin.interactions.Decide(req, metadata=admin.md)  # a later decision keeps the first time
    record(admin, event("page_view", key="p2", url="/b"))  # queued behind it in the writer
    assert marked() == first
    with hub.hub.store.read() as f:
        c = f.customer_by_identity("email", "ann@example.com")
        assert [it.type for it in c.interactions()] == ["page_view", "page_view"]
        assert "offer.current" not in c.soft and "offer.log" not in c.soft
