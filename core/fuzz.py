"""Hypothesis strategies for fuzzing a hub over gRPC, built from the proto descriptors.

Every RPC of every ``shopkeeper.v1`` service gets requests of three kinds: *valid-shaped*
messages whose fields hold plausible values (known event types, namespaces, real-looking
emails), *hostile-valued* ones (extreme numbers, NaN, huge and odd text, Timestamps outside
their range, deep Structs) and *raw bytes* (random, or a valid encoding with bytes flipped or
cut). Used by ``tests/hub/test_hub_fuzz.py`` (a seeded CI run) and ``benchmarks/fuzz_hub.py``
(50,000 requests). Needs ``hypothesis`` (the ``test`` extra).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor as _d
from google.protobuf import message_factory
from hypothesis import strategies as st

from ._proto.v1 import admin_pb2, customers_pb2, interactions_pb2, outbox_pb2, rules_pb2, watch_pb2

MODULES = (customers_pb2, interactions_pb2, watch_pb2, outbox_pb2, admin_pb2, rules_pb2)


@dataclass(frozen=True)
class Rpc:
    """One method: its path, whether it streams requests or responses, and its request type."""

    path: str
    name: str
    request: _d.Descriptor
    request_streaming: bool
    response_streaming: bool


def rpcs() -> list[Rpc]:
    out = []
    for mod in MODULES:
        for service in mod.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append(Rpc(f"/{service.full_name}/{m.name}", m.name, m.input_type, m.client_streaming,
                               m.server_streaming))
    return out


# -- values ----------------------------------------------------------------------------

TOKENS = ["page_view", "order", "identify", "cart_add", "call", "custom", "email_open", "email", "phone", "cookie",
          "crm", "web", "api", "marketing", "agent_screen", "home", "sku", "url", "amount", "order_id", "name"]
PLAUSIBLE = st.sampled_from(TOKENS) | st.builds(lambda n: f"user{n}@example.com", st.integers(0, 30)) \
    | st.builds(lambda n: f"k-{n}", st.integers(0, 10**6)) | st.sampled_from(["+14155550100", "/", "cust-1", ""])
HOSTILE_TEXT = st.text(max_size=64) | st.sampled_from([
    "\x00", "\u202e", "\ud7ff" * 3, "a" * 5000, " ", "Ⅻ", "../../etc/passwd", "%s%n", "{}", "[]", "null",
    "e" * 129, "x@" * 100, "ümlaut@exämple.com", "\n\r\t"])
INTS64 = st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 10**13, -(10**13)]) \
    | st.integers(-(2**63), 2**63 - 1)
UINTS64 = st.sampled_from([0, 1, 2**32 - 1, 2**64 - 1]) | st.integers(0, 2**64 - 1)
INTS32 = st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1)
UINTS32 = st.integers(0, 2**32 - 1)
DOUBLES = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 1e7, 5e-324, float("inf"), float("-inf"),
                           float("nan")]) | st.floats(allow_nan=True, allow_infinity=True)
JSON_LEAF = st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | HOSTILE_TEXT | PLAUSIBLE


def _json(depth: int) -> st.SearchStrategy:
    return st.recursive(JSON_LEAF, lambda kids: st.lists(kids, max_size=3)
                        | st.dictionaries(HOSTILE_TEXT | PLAUSIBLE, kids, max_size=3), max_leaves=depth)


def _struct_value(message: Any, value: Any) -> None:
    """Fill a google.protobuf.Struct/Value/ListValue from a JSON-ish Python value."""
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        if isinstance(value, dict):
            for k, v in value.items():
                _struct_value(message.fields[k], v)
    elif name == "google.protobuf.ListValue":
        for v in value if isinstance(value, list) else [value]:
            _struct_value(message.values.add(), v)
    elif value is None:
        message.null_value = 0
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, float):
        message.number_value = value
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, dict):
        _struct_value(message.struct_value, value)
    elif isinstance(value, list):
        _struct_value(message.list_value, value)


def _deep_struct(depth: int) -> dict:
    out: dict = {"leaf": 1.0}
    for _ in range(depth):
        out = {"k": out}
    return out


_STRUCT_VALUES = st.sampled_from([None]) | _json(12) | st.builds(_deep_struct, st.integers(5, 60))


@functools.cache
def _scalar(field: _d.FieldDescriptor) -> st.SearchStrategy:
    t = field.type
    if t == _d.FieldDescriptor.TYPE_STRING:
        return PLAUSIBLE | HOSTILE_TEXT
    if t == _d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == _d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (_d.FieldDescriptor.TYPE_DOUBLE, _d.FieldDescriptor.TYPE_FLOAT):
        return DOUBLES if t == _d.FieldDescriptor.TYPE_DOUBLE else DOUBLES.filter(
            lambda x: x != x or abs(x) < 3e38 or abs(x) == float("inf"))
    if t == _d.FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values]) | st.integers(-5, 50)
    if t in (_d.FieldDescriptor.TYPE_INT64, _d.FieldDescriptor.TYPE_SINT64, _d.FieldDescriptor.TYPE_SFIXED64):
        return INTS64
    if t in (_d.FieldDescriptor.TYPE_UINT64, _d.FieldDescriptor.TYPE_FIXED64):
        return UINTS64
    if t in (_d.FieldDescriptor.TYPE_UINT32, _d.FieldDescriptor.TYPE_FIXED32):
        return UINTS32
    return INTS32


@functools.cache
def messages(desc: _d.Descriptor, depth: int = 0) -> st.SearchStrategy:
    """Messages of type ``desc`` (one strategy object per type and depth: building strategies
    is what costs, not drawing from them)."""
    return _messages(desc, depth)


@st.composite
def _messages(draw: st.DrawFn, desc: _d.Descriptor, depth: int = 0) -> Any:
    """A message of type ``desc`` with a random subset of its fields set to plausible or hostile values."""
    cls = message_factory.GetMessageClass(desc)
    msg = cls()
    name = desc.full_name
    if name == "google.protobuf.Timestamp":
        msg.seconds = draw(st.sampled_from([1_700_000_000, 0, -1]) | INTS64)
        msg.nanos = draw(st.sampled_from([0, 999_999_999]) | INTS32)
        return msg
    if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
        value = draw(_STRUCT_VALUES)
        if name == "google.protobuf.Struct" and not isinstance(value, dict):
            value = {"v": value}
        _struct_value(msg, value)
        return msg
    for field in desc.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, val_f = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            for _ in range(draw(st.integers(0, 2))):
                k = draw(_scalar(key_f))
                if val_f.message_type is not None:
                    if depth < 3:
                        getattr(msg, field.name)[k].CopyFrom(draw(messages(val_f.message_type, depth + 1)))
                else:
                    getattr(msg, field.name)[k] = draw(_scalar(val_f))
            continue
        repeated = field.is_repeated
        count = draw(st.integers(0, 3)) if repeated else 1
        for _ in range(count):
            if field.message_type is not None:
                if depth >= 4:
                    break
                sub = draw(messages(field.message_type, depth + 1))
                if repeated:
                    getattr(msg, field.name).add().CopyFrom(sub)
                else:
                    getattr(msg, field.name).CopyFrom(sub)
            else:
                v = draw(_scalar(field))
                if repeated:
                    getattr(msg, field.name).append(v)
                else:
                    setattr(msg, field.name, v)
    return msg


@st.composite
def valid_event(draw: st.DrawFn) -> Any:
    """A well-formed Event most of the time (so the write path itself is exercised)."""
    from ._proto.v1 import common_pb2

    ev = common_pb2.Event(type=draw(st.sampled_from(["page_view", "identify", "order", "cart_add", "call"])),
                          idempotency_key=f"fz-{draw(st.integers(0, 10**9))}")
    ev.identities.add(namespace="email", value=f"user{draw(st.integers(0, 30))}@example.com")
    data = {"page_view": {"url": "/p"}, "order": {"order_id": "o1", "amount": 10.0}, "cart_add": {"sku": "s"},
            "identify": {}, "call": {"duration": 3.0}}[ev.type]
    _struct_value(ev.data, data)
    return ev


def raw_bytes(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Random bytes, or a valid encoding with a few bytes flipped, cut short, or garbage appended."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(valid).SerializeToString())
        how = draw(st.sampled_from(["flip", "cut", "append"]))
        if how == "flip" and data:
            for _ in range(draw(st.integers(1, 4))):
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif how == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        else:
            data += draw(st.binary(min_size=1, max_size=16))
        return bytes(data)

    return st.binary(max_size=200) | mutate() | st.sampled_from([b"\x0a\x03\xff\xfe\xfd", b"\xff" * 10,
                                                                 b"\x0a\xff\xff\xff\xff\x0f"])


@functools.cache
def requests(rpc: Rpc) -> st.SearchStrategy[bytes]:
    """Encoded request messages for ``rpc``: valid-shaped, hostile-valued or raw bytes."""
    shaped = messages(rpc.request)
    if rpc.request.full_name in ("shopkeeper.v1.RecordInteractionRequest", "shopkeeper.v1.EventBatch"):
        with_valid = st.builds(_with_events(rpc.request), st.lists(valid_event(), min_size=1, max_size=3))
        shaped = shaped | with_valid
    encoded = shaped.map(lambda m: m.SerializeToString())
    return st.one_of(encoded, encoded, raw_bytes(shaped))


def _with_events(desc: _d.Descriptor) -> Callable[[list[Any]], Any]:
    cls = message_factory.GetMessageClass(desc)

    def build(events: list[Any]) -> Any:
        if "events" in desc.fields_by_name:
            return cls(batch_id="b", events=events)
        return cls(event=events[0])

    return build


def calls() -> st.SearchStrategy[tuple[Rpc, list[bytes]]]:
    """One call: an RPC and its request messages (1-3 for a request stream)."""
    every = rpcs()

    @st.composite
    def one(draw: st.DrawFn) -> tuple[Rpc, list[bytes]]:
        rpc = draw(st.sampled_from(every))
        n = draw(st.integers(1, 3)) if rpc.request_streaming else 1
        return rpc, [draw(requests(rpc)) for _ in range(n)]

    return one()


#: Status codes a hub may answer to fuzzed requests; UNKNOWN and INTERNAL mean a crash path.
CRASH_CODES = frozenset({"UNKNOWN", "INTERNAL"})


def send(channel: Any, metadata: Any, rpc: Rpc, payloads: list[bytes], timeout: float = 10.0) -> str:
    """Send one call with raw request bytes; returns the final status code's name. A response
    stream is read to its end (Watch: for 50 ms, then DEADLINE_EXCEEDED is normal)."""
    import grpc

    try:
        if rpc.request_streaming and rpc.response_streaming:
            call = channel.stream_stream(rpc.path, request_serializer=None, response_deserializer=None)
            for _ in call(iter(payloads), metadata=metadata, timeout=timeout):
                pass
        elif rpc.response_streaming:
            call = channel.unary_stream(rpc.path, request_serializer=None, response_deserializer=None)
            for _ in call(payloads[0], metadata=metadata, timeout=0.05):
                pass
        elif rpc.request_streaming:
            call = channel.stream_unary(rpc.path, request_serializer=None, response_deserializer=None)
            call(iter(payloads), metadata=metadata, timeout=timeout)
        else:
            call = channel.unary_unary(rpc.path, request_serializer=None, response_deserializer=None)
            call(payloads[0], metadata=metadata, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code().name
    return "OK"
