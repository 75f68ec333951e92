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
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import Any

import grpc

from ._proto.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    campaigns_pb2,
    campaigns_pb2_grpc,
    common_pb2,
    customers_pb2,
    customers_pb2_grpc,
    interactions_pb2,
    interactions_pb2_grpc,
    outbox_pb2,
    outbox_pb2_grpc,
    rules_pb2,
    rules_pb2_grpc,
    watch_pb2,
    watch_pb2_grpc,
)
from .hub.convert import dict_to_struct, py_to_value

__all__ = ["Client", "AsyncClient", "EventSender", "make_event", "customer_ref", "common_pb2", "customers_pb2",
           "interactions_pb2", "watch_pb2", "admin_pb2", "outbox_pb2", "campaigns_pb2"]

RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)


def make_event(ev: Mapping[str, Any] | common_pb2.Event) -> common_pb2.Event:
    """A proto ``Event`` from a dict (identities as ``{"email": "..."}`` or ``[(ns, value), ...]``)."""
    if isinstance(ev, common_pb2.Event):
        return ev
    out = common_pb2.Event(type=ev["type"], channel=ev.get("channel") or "", touchpoint=ev.get("touchpoint") or "",
                           idempotency_key=ev.get("idempotency_key") or secrets.token_hex(16))
    ids = ev.get("identities") or {}
    pairs = ids.items() if isinstance(ids, Mapping) else ids
    for ns, value in pairs:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            out.identities.add(namespace=ns, value=str(v))
    ts = ev.get("ts")
    if isinstance(ts, datetime):
        out.ts.FromDatetime(ts)
    elif isinstance(ts, (int, float)):
        out.ts.seconds, out.ts.nanos = int(ts), int(round((ts - int(ts)) * 1e9))
    elif isinstance(ts, str) and ts:
        out.ts.FromJsonString(ts if ts.endswith("Z") or "+" in ts[10:] else ts + "Z")
    if ev.get("data"):
        out.data.CopyFrom(dict_to_struct(dict(ev["data"])))
    if ev.get("traits"):
        out.traits.CopyFrom(dict_to_struct(dict(ev["traits"])))
    return out


def customer_ref(id: str | None = None, *, email: str | None = None,
                 identity: tuple[str, str] | None = None) -> common_pb2.CustomerRef:
    if id:
        return common_pb2.CustomerRef(id=id)
    if email:
        identity = ("email", email)
    if identity:
        return common_pb2.CustomerRef(identity=common_pb2.Identity(namespace=identity[0], value=identity[1]))
    raise ValueError("give id=, email= or identity=(namespace, value)")


def _credentials(root_certificates: bytes | None, private_key: bytes | None,
                 certificate_chain: bytes | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)


class _Base:
    def __init__(self, target: str, api_key: str | None, *, tls: bool, root_certificates: bytes | None,
                 private_key: bytes | None, certificate_chain: bytes | None, retries: int, backoff: float,
                 max_backoff: float, timeout: float | None, max_message_bytes: int) -> None:
        self.target = target
        self.metadata: tuple[tuple[str, str], ...] = (("x-api-key", api_key),) if api_key else ()
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._tls = tls or bool(root_certificates or certificate_chain)
        self._creds = (root_certificates, private_key, certificate_chain)
        self._options = [("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes)]

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** attempt)) * random.uniform(0.5, 1.0)


