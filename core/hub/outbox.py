"""The ``shopkeeper.v1.Outbox`` service: what a channel adapter out of the hub needs.

Thin glue over the engine functions the in-process adapter API calls too
(:func:`shopkeeper.outbox.pending`, :func:`shopkeeper.outbox.record_transitions`), so an
adapter sees the same intents and gets the same refusals wherever it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from .. import outbox
from .._proto.v1 import common_pb2, interactions_pb2, outbox_pb2, outbox_pb2_grpc
from ..engine import operations as domain
from . import auth, convert, errors

if TYPE_CHECKING:
    from .server import Hub

_INVALID = errors.code_number(grpc.StatusCode.INVALID_ARGUMENT)
_DENIED = errors.code_number(grpc.StatusCode.PERMISSION_DENIED)
_OUTCOME = {"applied": common_pb2.EventStatus.APPLIED, "duplicate": common_pb2.EventStatus.DUPLICATE,
            "rejected": common_pb2.EventStatus.REJECTED}
MAX_PENDING = 10_000


def intent(m: outbox.Message) -> Any:
    return outbox_pb2.Intent(id=m.id, customer_id=m.customer_id, channel=m.channel, template=m.template,
                             purpose=m.purpose, payload=convert.dict_to_struct(m.payload) if m.payload else None,
                             status=m.status, message_id=m.message_id)


class OutboxServicer(outbox_pb2_grpc.OutboxServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def PendingIntents(self, request: Any, context: grpc.ServicerContext) -> Any:
        limit = request.limit or MAX_PENDING
        with self.hub.guard(context):
            if not request.channels:
                raise domain.BadArgument("channels", "name at least one channel")
            if not 0 < limit <= MAX_PENDING:
                raise domain.BadArgument("limit", f"must be 1..{MAX_PENDING}")
            with self.hub.read() as f:
                found = outbox.pending(f, tuple(request.channels), limit=limit)
            return outbox_pb2.PendingIntentsResponse(intents=[intent(m) for m in found])

    def RecordTransitions(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        who = auth.current()
        limit = hub.config.limits.max_batch_events
        with hub.guard(context):
            if len(request.transitions) > limit:
                errors.abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{len(request.transitions)} transitions; at most {limit} per call "
                             "(limits.max_batch_events)")
            statuses: list[Any] = [None] * len(request.transitions)
            events, where = [], []
            for i, t in enumerate(request.transitions):
                if not who.may_send(t.type):
                    statuses[i] = common_pb2.EventStatus(
                        index=i, outcome=common_pb2.EventStatus.REJECTED, code=_DENIED, field="type",
                        reason=f"API key {who.name!r} may not send {t.type!r} events")
                    continue
                events.append({"type": t.type, "customer_id": t.customer_id, "channel": t.channel,
                               "idempotency_key": t.idempotency_key, "touchpoint": t.touchpoint or who.name,
                               "data": convert.struct_to_dict(t.data) if t.HasField("data") else {},
                               "identities": [(x.namespace, x.value) for x in t.identities]})
                where.append(i)
            if events:
                results = hub.write(context, lambda f, ch: outbox.record_transitions(f, ch, events))
                for r, i in zip(results, where, strict=True):
                    st = common_pb2.EventStatus(index=i, outcome=_OUTCOME[r["status"]],
                                                customer_id=r["customer_id"] or "")
                    if r["status"] == "rejected":
                        st.code, st.field, st.reason = _INVALID, r["field"] or "", _reason(r)
                    statuses[i] = st
            ack = interactions_pb2.BatchAck(statuses=statuses)
            ack.applied = sum(s.outcome == common_pb2.EventStatus.APPLIED for s in statuses)
            ack.duplicates = sum(s.outcome == common_pb2.EventStatus.DUPLICATE for s in statuses)
            ack.rejected = len(statuses) - ack.applied - ack.duplicates
            return ack


def _reason(r: dict[str, Any]) -> str:
    """The reason without the ``field: `` prefix the engine's error text carries."""
    err, fld = r.get("error") or "", r.get("field") or ""
    return err[len(fld) + 2:] if fld and err.startswith(fld + ": ") else err
