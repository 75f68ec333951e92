"""Who is calling and what they may do: API keys and scopes, checked in a server interceptor.

A touch point sends its key as ``x-api-key: <key>`` (or ``authorization: Bearer <key>``)
metadata. The interceptor hashes it, finds the :class:`~shopkeeper.hub.config.ApiKey`,
checks the scope the method needs, and makes the caller available to the servicer through
:func:`current` (event-type restrictions are checked per event by the servicer). The same
interceptor counts requests and measures latency for the metrics endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from .config import SCOPES, ApiKey, hash_key
from .errors import status
from .metrics import Metrics

#: The scope each method needs; methods not listed (health, reflection) are open.
METHOD_SCOPES: dict[str, str] = {
    "/shopkeeper.v1.Customers/GetCustomer": "profiles:read",
    "/shopkeeper.v1.Customers/FindCustomers": "profiles:read",
    "/shopkeeper.v1.Customers/ListInteractions": "profiles:read",
    "/shopkeeper.v1.Customers/Identify": "interactions:write",
    "/shopkeeper.v1.Customers/SetConsent": "interactions:write",
    "/shopkeeper.v1.Customers/MergeCustomers": "admin",
    "/shopkeeper.v1.Customers/UnmergeCustomers": "admin",
    "/shopkeeper.v1.Customers/ExportCustomer": "admin",
    "/shopkeeper.v1.Customers/ForgetCustomer": "admin",
    "/shopkeeper.v1.Interactions/RecordInteraction": "interactions:write",
    "/shopkeeper.v1.Interactions/StreamInteractions": "interactions:write",
    "/shopkeeper.v1.Interactions/Decide": "decide",
    "/shopkeeper.v1.Watch/Watch": "profiles:read",
    "/shopkeeper.v1.Outbox/PendingIntents": "profiles:read",
    "/shopkeeper.v1.Outbox/GetIntents": "profiles:read",
    "/shopkeeper.v1.Admin/GetStats": "admin",
    "/shopkeeper.v1.Admin/ListPlugins": "admin",
    "/shopkeeper.v1.Admin/ReloadRules": "admin",
    "/shopkeeper.v1.Admin/Pack": "admin",
    "/shopkeeper.v1.Admin/ApplySegments": "admin",
    "/shopkeeper.v1.Admin/FitModels": "admin",
    "/shopkeeper.v1.Admin/Export": "admin",
    "/shopkeeper.v1.Admin/ImportRows": "admin",
    "/shopkeeper.v1.Rules/ListCustomerRules": "profiles:read",
    "/shopkeeper.v1.Rules/AddCustomerRule": "rules:write",
    "/shopkeeper.v1.Rules/RemoveCustomerRule": "rules:write",
    "/shopkeeper.v1.Rules/Explain": "profiles:read",
    "/shopkeeper.v1.Rules/ExplainDecide": "profiles:read",
    "/shopkeeper.v1.Rules/ListOutbox": "profiles:read",
    "/shopkeeper.v1.Rules/ListTimers": "profiles:read",
    "/shopkeeper.v1.Campaigns/CheckCampaigns": "profiles:read",
    "/shopkeeper.v1.Campaigns/DryRun": "profiles:read",
    "/shopkeeper.v1.Campaigns/StartCampaign": "admin",
    "/shopkeeper.v1.Campaigns/PauseRun": "admin",
    "/shopkeeper.v1.Campaigns/ResumeRun": "admin",
    "/shopkeeper.v1.Campaigns/CancelRun": "admin",
    "/shopkeeper.v1.Campaigns/GetRun": "profiles:read",
    "/shopkeeper.v1.Campaigns/ListRuns": "profiles:read",
    "/shopkeeper.v1.Campaigns/Report": "profiles:read",
    "/shopkeeper.v1.Campaigns/SendTest": "admin",
}


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    event_types: frozenset[str] | None = None
    #: the touch point's channel, which ``Decide`` assumes when the request's context names none
    channel: str = ""

    def may_send(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))

_local = threading.local()


def current() -> Principal:
    """The caller of the RPC running on this thread."""
    return getattr(_local, "principal", None) or ANONYMOUS


class Authenticator:
    def __init__(self, keys: list[ApiKey], allow_anonymous: bool) -> None:
        self.by_digest = {k.key_sha256: k for k in keys}
        self.allow_anonymous = allow_anonymous

    def authenticate(self, metadata: tuple[tuple[str, Any], ...] | None) -> Principal | str:
        """The caller, or the reason (text) they are not authenticated."""
        key = None
        for k, v in metadata or ():
            if k == "x-api-key":
                key = v
                break
            if k == "authorization" and isinstance(v, str) and v.lower().startswith("bearer "):
                key = v[7:].strip()
                break
        if not key:
            if self.allow_anonymous:
                return ANONYMOUS
            return "missing API key: send it as 'x-api-key' metadata"
        found = self.by_digest.get(hash_key(key))
        if found is None:
            return "unknown API key"
        return Principal(found.name, found.scopes, found.event_types, found.channel)


def _deny(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    st = status(code, message)

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort_with_status(st)

    def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        context.abort_with_status(st)
        yield  # pragma: no cover

    return _rebuild(handler, unary, streaming)


def _rebuild(handler: grpc.RpcMethodHandler, unary: Callable, streaming: Callable) -> grpc.RpcMethodHandler:
    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, **kw)
    return grpc.unary_unary_rpc_method_handler(unary, **kw)


class HubInterceptor(grpc.ServerInterceptor):
    """Authentication, authorisation and per-method metrics for every call."""

    def __init__(self, auth: Authenticator, metrics: Metrics) -> None:
        self.auth = auth
        self.metrics = metrics

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        scope = METHOD_SCOPES.get(method)
        if scope is None:
            return handler
        who = self.auth.authenticate(handler_call_details.invocation_metadata)
        short = method.rsplit("/", 1)[-1]
        if isinstance(who, str):
            self.metrics.requests.labels(short, "UNAUTHENTICATED").inc()
            return _deny(handler, grpc.StatusCode.UNAUTHENTICATED, who)
        if scope not in who.scopes:
            self.metrics.requests.labels(short, "PERMISSION_DENIED").inc()
            return _deny(handler, grpc.StatusCode.PERMISSION_DENIED,
                         f"API key {who.name!r} lacks scope {scope!r} needed for {short}")
        return self._wrap(handler, who, short)

    def _wrap(self, handler: grpc.RpcMethodHandler, who: Principal, method: str) -> grpc.RpcMethodHandler:
        metrics = self.metrics
        behavior = (handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream)

        def done(context: grpc.ServicerContext, t0: float, failed: BaseException | None) -> None:
            code = context.code() if hasattr(context, "code") else None
            if code is None:
                code = grpc.StatusCode.UNKNOWN if failed is not None else grpc.StatusCode.OK
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            metrics.requests.labels(method, name).inc()
            metrics.latency.labels(method).observe(time.perf_counter() - t0)

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            _local.principal = who
            t0 = time.perf_counter()
            failed = None
            try:
                return behavior(request, context)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                done(context, t0, failed)

        def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            _local.principal = who
            t0 = time.perf_counter()
            failed = None
            try:
                yield from behavior(request, context)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                done(context, t0, failed)

        return _rebuild(handler, unary, streaming)
