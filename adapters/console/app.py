"""The console's HTTP side: login, sessions, CSRF, the pages (Jinja2) and the JSON API.

* Log in with one of the hub's API keys that has the ``console`` scope; the key is checked
  against the hub's hashed keys and exchanged for a random session id in an HttpOnly,
  SameSite=Strict cookie (Secure when served over TLS). Sessions live in memory.
* Every page and every ``/api/`` endpoint needs a session: pages redirect to ``/login``, the
  API answers 401. Only ``/login`` and the static assets (no data) answer without one.
* Every POST carries the session's CSRF token (a form field, or ``X-CSRF-Token`` from script);
  the login form a double-submit token of its own. The only POST that changes anything is
  unmerge, which needs the ``admin`` scope as well and goes through the hub's one writer.
* Pages are server-rendered and complete without script; ``console.js`` adds live updates
  (Server-Sent Events fed by the change feed) and draws charts from the JSON endpoints.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from shopkeeper.adapters.web.guards import RateLimiter
from shopkeeper.engine import operations as domain
from shopkeeper.hub.config import hash_key

from . import data
from .config import ConsoleConfig

log = logging.getLogger("shopkeeper.adapters.console")

COOKIE = "sk_console"
PRE_COOKIE = "sk_console_login"
MAX_SESSIONS = 10_000
MAX_FORM_BYTES = 16 * 1024
STATIC = {"console.js": "application/javascript", "console.css": "text/css",
          "chart.umd.js": "application/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Session:
    id: str
    name: str  # the API key's name
    scopes: frozenset[str]
    csrf: str
    expires: float


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Console:
    def __init__(self, config: ConsoleConfig, hub: Any) -> None:
        self.config = config
        self.hub = hub
        self.secure = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.subs: dict[str, set[asyncio.Queue]] = {}
        self.closing = False
        self.logins = RateLimiter(config.login_per_minute / 60.0, config.login_burst)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("shopkeeper.adapters.console", "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined)
        self.templates.filters["show"] = _show
        self.templates.filters["when"] = _when
        self.templates.filters["url"] = lambda s: quote(str(s), safe="")
        root = files("shopkeeper.adapters.console").joinpath("static")
        self.static = {n: (root.joinpath("vendor", n) if n == "chart.umd.js" else root.joinpath(n)).read_bytes()
                       for n in STATIC}

    # -- sessions -----------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        s = self.sessions.get(request.cookies.get(COOKIE, ""))
        if s is None:
            return None
        if s.expires < time.time():
            self.sessions.pop(s.id, None)
            return None
        return s

    def _check_csrf(self, s: Session, request: Request, form: dict[str, str]) -> None:
        sent = request.headers.get("x-csrf-token") or form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, s.csrf):
            raise Refused(403, "missing or wrong CSRF token: reload the page and try again")

    def _key(self, key: str) -> Any:
        digest = hash_key(key)
        for k in self.hub.config.api_keys:
            if k.matches(digest):
                return k
        return None

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        s = self.session(request)
        html = self.templates.get_template(name).render(session=s, path=request.url.path, **ctx)
        return HTMLResponse(html, status, headers=SECURITY_HEADERS)

    async def login_page(self, request: Request) -> Response:
        if self.session(request):
            return RedirectResponse("/customers", 303)
        return self._login_form(request, None, 200)

    def _login_form(self, request: Request, error: str | None, status: int) -> Response:
        token = secrets.token_urlsafe(24)
        nxt = request.query_params.get("next", "")
        resp = self.render(request, "login.html", status, error=error, pre=token,
                           next=nxt if nxt.startswith("/") and not nxt.startswith("//") else "")
        resp.set_cookie(PRE_COOKIE, token, max_age=3600, httponly=True, samesite="strict", secure=self.secure,
                        path="/login")
        return resp

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        ip = request.client.host if request.client else "?"
        pre = request.cookies.get(PRE_COOKIE, "")
        if not pre or not hmac.compare_digest(pre, form.get("pre", "")):
            return self._login_form(request, "The form expired: please try again.", 403)
        if not self.logins.take(f"ip:{ip}"):
            return self._login_form(request, "Too many attempts. Wait a minute and try again.", 429)
        key = self._key(form.get("api_key", "").strip())
        if key is None:
            log.warning("console: failed login from %s", ip)
            return self._login_form(request, "Unknown API key.", 401)
        if "console" not in key.scopes:
            return self._login_form(request, f"The API key {key.name!r} lacks the 'console' scope.", 403)
        s = Session(secrets.token_urlsafe(32), key.name, key.scopes, secrets.token_urlsafe(32),
                    time.time() + self.config.session_hours * 3600)
        self.sessions[s.id] = s
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        nxt = form.get("next", "")
        resp = RedirectResponse(nxt if nxt.startswith("/") and not nxt.startswith("//") else "/customers", 303)
        resp.set_cookie(COOKIE, s.id, max_age=int(self.config.session_hours * 3600), httponly=True,
                        samesite="strict", secure=self.secure, path="/")
        resp.delete_cookie(PRE_COOKIE, path="/login")
        log.info("console: %s logged in from %s", key.name, ip)
        return resp

    async def logout(self, request: Request) -> Response:
        s = self.session(request)
        if s is not None:
            try:
                self._check_csrf(s, request, await _form(request))
            except Refused as exc:
                return self.render(request, "error.html", exc.status, message=str(exc))
            self.sessions.pop(s.id, None)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.static:
            return Response(status_code=404)
        return Response(self.static[name], media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    # -- live updates -------------------------------------------------------------------

    async def publish(self, change: dict[str, Any]) -> None:
        msg = f"event: change\ndata: {json.dumps(change, default=str, separators=(',', ':'))}\n\n"
        for q in list(self.subs.get(change["customer_id"], ())):
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                pass  # a page that does not read its stream; it catches up at the next change

    def close(self) -> None:
        self.closing = True
        for qs in self.subs.values():
            for q in qs:
                try:
                    q.put_nowait(None)
                except asyncio.QueueFull:
                    pass

    async def stream(self, request: Request, s: Session) -> Response:
        cid = request.path_params["cid"]
        await asyncio.to_thread(_call, data.timeline, self.hub, cid, page_size=1)  # 404 for an unknown customer
        q: asyncio.Queue = asyncio.Queue(maxsize=64)
        self.subs.setdefault(cid, set()).add(q)

        async def events() -> Any:
            try:
                yield "retry: 2000\n\nevent: hello\ndata: {}\n\n"
                while not self.closing:
                    try:
                        msg = await asyncio.wait_for(q.get(), 15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if msg is None or self.session(request) is None:
                        break
                    yield msg
            finally:
                subs = self.subs.get(cid)
                if subs is not None:
                    subs.discard(q)
                    if not subs:
                        self.subs.pop(cid, None)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?Z$")


def _when(v: Any) -> str:
    """An ISO time of the views (``2026-12-01T06:30:18.572885Z``) as ``2026-12-01 06:30:18`` (UTC)."""
    m = _ISO.match(v) if isinstance(v, str) else None
    return f"{m.group(1)} {m.group(2)}" if m else ("" if v is None else str(v))


def _show(v: Any) -> str:
    """A fact's value as text (escaped by the template like everything else)."""
    if isinstance(v, str):
        return _when(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str, ensure_ascii=False)
    return "" if v is None else str(v)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refused(413, f"form larger than {MAX_FORM_BYTES} bytes")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _call(fn: Any, *args: Any, **kw: Any) -> Any:
    """Run a data function on a worker thread's behalf, turning domain errors into HTTP ones."""
    try:
        return fn(*args, **kw)
    except data.NotFound as exc:
        raise Refused(404, str(exc)) from None
    except data.BadQuery as exc:
        raise Refused(400, str(exc)) from None
    except domain.NotFound as exc:
        raise Refused(404, str(exc)) from None
    except (domain.BadArgument, domain.Precondition) as exc:
        raise Refused(409 if isinstance(exc, domain.Precondition) else 400, str(exc)) from None
    except FutureTimeout:
        raise Refused(503, "the hub's writer did not answer in time; try again") from None


