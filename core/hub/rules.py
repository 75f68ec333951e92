"""The ``shopkeeper.v1.Rules`` service: thin glue between protobuf and the rules' domain functions
(:mod:`shopkeeper.rules.customer_rules`, :mod:`shopkeeper.rules.explain`).

Reads run on a pooled read connection; adding or removing a customer's rule is an operation
of the one writer (committed, then published on the change feed as ``customer_rules``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import yaml

from .._proto.v1 import rules_pb2, rules_pb2_grpc
from ..engine import operations as domain
from ..rules.customer_rules import (
    CustomerRuleError,
    add_customer_rule,
    intents,
    pending_timers,
    remove_customer_rule,
)
from ..rules.explain import ExplainError, explain_customer, render_text
from . import auth, convert
from .customers import ref_args

if TYPE_CHECKING:
    from .server import Hub


def _rules(c: Any, changed: list[str] = ()) -> Any:  # type: ignore[assignment]
    return rules_pb2.CustomerRules(customer_id=c.id, changed=list(changed), rules=[
        rules_pb2.CustomerRule(name=n, yaml=yaml.safe_dump(e.get("rule"), sort_keys=False),
                               version=e.get("version", ""), added_at=convert.ts(e.get("added_at")),
                               added_by=str(e.get("added_by", "")))
        for n, e in sorted(c.rules.items())])


class RulesServicer(rules_pb2_grpc.RulesServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _service(self) -> Any:
        from ..rules.plugin import service_for

        return service_for(self.hub)

    def _customer(self, folders: Any, ref: Any) -> Any:
        cid, ident = ref_args(ref)
        return domain.resolve_ref(folders, cid, ident, self.hub.identity_config)

    def ListCustomerRules(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context), self.hub.read() as f:
            return _rules(self._customer(f, request.customer))

    def AddCustomerRule(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub, svc = self.hub, self._service()
        by = request.added_by or auth.current().name

        def op(f: Any, changes: Any) -> tuple[str, list[str]]:
            c = self._customer(f, request.customer)
            try:
                names = add_customer_rule(f, c, request.yaml, name=request.name or "customer-rule.yaml", added_by=by,
                                          max_rules=svc.config.max_customer_rules, vocabulary=svc.vocabulary,
                                          event_types=svc.event_types)
            except CustomerRuleError as exc:
                raise domain.BadArgument("yaml", str(exc)) from exc
            changes.add("customer_rules", c.id, detail="added " + ", ".join(names))
            return c.id, names

        with hub.guard(context):
            cid, names = hub.write(context, op)
            with hub.read() as f:
                return _rules(f.customer(cid), names)

    def RemoveCustomerRule(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub

        def op(f: Any, changes: Any) -> str:
            c = self._customer(f, request.customer)
            if not remove_customer_rule(f, c, request.name):
                raise domain.NotFound(f"customer {c.id} has no rule {request.name!r} "
                                      f"(has: {', '.join(sorted(c.rules)) or 'none'})")
            changes.add("customer_rules", c.id, detail=f"removed {request.name}")
            return c.id

        with hub.guard(context):
            cid = hub.write(context, op)
            with hub.read() as f:
                return _rules(f.customer(cid), [request.name])

    def Explain(self, request: Any, context: grpc.ServicerContext) -> Any:
        svc = self._service()
        event = None
        if request.HasField("event"):
            event = {k: v for k, v in convert.event_to_raw(request.event).items() if v not in (None, "")}
        with self.hub.guard(context), self.hub.read() as f:  # a read transaction: the dry run is thrown away
            c = self._customer(f, request.customer)
            try:
                x = explain_customer(svc, f, c, event=event, event_key=request.event_key or None)
            except ExplainError as exc:
                raise domain.BadArgument("event", str(exc)) from exc
            return rules_pb2.ExplainResponse(json=json.dumps(x, default=str, ensure_ascii=False), text=render_text(x))

    def ExplainDecide(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Why Decide would choose or exclude each offer: the analysis plugin's catalogue, a dry run
        in a read transaction (nothing recorded, nothing counted as shown)."""
        from ..analysis.explain_offers import explain_decision, render_text
        from ..analysis.plugin import state_for

        who = auth.current()
        touchpoint = request.touchpoint or who.name
        channel = request.channel or who.channel
        with self.hub.guard(context), self.hub.read() as f:
            c = self._customer(f, request.customer)
            x = explain_decision(state_for(self.hub).catalogue, c, touchpoint, request.placement or "home_hero",
                                 {"channel": channel} if channel else {})
            return rules_pb2.ExplainResponse(json=json.dumps(x, default=str, ensure_ascii=False), text=render_text(x))

    def ListOutbox(self, request: Any, context: grpc.ServicerContext) -> Any:
        status = None if request.status == "all" else (request.status or "pending")
        with self.hub.guard(context), self.hub.read() as f:
            c = self._customer(f, request.customer)
            items = [rules_pb2.OutboxItem(
                id=str(i.get("id", "")), channel=str(i.get("channel", "")), template=str(i.get("template", "")),
                purpose=str(i.get("purpose", "")), status=str(i.get("status", "")),
                payload=convert.dict_to_struct(_plain(i.get("payload") or {})),
                at=convert.ts(i.get("created_at") or i.get("at")), source=str(i.get("source") or i.get("rule") or ""))
                for i in intents(c, status)]
            return rules_pb2.ListOutboxResponse(customer_id=c.id, items=items)

    def ListTimers(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context), self.hub.read() as f:
            c = self._customer(f, request.customer)
            return rules_pb2.ListTimersResponse(customer_id=c.id, timers=[
                rules_pb2.Timer(id=t["id"], rule=t["rule"], scope=t["scope"], due=convert.ts(t["due"]),
                                cancelled_by=t["cancelled_by"], event_type=t["event_type"])
                for t in pending_timers(c)])


def _plain(x: Any) -> Any:
    """JSON-safe values for a Struct (tuples, sets and other objects become lists and text)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    return str(x)
