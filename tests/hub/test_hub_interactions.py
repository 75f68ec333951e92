"""RecordInteraction, StreamInteractions and Decide over a real server."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from shopkeeper import hookimpl
from shopkeeper._proto.v1 import admin_pb2, common_pb2, customers_pb2, interactions_pb2
from shopkeeper.hub.config import HubConfig, hash_key

from .conftest import KEYS, bad_request, event, ident, record, start_hub

pytestmark = pytest.mark.e2e

ST = common_pb2.EventStatus


def test_record_applies_then_reports_duplicate(stored_admin) -> None:
    st = record(stored_admin, event(key="a1"))
    assert st.outcome == ST.APPLIED and st.created and st.customer_id
    again = record(stored_admin, event(key="a1"))
    assert again.outcome == ST.DUPLICATE and again.customer_id == st.customer_id
    c = stored_admin.customers.GetCustomer(
        customers_pb2.GetCustomerRequest(customer=ident("email", "ann@example.com")), metadata=stored_admin.md)
    assert c.hard_facts.interactions == 1
    assert c.recent_interactions[0].touchpoint == "admin"  # defaults to the API key's name


def test_bad_event_is_invalid_argument_naming_the_field(admin) -> None:
    with pytest.raises(grpc.RpcError) as e:
        record(admin, event("order", key="o1", amount=12.5))  # order_id missing
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(e.value) == [("event.data.order_id", "required for order events")]
    with pytest.raises(grpc.RpcError) as e:
        record(admin, event("page_veiw", key="o2"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(e.value)[0][0] == "event.type" and "did you mean 'page_view'" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        record(admin, event(email="not-an-email", key="o3"))
    assert bad_request(e.value)[0][0] == "event.identities.email"


def _batch(bid: str, events: list) -> interactions_pb2.EventBatch:
    return interactions_pb2.EventBatch(batch_id=bid, events=events)


def test_stream_batches_ack_per_event_and_bad_event_rejects_only_itself(stored_admin) -> None:
    b1 = [event(email=f"s{i}@example.com", key=f"s-{i}") for i in range(50)]
    b1[7] = event("order", email="s7@example.com", key="s-7", amount=-3, order_id="x")  # below the minimum
    b2 = [event(email=f"s{i}@example.com", key=f"s-{i}") for i in range(45, 60)]  # 45..49 are replays
    acks = list(stored_admin.interactions.StreamInteractions(iter([_batch("one", b1), _batch("two", b2)]),
                                                             metadata=stored_admin.md))
    assert [a.batch_id for a in acks] == ["one", "two"]
    one, two = acks
    assert (one.applied, one.duplicates, one.rejected) == (49, 0, 1)
    bad = one.statuses[7]
    assert bad.outcome == ST.REJECTED and bad.index == 7 and bad.field == "data.amount"
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert (two.applied, two.duplicates) == (10, 5)
    assert [s.outcome for s in two.statuses[:5]] == [ST.DUPLICATE] * 5
    st = stored_admin.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=stored_admin.md)
    assert st.interactions == 59


def test_stream_rejects_a_batch_over_the_limit(running, admin) -> None:
    running.hub.config.limits.max_batch_events = 10
    ok = [event(email=f"l{i}@example.com", key=f"l-{i}") for i in range(10)]
    big = [event(email=f"m{i}@example.com", key=f"m-{i}") for i in range(11)]
    it = admin.interactions.StreamInteractions(iter([_batch("ok", ok), _batch("big", big)]), metadata=admin.md)
    first = next(it)
    assert first.applied == 10
    with pytest.raises(grpc.RpcError) as e:
        next(it)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_batch_events" in e.value.details()


def test_message_over_the_size_limit_is_resource_exhausted(admin) -> None:
    huge = [event(email=f"h{i}@example.com", key=f"h-{i}", url="/" + "x" * 2000, blob="y" * 10_000)
            for i in range(500)]  # ~6 MB > 4 MiB default
    with pytest.raises(grpc.RpcError) as e:
        list(admin.interactions.StreamInteractions(iter([_batch("huge", huge)]), metadata=admin.md))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_deadline_is_honoured(running, admin) -> None:
    gate = threading.Event()
    running.hub.writer.submit_op(lambda f, ch: gate.wait(5))  # the writer is busy
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        record(admin, event(key="late"), timeout=0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2
    time.sleep(0.3)  # the server's copy of the deadline (set on arrival) has surely passed too
    gate.set()
    # the expired request was dropped by the writer, so resending applies it exactly once
    time.sleep(0.2)
    assert record(admin, event(key="late")).outcome == ST.APPLIED


def test_decide_without_a_channel_uses_the_api_keys_channel() -> None:
    """A touch point's API key can name its channel; Decide assumes it when the context names none."""
    keys = HubConfig.from_mapping({"api_keys": [
        {"name": "admin", "key_sha256": hash_key(KEYS["admin"][0]), "scopes": sorted(KEYS["admin"][1])},
        {"name": "kiosk", "key_sha256": hash_key("sk_kiosk_test"), "scopes": ["decide"], "channel": "pos"}]})
    r = start_hub(api_keys=keys.api_keys)
    try:
        seen: list[dict] = []
        r.hub.pm.register(ContextSpy(seen))
        admin = r.client("admin")
        record(admin, event(key="c1"))
        md = (("x-api-key", "sk_kiosk_test"),)
        req = interactions_pb2.DecideRequest(customer=ident("email", "ann@example.com"), placement="till")
        admin.interactions.Decide(req, metadata=md)
        req.context.update({"channel": "email"})
        admin.interactions.Decide(req, metadata=md)
        admin.interactions.Decide(interactions_pb2.DecideRequest(customer=ident("email", "ann@example.com")),
                                  metadata=admin.md)
        assert [s.get("channel") for s in seen] == ["pos", "email", None]
    finally:
        r.hub.stop(grace=0.5)


class ContextSpy:
    def __init__(self, seen: list) -> None:
        self.seen = seen

    @hookimpl
    def shopkeeper_decide(self, customer, touchpoint, placement, context):
        self.seen.append(dict(context))
        return []


def test_decide_ranks_plugin_actions(admin) -> None:
    record(admin, event("order", key="d1", order_id="o-1", amount=20))
    resp = admin.interactions.Decide(interactions_pb2.DecideRequest(customer=ident("email", "ann@example.com"),
                                                                    placement="home_hero"), metadata=admin.md)
    # only the test plugin's answers: the built-in analysis plugin puts a random ~10% of customers
    # (by id) in its control group and then answers "nba-control"
    mine = [a for a in resp.actions if a.plugin == "DecidePlugin" or a.id in ("loyal-10", "welcome")]
    assert [a.id for a in mine] == ["loyal-10", "welcome"]
    assert [a.score for a in resp.actions] == sorted((a.score for a in resp.actions), reverse=True)
    assert mine[0].reason == "has ordered before" and mine[0].payload["discount"] == 10
    assert mine[0].plugin
    assert mine[1].reason == "hello from admin"
    with pytest.raises(grpc.RpcError) as e:
        admin.interactions.Decide(interactions_pb2.DecideRequest(customer=ident("email", "nobody@example.com")),
                                  metadata=admin.md)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
