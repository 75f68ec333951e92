"""The synchronous client, :class:`Client` (``grpc`` channel, retries with backoff)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc

from .._proto.v1 import (
    admin_pb2,
    common_pb2,
    customers_pb2,
    interactions_pb2,
    outbox_pb2,
    watch_pb2,
)
from .._proto.values import py_to_value
from .calls import RETRYABLE, _Base, _Calls, customer_ref, make_event
from .sender import EventSender


class Client(_Calls, _Base):
    """Blocking client; safe to share between threads (gRPC channels are)."""

    _channels = grpc

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Callable, request: Any, timeout: float | None = None) -> Any:
        """Call a unary stub method with the API key, retrying ``UNAVAILABLE`` with backoff."""
        attempt = 0
        while True:
            try:
                return method(request, metadata=self.metadata, timeout=timeout or self.timeout)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE or attempt >= self.retries:
                    raise
                time.sleep(self._delay(attempt))
                attempt += 1

    def set_consent(self, channel: str, granted: bool, *, id: str | None = None, email: str | None = None,
                    identity: tuple[str, str] | None = None, purpose: str = "marketing",
                    source: str = "") -> customers_pb2.Consent:
        return self.call(self.customers.SetConsent, customers_pb2.SetConsentRequest(
            customer=customer_ref(id, email=email, identity=identity), channel=channel, purpose=purpose,
            granted=granted, source=source))

    def find_customers(self, *, identity_prefix: tuple[str, str] | None = None, segment: str = "",
                       facts: Iterable[tuple[str, str, Any]] = (), page_size: int = 100
                       ) -> Iterator[customers_pb2.CustomerSummary]:
        """Every matching customer, fetching page after page. ``facts``: (fact, "GE", 100) triples."""
        req = customers_pb2.FindCustomersRequest(segment=segment, page_size=page_size)
        if identity_prefix:
            req.identity_prefix.namespace, req.identity_prefix.value = identity_prefix
        for fact, op, value in facts:
            req.facts.add(fact=fact, op=customers_pb2.FactFilter.Op.Value(op), value=py_to_value(value))
        while True:
            resp = self.call(self.customers.FindCustomers, req)
            yield from resp.customers
            if not resp.next_page_token:
                return
            req.page_token = resp.next_page_token

    def list_interactions(self, id: str | None = None, *, email: str | None = None, channel: str = "",
                          type: str = "", page_size: int = 100) -> Iterator[common_pb2.Interaction]:
        req = customers_pb2.ListInteractionsRequest(customer=customer_ref(id, email=email), channel=channel,
                                                    type=type, page_size=page_size)
        while True:
            resp = self.call(self.customers.ListInteractions, req)
            yield from resp.interactions
            if not resp.next_page_token:
                return
            req.page_token = resp.next_page_token

    def export_customer(self, id: str | None = None, *, email: str | None = None) -> dict[str, Any]:
        resp = self.call(self.customers.ExportCustomer,
                         customers_pb2.ExportCustomerRequest(customer=customer_ref(id, email=email)))
        return json.loads(resp.json)

    def forget_customer(self, id: str | None = None, *, email: str | None = None,
                        reason: str = "") -> customers_pb2.ForgetCustomerResponse:
        return self.call(self.customers.ForgetCustomer, customers_pb2.ForgetCustomerRequest(
            customer=customer_ref(id, email=email), reason=reason))

    def merge(self, survivor_id: str, absorbed_id: str, reason: str = "") -> customers_pb2.Merge:
        return self.call(self.customers.MergeCustomers, customers_pb2.MergeCustomersRequest(
            survivor_id=survivor_id, absorbed_id=absorbed_id, reason=reason))

    def unmerge(self, merge_id: str) -> customers_pb2.Merge:
        return self.call(self.customers.UnmergeCustomers, customers_pb2.UnmergeCustomersRequest(merge_id=merge_id))

    def pack(self, days: float = 0.0) -> admin_pb2.PackResponse:
        """Pack the hub's store through its writer, keeping ``days`` of history (``Admin.Pack``).
        Not retried: a pack is long, and a second one while it runs is refused (FAILED_PRECONDITION)."""
        return self.admin.Pack(admin_pb2.PackRequest(days=days), metadata=self.metadata, timeout=None)

    def health(self, service: str = "", timeout: float = 5.0) -> str:
        """The hub's standard gRPC health status for ``service`` ("" = the hub as a whole):
        ``SERVING``, ``NOT_SERVING`` (draining, or a component down) or ``SERVICE_UNKNOWN``.
        Needs no API key (what a container's or load balancer's health check calls)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        got = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(got.status)

    def record_batch(self, events: Iterable[Mapping[str, Any] | common_pb2.Event],
                     batch_id: str = "1") -> interactions_pb2.BatchAck:
        """Record a list of events in one commit and return its acknowledgement (one status per
        event; a bad event rejects that event only). Retried on ``UNAVAILABLE`` like a unary
        call: safe, because every event carries its idempotency key."""
        batch = interactions_pb2.EventBatch(batch_id=batch_id, events=[make_event(e) for e in events])

        def one(request: Any, metadata: Any, timeout: float | None) -> Any:
            acks = list(self.interactions.StreamInteractions(iter([request]), metadata=metadata, timeout=timeout))
            return acks[0]

        return self.call(one, batch)

    def pending_intents(self, channels: Iterable[str], limit: int = 0, include_deferred: bool = False,
                        refs_only: bool = False) -> list[outbox_pb2.Intent]:
        """Outbox intents on these channels not yet final and due (``Outbox.PendingIntents``); with
        ``include_deferred`` also those quiet hours hold back (``not_before`` in the future); with
        ``refs_only`` every one not final, only ``id``, ``customer_id`` and ``channel`` set (read
        the rest with :meth:`get_intents`)."""
        return list(self.call(self.outbox_stub.PendingIntents, outbox_pb2.PendingIntentsRequest(
            channels=list(channels), limit=limit, include_deferred=include_deferred, refs_only=refs_only)).intents)

    def get_intents(self, refs: Iterable[tuple[str, str]], contact_only: bool = False) -> list[outbox_pb2.IntentState]:
        """Each ``(customer id, intent id)``'s intent as it stands and its customer without history
        (``Outbox.GetIntents``; at most 1,000 per call): what a channel adapter reads before it
        delivers, one call for many messages instead of a ``GetCustomer`` each. One answer per
        ref, in order; ``HasField("intent")``/``HasField("customer")`` say what was found.
        ``contact_only``: each customer's id, status, identities, traits and soft facts alone."""
        req = outbox_pb2.GetIntentsRequest(refs=[outbox_pb2.IntentRef(customer_id=c, intent_id=i) for c, i in refs],
                                           contact_only=contact_only)
        return list(self.call(self.outbox_stub.GetIntents, req).states)

    def watch(self, after_cursor: int = 0, *, from_oldest: bool = False, event_types: Iterable[str] = (),
              kinds: Iterable[str] = (), segments: Iterable[str] = (), customer_ids: Iterable[str] = (),
              heartbeat_seconds: int = 0, reconnect: bool = True,
              stop: threading.Event | None = None) -> Iterator[watch_pb2.Change]:
        """Changes as they commit; on ``UNAVAILABLE`` reconnects and resumes after the last cursor seen.
        Setting ``stop`` cancels the stream and ends the iteration (for a watching thread)."""
        last = after_cursor
        attempt = 0
        while stop is None or not stop.is_set():
            req = watch_pb2.WatchRequest(after_cursor=last, from_oldest=from_oldest and not last,
                                         event_types=list(event_types), kinds=list(kinds), segments=list(segments),
                                         customer_ids=list(customer_ids), heartbeat_seconds=heartbeat_seconds)
            call = self.watch_stub.Watch(req, metadata=self.metadata)
            done = threading.Event()
            if stop is not None:
                def cancel(call: Any = call, done: threading.Event = done) -> None:
                    while not done.is_set():
                        if stop.wait(0.2):
                            call.cancel()
                            return

                threading.Thread(target=cancel, daemon=True, name="shopkeeper-watch-cancel").start()
            try:
                for change in call:
                    attempt = 0
                    last = change.cursor or last
                    yield change
                if not reconnect:
                    return
            except grpc.RpcError as exc:
                if stop is not None and stop.is_set() and exc.code() == grpc.StatusCode.CANCELLED:
                    return
                if exc.code() not in RETRYABLE or not reconnect or attempt >= self.retries:
                    raise
            finally:
                done.set()
            if stop is not None:
                if stop.wait(self._delay(attempt)):
                    return
            else:
                time.sleep(self._delay(attempt))
            attempt += 1

    def sender(self, batch_size: int = 500, linger: float = 0.02, max_pending_batches: int = 8) -> EventSender:
        return EventSender(self, batch_size=batch_size, linger=linger, max_pending_batches=max_pending_batches)
