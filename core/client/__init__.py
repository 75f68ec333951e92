"""Python client for the Shopkeeper hub: sync (:class:`Client`) and asyncio (:class:`AsyncClient`).

Quick start::

    from shopkeeper.client import Client

    with Client("127.0.0.1:50051", api_key="sk_...") as hub:
        hub.record({"type": "page_view", "identities": {"email": "ann@example.com"},
                    "data": {"url": "/shoes"}, "idempotency_key": "web-123"})
        view = hub.get_customer(email="ann@example.com")
        for action in hub.decide(email="ann@example.com", placement="home_hero").actions:
            print(action.kind, action.id, action.reason)
        with hub.sender(batch_size=500) as send:          # batching, back-pressure
            for ev in events:
                send(ev)                                   # returns a Future[EventStatus]

Events are plain dicts shaped like the JSON the hub documents (``type``, ``identities``,
``idempotency_key``, ``ts``, ``data``, ``traits``, ``channel``, ``touchpoint``); an event
without ``idempotency_key`` gets a random one. Calls that fail with ``UNAVAILABLE`` (the hub
restarting, a network blip) are retried with exponential backoff; writes are safe to retry
because every event carries its idempotency key.

The code is split by job: :mod:`.calls` (shared helpers), :mod:`.sync` (:class:`Client`),
:mod:`.sender` (:class:`EventSender`), :mod:`.aio` (:class:`AsyncClient`), :mod:`.routing`
(:class:`Hubs`: several hubs over one store, each customer's events to one hub); import from here.
"""

from __future__ import annotations

from .._proto.v1 import (
    admin_pb2,
    campaigns_pb2,
    common_pb2,
    customers_pb2,
    interactions_pb2,
    outbox_pb2,
    watch_pb2,
)
from .aio import AsyncClient
from .calls import RETRYABLE, customer_ref, make_event
from .routing import Hubs, RoutedSender, route_key
from .sender import EventSender
from .sync import Client

__all__ = ["Client", "AsyncClient", "EventSender", "Hubs", "RoutedSender", "route_key", "make_event",
           "customer_ref", "RETRYABLE", "common_pb2",
           "customers_pb2",
           "interactions_pb2", "watch_pb2", "admin_pb2", "outbox_pb2", "campaigns_pb2"]
