"""Hard edges of the hub: undecodable and hostile requests are INVALID_ARGUMENT, never UNKNOWN
or INTERNAL, and the hub still stops within its grace after them (issue 12)."""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from shopkeeper._proto.v1 import admin_pb2, common_pb2, customers_pb2, interactions_pb2

from .conftest import Client, Running, bad_request, event, free_port, ident, record
from .test_hub_lifecycle import KEY, serve, wait_healthy

pytestmark = pytest.mark.e2e

BAD_UTF8 = interactions_pb2.RecordInteractionRequest(event=event()).SerializeToString().replace(b"page_view",
                                                                                                 b"page\xff\xfeew")


def raw_unary(client: Client, method: str, payload: bytes) -> grpc.RpcError:
    call = client.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as err:
        call(payload, metadata=client.md, timeout=10)
    return err.value


def nested_struct(depth: int) -> bytes:
    """A DecideRequest whose context Struct nests ``depth`` levels (past the decoder's limit)."""
    inner = b""
    for _ in range(depth):
        value = b"\x2a" + _varint(len(inner)) + inner  # Value.struct_value (field 5)
        entry = b"\x0a\x01k" + b"\x12" + _varint(len(value)) + value  # map entry: key, value
        inner = b"\x0a" + _varint(len(entry)) + entry  # Struct.fields
    return b"\x22" + _varint(len(inner)) + inner  # DecideRequest.context is field 4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("method,payload", [
    ("/shopkeeper.v1.Interactions/RecordInteraction", BAD_UTF8),
    ("/shopkeeper.v1.Customers/GetCustomer", b"\xff\xff\xff\xff"),
    ("/shopkeeper.v1.Interactions/Decide", nested_struct(200)),
    ("/shopkeeper.v1.Admin/Pack", b"\x09\x00\x00"),
])
def test_undecodable_request_is_invalid_argument_without_a_traceback(
        running: Running, admin: Client, caplog: pytest.LogCaptureFixture, method: str, payload: bytes) -> None:
    with caplog.at_level(logging.ERROR):
        err = raw_unary(admin, method, payload)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "not a valid shopkeeper.v1." in err.details()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_undecodable_batch_in_a_stream_is_invalid_argument_after_the_good_ones(admin: Client) -> None:
    call = admin.channel.stream_stream("/shopkeeper.v1.Interactions/StreamInteractions",
                                       request_serializer=None,
                                       response_deserializer=interactions_pb2.BatchAck.FromString)
    good = interactions_pb2.EventBatch(batch_id="b1", events=[event()]).SerializeToString()
    acks = []
    with pytest.raises(grpc.RpcError) as err:
        for ack in call(iter([good, b"\x0a\x02\xff\xfe", good]), metadata=admin.md, timeout=10):
            acks.append(ack)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "EventBatch" in err.value.details()
    assert [a.batch_id for a in acks] == ["b1"] and acks[0].applied == 1


@pytest.mark.parametrize("days", [float("inf"), 1e308, 1e7, float("nan"), -1.0, -1e308])
def test_pack_refuses_days_out_of_range(admin: Client, days: float) -> None:
    with pytest.raises(grpc.RpcError) as err:
        admin.admin.Pack(admin_pb2.PackRequest(days=days), metadata=admin.md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request(err.value)] == ["days"]


@pytest.mark.parametrize("field,seconds", [("since", 10**13), ("until", -(10**13)), ("since", 2**63 - 1),
                                           ("until", -(2**63))])
def test_list_interactions_refuses_times_out_of_range(admin: Client, field: str, seconds: int) -> None:
    record(admin, event())
    req = customers_pb2.ListInteractionsRequest(customer=ident("email", "ann@example.com"))
    getattr(req, field).CopyFrom(timestamp_pb2.Timestamp(seconds=seconds))
    with pytest.raises(grpc.RpcError) as err:
        admin.customers.ListInteractions(req, metadata=admin.md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request(err.value)] == [field]


@pytest.mark.parametrize("nanos", [-1, 1_000_000_000, 2**31 - 1])
def test_timestamp_nanos_out_of_range_is_refused(admin: Client, nanos: int) -> None:
    ev = event()
    ev.ts.CopyFrom(timestamp_pb2.Timestamp(seconds=int(time.time()) - 60, nanos=nanos))
    with pytest.raises(grpc.RpcError) as err:
        record(admin, ev)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(err.value)[0][0] == "event.ts"


