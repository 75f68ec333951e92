"""The ``shopkeeper.v1.Watch`` service: the change feed, from a cursor, then live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from .._proto.v1 import watch_pb2, watch_pb2_grpc
from ..engine import feed
from . import convert

if TYPE_CHECKING:
    from .server import Hub


def to_proto(e: feed.Change) -> Any:
    return watch_pb2.Change(cursor=e.cursor, kind=e.kind, customer_id=e.customer_id, event_type=e.event_type,
                            channel=e.channel, at=convert.ts(e.at), interaction_key=e.interaction_key,
                            segments=list(e.segments), detail=e.detail)


class WatchServicer(watch_pb2_grpc.WatchServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        broker = hub.broker
        types = set(request.event_types)
        kinds = set(request.kinds)
        segments = set(request.segments)
        customers = set(request.customer_ids)

        def wanted(e: feed.Change) -> bool:
            if kinds and e.kind not in kinds:
                return False
            if types and (e.kind != "interaction" or e.event_type not in types):
                return False
            if customers and e.customer_id not in customers:
                return False
            return not (segments and not segments.intersection(e.segments))

        with hub.stream_slot(context), hub.watching(), broker.following():
            if request.after_cursor:
                last = request.after_cursor
            elif request.from_oldest:
                last = 0
            else:
                last = broker.latest
            for e in feed.follow(broker, hub.read, last, wanted, context.is_active,
                                 heartbeat=max(0, request.heartbeat_seconds)):
                if type(e) is tuple:
                    yield watch_pb2.Change(cursor=e[1], kind=feed.HEARTBEAT)
                else:
                    yield to_proto(e)
