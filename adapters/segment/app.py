"""The Segment tracking spec over HTTP: ``POST /v1/track|identify|page|screen|group|alias|batch``
and ``POST /v1/decide`` (an ASGI app).

A request is checked in order of cost — write key (HTTP Basic user), body size, nesting,
JSON, then every message — and only a request whose every message converts and validates
reaches the hub; a refused one is answered ``400 {"success": false, "code", "message",
"field"}`` and records nothing, so the sender can fix it and resend. Accepted messages are
recorded through the hub's writer (``EventBatcher``: concurrent requests share one group
commit) and answered ``200 {"success": true}`` only after the commit. ``messageId`` is the
idempotency key, so an SDK's retry is counted once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shopkeeper.adapters.base import EventBatcher, HubAPI, HubError
from shopkeeper.adapters.web.guards import MAX_JSON_DEPTH, BadRequest, read_json, record_committed
from shopkeeper.events import (
    DEFAULT_EVENT_TYPES,
    MAX_DATA_BYTES,
    EventError,
    EventTypes,
    json_size,
    validate_decoded,
)

from .config import SegmentConfig, WriteKey
from .mapping import MESSAGE_TYPES, Converted, Mapper

log = logging.getLogger("shopkeeper.adapters.segment")

WRITE = "interactions:write"
DECIDE = "decide"
DECIDE_KEYS = frozenset({"userId", "anonymousId", "placement", "context", "limit", "writeKey"})


@dataclass(frozen=True)
class KeyPolicy:
    """What a write key may do: the scopes and event types of its touch point's API key in the
    hub config (all of them when the hub has no API key of that name), and Decide's channel."""

    touchpoint: str
    scopes: frozenset[str] | None = None
    event_types: frozenset[str] | None = None
    channel: str = ""

    def may(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes


def key_policies(config: SegmentConfig, api_keys: list[Any]) -> dict[str, KeyPolicy]:
    """Each write key's policy, from the hub's API keys (``api_keys:``) named like its touch point."""
    by_name = {k.name: k for k in api_keys}
    out = {}
    for key, wk in config.key_map.items():
        api = by_name.get(wk.touchpoint)
        out[key] = KeyPolicy(wk.touchpoint, api.scopes if api else None, api.event_types if api else None,
                             wk.channel or (getattr(api, "channel", "") or "" if api else ""))
    return out


class SegmentEndpoint:
    """The endpoints, bound to one config and one :class:`HubAPI`."""

    def __init__(self, config: SegmentConfig, hub: HubAPI, event_types: EventTypes = DEFAULT_EVENT_TYPES,
                 api_keys: list[Any] | None = None) -> None:
        self.config = config
        self.hub = hub
        self.event_types = event_types
        self.policies = key_policies(config, api_keys or [])
        #: most characters coercing text to numbers can add to an event's data as JSON: a float's
        #: repr is at most 24 characters, its text at least 3 ("1" quoted), for each declared field
        self._coercion_slack = 32 * max((len(t.fields) for n in event_types.names()
                                         if (t := event_types.get(n)) is not None), default=0)
        self.mapper = Mapper(config.event_table, config.user_id_namespace, config.anonymous_id_namespace)
        self.batcher: EventBatcher | None = None  # made on the serving loop
        self.stats = {"requests": 0, "messages": 0, "applied": 0, "duplicates": 0, "bad": 0}

    # -- helpers ------------------------------------------------------------------------

    def _basic_user(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            user = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("authorization", "not valid HTTP Basic credentials", 401) from None
        return user.partition(":")[0]

    def _policy(self, key: str | None, scope: str) -> KeyPolicy:
        if not key:
            raise BadRequest("writeKey", "missing: send the write key as the HTTP Basic user", 401)
        policy = self.policies.get(key)
        if policy is None:
            raise BadRequest("writeKey", "unknown write key (adapters.segment.write_keys)", 401)
        if not policy.may(scope):
            raise BadRequest("writeKey", f"the touch point {policy.touchpoint!r} of this write key lacks the "
                                         f"{scope!r} scope (api_keys)", 403)
        return policy

    async def _body(self, request: Request, key: str | None, scope: str) -> tuple[dict[str, Any], str | None]:
        if key is not None:  # refuse an unknown key before reading the body
            self._policy(key, scope)
        body = await read_json(request, self.config.max_body_bytes, MAX_JSON_DEPTH)
        if not isinstance(body, dict):
            raise BadRequest("body", f"must be a JSON object, not {type(body).__name__}")
        if key is None and isinstance(body.get("writeKey"), str):
            key = body["writeKey"]  # analytics.js puts it in the body when it cannot set headers
        return body, key

    def _messages(self, kind: str, body: dict[str, Any]) -> tuple[list[tuple[str, Any, str]], Any, Any]:
        """(type, message, where) for each message of the request, and the batch's shared
        ``context`` and ``sentAt`` (the SDKs stamp the batch, not each message)."""
        if kind != "batch":
            if body.get("type") not in (None, kind):
                raise BadRequest("type", f"{body['type']!r} sent to /v1/{kind}")
            return [(kind, body, "")], None, None
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            raise BadRequest("batch", "required: a non-empty list of messages")
        if len(batch) > self.config.max_batch_messages:
            raise BadRequest("batch", f"{len(batch)} messages, at most {self.config.max_batch_messages} "
                                      "(max_batch_messages)", 413)
        out = []
        for i, m in enumerate(batch):
            if not isinstance(m, dict):
                raise BadRequest(f"batch[{i}]", f"must be an object, not {type(m).__name__}")
            t = m.get("type")
            if t not in MESSAGE_TYPES:
                raise BadRequest(f"batch[{i}].type", f"{t!r} is not one of {', '.join(MESSAGE_TYPES)}")
            out.append((t, m, f"batch[{i}]."))
        shared = body.get("context")
        return out, shared if isinstance(shared, dict) and shared else None, body.get("sentAt")

    def _convert(self, kind: str, msg: Any, where: str, policy: KeyPolicy, now_us: int,
                 shared: Any = None, sent_at: Any = None) -> Converted:
        """The message as the hub would take it (decoded parts, not yet validated); an error
        names the sender's field (``batch[3].properties.total``)."""
        conv: Converted | None = None
        try:
            conv = self.mapper.convert(msg, kind, policy.touchpoint, now_us, shared, sent_at)
            if policy.event_types is not None and conv.type not in policy.event_types:
                raise EventError("type", f"the touch point {policy.touchpoint!r} may not send {conv.type!r} "
                                         "events (its API key's event_types)")
            return conv
        except EventError as exc:
            raise self._refusal(exc, conv, kind, msg, where) from None

    def _validate(self, conv: Converted, kind: str, msg: Any, where: str, data_bound: int | None) -> Any:
        """What goes to the hub for one converted message, checked here, before anything of the
        request is recorded.

        The mapper's decoded parts go straight to :func:`validate_decoded` (the check the gRPC
        ingest uses: same rules, same errors, no raw event dict in between). In the hub's process
        the validated ``Event`` itself goes to the writer (``InProcessHub`` takes it as it is, not
        checked twice); a remote hub gets the raw event and checks it again (it trusts no client).
        ``data_bound``: a proven upper bound of the data's size as JSON, so that a small event's
        data is not serialised once more just to be measured."""
        if self.event_types.get(conv.type) is None:  # a plugin's type the hub knows and we do not: it checks
            return conv.event
        try:
            valid = validate_decoded(self.event_types, conv.type, conv.channel, conv.ts_us, conv.identities,
                                     conv.idempotency_key, conv.data, conv.touchpoint, conv.traits,
                                     data_json_bound=data_bound)
        except EventError as exc:
            raise self._refusal(exc, conv, kind, msg, where) from None
        return valid if self.hub.mode == "in-process" else conv.event

    @staticmethod
    def _refusal(exc: EventError, conv: Converted | None, kind: str, msg: Any, where: str) -> BadRequest:
        fld = conv.sender_field(exc.field) if conv is not None else exc.field
        what = f" ({msg.get('event')!r})" if kind == "track" and isinstance(msg, dict) and msg.get("event") else ""
        return BadRequest(f"{where}{fld}", f"{exc.reason}{what}")

    def _data_bound(self, converted: list[Converted]) -> int | None:
        """One bound for every message's data: the size of all of them as one JSON list (each is a
        part of it), plus what coercing declared fields can add (``"1e15"`` -> ``1000000000000000.0``).
        ``None`` (each measured on its own) when that is over the per-event limit."""
        if len(converted) == 1:
            return None  # measuring it here would cost what the check costs
        bound = json_size([c.data for c in converted]) + self._coercion_slack
        return bound if bound <= MAX_DATA_BYTES else None

    async def _record(self, events: list[Any]) -> list[dict[str, Any]]:
        if self.batcher is None:
            self.batcher = EventBatcher(self.hub, max_events=1000, max_delay=0.002)
        return await record_committed(self.batcher, events, self.config.commit_timeout, "messageIds")

    def _error(self, exc: BadRequest) -> JSONResponse:
        if exc.status == 400:
            self.stats["bad"] += 1
        code = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 413: "payload_too_large",
                415: "unsupported_encoding"}.get(exc.status, "unavailable")
        return JSONResponse({"success": False, "code": code, "message": str(exc), "field": exc.field,
                             "reason": exc.reason}, exc.status, headers=exc.headers)

    # -- endpoints ----------------------------------------------------------------------

    async def track(self, request: Request) -> Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        self.stats["requests"] += 1
        try:
            body, key = await self._body(request, self._basic_user(request), WRITE)
            policy = self._policy(key, WRITE)
            messages, shared, sent_at = self._messages(kind, body)
            now_us = time.time_ns() // 1000
            converted = [self._convert(t, m, where, policy, now_us, shared, sent_at) for t, m, where in messages]
            bound = self._data_bound(converted)
            events = [self._validate(c, t, m, where, bound)
                      for c, (t, m, where) in zip(converted, messages, strict=True)]
            self.stats["messages"] += len(converted)
            results = await self._record(events)
            bad = [(r, c) for r, c in zip(results, converted, strict=True) if r["status"] == "rejected"]
            self.stats["applied"] += sum(r["status"] == "applied" for r in results)
            self.stats["duplicates"] += sum(r["status"] == "duplicate" for r in results)
            if bad:
                r, conv = bad[0]
                where = f"batch[{r['index']}]." if kind == "batch" else ""
                fld = conv.sender_field(r.get("field") or "message")
                more = f" ({len(bad)} of {len(results)} messages refused; the others are recorded)" \
                    if len(results) > 1 else ""
                reason = (r.get("error") or "refused by the hub").split(": ", 1)[-1]
                raise BadRequest(f"{where}{fld}", f"{reason}{more}")
        except BadRequest as exc:
            return self._error(exc)
        return JSONResponse({"success": True})

    async def decide(self, request: Request) -> Response:
        self.stats["requests"] += 1
        try:
            body, key = await self._body(request, self._basic_user(request), DECIDE)
            policy = self._policy(key, DECIDE)
            unknown = set(body) - DECIDE_KEYS
            if unknown:
                raise BadRequest(sorted(unknown)[0], f"unknown field; /v1/decide takes {sorted(DECIDE_KEYS)}")
            placement = body.get("placement")
            if not isinstance(placement, str) or not placement or len(placement) > 64:
                raise BadRequest("placement", "required: the placement name, e.g. home_hero (1-64 characters)")
            context = body.get("context") or {}
            if not isinstance(context, dict):
                raise BadRequest("context", f"must be an object, not {type(context).__name__}")
            limit = body.get("limit", self.config.decide_limit)
            if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 100:
                raise BadRequest("limit", "must be a whole number from 1 to 100")
            ref = self._decide_ref(body)
            if not context.get("channel") and policy.channel:
                context = {**context, "channel": policy.channel}
            try:
                actions = await asyncio.to_thread(self.hub.decide, ref, placement, context, policy.touchpoint, limit)
            except HubError:
                actions = []  # a customer the hub has not seen yet: nothing to personalise
        except BadRequest as exc:
            return self._error(exc)
        out = [{"kind": a.get("kind", "action"), "id": a.get("id", ""), "score": a.get("score", 0.0),
                "reason": a.get("reason", ""), "payload": a.get("payload") or {}} for a in actions]
        answer: dict[str, Any] = {"placement": placement, "actions": out}
        reason = getattr(actions, "no_offer_reason", "")
        if reason:  # an answer without an offer says why (a contact-policy reason code), as Decide does
            answer["no_offer_reason"] = reason
            answer["no_offer_detail"] = getattr(actions, "no_offer_detail", "")
        return JSONResponse(answer, headers={"Cache-Control": "private, no-store"})

    def _decide_ref(self, body: dict[str, Any]) -> tuple[str, str]:
        for fld, ns in (("userId", self.config.user_id_namespace), ("anonymousId", self.config.anonymous_id_namespace)):
            v = body.get(fld)
            if v is None or v == "":
                continue
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise BadRequest(fld, f"must be text, not {type(v).__name__}")
            return ns, str(v)
        raise BadRequest("userId", "required: userId or anonymousId of the customer to decide for")

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "hub": self.hub.mode, "stats": self.stats})


def create_app(config: SegmentConfig, hub: HubAPI, event_types: EventTypes = DEFAULT_EVENT_TYPES,
               api_keys: list[Any] | None = None) -> Starlette:
    s = SegmentEndpoint(config, hub, event_types, api_keys)
    paths = [*MESSAGE_TYPES, "batch"]
    app = Starlette(routes=[
        *(Route(f"/v1/{p}", s.track, methods=["POST"]) for p in paths),
        Route("/v1/decide", s.decide, methods=["POST"]),
        Route("/healthz", s.health, methods=["GET"]),
    ])
    app.state.endpoint = s
    return app


__all__ = ["create_app", "SegmentEndpoint", "KeyPolicy", "WriteKey"]