class _Calls:
    """The unary helpers both clients share: each builds its request and returns
    ``self.call(stub method, request)`` — the answer on :class:`Client`, an awaitable on
    :class:`AsyncClient` (whose ``call`` is a coroutine function), so the two cannot drift apart.
    Return types are those of the sync client; await them on the async one."""

    customers: Any
    interactions: Any
    admin: Any
    rules: Any
    campaigns: Any
    call: Callable[..., Any]

    def get_customer(self, id: str | None = None, *, email: str | None = None,
                     identity: tuple[str, str] | None = None, recent: int = 10) -> customers_pb2.Customer:
        return self.call(self.customers.GetCustomer, customers_pb2.GetCustomerRequest(
            customer=customer_ref(id, email=email, identity=identity), recent=recent))

    def identify(self, identities: Mapping[str, str] | Iterable[tuple[str, str]],
                 traits: Mapping[str, Any] | None = None, *,
                 create_only: bool = False) -> customers_pb2.IdentifyResponse:
        pairs = identities.items() if isinstance(identities, Mapping) else identities
        req = customers_pb2.IdentifyRequest(identities=[common_pb2.Identity(namespace=n, value=v) for n, v in pairs],
                                            create_only=create_only)
        if traits:
            req.traits.CopyFrom(dict_to_struct(dict(traits)))
        return self.call(self.customers.Identify, req)

    def record(self, event: Mapping[str, Any] | common_pb2.Event, *, trace: bool = False) -> common_pb2.EventStatus:
        """Record one event; with ``trace`` the rules trace comes back in ``EventStatus.trace``."""
        return self.call(self.interactions.RecordInteraction,
                         interactions_pb2.RecordInteractionRequest(event=make_event(event), trace=trace))

    # -- rules of one customer ----------------------------------------------------------

    def customer_rules(self, id: str | None = None, *, email: str | None = None,
                       identity: tuple[str, str] | None = None) -> rules_pb2.CustomerRules:
        return self.call(self.rules.ListCustomerRules, rules_pb2.CustomerRulesRequest(
            customer=customer_ref(id, email=email, identity=identity)))

    def add_customer_rule(self, yaml_text: str, id: str | None = None, *, email: str | None = None,
                          identity: tuple[str, str] | None = None, name: str = "",
                          added_by: str = "") -> rules_pb2.CustomerRules:
        """Attach rules (YAML) to a customer; ``INVALID_ARGUMENT`` carries the file:line:col errors."""
        return self.call(self.rules.AddCustomerRule, rules_pb2.AddCustomerRuleRequest(
            customer=customer_ref(id, email=email, identity=identity), yaml=yaml_text, name=name, added_by=added_by))

    def remove_customer_rule(self, rule_name: str, id: str | None = None, *, email: str | None = None,
                             identity: tuple[str, str] | None = None) -> rules_pb2.CustomerRules:
        return self.call(self.rules.RemoveCustomerRule, rules_pb2.RemoveCustomerRuleRequest(
            customer=customer_ref(id, email=email, identity=identity), name=rule_name))

    def explain(self, id: str | None = None, *, email: str | None = None, identity: tuple[str, str] | None = None,
                event: Mapping[str, Any] | common_pb2.Event | None = None,
                event_key: str = "") -> rules_pb2.ExplainResponse:
        """Why each rule did or did not act for the customer and ``event`` (hypothetical) or
        ``event_key`` (recorded); ``.json`` for tools, ``.text`` the same for people."""
        req = rules_pb2.ExplainRequest(customer=customer_ref(id, email=email, identity=identity), event_key=event_key)
        if event is not None:
            req.event.CopyFrom(make_event(event))
        return self.call(self.rules.Explain, req)

    def customer_outbox(self, id: str | None = None, *, email: str | None = None,
                        identity: tuple[str, str] | None = None,
                        status: str = "pending") -> rules_pb2.ListOutboxResponse:
        """The messages and agent alerts queued for one customer (``Rules.ListOutbox``)."""
        return self.call(self.rules.ListOutbox, rules_pb2.ListOutboxRequest(
            customer=customer_ref(id, email=email, identity=identity), status=status))

    def timers(self, id: str | None = None, *, email: str | None = None,
               identity: tuple[str, str] | None = None) -> rules_pb2.ListTimersResponse:
        return self.call(self.rules.ListTimers, rules_pb2.CustomerRulesRequest(
            customer=customer_ref(id, email=email, identity=identity)))

    def decide(self, id: str | None = None, *, email: str | None = None, identity: tuple[str, str] | None = None,
               placement: str = "", touchpoint: str = "", context: Mapping[str, Any] | None = None,
               limit: int = 10) -> interactions_pb2.DecideResponse:
        req = interactions_pb2.DecideRequest(customer=customer_ref(id, email=email, identity=identity),
                                             placement=placement, touchpoint=touchpoint, limit=limit)
        if context:
            req.context.CopyFrom(dict_to_struct(dict(context)))
        return self.call(self.interactions.Decide, req)

    def explain_decide(self, id: str | None = None, *, email: str | None = None,
                       identity: tuple[str, str] | None = None, placement: str = "", touchpoint: str = "",
                       channel: str = "") -> rules_pb2.ExplainResponse:
        """Why Decide would choose or exclude each offer for the customer (a dry run: nothing is
        recorded); ``.json`` for tools, ``.text`` for people (``shopkeeper offers decide --explain``)."""
        return self.call(self.rules.ExplainDecide, rules_pb2.ExplainDecideRequest(
            customer=customer_ref(id, email=email, identity=identity), placement=placement, touchpoint=touchpoint,
            channel=channel))

    def import_rows(self, rows: Iterable[str], *, derived_keys: Iterable[int] = (), historical: bool = False,
                    validate_only: bool = False, source: str = "", batch_id: str = "import"
                    ) -> interactions_pb2.BatchAck:
        """Apply import rows (JSON, the shape ``shopkeeper export`` writes) through the hub's writer
        (``Admin.ImportRows``); ``validate_only`` checks them against the store and writes nothing."""
        return self.call(self.admin.ImportRows, admin_pb2.ImportRowsRequest(
            batch_id=batch_id, rows=list(rows), derived_keys=list(derived_keys), historical=historical,
            validate_only=validate_only, source=source))

    def stats(self) -> admin_pb2.Stats:
        return self.call(self.admin.GetStats, admin_pb2.GetStatsRequest())

    # -- campaigns (docs/campaigns.md) ----------------------------------------------------

    def check_campaigns(self) -> campaigns_pb2.CheckCampaignsResponse:
        return self.call(self.campaigns.CheckCampaigns, campaigns_pb2.CheckCampaignsRequest())

    def campaign_dry_run(self, campaign: str) -> campaigns_pb2.CampaignReport:
        return self.call(self.campaigns.DryRun, campaigns_pb2.CampaignRequest(campaign=campaign))

    def start_campaign(self, campaign: str) -> campaigns_pb2.CampaignRun:
        return self.call(self.campaigns.StartCampaign, campaigns_pb2.CampaignRequest(campaign=campaign))

    def campaign_run(self, run_id: str, action: str = "get") -> campaigns_pb2.CampaignRun:
        """One run; ``action`` ``pause``, ``resume`` or ``cancel`` changes it first."""
        method = {"get": self.campaigns.GetRun, "pause": self.campaigns.PauseRun,
                  "resume": self.campaigns.ResumeRun, "cancel": self.campaigns.CancelRun}[action]
        return self.call(method, campaigns_pb2.RunRequest(run_id=run_id))

    def campaign_runs(self, campaign: str = "") -> campaigns_pb2.ListRunsResponse:
        return self.call(self.campaigns.ListRuns, campaigns_pb2.ListRunsRequest(campaign=campaign))

    def campaign_report(self, run_id: str, window_days: float = 0.0) -> campaigns_pb2.CampaignReport:
        return self.call(self.campaigns.Report, campaigns_pb2.ReportRequest(run_id=run_id, window_days=window_days))