def create_app(config: ConsoleConfig, hub: Any) -> Starlette:
    con = Console(config, hub)

    def page(fn: Any) -> Any:
        """A page: needs a session (else to /login); errors become an error page with the reason."""
        async def handler(request: Request) -> Response:
            s = con.session(request)
            if s is None:
                nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(nxt, safe='')}", 303)
            try:
                return await fn(request, s)
            except Refused as exc:
                return con.render(request, "error.html", exc.status, message=str(exc))
        return handler

    def api(fn: Any) -> Any:
        """A JSON endpoint: needs a session (else 401)."""
        async def handler(request: Request) -> Response:
            s = con.session(request)
            if s is None:
                return JSONResponse({"error": "log in first (/login)"}, 401, headers={"Cache-Control": "no-store"})
            try:
                got = await fn(request, s)
            except Refused as exc:
                return JSONResponse({"error": str(exc)}, exc.status, headers={"Cache-Control": "no-store"})
            if isinstance(got, Response):
                return got
            return JSONResponse(json.loads(json.dumps(got, default=str)), headers={"Cache-Control": "no-store"})
        return handler

    def run(fn: Any, *args: Any, **kw: Any) -> Any:
        return asyncio.to_thread(_call, fn, hub, *args, **kw)

    def page_size(request: Request) -> int:
        try:
            n = int(request.query_params.get("limit", config.timeline_page))
        except ValueError:
            raise Refused(400, "limit: a whole number") from None
        if not 1 <= n <= 500:
            raise Refused(400, "limit: between 1 and 500")
        return n

    # -- pages --------------------------------------------------------------------------

    async def root(request: Request) -> Response:
        return RedirectResponse("/customers" if con.session(request) else "/login", 303)

    async def customers(request: Request, s: Session) -> Response:
        q = request.query_params.get("q", "")
        found = await run(data.search, q)
        if len(found["customers"]) == 1 and request.query_params.get("go") == "1":
            return RedirectResponse(f"/customers/{quote(found['customers'][0]['id'], safe='')}", 303)
        return con.render(request, "search.html", q=q, found=found)

    async def customer(request: Request, s: Session) -> Response:
        cid = request.path_params["cid"]
        view = await run(data.customer_page, cid, page_size=config.timeline_page,
                         page_token=request.query_params.get("page", ""))
        return con.render(request, "customer.html", c=view, message=request.query_params.get("msg", ""))

    async def unmerge(request: Request, s: Session) -> Response:
        cid = request.path_params["cid"]
        form = await _form(request)
        con._check_csrf(s, request, form)
        if "admin" not in s.scopes:
            raise Refused(403, f"the API key {s.name!r} lacks the 'admin' scope needed to unmerge")
        rec = await run(data.unmerge, cid, form.get("merge_id", ""))
        log.info("console: %s unmerged %s (%s from %s)", s.name, rec["id"], rec["absorbed"], rec["survivor"])
        msg = quote(f"Unmerged: customer {rec['absorbed']} is separate again.", safe="")
        return RedirectResponse(f"/customers/{quote(cid, safe='')}?msg={msg}", 303)

    async def rules(request: Request, s: Session) -> Response:
        return con.render(request, "rules.html", r=await run(data.rules_page))

    async def explain_page(request: Request, s: Session) -> Response:
        p = request.query_params
        cid, key, etype = p.get("customer", "").strip(), p.get("event_key", "").strip(), p.get("type", "").strip()
        result, recent = None, []
        if cid:
            recent = (await run(data.timeline, cid, page_size=20))["interactions"]
            if key or etype:
                result = await run(data.explain, cid, event_key=key, event=_hypothetical(etype, p.get("data", "")))
        return con.render(request, "explain.html", customer=cid, event_key=key, type=etype, data=p.get("data", ""),
                          result=result, recent=recent)

    async def segments(request: Request, s: Session) -> Response:
        return con.render(request, "segments.html", m=await run(data.segments_page, config.sample_customers))

    async def outbox_(request: Request, s: Session) -> Response:
        return con.render(request, "outbox.html", o=await run(data.outbox_page, config.sample_customers))

    async def hub_(request: Request, s: Session) -> Response:
        return con.render(request, "hub.html", h=await run(data.hub_page), campaigns=await run(_campaigns))

    # -- JSON ---------------------------------------------------------------------------

    async def api_customers(request: Request, s: Session) -> Any:
        return await run(data.search, request.query_params.get("q", ""))

    async def api_customer(request: Request, s: Session) -> Any:
        return await run(data.customer_page, request.path_params["cid"], page_size=page_size(request))

    async def api_timeline(request: Request, s: Session) -> Any:
        p = request.query_params
        try:
            after = int(p.get("after", "0") or 0)
        except ValueError:
            raise Refused(400, "after: a history key (whole number)") from None
        return await run(data.timeline, request.path_params["cid"], page_size=page_size(request),
                         page_token=p.get("page", ""), after=after)

    async def api_intents(request: Request, s: Session) -> Any:
        return await run(data.intents, request.path_params["cid"])

    async def api_stream(request: Request, s: Session) -> Any:
        return await con.stream(request, s)

    async def api_unmerge(request: Request, s: Session) -> Any:
        form = await _form(request)
        con._check_csrf(s, request, form)
        if "admin" not in s.scopes:
            raise Refused(403, f"the API key {s.name!r} lacks the 'admin' scope needed to unmerge")
        return await run(data.unmerge, request.path_params["cid"], form.get("merge_id", ""))

    async def api_rules(request: Request, s: Session) -> Any:
        return await run(data.rules_page)

    async def api_explain(request: Request, s: Session) -> Any:
        p = request.query_params
        if not p.get("customer"):
            raise Refused(400, "customer: required")
        return await run(data.explain, p["customer"], event_key=p.get("event_key", ""),
                         event=_hypothetical(p.get("type", ""), p.get("data", "")))

    async def api_segments(request: Request, s: Session) -> Any:
        return await run(data.segments_page, config.sample_customers)

    async def api_outbox(request: Request, s: Session) -> Any:
        return await run(data.outbox_page, config.sample_customers)

    async def api_hub(request: Request, s: Session) -> Any:
        return await run(data.hub_page)

    async def api_campaigns(request: Request, s: Session) -> Any:
        return await run(_campaigns)

    routes = [
        Route("/", root), Route("/login", con.login_page, methods=["GET"]),
        Route("/login", con.login, methods=["POST"]), Route("/logout", con.logout, methods=["POST"]),
        Route("/static/{name}", con.asset, methods=["GET"]),
        Route("/customers", page(customers)), Route("/customers/{cid}", page(customer)),
        Route("/customers/{cid}/unmerge", page(unmerge), methods=["POST"]),
        Route("/rules", page(rules)), Route("/rules/explain", page(explain_page)),
        Route("/segments", page(segments)), Route("/outbox", page(outbox_)), Route("/hub", page(hub_)),
        Route("/api/customers", api(api_customers)), Route("/api/customers/{cid}", api(api_customer)),
        Route("/api/customers/{cid}/timeline", api(api_timeline)),
        Route("/api/customers/{cid}/intents", api(api_intents)),
        Route("/api/customers/{cid}/stream", api(api_stream)),
        Route("/api/customers/{cid}/unmerge", api(api_unmerge), methods=["POST"]),
        Route("/api/rules", api(api_rules)), Route("/api/explain", api(api_explain)),
        Route("/api/segments", api(api_segments)), Route("/api/outbox", api(api_outbox)),
        Route("/api/hub", api(api_hub)), Route("/api/campaigns", api(api_campaigns)),
    ]
    app = Starlette(routes=routes)
    app.state.console = con
    return app


