"""What both clients share: events and customer references as messages, the channel settings,
and the unary helpers (:class:`_Calls`), written once for the sync and the asyncio client.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import grpc

from .._proto.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    campaigns_pb2,
    campaigns_pb2_grpc,
    common_pb2,
    customers_pb2,
    customers_pb2_grpc,
    interactions_pb2,
    interactions_pb2_grpc,
    outbox_pb2_grpc,
    rules_pb2,
    rules_pb2_grpc,
    watch_pb2_grpc,
)
from .._proto.values import dict_to_struct

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
    """What both clients set up the same way: options, credentials, the channel and the stubs.
    Each client names where its channels come from (``grpc`` or ``grpc.aio``)."""

    _channels: Any  # the module whose secure_channel/insecure_channel make this client's channel

    def __init__(self, target: str = "127.0.0.1:50051", api_key: str | None = None, *, tls: bool = False,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, retries: int = 6, backoff: float = 0.05,
                 max_backoff: float = 2.0, timeout: float | None = 30.0,
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
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
        if self._tls:
            self.channel = self._channels.secure_channel(target, _credentials(*self._creds), options=self._options)
        else:
            self.channel = self._channels.insecure_channel(target, options=self._options)
        self.customers = customers_pb2_grpc.CustomersStub(self.channel)
        self.interactions = interactions_pb2_grpc.InteractionsStub(self.channel)
        self.watch_stub = watch_pb2_grpc.WatchStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.rules = rules_pb2_grpc.RulesStub(self.channel)
        self.campaigns = campaigns_pb2_grpc.CampaignsStub(self.channel)
        self.outbox_stub = outbox_pb2_grpc.OutboxStub(self.channel)

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

    def campaign_send_test(self, campaign: str, to: list[str], channel: str = "") -> campaigns_pb2.SendTestResponse:
        """Send ``campaign``'s message to test recipients (``email:…``, ``phone:…``, ``customer:…``); part of no run."""
        return self.call(self.campaigns.SendTest, campaigns_pb2.SendTestRequest(campaign=campaign, to=to,
                                                                                channel=channel))
