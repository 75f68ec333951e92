"""The agent desk: CTI webhook in, live screen-pop out (Server-Sent Events), outcomes back.

* ``POST /cti/calls`` — the CTI system (bearer token) reports a call ringing at an agent's
  phone, or ended. The caller is identified by phone; the 360° view and the next best
  action (``Decide``, placement ``agent_screen``) are pushed at once to that agent's open
  desks, and to nobody else's.
* ``GET /desk`` (after ``/login``) — the agent's page; ``GET /desk/events`` its live stream.
  While a call is open, every committed change to that customer (the web visit in the
  other tab, a consent) re-pops the view.
* ``POST /desk/calls/{id}/outcome`` — disposition, notes and the answer to the offer flow
  back as interactions (``call`` and ``offer_accepted``/``offer_declined``) under idempotency
  keys derived from the call, so a double click counts once; answered after the commit.

Per-agent access: an agent sees and answers only calls routed to them; anything else is 404.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from shopkeeper.adapters.base import HubAPI, HubError
from shopkeeper.adapters.web.guards import BadRequest, RateLimiter, read_json

from .config import CallCentreConfig, hash_password, verify_password

log = logging.getLogger("shopkeeper.adapters.callcentre")

COOKIE = "sk_agent"
CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CSRF_HEADER = "x-requested-with"
MAX_CALLS = 10_000


@functools.cache
def _dummy_hash() -> str:
    # checked when the agent id is unknown, so a wrong name costs as long as a wrong password
    return hash_password(secrets.token_hex(8))


class Problem(Exception):
    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.status = field, reason, status

    def response(self) -> JSONResponse:
        # a 503 (the hub is stopping, or did not answer) is worth retrying: say when, as the web collector does
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse({"error": str(self), "field": self.field, "reason": self.reason}, self.status,
                            headers=headers)


#: The CTI webhook's and the desk's JSON bodies: size and nesting, bounded before parsing.
MAX_BODY_BYTES = 16 * 1024
MAX_JSON_DEPTH = 8


async def _json_body(request: Request) -> Any:
    """The request's JSON, read through the shared guard (``adapters/web/guards.py``)."""
    try:
        return await read_json(request, MAX_BODY_BYTES, MAX_JSON_DEPTH, setting="the call centre's limit")
    except BadRequest as exc:
        raise Problem(exc.field, exc.reason, exc.status) from None


@dataclass
class Call:
    id: str
    agent: str
    caller: str
    direction: str
    started: float
    received_ms: float
    status: str = "ringing"  # ringing -> ended (CTI) ; outcome recorded -> done
    ended: float | None = None
    customer_id: str | None = None
    offers: set[str] = field(default_factory=set)
    pop: dict[str, Any] = field(default_factory=dict)
    outcome: dict[str, Any] | None = None


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


def _display_name(view: dict[str, Any]) -> str:
    t = view.get("traits") or {}
    name = t.get("name") or " ".join(str(t[k]) for k in ("first_name", "last_name") if t.get(k))
    if name:
        return str(name)
    for ns in ("email", "phone", "crm_id"):
        for i in view.get("identities", ()):
            if i["namespace"] == ns:
                return str(i["value"])
    return f"Customer {view.get('id', '')}"