class Client(_Calls, _Base):
    """Blocking client; safe to share between threads (gRPC channels are)."""

    def __init__(self, target: str = "127.0.0.1:50051", api_key: str | None = None, *, tls: bool = False,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, retries: int = 6, backoff: float = 0.05,
                 max_backoff: float = 2.0, timeout: float | None = 30.0,
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__(target, api_key, tls=tls, root_certificates=root_certificates, private_key=private_key,
                         certificate_chain=certificate_chain, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, timeout=timeout, max_message_bytes=max_message_bytes)
        if self._tls:
            self.channel = grpc.secure_channel(target, _credentials(*self._creds), options=self._options)
        else:
            self.channel = grpc.insecure_channel(target, options=self._options)
        self.customers = customers_pb2_grpc.CustomersStub(self.channel)
        self.interactions = interactions_pb2_grpc.InteractionsStub(self.channel)
        self.watch_stub = watch_pb2_grpc.WatchStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.rules = rules_pb2_grpc.RulesStub(self.channel)
        self.campaigns = campaigns_pb2_grpc.CampaignsStub(self.channel)
        self.outbox_stub = outbox_pb2_grpc.OutboxStub(self.channel)

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

    def pending_intents(self, channels: Iterable[str], limit: int = 0,
                        include_deferred: bool = False) -> list[outbox_pb2.Intent]:
        """Outbox intents on these channels not yet final and due (``Outbox.PendingIntents``); with
        ``include_deferred`` also those quiet hours hold back (``not_before`` in the future)."""
        return list(self.call(self.outbox_stub.PendingIntents, outbox_pb2.PendingIntentsRequest(
            channels=list(channels), limit=limit, include_deferred=include_deferred)).intents)

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


class EventSender:
    """Batches events onto one ``StreamInteractions`` stream; each ``send`` returns a future.

    **Back-pressure**: at most ``max_pending_batches`` batches wait unacknowledged; ``send``
    blocks beyond that, so a fast producer is slowed to what the hub commits. If the stream
    breaks with ``UNAVAILABLE``, it is reopened and every unacknowledged batch is resent —
    safe, because the hub acknowledges replays of an idempotency key as ``DUPLICATE``.
    """

    def __init__(self, client: Client, *, batch_size: int = 500, linger: float = 0.02,
                 max_pending_batches: int = 8) -> None:
        self.client = client
        self.batch_size = batch_size
        self.linger = linger
        self._slots = threading.BoundedSemaphore(max_pending_batches)
        self._buf: list[tuple[common_pb2.Event, Future]] = []
        self._buf_since = 0.0
        self._lock = threading.Lock()
        self._outbox: queue.Queue = queue.Queue()
        self._unacked: dict[str, tuple[interactions_pb2.EventBatch, list[Future]]] = {}
        self._seq = 0
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shopkeeper-sender", daemon=True)
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick, name="shopkeeper-sender-linger", daemon=True)
        self._ticker.start()

    def __call__(self, event: Mapping[str, Any] | common_pb2.Event) -> Future:
        return self.send(event)

    def send(self, event: Mapping[str, Any] | common_pb2.Event) -> Future:
        if self._closed:
            raise RuntimeError("sender is closed")
        if self.error is not None:
            raise self.error
        fut: Future = Future()
        with self._lock:
            if not self._buf:
                self._buf_since = time.monotonic()
            self._buf.append((make_event(event), fut))
            full = len(self._buf) >= self.batch_size
        if full:
            self._flush_buffer()
        return fut

    def _flush_buffer(self) -> None:
        with self._lock:
            items, self._buf = self._buf, []
        if not items:
            return
        self._slots.acquire()  # back-pressure: wait for an acknowledgement
        self._seq += 1
        batch = interactions_pb2.EventBatch(batch_id=str(self._seq), events=[e for e, _ in items])
        self._unacked[batch.batch_id] = (batch, [f for _, f in items])
        self._outbox.put(batch)

    def _tick(self) -> None:
        while not self._closed:
            time.sleep(self.linger)
            if self._buf and time.monotonic() - self._buf_since >= self.linger:
                self._flush_buffer()

    def flush(self, timeout: float | None = None) -> None:
        """Send what is buffered and wait until every event sent so far is acknowledged."""
        self._flush_buffer()
        futs = [f for _, fs in list(self._unacked.values()) for f in fs]
        for f in futs:
            f.result(timeout)

    def close(self, timeout: float | None = 60) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._outbox.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> EventSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _requests(self, resend: list[interactions_pb2.EventBatch]) -> Iterator[interactions_pb2.EventBatch]:
        yield from resend
        while True:
            batch = self._outbox.get()
            if batch is None:
                return
            yield batch

    def _run(self) -> None:
        attempt = 0
        resend: list[interactions_pb2.EventBatch] = []
        while True:
            try:
                for ack in self.client.interactions.StreamInteractions(self._requests(resend),
                                                                       metadata=self.client.metadata):
                    attempt = 0
                    batch, futs = self._unacked.pop(ack.batch_id, (None, []))
                    for st, f in zip(ack.statuses, futs, strict=False):
                        f.set_result(st)
                    if batch is not None:
                        self._slots.release()
                return
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE or attempt >= self.client.retries:
                    self.error = exc
                    for _b, futs in self._unacked.values():
                        for f in futs:
                            if not f.done():
                                f.set_exception(exc)
                    return
                time.sleep(self.client._delay(attempt))
                attempt += 1
                resend = [b for b, _ in self._unacked.values()]


