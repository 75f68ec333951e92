"""The web collector: an ASGI app serving the snippet, the collect, identify and decide endpoints.

Every path names its site (``/v1/<site>/collect``) so that a CORS pre-flight, which carries
no body, can already be checked against that site's allow-list. A request is checked in
order of cost — crawler user agent, per-IP rate, size, JSON shape, per-visitor rate, every
event — and only a request that passes every check reaches the hub: a malformed one is
answered ``400`` with ``{"error", "field", "reason"}`` and touches no customer.

Events are acknowledged only after the hub has committed them (``EventBatcher`` gathers the
events of concurrent requests into one hub call, so they share one group commit). The
browser generates each event's id (``crypto.randomUUID``); it becomes the idempotency key
``w:<site>:<id>``, so a retried beacon is counted once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shopkeeper.adapters.base import EventBatcher, HubAPI, HubError
from shopkeeper.events import (
    DEFAULT_EVENT_TYPES,
    MAX_DATA_BYTES,
    MAX_DATA_KEYS,
    EventError,
    EventTypes,
    json_size,
    validate_decoded,
    validate_event,
)

from .config import SiteConfig, WebConfig
from .guards import MAX_JSON_DEPTH, BadRequest, BotFilter, RateLimiter, read_json, record_committed

log = logging.getLogger("shopkeeper.adapters.web")

VISITOR = re.compile(r"^[A-Za-z0-9-]{16,64}$")
EVENT_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
PLACEMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
EVENT_KEYS = frozenset({"type", "id", "ts", "data"})
BODY_KEYS = frozenset({"visitor", "sent", "events"})
IDENTIFY_KEYS = frozenset({"visitor", "id", "identities", "traits", "signature", "sent"})
MAX_SKEW_MS = 7 * 24 * 3600 * 1000  # beyond this the browser's clock is not corrected, the event refused
MAX_TS_MS = 1e16  # far past any plausible Date.now(); keeps int(ts * 1000) finite (the hub refuses < 2000 and > +1 day)


def identify_signature(secret: str, identities: dict[str, str]) -> str:
    """The signature a site's back end gives the page for ``sk('identify', …)``.

    HMAC-SHA256 with the site's ``identify_secret`` over ``namespace:value`` lines, sorted.
    """
    text = "\n".join(f"{ns}:{v}" for ns, v in sorted(identities.items()))
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class Collector:
    """The endpoints, bound to one config and one :class:`HubAPI`."""

    def __init__(self, config: WebConfig, hub: HubAPI, event_types: EventTypes = DEFAULT_EVENT_TYPES) -> None:
        self.config = config
        self.hub = hub
        self.event_types = event_types
        self.bots = BotFilter(config.bot_user_agents)
        self.by_ip = RateLimiter(config.ip_rate, config.ip_burst)
        self.by_visitor = RateLimiter(config.visitor_rate, config.visitor_burst)
        self.batcher: EventBatcher | None = None  # made on the serving loop
        self.snippet = files("shopkeeper.adapters.web").joinpath("static/sk.js").read_bytes()
        #: most characters coercing text to numbers can add to an event's data as JSON (a float's repr is
        #: at most 24 characters, its text at least 3), for each declared field; and the "site" field added
        self._data_slack = 32 * max((len(t.fields) for n in event_types.names()
                                     if (t := event_types.get(n)) is not None), default=0) + 16
        self.stats = {"requests": 0, "events": 0, "applied": 0, "duplicates": 0, "bad": 0, "bots": 0, "limited": 0}

    # -- helpers ------------------------------------------------------------------------

    def _site(self, request: Request) -> SiteConfig:
        name = request.path_params["site"]
        site = self.config.site_map.get(name)
        if site is None:
            raise BadRequest("site", f"unknown site {name!r}", 404)
        return site

    def _cors(self, site: SiteConfig, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if not site.origin_allowed(origin):
            what = f"origin {origin!r} is" if origin else "requests without an Origin header are"
            raise BadRequest("origin", f"{what} not allowed for site {site.name!r} (sites.{site.name}.origins)", 403)
        if not origin:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def _client_ip(self, request: Request) -> str:
        host = request.client.host if request.client else "?"
        if host in self.config.trusted_proxies:
            fwd = request.headers.get("x-forwarded-for", "")
            if fwd:
                return fwd.split(",")[0].strip()
        return host

    def _limit(self, limiter: RateLimiter, key: str, n: int, what: str) -> None:
        if not limiter.take(key, n):
            self.stats["limited"] += 1
            wait = max(1, round(limiter.retry_after(key, n)))
            raise BadRequest(what, f"rate limit exceeded; retry in {wait} s", 429, {"Retry-After": str(wait)})

    async def _body(self, request: Request) -> Any:
        return await read_json(request, self.config.max_body_bytes, MAX_JSON_DEPTH)

    @staticmethod
    def _visitor(body: Any) -> str:
        v = body.get("visitor")
        if not isinstance(v, str) or not VISITOR.match(v):
            raise BadRequest("visitor", "required: the visitor id from the first-party cookie (16-64 of [A-Za-z0-9-])")
        return v

    @staticmethod
    def _skew(body: Any) -> float:
        """Milliseconds to add to the browser's clock to get the collector's."""
        sent = body.get("sent")
        if sent is None:
            return 0.0
        if isinstance(sent, bool) or not isinstance(sent, (int, float)):
            raise BadRequest("sent", "must be the browser's Date.now() in milliseconds")
        skew = time.time() * 1000 - float(sent)
        return skew if abs(skew) < MAX_SKEW_MS else 0.0

    def _data_bound(self, raw_events: list[Any], site: SiteConfig) -> int | None:
        """One proven bound for every event's data size as JSON, so that a small event's data is not
        serialised once more just to be measured: the request's events as one JSON list (each
        event's data is a part of it), plus the site field and what coercion can add. ``None`` (each
        measured on its own) for a single event or when that is over the per-event limit."""
        if len(raw_events) == 1:
            return None  # measuring it here would cost what the check costs
        bound = json_size(raw_events) + len(site.name) + self._data_slack
        return bound if bound <= MAX_DATA_BYTES else None

    def _event(self, site: SiteConfig, visitor: list[tuple[str, str]], raw: Any, i: int, skew: float,
               now_ms: float, in_process: bool, bound: int | None) -> Any:
        """One browser event checked, as the hub will take it: in the hub's process the checked
        ``Event`` itself (``InProcessHub`` takes it as it is, no second check), else the raw event
        (a remote hub trusts no client and checks it again).

        An event's time is the browser's corrected by this send's clock skew (or the arrival time),
        so a retried beacon — which the snippet sends with a new ``sent`` — carries other
        timestamps; the hub finds a key whatever the ts (generation 13, ``shopkeeper.keylog``), so a
        retry counts once however many events came since, in process or over a remote hub. (The
        events were marked *stamped* for that before; a log not yet fingerprinted still finds the
        keys they were logged with, ts 0, that way.)"""
        where = f"events[{i}]"
        if type(raw) is not dict:
            raise BadRequest(where, f"must be an object, not {type(raw).__name__}")
        if not raw.keys() <= EVENT_KEYS:
            unknown = sorted(set(raw) - EVENT_KEYS)[0]
            raise BadRequest(f"{where}.{unknown}", f"unknown field; an event has {sorted(EVENT_KEYS)}")
        etype = raw.get("type")
        if type(etype) is not str or etype not in site.event_types:
            raise BadRequest(f"{where}.type", f"{etype!r} is not an event type site {site.name!r} accepts "
                                              f"(sites.{site.name}.event_types: {sorted(site.event_types)})")
        eid = raw.get("id")
        if type(eid) is not str or not EVENT_ID.match(eid):
            raise BadRequest(f"{where}.id", "required: a unique id per event (crypto.randomUUID()) so retries "
                                            "count once; 8-64 of [A-Za-z0-9-]")
        ts = raw.get("ts")
        if ts is None:
            at_ms = now_ms
        elif isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise BadRequest(f"{where}.ts", "must be Date.now() in milliseconds")
        else:
            at_ms = min(float(ts) + skew, now_ms)
        data = raw.get("data")
        if data is None:
            data = {}
        elif type(data) is not dict:
            raise BadRequest(f"{where}.data", f"must be an object, not {type(data).__name__}")
        elif len(data) >= MAX_DATA_KEYS:
            raise BadRequest(f"{where}.data", f"{len(data)} fields, at most {MAX_DATA_KEYS - 1}")
        data["site"] = site.name  # the parsed body's own dict: nobody else holds it
        key = f"w:{site.name}:{eid}"
        touchpoint = f"web:{site.name}"
        if self.event_types.get(etype) is None:  # a plugin's type the hub knows and we do not: it checks
            return _raw_event(etype, at_ms / 1000.0, visitor, key, data, touchpoint)
        if not -MAX_TS_MS < at_ms < MAX_TS_MS:
            raise BadRequest(f"{where}.ts", "must be Date.now() in milliseconds")
        try:
            event = validate_decoded(self.event_types, etype, "web", int(round(at_ms * 1000)), list(visitor), key,
                                     data, touchpoint, None, data_json_bound=bound)
        except EventError as exc:
            raise BadRequest(f"{where}.{exc.field}", exc.reason) from None
        if in_process:
            return event
        return _raw_event(etype, event.ts / 1e6, visitor, key, event.data, touchpoint)

    async def _record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.batcher is None:
            self.batcher = EventBatcher(self.hub, max_events=1000, max_delay=0.002)
        return await record_committed(self.batcher, events, self.config.commit_timeout, "event ids")

    def _error(self, exc: BadRequest, cors: dict[str, str]) -> JSONResponse:
        if exc.status == 400:
            self.stats["bad"] += 1
        return JSONResponse({"error": str(exc), "field": exc.field, "reason": exc.reason}, exc.status,
                            headers={**cors, **exc.headers})

    async def _json_object(self, request: Request, allowed: frozenset[str], what: str) -> dict[str, Any]:
        """The request's JSON object after the per-IP rate limit, refusing unknown top-level fields."""
        self._limit(self.by_ip, self._client_ip(request), 1, "ip")
        body = await self._body(request)
        if not isinstance(body, dict):
            raise BadRequest("body", f"must be a JSON object, not {type(body).__name__}")
        unknown = set(body) - allowed
        if unknown:
            raise BadRequest(sorted(unknown)[0], f"unknown field; {what} has {sorted(allowed)}")
        return body

    # -- endpoints ----------------------------------------------------------------------

    async def snippet_js(self, request: Request) -> Response:
        return Response(self.snippet, media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=300"})

    async def preflight(self, request: Request) -> Response:
        try:
            cors = self._cors(self._site(request), request)
        except BadRequest as exc:
            return self._error(exc, {})
        return Response(status_code=204, headers={
            **cors, "Access-Control-Allow-Methods": "GET, POST", "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400"})

    async def collect(self, request: Request) -> Response:
        self.stats["requests"] += 1
        cors: dict[str, str] = {}
        try:
            site = self._site(request)
            cors = self._cors(site, request)
            if self.bots.is_bot(request.headers.get("user-agent")):
                self.stats["bots"] += 1
                return JSONResponse({"ok": True, "ignored": "crawler user agent: nothing recorded"}, 202,
                                    headers=cors)
            body = await self._json_object(request, BODY_KEYS, "the body")
            visitor = self._visitor(body)
            raw_events = body.get("events")
            if not isinstance(raw_events, list) or not raw_events:
                raise BadRequest("events", "required: a non-empty list of events")
            if len(raw_events) > self.config.max_events_per_request:
                raise BadRequest("events", f"{len(raw_events)} events, at most {self.config.max_events_per_request} "
                                           "per request (max_events_per_request)", 413)
            skew, now_ms = self._skew(body), time.time() * 1000
            who, in_process = [("cookie", visitor)], self.hub.mode == "in-process"
            bound = self._data_bound(raw_events, site)
            events = [self._event(site, who, e, i, skew, now_ms, in_process, bound) for i, e in enumerate(raw_events)]
            self._limit(self.by_visitor, visitor, len(events), "visitor")
            results = await self._record(events)
        except BadRequest as exc:
            return self._error(exc, cors)
        applied = sum(r["status"] == "applied" for r in results)
        dups = sum(r["status"] == "duplicate" for r in results)
        rejected = [{"index": r["index"], "field": r.get("field"), "reason": r.get("error")}
                    for r in results if r["status"] == "rejected"]
        self.stats["events"] += len(events)
        self.stats["applied"] += applied
        self.stats["duplicates"] += dups
        out: dict[str, Any] = {"ok": not rejected, "applied": applied, "duplicates": dups}
        if rejected:
            out["rejected"] = rejected
        return JSONResponse(out, headers=cors)

    async def identify(self, request: Request) -> Response:
        cors: dict[str, str] = {}
        try:
            site = self._site(request)
            cors = self._cors(site, request)
            if self.bots.is_bot(request.headers.get("user-agent")):
                return JSONResponse({"ok": True, "ignored": "crawler user agent: nothing recorded"}, 202,
                                    headers=cors)
            body = await self._json_object(request, IDENTIFY_KEYS, "identify")
            visitor = self._visitor(body)
            eid = body.get("id")
            if not isinstance(eid, str) or not EVENT_ID.match(eid):
                raise BadRequest("id", "required: a unique id (crypto.randomUUID()); 8-64 of [A-Za-z0-9-]")
            ids = body.get("identities")
            if not isinstance(ids, dict) or not ids:
                raise BadRequest("identities", "required: e.g. {\"email\": \"ann@example.com\"}")
            for ns, v in ids.items():
                if ns not in site.identify_namespaces:
                    raise BadRequest(f"identities.{ns}", f"not a namespace site {site.name!r} may identify by "
                                                         f"({sorted(site.identify_namespaces)})")
                if not isinstance(v, str) or not v.strip() or len(v) > 320:
                    raise BadRequest(f"identities.{ns}", "must be non-empty text of at most 320 characters")
            if site.identify_secret:
                sig = body.get("signature")
                want = identify_signature(site.identify_secret, ids)
                if not isinstance(sig, str) or not hmac.compare_digest(sig.lower(), want):
                    raise BadRequest("signature", "missing or wrong: this site signs identify calls with its "
                                                  "identify_secret (see docs/adapters/web.md)", 403)
            traits = body.get("traits") or {}
            if not isinstance(traits, dict):
                raise BadRequest("traits", f"must be an object, not {type(traits).__name__}")
            self._limit(self.by_visitor, visitor, 1, "visitor")
            event = {"type": "identify", "channel": "web", "identities": {"cookie": visitor, **ids},
                     "idempotency_key": f"w:{site.name}:{eid}", "data": {"site": site.name}, "traits": traits,
                     "touchpoint": f"web:{site.name}"}
            try:
                validate_event(event, self.event_types)
            except EventError as exc:
                raise BadRequest(exc.field, exc.reason) from None
            (result,) = await self._record([event])
        except BadRequest as exc:
            return self._error(exc, cors)
        if result["status"] == "rejected":
            field = result.get("field") or "identities"
            return self._error(BadRequest(field, result.get("error") or "refused by the hub"), cors)
        return JSONResponse({"ok": True, "status": result["status"]}, headers=cors)

    async def decide(self, request: Request) -> Response:
        cors: dict[str, str] = {}
        try:
            site = self._site(request)
            cors = self._cors(site, request)
            self._limit(self.by_ip, self._client_ip(request), 1, "ip")
            q = request.query_params
            visitor = self._visitor({"visitor": q.get("visitor")})
            placement = q.get("placement", "")
            if not PLACEMENT.match(placement):
                raise BadRequest("placement", "required: the placement name, 1-64 of [A-Za-z0-9_.-]")
            context = {"site": site.name, "url": q.get("url", "")[:2048]}
            try:
                actions = await asyncio.to_thread(self.hub.decide, ("cookie", visitor), placement, context,
                                                  f"web:{site.name}", self.config.decide_limit)
            except HubError:
                actions = []  # a visitor the hub has not seen yet: nothing to personalise
        except BadRequest as exc:
            return self._error(exc, cors)
        # the reason and score stay inside: they may reveal how customers are segmented
        out = [{"kind": a.get("kind", "action"), "id": a.get("id", ""), "payload": a.get("payload") or {}}
               for a in actions]
        return JSONResponse({"placement": placement, "actions": out},
                            headers={**cors, "Cache-Control": "private, no-store"})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "hub": self.hub.mode, "stats": self.stats})


def create_app(config: WebConfig, hub: HubAPI, event_types: EventTypes = DEFAULT_EVENT_TYPES) -> Starlette:
    c = Collector(config, hub, event_types)
    app = Starlette(routes=[
        Route("/sk.js", c.snippet_js, methods=["GET"]),
        Route("/v1/{site}/collect", c.collect, methods=["POST"]),
        Route("/v1/{site}/identify", c.identify, methods=["POST"]),
        Route("/v1/{site}/decide", c.decide, methods=["GET"]),
        Route("/v1/{site}/{what:path}", c.preflight, methods=["OPTIONS"]),
        Route("/healthz", c.health, methods=["GET"]),
    ])
    app.state.collector = c
    return app


def _raw_event(etype: str, ts: float, visitor: list[tuple[str, str]], key: str, data: dict[str, Any],
               touchpoint: str) -> dict[str, Any]:
    """A browser event as a remote hub (or a hub that checks a plugin's type itself) takes it: the
    wire shape of ``RecordEvents``, one place for both paths that hand one over."""
    return {"type": etype, "channel": "web", "ts": ts, "identities": dict(visitor),
            "idempotency_key": key, "data": data, "touchpoint": touchpoint}
