"""Watch (the change feed), Admin, health, reflection, plugin isolation."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopkeeper._proto.v1 import admin_pb2, watch_pb2
from shopkeeper._proto.v1 import customers_pb2 as cp
from shopkeeper.store import Store
from shopkeeper.testing import wait_for

from .conftest import event, ident, record, start_hub

pytestmark = pytest.mark.e2e


def collect(client, n: int, timeout: float = 10, **req) -> tuple[list, threading.Thread]:
    got: list = []
    call = client.watch.Watch(watch_pb2.WatchRequest(**req), metadata=client.md, timeout=timeout)

    def run() -> None:
        try:
            for ch in call:
                got.append(ch)
                if len(got) >= n:
                    call.cancel()
                    return
        except grpc.RpcError:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return got, t


def test_watch_live_with_filters_and_resume(running, admin) -> None:
    orders, t1 = collect(admin, 2, event_types=["order"])
    anns, t2 = collect(admin, 3, customer_ids=[])  # everything
    time.sleep(0.3)  # let the streams start (they begin at "now")
    record(admin, event(key="w1"))
    record(admin, event("order", key="w2", order_id="o1", amount=3))
    admin.customers.SetConsent(cp.SetConsentRequest(customer=ident("email", "ann@example.com"), channel="sms",
                                                    granted=False), metadata=admin.md)
    record(admin, event("order", email="bob@example.com", key="w3", order_id="o2", amount=4))
    t1.join(5)
    t2.join(5)
    assert [c.event_type for c in orders] == ["order", "order"]
    assert [c.kind for c in anns] == ["interaction", "interaction", "consent"]
    assert anns[2].detail == "sms/marketing=refused"
    assert anns[0].cursor < anns[1].cursor < anns[2].cursor
    # resume after the first change: the rest come back, in order, from the persisted feed
    resumed, t3 = collect(admin, 3, after_cursor=anns[0].cursor)
    t3.join(5)
    assert [c.cursor for c in resumed[:2]] == [anns[1].cursor, anns[2].cursor]
    bob, t4 = collect(admin, 1, from_oldest=True, customer_ids=[orders[1].customer_id])
    t4.join(5)
    assert bob[0].customer_id == orders[1].customer_id


def test_watch_is_persisted_and_resumable_after_restart(tmp_path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    r = start_hub(Store.open(uri))
    c = r.client()
    for i in range(5):
        record(c, event(key=f"r{i}"))
    r.hub.stop(grace=0.5)
    r.hub.store.close()
    r2 = start_hub(Store.open(uri))
    try:
        c2 = r2.client()
        got, t = collect(c2, 5, from_oldest=True, kinds=["interaction"])
        t.join(5)
        assert len(got) == 5
        later, t = collect(c2, 2, after_cursor=got[2].cursor)
        t.join(5)
        assert [g.cursor for g in later] == [g.cursor for g in got[3:]]
        hb, t = collect(c2, 1, heartbeat_seconds=1)
        t.join(5)
        assert hb[0].kind == "heartbeat" and hb[0].cursor == got[-1].cursor
    finally:
        r2.hub.stop(grace=0.5)
        r2.hub.store.close()


def test_feed_trimming(running, admin) -> None:
    for i in range(5):
        record(admin, event(key=f"t{i}"))
    from shopkeeper.engine import feed

    n = running.hub.writer.submit_op(lambda f, ch: feed.trim(f, older_than_us=None, max_entries=2)).result(5)
    assert n == 3
    with running.hub.store.read() as f:
        assert len(feed.read(f, 0)) == 2 and f.counter("changes") == 2


def test_admin_stats_plugins_reload_pack_and_broken_plugin_is_disabled(running, admin) -> None:
    record(admin, event(key="s1"))
    st = admin.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=admin.md)
    assert st.customers == 1 and st.interactions == 1 and st.events_committed == 1 and "page_view" in st.event_types
    assert st.last_cursor > 0 and st.generation >= 3
    plugins = admin.admin.ListPlugins(admin_pb2.ListPluginsRequest(), metadata=admin.md).plugins
    broken = [p for p in plugins if p.disabled]
    assert len(broken) == 1 and "boom at startup" in broken[0].error
    assert any(not p.disabled for p in plugins)  # the Decide plugin keeps working
    msgs = admin.admin.ReloadRules(admin_pb2.ReloadRulesRequest(), metadata=admin.md).messages
    assert msgs[0].startswith("ok=True version=")  # the built-in rules plugin answers (rules issue)
    packed = admin.admin.Pack(admin_pb2.PackRequest(), metadata=admin.md)
    assert packed.bytes_after <= packed.bytes_before or packed.bytes_before == 0


def test_health_and_reflection(running) -> None:
    ch = running.client(None).channel
    resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="shopkeeper.v1.Customers"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    out = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in out[0].list_services_response.service}
    assert {"shopkeeper.v1.Customers", "shopkeeper.v1.Interactions", "shopkeeper.v1.Watch",
            "shopkeeper.v1.Admin", "grpc.health.v1.Health"} <= names


def test_reflection_v1_and_health_list(running) -> None:
    """grpcurl, Postman and grpc-js tools ask reflection v1 first; Health/List names every service."""
    from grpc_reflection.v1alpha import reflection_pb2

    ch = running.client(None).channel
    v1 = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                          request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                          response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    out = list(v1(iter([reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(file_containing_symbol="shopkeeper.v1.Customers")]),
                  timeout=5))
    names = {s.name for s in out[0].list_services_response.service}
    assert {"shopkeeper.v1.Customers", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert out[1].file_descriptor_response.file_descriptor_proto  # the descriptor of customers.proto
    listed = health_pb2_grpc.HealthStub(ch).List(health_pb2.HealthListRequest(), timeout=5)
    assert listed.statuses["shopkeeper.v1.Interactions"].status == health_pb2.HealthCheckResponse.SERVING
    assert listed.statuses[""].status == health_pb2.HealthCheckResponse.SERVING


def test_forget_then_pack_removes_personal_data_from_the_file(tmp_path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    r = start_hub(Store.open(uri))
    try:
        c = r.client()
        email = "zelda.unique.person@example.org"
        record(c, event(email=email, key="z1", url="/zelda-private-page"))
        data = (tmp_path / "Data.fs").read_bytes()
        assert email.encode() in data and b"zelda-private-page" in data
        c.customers.ForgetCustomer(cp.ForgetCustomerRequest(customer=ident("email", email)), metadata=c.md)
        c.admin.Pack(admin_pb2.PackRequest(), metadata=c.md)
        data = (tmp_path / "Data.fs").read_bytes()
        assert email.encode() not in data and b"zelda-private-page" not in data
        assert not (tmp_path / "Data.fs.old").exists()
    finally:
        r.hub.stop(grace=0.5)
        r.hub.store.close()


@pytest.mark.slow
def test_many_open_streams_do_not_starve_decide(running, admin) -> None:
    from shopkeeper._proto.v1 import interactions_pb2

    record(admin, event("order", key="d0", order_id="o", amount=1))
    calls = []
    for _ in range(40):  # long-lived Watch streams, each holding a server thread
        calls.append(admin.watch.Watch(watch_pb2.WatchRequest(), metadata=admin.md))
    stop = threading.Event()

    def idle_requests():
        while not stop.is_set():
            time.sleep(0.05)
            yield interactions_pb2.EventBatch()
    for _ in range(20):  # and open ingest streams
        calls.append(admin.interactions.StreamInteractions(idle_requests(), metadata=admin.md))
    # the streams open asynchronously: wait until the hub holds all 60 (a fixed 0.5 s saw 39 of them)
    wait_for(lambda: running.hub.open_streams == 60, 30, what="60 open streams")
    lat = []
    req = interactions_pb2.DecideRequest(customer=ident("email", "ann@example.com"))
    for _ in range(200):
        t0 = time.perf_counter()
        admin.interactions.Decide(req, metadata=admin.md, timeout=2)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    stop.set()
    for c in calls:
        c.cancel()
    # starved calls would wait for a free thread until their 2 s deadline; served ones take milliseconds
    # (the latency target itself is measured by benchmarks/bench_hub.py)
    assert lat[int(len(lat) * 0.99)] < 0.5, lat[-5:]