class AsyncClient(_Calls, _Base):
    """The asyncio client (``grpc.aio``); same helpers as :class:`Client`, awaitable."""

    def __init__(self, target: str = "127.0.0.1:50051", api_key: str | None = None, *, tls: bool = False,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, retries: int = 6, backoff: float = 0.05,
                 max_backoff: float = 2.0, timeout: float | None = 30.0,
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__(target, api_key, tls=tls, root_certificates=root_certificates, private_key=private_key,
                         certificate_chain=certificate_chain, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, timeout=timeout, max_message_bytes=max_message_bytes)
        if self._tls:
            self.channel = grpc.aio.secure_channel(target, _credentials(*self._creds), options=self._options)
        else:
            self.channel = grpc.aio.insecure_channel(target, options=self._options)
        self.customers = customers_pb2_grpc.CustomersStub(self.channel)
        self.interactions = interactions_pb2_grpc.InteractionsStub(self.channel)
        self.watch_stub = watch_pb2_grpc.WatchStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.rules = rules_pb2_grpc.RulesStub(self.channel)
        self.campaigns = campaigns_pb2_grpc.CampaignsStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, method: Callable, request: Any, timeout: float | None = None) -> Any:
        attempt = 0
        while True:
            try:
                return await method(request, metadata=self.metadata, timeout=timeout or self.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt >= self.retries:
                    raise
                await asyncio.sleep(self._delay(attempt))
                attempt += 1

    async def stream(self, batches: AsyncIterator[list[Mapping[str, Any]]] | Iterable[list[Mapping[str, Any]]],
                     ) -> AsyncIterator[interactions_pb2.BatchAck]:
        """Send lists of events as batches on one stream; yields each batch's acknowledgement in order."""
        async def requests() -> AsyncIterator[interactions_pb2.EventBatch]:
            n = 0
            if hasattr(batches, "__aiter__"):
                async for b in batches:  # type: ignore[union-attr]
                    n += 1
                    yield interactions_pb2.EventBatch(batch_id=str(n), events=[make_event(e) for e in b])
            else:
                for b in batches:  # type: ignore[union-attr]
                    n += 1
                    yield interactions_pb2.EventBatch(batch_id=str(n), events=[make_event(e) for e in b])

        call = self.interactions.StreamInteractions(requests(), metadata=self.metadata)
        async for ack in call:
            yield ack
