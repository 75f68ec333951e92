"""Between protobuf messages and the domain: the only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import timestamp_pb2

from .. import offerlog
from .._proto.v1 import common_pb2, customers_pb2
from .._proto.values import (  # noqa: F401 - the hub's names for the protocol-level conversion
    MAX_TS_SECONDS,
    MIN_TS_SECONDS,
    dict_to_struct,
    fill_struct,
    py_to_value,
    set_ts,
    struct_to_dict,
    timestamp_problem,
    ts,
    value_to_py,
)
from ..customer import Customer, Interaction
from ..engine.operations import BadArgument
from ..events import Event, EventError, EventTypes, validate_decoded


def us(t: timestamp_pb2.Timestamp, field: str = "ts") -> int:
    """Microseconds since the epoch; a Timestamp outside the proto's range is a ``BadArgument``."""
    problem = timestamp_problem(t)
    if problem is not None:
        raise BadArgument(field, f"not a valid Timestamp: {problem}")
    return t.seconds * 1_000_000 + t.nanos // 1000


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
    h, counts, soft = c.hard, c.type_counts, c.soft
    if offerlog.unfolded(c):  # Decide's offer records not folded into the record yet, counted
        (h, counts), soft = offerlog.hard_facts(c), offerlog.soft_facts(c)
    msg = customers_pb2.Customer(
        id=c.id,
        status=c.status,
        merged_into=c.merged_into or "",
        interaction_counts=counts,
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
    _fill_soft_facts(msg, soft)
    for k, f in c.scores.items():
        m = msg.scores[k]
        m.value = float(f.value)
        m.source = f.source
        set_ts(m.at, f.at)
    for k, at in c.segments.items():
        set_ts(msg.segments[k], at)
    return msg


def customer_contact(c: Customer) -> customers_pb2.Customer:
    """The contact part of :func:`customer` (``GetIntents`` with ``contact_only``): id, status,
    identities (namespace and value), traits and soft facts as stored — what a channel adapter needs
    to address a message (:func:`shopkeeper.outbox.contact_view`), without building the rest."""
    msg = customers_pb2.Customer(id=c.id, status=c.status)
    add = msg.identities.add
    for ns, v in c.identities.keys():
        add(namespace=ns, value=v)
    if c.traits:
        fill_struct(msg.traits, c.traits)
    _fill_soft_facts(msg, c.soft)
    return msg


def _fill_soft_facts(msg: customers_pb2.Customer, soft: Mapping[str, Any]) -> None:
    for k, f in soft.items():
        m = msg.soft_facts[k]
        m.value.CopyFrom(py_to_value(f.value))
        m.source = f.source
        set_ts(m.at, f.at)


def summary(c: Customer) -> customers_pb2.CustomerSummary:
    # Decide's offer records not folded into the record yet count, as in the view
    hard = offerlog.hard_facts(c)[0] if offerlog.unfolded(c) else c.hard
    return customers_pb2.CustomerSummary(
        id=c.id, status=c.status,
        identities=[common_pb2.Identity(namespace=ns, value=v) for ns, v in c.identities.keys()],
        segments=sorted(c.segments), last_seen=ts(hard.get("last_seen")),
    )


def consent(channel: str, purpose: str, cs: Any) -> customers_pb2.Consent:
    return customers_pb2.Consent(channel=channel, purpose=purpose, granted=cs.granted, source=cs.source, at=ts(cs.at))


def merge(rec: Any) -> customers_pb2.Merge:
    return customers_pb2.Merge(id=rec.id, survivor_id=rec.survivor_id, absorbed_id=rec.absorbed_id, at=ts(rec.at),
                               reason=rec.reason, source=rec.source, undone_at=ts(rec.undone_at))