class Desk:
    def __init__(self, config: CallCentreConfig, hub: HubAPI) -> None:
        self.config = config
        self.hub = hub
        self.secret = (config.session_secret or secrets.token_hex(32)).encode()
        self.calls: OrderedDict[str, Call] = OrderedDict()
        self.subs: dict[str, set[asyncio.Queue]] = {}
        self.logins = RateLimiter(config.login_per_minute / 60.0, config.login_burst)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self.token_sha256 = config.cti_token_sha256.lower()
        env = jinja2.Environment(loader=jinja2.PackageLoader("shopkeeper.adapters.callcentre", "templates"),
                                 autoescape=True)
        self.templates = env
        static = files("shopkeeper.adapters.callcentre").joinpath("static")
        self.static = {name: static.joinpath(name).read_bytes() for name in ("desk.js", "desk.css")}
        self.stats = {"pops": 0, "outcomes": 0, "refreshes": 0}

    # -- sessions -----------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, agent: str) -> str:
        exp = int(time.time() + self.config.session_hours * 3600)
        return f"{agent}.{exp}.{self._sign(f'{agent}.{exp}')}"

    def agent_of(self, request: Request) -> str | None:
        parts = request.cookies.get(COOKIE, "").rsplit(".", 2)
        if len(parts) != 3:
            return None
        agent, exp, sig = parts
        if not exp.isdigit() or int(exp) < time.time():
            return None
        if not hmac.compare_digest(sig, self._sign(f"{agent}.{exp}")):
            return None
        return agent if agent in self.config.agent_map else None

    def _require(self, request: Request) -> str:
        agent = self.agent_of(request)
        if agent is None:
            raise Problem("session", "log in first (/login)", 401)
        return agent

    # -- pages --------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self.agent_of(request):
            return RedirectResponse("/desk", 303)
        return HTMLResponse(self.templates.get_template("login.html").render(error=None, agent=""))

    async def login(self, request: Request) -> Response:
        body = (await request.body())[:4096].decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body).items()}
        agent, password = form.get("agent", "").strip(), form.get("password", "")
        ip = request.client.host if request.client else "?"
        if not (self.logins.take(f"ip:{ip}") and self.logins.take(f"agent:{agent}")):
            html = self.templates.get_template("login.html").render(
                error="Too many attempts. Wait a minute and try again.", agent=agent)
            return HTMLResponse(html, 429)
        known = self.config.agent_map.get(agent)
        ok = await asyncio.to_thread(verify_password, password, known.password if known else _dummy_hash())
        if not (known and ok):
            html = self.templates.get_template("login.html").render(error="Unknown agent or wrong password.",
                                                                    agent=agent)
            return HTMLResponse(html, 401)
        resp = RedirectResponse("/desk", 303)
        resp.set_cookie(COOKIE, self.session_cookie(agent), max_age=int(self.config.session_hours * 3600),
                        httponly=True, samesite="strict", secure=self.config.secure_cookies, path="/")
        log.info("agent %s logged in", agent)
        return resp

    async def logout(self, request: Request) -> Response:
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def desk(self, request: Request) -> Response:
        agent = self.agent_of(request)
        if agent is None:
            return RedirectResponse("/login", 303)
        a = self.config.agent_map[agent]
        html = self.templates.get_template("desk.html").render(agent=a, dispositions=self.config.dispositions)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static:
            return Response(status_code=404)
        kind = "application/javascript" if name.endswith(".js") else "text/css"
        return Response(self.static[name], media_type=kind, headers={"Cache-Control": "no-cache"})

    # -- live stream --------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        try:
            agent = self._require(request)
        except Problem as exc:
            return exc.response()
        q: asyncio.Queue = asyncio.Queue(maxsize=256)
        self.subs.setdefault(agent, set()).add(q)
        mine = [c for c in self.calls.values() if c.agent == agent and c.status != "done"][-3:]

        async def stream() -> Any:
            try:
                yield "retry: 1000\n\n"
                yield _sse("hello", {"agent": agent, "at": time.time() * 1000})
                for c in mine:
                    if c.pop:
                        yield _sse("pop", c.pop)
                while not self.closing:
                    try:
                        msg = await asyncio.wait_for(q.get(), 15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if msg is None:
                        break
                    yield msg
            finally:
                self.subs.get(agent, set()).discard(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def publish(self, agent: str, kind: str, data: dict[str, Any]) -> int:
        msg = _sse(kind, data)
        n = 0
        for q in list(self.subs.get(agent, ())):
            try:
                q.put_nowait(msg)
                n += 1
            except asyncio.QueueFull:
                log.warning("agent %s: a desk is not reading its stream; a %s was dropped", agent, kind)
        return n

    def close(self) -> None:
        self.closing = True
        for qs in self.subs.values():
            for q in qs:
                try:
                    q.put_nowait(None)
                except asyncio.QueueFull:
                    pass

    # -- the screen-pop -----------------------------------------------------------------

    def _build_pop(self, call: Call, reason: str) -> dict[str, Any]:
        """Runs on a worker thread: the 360° view and the next best action, as the desk shows them."""
        ref: Any = call.customer_id or ("phone", call.caller)
        view = None
        warning = None
        try:
            view = self.hub.customer(ref, recent=self.config.history)
        except (HubError, ValueError) as exc:
            warning = f"caller number not usable for look-up: {exc}"
        actions: list[dict[str, Any]] = []
        if view is not None:
            call.customer_id = view["id"]
            try:
                actions = self.hub.decide(view["id"], self.config.placement,
                                          {"call_id": call.id, "agent": call.agent, "direction": call.direction},
                                          touchpoint="callcentre", limit=3)
            except HubError as exc:
                warning = f"no decision: {exc}"
        call.offers |= {a["id"] for a in actions if a.get("id")}
        customer = None
        if view is not None:
            customer = {
                "id": view["id"],
                "name": _display_name(view),
                "since": view.get("created_at"),
                "identities": [{"namespace": i["namespace"], "value": i["value"]} for i in view["identities"]],
                "traits": view.get("traits") or {},
                "consents": view.get("consents") or [],
                "hard_facts": view.get("hard_facts") or {},
                "scores": {k: v["value"] for k, v in (view.get("scores") or {}).items()},
                "segments": list(view.get("segments") or {}),
                "soft_facts": {k: v["value"] for k, v in (view.get("soft_facts") or {}).items()},
                "history": view.get("recent_interactions") or [],
            }
        return {
            "call": {"id": call.id, "caller": call.caller, "direction": call.direction, "status": call.status,
                     "started": call.started * 1000, "agent": call.agent},
            "customer": customer,
            "actions": [{"kind": a.get("kind"), "id": a.get("id"), "score": a.get("score"),
                         "reason": a.get("reason"), "payload": a.get("payload") or {}} for a in actions],
            "warning": warning,
            "reason": reason,
            "received_ms": call.received_ms,
            "sent_ms": time.time() * 1000,
            "outcome": call.outcome,
        }

    async def pop(self, call: Call, reason: str) -> int:
        call.pop = await asyncio.to_thread(self._build_pop, call, reason)
        call.pop["sent_ms"] = time.time() * 1000
        return self.publish(call.agent, "pop", call.pop)

    async def refresh_customer(self, customer_id: str) -> None:
        """A committed change touched this customer: re-pop every open call about them."""
        now = time.time()
        for call in list(self.calls.values()):
            if call.customer_id == customer_id and now - call.started < 3600 and call.agent in self.subs:
                call.received_ms = now * 1000
                self.stats["refreshes"] += 1
                await self.pop(call, "update")

    # -- the CTI webhook ----------------------------------------------------------------

    def _check_token(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not token or not hmac.compare_digest(digest, self.token_sha256):
            raise Problem("authorization", "missing or wrong CTI token (Authorization: Bearer …)", 401)

    async def cti(self, request: Request) -> Response:
        received = time.time() * 1000
        try:
            self._check_token(request)
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise Problem("body", "must be a JSON object")
            event = body.get("event", "ringing")
            if event not in ("ringing", "ended"):
                raise Problem("event", f"{event!r}: must be ringing or ended")
            call_id = body.get("call_id")
            if not isinstance(call_id, str) or not CALL_ID.match(call_id):
                raise Problem("call_id", "required: the CTI system's call id, 1-64 of [A-Za-z0-9_.:-]")
            agent = body.get("agent")
            if not isinstance(agent, str) or agent not in self.config.agent_map:
                raise Problem("agent", f"{agent!r} is not a configured agent (adapters.callcentre.agents)", 422)
            if event == "ended":
                call = self.calls.get(call_id)
                if call is None or call.agent != agent:
                    raise Problem("call_id", f"no open call {call_id!r} for agent {agent!r}", 404)
                call.ended = time.time()
                if call.status == "ringing":
                    call.status = "ended"
                self.publish(agent, "ended", {"call_id": call_id, "ended": call.ended * 1000})
                return JSONResponse({"ok": True, "call_id": call_id})
            caller = body.get("caller")
            if not isinstance(caller, str) or not re.fullmatch(r"\+?[0-9 ().-]{3,32}", caller):
                raise Problem("caller", "required: the caller's number (E.164 preferred, e.g. +14155550100)")
            direction = body.get("direction", "inbound")
            if direction not in ("inbound", "outbound"):
                raise Problem("direction", "must be inbound or outbound")
            if call_id in self.calls:
                call = self.calls[call_id]
                if call.agent != agent:
                    raise Problem("call_id", f"call {call_id!r} is already routed to another agent", 409)
            else:
                call = Call(call_id, agent, caller, direction, time.time(), received)
                self.calls[call_id] = call
                while len(self.calls) > MAX_CALLS:
                    self.calls.popitem(last=False)
        except Problem as exc:
            return exc.response()
        screens = await self.pop(call, "call")
        self.stats["pops"] += 1
        return JSONResponse({"ok": True, "call_id": call.id, "customer_id": call.customer_id, "screens": screens},
                            202)

    # -- the agent's answers ------------------------------------------------------------

    async def call_json(self, request: Request) -> Response:
        try:
            agent = self._require(request)
            call = self.calls.get(request.path_params["call_id"])
            if call is None or call.agent != agent:
                raise Problem("call_id", "no such call for you", 404)
        except Problem as exc:
            return exc.response()
        return JSONResponse(call.pop)

    async def outcome(self, request: Request) -> Response:
        try:
            agent = self._require(request)
            if request.headers.get(CSRF_HEADER) != "shopkeeper-desk":
                raise Problem(CSRF_HEADER, "required header missing (the desk page sends it)", 403)
            call = self.calls.get(request.path_params["call_id"])
            if call is None or call.agent != agent:
                raise Problem("call_id", "no such call for you", 404)
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise Problem("body", "must be a JSON object")
            disposition = body.get("disposition")
            if disposition not in self.config.dispositions:
                raise Problem("disposition", f"{disposition!r}: one of {self.config.dispositions}")
            notes = body.get("notes") or ""
            if not isinstance(notes, str) or len(notes) > 2000:
                raise Problem("notes", "text of at most 2000 characters")
            offer = body.get("offer") or ""
            answer = body.get("offer_response") or ""
            if answer not in ("", "accepted", "declined"):
                raise Problem("offer_response", "accepted, declined or empty")
            if answer and offer not in call.offers:
                raise Problem("offer", f"{offer!r} was not offered on this call")
            events = self._outcome_events(call, disposition, notes.strip(), offer, answer)
            try:
                results = await asyncio.to_thread(self.hub.record, events)
            except HubError as exc:
                raise Problem("hub", f"not recorded, try again: {exc}", 503) from None
            bad = [r for r in results if r["status"] == "rejected"]
            if bad:
                raise Problem(bad[0].get("field") or "event", bad[0].get("error") or "refused by the hub", 422)
        except Problem as exc:
            return exc.response()
        call.customer_id = results[0]["customer_id"] or call.customer_id
        call.status = "done"
        call.outcome = {"disposition": disposition, "notes": notes, "offer": offer, "offer_response": answer,
                        "recorded": [r["status"] for r in results]}
        call.pop["outcome"] = call.outcome
        self.stats["outcomes"] += 1
        self.publish(agent, "outcome", {"call_id": call.id, **call.outcome})
        return JSONResponse({"ok": True, "customer_id": call.customer_id, "recorded": call.outcome["recorded"]})

    def _outcome_events(self, call: Call, disposition: str, notes: str, offer: str, answer: str) -> list[dict]:
        end = call.ended or time.time()
        ids = {"phone": call.caller}
        data: dict[str, Any] = {"duration": round(end - call.started, 1), "agent": call.agent,
                                "direction": call.direction, "disposition": disposition, "call_id": call.id}
        if notes:
            data["notes"] = notes
        if offer:
            data["offer"] = offer
        events = [{"type": "call", "channel": "phone", "identities": ids, "ts": call.started,
                   "idempotency_key": f"cc:{call.id}:call", "data": data, "touchpoint": "callcentre"}]
        if answer:
            events.append({"type": f"offer_{answer}", "channel": "phone", "identities": ids,
                           "idempotency_key": f"cc:{call.id}:offer:{offer}"[:128], "touchpoint": "callcentre",
                           "data": {"offer": offer, "call_id": call.id, "agent": call.agent,
                                    "placement": self.config.placement}})
        return events

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "hub": self.hub.mode, "stats": self.stats,
                             "desks": {a: len(q) for a, q in self.subs.items()}})


def create_app(config: CallCentreConfig, hub: HubAPI) -> Starlette:
    d = Desk(config, hub)

    async def root(request: Request) -> Response:
        return RedirectResponse("/desk", 303)

    app = Starlette(routes=[
        Route("/", root),
        Route("/login", d.login_page, methods=["GET"]),
        Route("/login", d.login, methods=["POST"]),
        Route("/logout", d.logout, methods=["POST", "GET"]),
        Route("/desk", d.desk, methods=["GET"]),
        Route("/desk/events", d.events, methods=["GET"]),
        Route("/desk/static/{name}", d.asset, methods=["GET"]),
        Route("/desk/calls/{call_id}", d.call_json, methods=["GET"]),
        Route("/desk/calls/{call_id}/outcome", d.outcome, methods=["POST"]),
        Route("/cti/calls", d.cti, methods=["POST"]),
        Route("/healthz", d.health, methods=["GET"]),
    ])
    app.state.desk = d
    return app
