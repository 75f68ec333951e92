"""End to end over gRPC: events in through a real hub with the example rules -> facts, segments,
offers (Decide) and message intents out; Admin.ReloadRules reports the rules version."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import json_format

from shopkeeper._proto.v1 import admin_pb2, admin_pb2_grpc, common_pb2, interactions_pb2, interactions_pb2_grpc
from shopkeeper.hub.config import HubConfig
from shopkeeper.hub.convert import dict_to_struct
from shopkeeper.hub.server import Hub
from shopkeeper.rules import intents, tags
from shopkeeper.store import Store

from .helpers import REPO

pytestmark = pytest.mark.e2e


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    monkeypatch.setenv("SHOPKEEPER_RULES_DIR", str(REPO / "rules"))
    h = Hub(HubConfig(listen=f"127.0.0.1:{_port()}", store="memory://"), store=Store.open("memory://"),
            load_entrypoints=False)
    h._own_store = True
    h.start()
    yield h
    h.stop(grace=0.5)


def ev(etype: str, key: str, **data: object) -> common_pb2.Event:
    e = common_pb2.Event(type=etype, identities=[common_pb2.Identity(namespace="email", value="kim@example.com")],
                         idempotency_key=key)
    if data:
        e.data.CopyFrom(dict_to_struct(data))
    return e


def test_example_rules_over_grpc(hub: Hub) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as ch:
        stub = interactions_pb2_grpc.InteractionsStub(ch)
        first = stub.RecordInteraction(interactions_pb2.RecordInteractionRequest(event=ev("identify", "g1")))
        cid = first.customer_id
        hub.writer.submit_op(  # the hub runs: only its writer commits
            lambda f, ch: f.customer(cid).set_consent("email", "marketing", True, "test")).result(10)
        batch = interactions_pb2.EventBatch(batch_id="b1", events=[
            ev("page_view", "g2", url="/sale"),
            ev("order", "g3", order_id="A-1", amount=1500),
            ev("return", "g4", order_id="A-1", amount=100),
            ev("call", "g5", disposition="complaint"),
            ev("call", "g6", disposition="question"),
        ])
        acks = list(stub.StreamInteractions(iter([batch])))
        assert acks[0].applied == 5, acks
        decide = stub.Decide(interactions_pb2.DecideRequest(customer=common_pb2.CustomerRef(id=cid),
                                                            placement="home_hero"))
        offers = {a.id: a for a in decide.actions if a.plugin == "shopkeeper.rules.plugin"}
        assert "retention_15" in offers
        assert "rule retention_offer @" in offers["retention_15"].reason  # why: which rule, which version
        report = admin_pb2_grpc.AdminStub(ch).ReloadRules(admin_pb2.ReloadRulesRequest()).messages
        assert report[0].startswith("ok=True version=")
    with hub.store.read() as f:
        c = f.customer(cid)
        assert {"vip", "customers", "at_risk"} <= set(c.segments)
        assert c.soft["churn_risk"].value == "high" and c.soft["vip"].value is True
        assert c.soft["vip"].source.startswith("rule:vip_by_spend@")
        templates = {(i["channel"], i["template"]) for i in intents(c)}
        assert ("email", "summer_sale") in templates and ("agent", "alert") in templates
        assert tags(c) == []
    with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as ch:
        stub = interactions_pb2_grpc.InteractionsStub(ch)
        # "why did this happen?": RecordInteraction returns the rules trace when asked
        traced = stub.RecordInteraction(interactions_pb2.RecordInteractionRequest(
            event=ev("order", "g7", order_id="A-2", amount=20), trace=True))
        trace = json_format.MessageToDict(traced.trace)
        assert trace["rules_version"] and trace["customer_id"] == cid
        assert trace["event"]["type"] == "order"
        assert {m["rule"] for m in trace["matched"]} >= {"order_lowers_churn_risk"}
        assert {m["version"] for m in trace["matched"]} == {trace["rules_version"]}
        assert {"rule": "order_lowers_churn_risk", "version": trace["rules_version"], "action": "leave_segment",
                "effect": "left segment at_risk"} in trace["effects"]
        plain = stub.RecordInteraction(interactions_pb2.RecordInteractionRequest(event=ev("page_view", "g8", url="/")))
        assert not plain.HasField("trace")


def test_hub_config_rules_dir_chooses_the_rule_files(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPKEEPER_RULES_DIR", raising=False)
    (tmp_path / "only.yaml").write_text(
        "rules:\n  - name: only_rule\n    when: {event: page_view}\n    then:\n      - join_segment: browsers\n")
    cfg = HubConfig.from_mapping({"listen": f"127.0.0.1:{_port()}", "store": "memory://", "rules_dir": str(tmp_path)})
    assert cfg.rules_dir == str(tmp_path)
    h = Hub(cfg, store=Store.open("memory://"), load_entrypoints=False)
    h._own_store = True
    h.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{h.port}") as ch:
            report = admin_pb2_grpc.AdminStub(ch).ReloadRules(admin_pb2.ReloadRulesRequest()).messages
            assert report[0].startswith("ok=True") and report[0].endswith("rules=1"), report
            st = interactions_pb2_grpc.InteractionsStub(ch).RecordInteraction(
                interactions_pb2.RecordInteractionRequest(event=ev("page_view", "r1", url="/"), trace=True))
            assert [m["rule"] for m in json_format.MessageToDict(st.trace)["matched"]] == ["only_rule"]
            # who reloaded, from where, what changed: recorded through the writer (the console shows it)
            (tmp_path / "only.yaml").write_text(
                "rules:\n  - name: only_rule\n    when: {event: page_view}\n    then:\n      - join_segment: readers\n"
                "  - name: second_rule\n    when: {event: order}\n    then:\n      - join_segment: buyers\n")
            admin_pb2_grpc.AdminStub(ch).ReloadRules(admin_pb2.ReloadRulesRequest())
        from shopkeeper.rules.audit import recent
        from shopkeeper.rules.plugin import service_for

        with h.store.read() as f:
            second, first = recent(f)
        assert first["who"] == second["who"] == "anonymous" and second["from"].startswith("ipv4:127.0.0.1:")
        assert first["ok"] and first["changes"] == {"added": [], "removed": [], "changed": []}
        assert second["changes"] == {"added": ["second_rule"], "removed": [], "changed": ["only_rule"]}
        assert second["previous_version"] == first["version"] != second["version"]
        # and published on the change feed as store-wide admin entries (in the store and live)
        from shopkeeper.engine import feed

        with h.store.read() as f:
            stored = [(e.customer_id, e.event_type, e.detail) for e in feed.read(f, 0, 10_000) if e.kind == "admin"]
        assert stored == [("", "rules_reload", first["version"]), ("", "rules_reload", second["version"])]
        live = [(e.customer_id, e.event_type, e.detail) for e in h.engine.broker.after(0) if e.kind == "admin"]
        assert live == stored
        # matches per hour, not only since the start
        by_hour = service_for(h).stats.fires_by_hour(hours=3)
        counts = by_hour["rules"]["only_rule"]  # this hour's bucket, or the last one's at an hour's turn
        assert len(by_hour["hours"]) == 3 and set(by_hour["rules"]) == {"only_rule"}
        assert sum(counts) == 1 == counts[-1] + counts[-2]
    finally:
        h.stop(grace=0.5)