def test_bad_request_lists_every_violation_once(admin: Client) -> None:
    ev = common_pb2.Event(type="order", channel="Not A Token", idempotency_key="bad key!",
                          identities=[common_pb2.Identity(namespace="email", value="")])
    with pytest.raises(grpc.RpcError) as err:
        record(admin, ev)
    violations = bad_request(err.value)
    fields = [f for f, _ in violations]
    assert fields == ["event.channel", "event.idempotency_key", "event.identities", "event.data.order_id",
                      "event.data.amount"], violations
    for f, reason in violations:
        assert f.split(".", 1)[1] + ":" not in reason  # no repeated prefix


@pytest.mark.slow
def test_sigterm_after_hostile_streams_exits_within_grace(tmp_path: Path) -> None:
    """Hung forever in ``server.stop(grace).wait()`` before: undecodable stream messages left
    grpc's call state behind. Now the hub exits, having committed and closed the store."""
    port = free_port()
    proc = serve(tmp_path, port)
    try:
        ch = wait_healthy(port, proc)
        md = (("x-api-key", KEY),)
        call = ch.stream_stream("/shopkeeper.v1.Interactions/StreamInteractions", request_serializer=None,
                                response_deserializer=None)
        rnd = random.Random(1)
        good = interactions_pb2.EventBatch(batch_id="x", events=[event()]).SerializeToString()
        for _ in range(40):
            reqs = []
            for _ in range(rnd.randint(1, 4)):
                k = rnd.random()
                if k < 0.3:
                    reqs.append(good)
                elif k < 0.6:
                    reqs.append(rnd.randbytes(rnd.randint(0, 30)))
                else:
                    b = bytearray(good)
                    for _ in range(3):
                        b[rnd.randrange(len(b))] = rnd.getrandbits(8)
                    reqs.append(bytes(b))
            try:
                for _ in call(iter(reqs), metadata=md, timeout=10):
                    pass
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        ch.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5 + 5) == 0  # --grace 5, plus 5 s
        log = (tmp_path / "hub.log").read_text()
        assert '"level": "error"' not in log
        assert "store closed" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_writer_rejection_does_not_repeat_the_field(admin: Client) -> None:
    with pytest.raises(grpc.RpcError) as err:
        record(admin, event(email="not an email"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "identities.email: identities.email" not in err.value.details()
    [(field, reason)] = bad_request(err.value)
    assert field == "event.identities.email" and not reason.startswith("identities.email")


def test_erasure_and_pack_leave_no_personal_data_in_any_file(tmp_path: Path) -> None:
    """Data.fs was clean after ForgetCustomer + Pack, but Data.fs.tmp (FileStorage's buffer for
    the transaction being committed) still held the email, cookie and traits."""
    from shopkeeper.store import Store

    from .conftest import start_hub

    store = Store.open(f"file://{tmp_path}/Data.fs")
    r = start_hub(store=store)
    try:
        c = r.client("admin")
        secret = [b"erase-me@example.com", b"cookie-4f7b2c9e1d", b"Zebulon Quartermaine"]
        ev = event(email="erase-me@example.com", key="e1", url="/", pad="x" * 8000)  # the largest transaction
        ev.identities.add(namespace="cookie", value="cookie-4f7b2c9e1d")
        ev.traits.update({"name": "Zebulon Quartermaine"})
        record(c, ev)
        for i in range(20):  # more transactions after it, as in real life
            record(c, event(email=f"other{i}@example.com", key=f"o{i}"))
        c.customers.ForgetCustomer(customers_pb2.ForgetCustomerRequest(
            customer=ident("email", "erase-me@example.com"), reason="test"), metadata=c.md)
        c.admin.Pack(admin_pb2.PackRequest(days=0), metadata=c.md)
        found = {p.name: [s for s in secret if s in p.read_bytes()] for p in tmp_path.iterdir() if p.is_file()}
        assert {name: hits for name, hits in found.items() if hits} == {}
    finally:
        r.hub.stop(grace=0.5)
        store.close()


def test_serve_on_a_busy_port_reports_only_the_bind_error(tmp_path: Path) -> None:
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-c", "from shopkeeper.cli import main; main()", "serve", "--store",
                               f"file://{tmp_path}/Data.fs", "--listen", f"127.0.0.1:{port}", "--log-format", "text"],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "cannot start the hub" in proc.stderr and "bind" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
