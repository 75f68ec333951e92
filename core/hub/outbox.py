"""The ``shopkeeper.v1.Outbox`` service: which intents a channel adapter out of the hub must send.

Thin glue over :func:`shopkeeper.outbox.pending`, the function the in-process adapter API
calls too, so an adapter sees the same intents wherever it runs. Claims and delivery
reports are ordinary events (``Interactions``): one apply loop for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from .. import outbox
from .._proto.v1 import outbox_pb2, outbox_pb2_grpc
from ..engine import operations as domain
from . import convert

if TYPE_CHECKING:
    from .server import Hub

MAX_PENDING = 10_000
MAX_STATES = 1_000


def intent(m: outbox.Message | outbox.OutboxItem, customer_id: str = "") -> Any:
    """An intent as a message (an ``OutboxItem`` does not carry its customer's id: pass it)."""
    return outbox_pb2.Intent(id=m.id, customer_id=customer_id or m.customer_id,  # type: ignore[union-attr]
                             channel=m.channel, template=m.template,
                             purpose=m.purpose, payload=convert.dict_to_struct(m.payload) if m.payload else None,
                             status=m.status, message_id=m.message_id,
                             not_before=_ts(m.not_before), expires_at=_ts(m.expires_at))


def _ts(us: int) -> Any:
    if not us:
        return None
    t = Timestamp()
    t.FromMicroseconds(us)
    return t


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
                found = outbox.pending(f, tuple(request.channels), limit=limit,
                                       include_deferred=request.include_deferred, refs_only=request.refs_only)
            return outbox_pb2.PendingIntentsResponse(intents=[intent(m) for m in found])

    def GetIntents(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context):
            if not 0 < len(request.refs) <= MAX_STATES:
                raise domain.BadArgument("refs", f"give 1..{MAX_STATES} (customer_id, intent_id) pairs")
            out = outbox_pb2.GetIntentsResponse()
            refs = [(r.customer_id, r.intent_id) for r in request.refs]
            with self.hub.read() as f:
                for (cid, _), (item, c) in zip(refs, outbox.states(f, refs), strict=True):
                    st = out.states.add()
                    if item is not None:
                        st.intent.CopyFrom(intent(item, c.id if c is not None else cid))
                    if c is not None:
                        st.customer.CopyFrom(convert.customer_contact(c) if request.contact_only
                                             else convert.customer(c, recent=0))
            return out