def _hypothetical(etype: str, raw: str) -> dict[str, Any] | None:
    """A hypothetical event from the explain form: a type and optional JSON data."""
    if not etype:
        return None
    payload: Any = {}
    if raw.strip():
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise Refused(400, f"data: not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise Refused(400, "data: a JSON object, e.g. {\"total\": 20}")
    return {"type": etype, "data": payload}


def _campaigns(hub: Any) -> dict[str, Any] | None:
    """CAMPAIGNS SECTION: the funnel per channel and the uplift of the last campaign runs, when this
    hub has campaign runs (``shopkeeper.campaigns.runs`` and ``.report``, issue "campaigns"); None
    when it does not (the hub page says so)."""
    try:
        from shopkeeper.campaigns.report import run_report  # type: ignore[import-not-found]
        from shopkeeper.campaigns.runs import list_runs  # type: ignore[import-not-found]
    except ImportError:
        return None
    stages: list[str] = []
    rows: list[dict[str, Any]] = []
    with hub.read() as f:
        for run in list_runs(f)[-10:]:
            rep = run_report(f, run.id)
            up = rep.get("uplift") or {}
            for ch, funnel in sorted((rep.get("funnel") or {}).items()) or [("-", {})]:
                stages += [k for k in funnel if k not in stages]
                rows.append({"name": f"{rep['run'].get('campaign')} / {run.id}", "channel": ch,
                             "status": rep["run"].get("status"), **funnel,
                             "uplift": up.get("difference"), "ci": f"{up.get('ci_low')} .. {up.get('ci_high')}"})
    return {"columns": ["channel", "status", *stages, "uplift", "ci"], "rows": rows}
