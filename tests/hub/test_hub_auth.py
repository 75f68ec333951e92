"""API keys, scopes and allowed event types, checked by the server interceptor; TLS."""

from __future__ import annotations

import grpc
import pytest

from shopkeeper._proto.v1 import admin_pb2, common_pb2, interactions_pb2
from shopkeeper._proto.v1 import customers_pb2 as cp
from shopkeeper.hub.config import ConfigError, HubConfig

from .conftest import Client, event, record

pytestmark = pytest.mark.e2e


def test_missing_and_wrong_key_are_unauthenticated(running) -> None:
    anon = running.client(None)
    with pytest.raises(grpc.RpcError) as e:
        record(anon, event())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and "x-api-key" in e.value.details()
    wrong = Client(anon.channel, "sk_not_a_key")
    with pytest.raises(grpc.RpcError) as e:
        wrong.customers.GetCustomer(cp.GetCustomerRequest(customer=common_pb2.CustomerRef(id="x")), metadata=wrong.md)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # bearer form works too
    st = running.client("admin").admin.GetStats(admin_pb2.GetStatsRequest(),
                                                metadata=(("authorization", "Bearer sk_admin_test"),))
    assert st.generation >= 3


def test_wrong_scope_is_permission_denied(running) -> None:
    reader = running.client("reader")
    with pytest.raises(grpc.RpcError) as e:
        record(reader, event())
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "interactions:write" in e.value.details()
    web = running.client("web")
    with pytest.raises(grpc.RpcError) as e:
        web.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=web.md)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:  # streaming methods are checked the same way
        list(reader.interactions.StreamInteractions(iter([interactions_pb2.EventBatch(events=[event()])]),
                                                    metadata=reader.md))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_disallowed_event_type(running) -> None:
    web = running.client("web")  # may send page_view, order, identify
    with pytest.raises(grpc.RpcError) as e:
        record(web, event("call", key="c1", duration=30))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "'call'" in e.value.details()
    ok = record(web, event(key="c2"))
    assert ok.outcome == common_pb2.EventStatus.APPLIED
    acks = list(web.interactions.StreamInteractions(iter([interactions_pb2.EventBatch(
        batch_id="b", events=[event(key="c3"), event("email_open", key="c4")])]), metadata=web.md))
    assert acks[0].applied == 1 and acks[0].rejected == 1
    assert acks[0].statuses[1].code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert acks[0].statuses[1].field == "type"


def test_config_file_stores_hashed_keys_only(tmp_path) -> None:
    f = tmp_path / "hub.yaml"
    f.write_text("api_keys:\n  - name: web\n    key: sk_plain\n    scopes: [decide]\n")
    with pytest.raises(ConfigError, match="hashed"):
        HubConfig.load(f)
    f.write_text("api_keys:\n  - name: web\n    key_sha256: " + "ab" * 32 + "\n    scopes: [dance]\n")
    with pytest.raises(ConfigError, match="unknown"):
        HubConfig.load(f)
    f.write_text("api_keys:\n  - name: web\n    key_sha256: " + "ab" * 32 + "\n    scopes: [decide]\n"
                 "    event_types: [page_view]\nlimits:\n  max_batch_events: 50\nwatch:\n  retention_hours: 2\n")
    cfg = HubConfig.load(f)
    assert cfg.api_keys[0].event_types == frozenset({"page_view"}) and cfg.limits.max_batch_events == 50


def test_tls_and_mutual_tls(tmp_path) -> None:
    from .conftest import make_certs

    make_certs(tmp_path)
    from shopkeeper.hub.config import TLS

    from .conftest import start_hub

    r = start_hub(tls=TLS(str(tmp_path / "server.pem"), str(tmp_path / "server.key"), str(tmp_path / "ca.pem")))
    try:
        ca = (tmp_path / "ca.pem").read_bytes()
        good = grpc.secure_channel(r.target, grpc.ssl_channel_credentials(
            ca, (tmp_path / "client.key").read_bytes(), (tmp_path / "client.pem").read_bytes()))
        c = Client(good, "sk_admin_test")
        assert c.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=c.md, timeout=5).generation >= 3
        no_cert = grpc.secure_channel(r.target, grpc.ssl_channel_credentials(ca))
        with pytest.raises(grpc.RpcError) as e:
            Client(no_cert, "sk_admin_test").admin.GetStats(admin_pb2.GetStatsRequest(), metadata=c.md, timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        good.close()
        no_cert.close()
    finally:
        r.hub.stop(grace=0.5)
