"""Between protobuf messages and the domain: the only place that knows both shapes."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from .._proto.v1 import common_pb2, customers_pb2
from ..customer import Customer, Interaction
from ..engine.operations import BadArgument
from ..events import Event, EventError, EventTypes, validate_decoded


def ts(us: int | None) -> timestamp_pb2.Timestamp | None:
    if us is None:
        return None
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


#: The range ``google.protobuf.Timestamp`` defines (0001-01-01 to 9999-12-31), in seconds.
MIN_TS_SECONDS = -62_135_596_800
MAX_TS_SECONDS = 253_402_300_799


def timestamp_problem(t: timestamp_pb2.Timestamp) -> str | None:
    """Why ``t`` is not a valid Timestamp (the proto's own rules), or None."""
    if not 0 <= t.nanos <= 999_999_999:
        return f"nanos {t.nanos} outside 0..999999999"
    if not MIN_TS_SECONDS <= t.seconds <= MAX_TS_SECONDS:
        return f"seconds {t.seconds} outside 0001-01-01..9999-12-31 ({MIN_TS_SECONDS}..{MAX_TS_SECONDS})"
    return None


def us(t: timestamp_pb2.Timestamp, field: str = "ts") -> int:
    """Microseconds since the epoch; a Timestamp outside the proto's range is a ``BadArgument``."""
    problem = timestamp_problem(t)
    if problem is not None:
        raise BadArgument(field, f"not a valid Timestamp: {problem}")
    return t.seconds * 1_000_000 + t.nanos // 1000


def value_to_py(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        n = v.number_value
        # JSON numbers arrive as doubles: give whole numbers back as int (items: 3, not 3.0)
        if math.isfinite(n) and n.is_integer() and abs(n) < 2**53:
            return int(n)
        return n
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_dict(v.struct_value)
    if kind == "list_value":
        return [value_to_py(x) for x in v.list_value.values]
    return None


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    fields = s.fields
    return {k: value_to_py(fields[k]) for k in fields}  # not .items(): a slow Python view on upb maps


def py_to_value(x: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    if x is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(x, bool):
        v.bool_value = x
    elif isinstance(x, (int, float)):
        v.number_value = float(x)
    elif isinstance(x, str):
        v.string_value = x
    elif isinstance(x, dict):
        v.struct_value.CopyFrom(dict_to_struct(x))
    elif isinstance(x, (list, tuple)):
        v.list_value.values.extend(py_to_value(i) for i in x)
    else:
        v.string_value = str(x)
    return v


def dict_to_struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    fill_struct(s, d)
    return s


def fill_struct(s: struct_pb2.Struct, d: dict[str, Any]) -> None:
    """Put ``d`` into ``s`` (as :func:`py_to_value` would, value by value): the common scalar
    values are set in place on the map entry, without building a ``Value`` and copying it —
    this is most of the CPU of a ``GetCustomer`` answer (every recent interaction has data)."""
    fields = s.fields
    for k, x in d.items():
        t = type(x)
        if t is str:
            fields[k if type(k) is str else str(k)].string_value = x
        elif t is float or t is int:
            fields[k if type(k) is str else str(k)].number_value = x
        elif t is bool:
            fields[k if type(k) is str else str(k)].bool_value = x
        else:  # None, containers, subclasses, anything else: the general path
            fields[str(k)].CopyFrom(py_to_value(x))


def set_ts(t: timestamp_pb2.Timestamp, us: int) -> None:
    """Set a message's Timestamp field in place (no Timestamp built and copied in)."""
    t.seconds = us // 1_000_000
    t.nanos = us % 1_000_000 * 1000


def event_to_raw(ev: common_pb2.Event) -> dict[str, Any]:
    """A proto Event as the raw mapping :func:`shopkeeper.events.validate_event` checks."""
    raw: dict[str, Any] = {
        "type": ev.type,
        "identities": [(i.namespace, i.value) for i in ev.identities] or None,
        "idempotency_key": ev.idempotency_key,
    }
    if ev.channel:
        raw["channel"] = ev.channel
    if ev.HasField("ts"):
        raw["ts"] = ev.ts.seconds + ev.ts.nanos / 1e9
    if ev.HasField("data"):
        raw["data"] = struct_to_dict(ev.data)
    if ev.touchpoint:
        raw["touchpoint"] = ev.touchpoint
    if ev.HasField("traits"):
        raw["traits"] = struct_to_dict(ev.traits)
    return raw


def event_from_proto(ev: common_pb2.Event, types: EventTypes, index: int | None = None) -> Event:
    """A proto Event validated straight into an :class:`~shopkeeper.events.Event` (the same
    checks and errors as ``validate_event(event_to_raw(ev))``, without the raw mapping)."""
    ts_us = None
    if ev.HasField("ts"):
        t = ev.ts
        problem = timestamp_problem(t)
        if problem is not None:
            raise EventError("ts", f"not a valid Timestamp: {problem}", index)
        ts_us = t.seconds * 1_000_000 + (t.nanos + 500) // 1000
    data = bound = None
    if ev.HasField("data"):
        d = ev.data
        fields = d.fields
        data = {k: value_to_py(fields[k]) for k in fields}
        bound = 6 * d.ByteSize() + 16
    traits = struct_to_dict(ev.traits) if ev.HasField("traits") else None
    return validate_decoded(types, ev.type, ev.channel, ts_us, [(i.namespace, i.value) for i in ev.identities],
                            ev.idempotency_key, data, ev.touchpoint, traits, data_json_bound=bound, index=index)


def interaction(it: Interaction) -> common_pb2.Interaction:
    m = common_pb2.Interaction()
    _fill_interaction(m, it)
    return m


def _fill_interaction(m: common_pb2.Interaction, it: Interaction) -> None:
    m.key = it.key
    set_ts(m.ts, it.ts)
    m.type = it.type
    m.channel = it.channel
    if it.touchpoint:
        m.touchpoint = it.touchpoint
    if it.data:
        fill_struct(m.data, it.data)
    if it.idempotency_key:
        m.idempotency_key = it.idempotency_key


def customer(c: Customer, recent: int = 10) -> customers_pb2.Customer:
    """The 360° view (same content as :func:`shopkeeper.view.customer_view`) as a message.

    Sub-messages are filled in place (``add()``, ``set_ts``) rather than built and copied in:
    building this message is, after the cold loads, the largest part of a ``GetCustomer``."""
    h = c.hard
    msg = customers_pb2.Customer(
        id=c.id,
        status=c.status,
        merged_into=c.merged_into or "",
        interaction_counts=c.type_counts,
        rules=sorted(c.rules),
    )
    set_ts(msg.created_at, c.created_at)
    add = msg.identities.add
    for (ns, v), link in c.identities.items():
        set_ts(add(namespace=ns, value=v, source=link.source).added_at, link.at)
    if c.traits:
        fill_struct(msg.traits, c.traits)
    hf = msg.hard_facts
    hf.orders = int(h.get("orders") or 0)
    hf.total_spend = float(h.get("total_spend") or 0.0)
    hf.interactions = int(h.get("interactions") or 0)
    hf.last_channel = h.get("last_channel") or ""
    for name in ("first_seen", "last_seen", "last_order_at"):
        at = h.get(name)
        if at is not None:
            set_ts(getattr(hf, name), at)
    add = msg.consents.add
    for (ch, pu), cs in sorted(c.consents.items()):
        set_ts(add(channel=ch, purpose=pu, granted=cs.granted, source=cs.source).at, cs.at)
    if recent > 0:
        add = msg.recent_interactions.add
        for it in c.recent(recent):
            _fill_interaction(add(), it)
    for k, f in c.soft.items():
        m = msg.soft_facts[k]
        m.value.CopyFrom(py_to_value(f.value))
        m.source = f.source
        set_ts(m.at, f.at)
    for k, f in c.scores.items():
        m = msg.scores[k]
        m.value = float(f.value)
        m.source = f.source
        set_ts(m.at, f.at)
    for k, at in c.segments.items():
        set_ts(msg.segments[k], at)
    return msg


def summary(c: Customer) -> customers_pb2.CustomerSummary:
    return customers_pb2.CustomerSummary(
        id=c.id, status=c.status,
        identities=[common_pb2.Identity(namespace=ns, value=v) for ns, v in c.identities.keys()],
        segments=sorted(c.segments), last_seen=ts(c.hard.get("last_seen")),
    )


def consent(channel: str, purpose: str, cs: Any) -> customers_pb2.Consent:
    return customers_pb2.Consent(channel=channel, purpose=purpose, granted=cs.granted, source=cs.source, at=ts(cs.at))


def merge(rec: Any) -> customers_pb2.Merge:
    return customers_pb2.Merge(id=rec.id, survivor_id=rec.survivor_id, absorbed_id=rec.absorbed_id, at=ts(rec.at),
                               reason=rec.reason, source=rec.source, undone_at=ts(rec.undone_at))
