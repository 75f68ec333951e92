"""The web adapter: the collector over real HTTP against a real hub, and the snippet in headless Chromium."""

from __future__ import annotations

import datetime
import html
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from shopkeeper import hookimpl
from shopkeeper.adapters.base import AdapterConfigError, validate_config
from shopkeeper.adapters.web import WebAdapter
from shopkeeper.adapters.web.app import identify_signature
from shopkeeper.adapters.web.config import WebConfig
from shopkeeper.adapters.web.server import ThreadedServer
from shopkeeper.testing import AdapterConformance

from .browser import chrome, wait_for  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

ORIGIN = "http://shop.test"
HTTP = httpx.Client(timeout=10)  # one client: httpx builds an SSL context per client (~0.3 s)
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"}
SECRET = "s3cret-shared-with-the-shop-back-end"


class OfferPlugin:
    """Decide: an offer for a known customer who looked at a product before."""

    @hookimpl
    def shopkeeper_decide(self, customer, touchpoint, placement, context):
        viewed = [it.data.get("url", "") for it in customer.interactions(type="page_view")]
        product = next((u.rsplit("/", 1)[-1] for u in viewed if "/product/" in u), None)
        if product is None or not customer.identities_in("email"):
            return [{"kind": "message", "id": "welcome", "score": 0.1, "reason": "no product interest yet",
                     "payload": {"title": "Welcome to the shop"}}]
        return [{"kind": "offer", "id": f"discount-{product}", "score": 0.9,
                 "reason": f"viewed {product} before logging in",
                 "payload": {"title": f"15% off {product.replace('-', ' ').title()} today",
                             "text": "Only for you, until midnight.", "cta": "Get it", "url": f"/product/{product}"}}]


def web_config(origin: str = ORIGIN, **kw: Any) -> dict[str, Any]:
    sites = {"shop": {"origins": [origin], **kw.pop("site", {})}}
    return {"listen": "127.0.0.1:0", "sites": sites, **kw}


def vid() -> str:
    return str(uuid.uuid4())


def post(url: str, body: Any, origin: str | None = ORIGIN, headers: dict[str, str] | None = None) -> httpx.Response:
    h = {**UA, **(headers or {})}
    if origin:
        h["Origin"] = origin
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return HTTP.post(url, content=content, headers=h, timeout=10)


def pv(url: str = f"{ORIGIN}/", **data: Any) -> dict[str, Any]:
    return {"type": "page_view", "id": str(uuid.uuid4()), "data": {"url": url, **data}}


@pytest.fixture
def hub(shopkeeper_hub_factory: Any) -> Any:
    return shopkeeper_hub_factory(plugins=(OfferPlugin(),))


@pytest.fixture
def web(hub: Any) -> Iterator[Any]:
    with hub.run_adapter(WebAdapter, web_config(), "in-process") as adapter:
        yield adapter


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Any, Any]]:
    """One hub and collector for the many small refusal cases."""
    from shopkeeper.testing import start_hub

    h = start_hub(plugins=(OfferPlugin(),))
    with h.run_adapter(WebAdapter, web_config(), "in-process") as w:
        yield h, w
    h.close()
    h.hub.stop(grace=0.5)


def count(hub: Any) -> int:
    with hub.hub.store.read() as f:
        return f.counter("interactions")


# -- the collector over HTTP ------------------------------------------------------------


def test_collect_commits_before_ack_and_counts_retries_once(hub: Any, web: Any) -> None:
    v = vid()
    events = [pv(), pv(f"{ORIGIN}/product/boots"), {"type": "click", "id": str(uuid.uuid4()),
                                                    "data": {"target": "buy"}}]
    r = post(f"{web.url}/v1/shop/collect", {"visitor": v, "sent": 0, "events": events})
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "applied": 3, "duplicates": 0}
    assert r.headers["access-control-allow-origin"] == ORIGIN
    view = hub.customer(("cookie", v))  # acknowledged => already committed, no waiting
    assert [i["type"] for i in view["recent_interactions"]] == ["click", "page_view", "page_view"]
    assert {i["data"]["site"] for i in view["recent_interactions"]} == {"shop"}
    again = post(f"{web.url}/v1/shop/collect", {"visitor": v, "events": events})  # a retried beacon
    assert again.json() == {"ok": True, "applied": 0, "duplicates": 3}
    assert hub.customer(("cookie", v))["hard_facts"]["interactions"] == 3


def test_a_retried_beacon_counts_once_past_the_recent_key_window(hub: Any, web: Any) -> None:
    """The snippet stamps every send with a new ``sent``, so the collector's clock correction gives a
    retried beacon's events other timestamps; the customer keeps only its newest 16 keys with the
    record and logs older ones. A beacon of 20 retried must still be 20 duplicates (the first 4
    keys are in the log by then): the collector marked its events *stamped* for that, and since
    generation 13 the hub finds a logged key whatever the ts (this test keeps it so without the mark)."""
    v = vid()
    now_ms = time.time() * 1000
    events = [{**pv(f"{ORIGIN}/p/{i}"), "ts": now_ms - 60_000 + i} for i in range(20)]
    first = post(f"{web.url}/v1/shop/collect", {"visitor": v, "sent": now_ms, "events": events})
    assert first.json() == {"ok": True, "applied": 20, "duplicates": 0}
    # sent 5 s earlier than the first send: whatever time passed, the correction differs
    again = post(f"{web.url}/v1/shop/collect", {"visitor": v, "sent": now_ms - 5_000, "events": events})
    assert again.json() == {"ok": True, "applied": 0, "duplicates": 20}
    assert hub.customer(("cookie", v))["hard_facts"]["interactions"] == 20


def test_a_retried_beacon_through_a_remote_hub_counts_once(hub: Any) -> None:
    """Over the gRPC API the collector sends each event's clock-corrected time (no *stamped* flag
    crosses it), so a retry of a beacon longer than the 16 keys a record keeps carried other
    timestamps for keys by then in the log: before generation 13 it was applied again."""
    with hub.run_adapter(WebAdapter, web_config(), "remote") as web:
        v = vid()
        now_ms = time.time() * 1000
        events = [{**pv(f"{ORIGIN}/p/{i}"), "ts": now_ms - 60_000 + i} for i in range(40)]
        first = post(f"{web.url}/v1/shop/collect", {"visitor": v, "sent": now_ms, "events": events})
        assert first.json() == {"ok": True, "applied": 40, "duplicates": 0}
        again = post(f"{web.url}/v1/shop/collect", {"visitor": v, "sent": now_ms - 5_000, "events": events})
        assert again.json() == {"ok": True, "applied": 0, "duplicates": 40}
        assert hub.customer(("cookie", v))["hard_facts"]["interactions"] == 40


def test_each_event_is_validated_once_in_the_hubs_process(hub: Any, web: Any, monkeypatch: Any) -> None:
    """The collector checks every event before anything is recorded and hands the hub the checked
    ``Event``: the in-process hub takes it as it is (a second check cost as much as the first)."""
    from shopkeeper import events as events_module

    calls = {"validate_event": 0, "validate_decoded": 0}
    for name in calls:
        real = getattr(events_module, name)

        def counted(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls[_name] += 1
            return _real(*a, **kw)
        monkeypatch.setattr(events_module, name, counted)
        monkeypatch.setattr(f"shopkeeper.adapters.web.app.{name}", counted, raising=False)
    r = post(f"{web.url}/v1/shop/collect", {"visitor": vid(), "events": [pv() for _ in range(5)]})
    assert r.json() == {"ok": True, "applied": 5, "duplicates": 0}
    assert sum(calls.values()) == 5, calls


@pytest.mark.parametrize(("body", "field", "status"), [
    (b"{not json", "body", 400),
    (b"", "body", 400),
    (b"[" * 50_000, "body", 400),  # the JSON parser would recurse out of stack: refused before parsing
    ([1, 2], "body", 400),
    ({"events": [pv()]}, "visitor", 400),
    ({"visitor": "short", "events": [pv()]}, "visitor", 400),
    ({"visitor": "V" * 20, "events": []}, "events", 400),
    ({"visitor": "V" * 20, "events": [pv()], "extra": 1}, "extra", 400),
    ({"visitor": "V" * 20, "events": ["x"]}, "events[0]", 400),
    ({"visitor": "V" * 20, "events": [{**pv(), "type": "order"}]}, "events[0].type", 400),
    ({"visitor": "V" * 20, "events": [{**pv(), "type": "identify"}]}, "events[0].type", 400),
    ({"visitor": "V" * 20, "events": [pv(), {**pv(), "id": None}]}, "events[1].id", 400),
    ({"visitor": "V" * 20, "events": [{"type": "page_view", "id": "abcdefgh1"}]}, "events[0].data.url", 400),
    ({"visitor": "V" * 20, "events": [{**pv(), "ts": "yesterday"}]}, "events[0].ts", 400),
    ({"visitor": "V" * 20, "events": [{**pv(), "ts": -1e308}]}, "events[0].ts", 400),  # not an OverflowError
    ({"visitor": "V" * 20, "events": [{**pv(), "ts": 5e11}]}, "events[0].ts", 400),  # 1985: seconds sent as ms
    ({"visitor": "V" * 20, "events": [{**pv(), "data": {"url": "/", "bad key": 1}}]}, "events[0].data", 400),
    ({"visitor": "V" * 20, "events": [{"type": "cart_add", "id": "abcdefgh1", "data": {"sku": "a", "price": -1}}]},
     "events[0].data.price", 400),
    ({"visitor": "V" * 20, "events": [{**pv(), "colour": "red"}]}, "events[0].colour", 400),
    ({"visitor": "V" * 20, "events": [pv(), pv(pad="x" * 16_380)]}, "events[1].data", 400),  # over 16 KiB as JSON
    ({"visitor": "V" * 20, "events": [pv(), pv(pad="é" * 2_800)]}, "events[1].data", 400),  # 6 characters each
    ({"visitor": "V" * 20, "events": [pv() for _ in range(101)]}, "events", 413),
    ({"visitor": "V" * 20, "events": [pv(pad="x" * 70_000)]}, "body", 413),
])
def test_malformed_payloads_get_400_with_the_field_and_reach_no_customer(shared: Any, body: Any, field: str,
                                                                         status: int) -> None:
    hub, web = shared
    before = count(hub)
    r = post(f"{web.url}/v1/shop/collect", body)
    assert r.status_code == status, r.text
    got = r.json()
    assert got["field"] == field and got["reason"], got
    assert got["error"].startswith(f"{field}: ")
    assert count(hub) == before


def test_cors_allow_list_per_site(web: Any, hub: Any) -> None:
    body = {"visitor": vid(), "events": [pv()]}
    evil = post(f"{web.url}/v1/shop/collect", body, origin="https://evil.example")
    assert evil.status_code == 403 and evil.json()["field"] == "origin"
    assert "access-control-allow-origin" not in evil.headers
    assert post(f"{web.url}/v1/shop/collect", body, origin=None).status_code == 403
    assert post(f"{web.url}/v1/nosuch/collect", body).status_code == 404
    ok = HTTP.options(f"{web.url}/v1/shop/collect", headers={"Origin": ORIGIN,
                                                              "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == ORIGIN
    bad = HTTP.options(f"{web.url}/v1/shop/collect", headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403
    assert count(hub) == 0


def test_crawlers_are_ignored(web: Any, hub: Any) -> None:
    body = {"visitor": vid(), "events": [pv()]}
    for ua in ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "curl/8.5.0", ""):
        r = HTTP.post(f"{web.url}/v1/shop/collect", content=json.dumps(body),
                       headers={"Origin": ORIGIN, "User-Agent": ua})
        assert r.status_code == 202 and "ignored" in r.json(), ua
    assert count(hub) == 0


def test_rate_limits_per_visitor_and_per_ip(hub: Any) -> None:
    cfg = web_config(visitor_rate=0.01, visitor_burst=5, ip_rate=0.01, ip_burst=8)
    with hub.run_adapter(WebAdapter, cfg, "in-process") as web:
        v = vid()
        assert post(f"{web.url}/v1/shop/collect", {"visitor": v, "events": [pv() for _ in range(5)]}).status_code == 200
        r = post(f"{web.url}/v1/shop/collect", {"visitor": v, "events": [pv()]})
        assert r.status_code == 429 and r.json()["field"] == "visitor" and int(r.headers["retry-after"]) >= 1
        codes = [post(f"{web.url}/v1/shop/collect", {"visitor": vid(), "events": [pv()]}).status_code
                 for _ in range(8)]
        assert codes == [200] * 6 + [429] * 2  # 2 of the IP's 8 were spent above
        assert post(f"{web.url}/v1/shop/collect", {"visitor": vid(), "events": [pv()]}).json()["field"] == "ip"


def test_x_forwarded_for_counts_only_from_configured_proxies(hub: Any) -> None:
    """The client IP for the per-IP limit comes from ``X-Forwarded-For`` only when the connection is
    from an address in ``trusted_proxies``. uvicorn's own proxy-header handling (on by default, and
    trusting 127.0.0.1) must not apply it first: then any local process could spread its events over
    invented IPs, and a proxy the operator did not list would be trusted all the same."""
    cfg = web_config(visitor_rate=0.01, visitor_burst=100, ip_rate=0.01, ip_burst=2)

    def codes(web: Any) -> list[int]:
        return [post(f"{web.url}/v1/shop/collect", {"visitor": vid(), "events": [pv()]},
                     headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(1, 5)]

    with hub.run_adapter(WebAdapter, cfg, "in-process") as web:
        assert codes(web) == [200, 200, 429, 429]  # all from 127.0.0.1: one bucket of 2
    with hub.run_adapter(WebAdapter, {**cfg, "trusted_proxies": ["127.0.0.1"]}, "in-process") as web:
        assert codes(web) == [200] * 4  # a listed proxy: each forwarded client has its own bucket


def test_identify_stitches_anonymous_history_to_the_known_customer(web: Any, hub: Any) -> None:
    hub.send({"type": "order", "identities": {"email": "ann@example.com"},
              "data": {"order_id": "o-1", "amount": 40.0}})
    v = vid()
    post(f"{web.url}/v1/shop/collect", {"visitor": v, "events": [pv(f"{ORIGIN}/product/trail-runner")]})
    anon = hub.customer(("cookie", v))["id"]
    r = post(f"{web.url}/v1/shop/identify", {"visitor": v, "id": str(uuid.uuid4()),
                                             "identities": {"email": "Ann@Example.com"},
                                             "traits": {"first_name": "Ann"}})
    assert r.status_code == 200, r.text
    ann = hub.customer(("email", "ann@example.com"))
    assert hub.customer(("cookie", v))["id"] == ann["id"] != anon
    assert {i["type"] for i in ann["recent_interactions"]} == {"order", "page_view", "identify"}
    assert ann["traits"]["first_name"] == "Ann"
    # what the page asks next: the offer, without the hub's reasoning
    d = HTTP.get(f"{web.url}/v1/shop/decide", params={"visitor": v, "placement": "home_hero"},
                  headers={"Origin": ORIGIN})
    assert d.status_code == 200
    top = d.json()["actions"][0]
    assert top["id"] == "discount-trail-runner" and "reason" not in top and "score" not in top
    # a visitor the hub has never seen gets nothing, not an error
    assert HTTP.get(f"{web.url}/v1/shop/decide", params={"visitor": vid(), "placement": "home_hero"},
                     headers={"Origin": ORIGIN}).json()["actions"] == []
    bad = HTTP.get(f"{web.url}/v1/shop/decide", params={"visitor": v, "placement": "no good"},
                    headers={"Origin": ORIGIN})
    assert bad.status_code == 400 and bad.json()["field"] == "placement"


def test_identify_checks_namespace_and_signature(hub: Any) -> None:
    with hub.run_adapter(WebAdapter, web_config(site={"identify_secret": SECRET}), "in-process") as web:
        v = vid()
        ids = {"email": "bob@example.com"}
        body = {"visitor": v, "id": str(uuid.uuid4()), "identities": ids}
        r = post(f"{web.url}/v1/shop/identify", body)
        assert r.status_code == 403 and r.json()["field"] == "signature"
        r = post(f"{web.url}/v1/shop/identify", {**body, "signature": "0" * 64})
        assert r.status_code == 403
        r = post(f"{web.url}/v1/shop/identify", {**body, "identities": {"crm_id": "1"}})
        assert r.status_code == 400 and r.json()["field"] == "identities.crm_id"
        r = post(f"{web.url}/v1/shop/identify", {**body, "identities": {"email": "not an email"},
                                                 "signature": identify_signature(SECRET, {"email": "not an email"})})
        assert r.status_code == 400 and r.json()["field"].startswith("identities")
        assert hub.customer(("email", "bob@example.com")) is None
        r = post(f"{web.url}/v1/shop/identify", {**body, "signature": identify_signature(SECRET, ids)})
        assert r.status_code == 200, r.text
        assert hub.customer(("email", "bob@example.com"))["id"] == hub.customer(("cookie", v))["id"]


def test_config_is_validated_with_field_names() -> None:
    with pytest.raises(AdapterConfigError, match=r"adapter\.web\.sites: .*origins"):
        validate_config("web", WebConfig, {"sites": {"shop": {}}})
    with pytest.raises(AdapterConfigError, match=r"adapter\.web\.sites: .*not an origin"):
        validate_config("web", WebConfig, {"sites": {"shop": {"origins": ["https://shop.example/path"]}}})
    with pytest.raises(AdapterConfigError, match=r"adapter\.web\.max_body_bytes: must be an integer"):
        validate_config("web", WebConfig, {"sites": {"s": {"origins": [ORIGIN]}}, "max_body_bytes": "big"})
    with pytest.raises(AdapterConfigError, match=r"adapter\.web\.sites: required"):
        validate_config("web", WebConfig, {})
    with pytest.raises(AdapterConfigError, match=r"adapter\.web\.sites: give at least one site"):
        validate_config("web", WebConfig, {"sites": {}})
    cfg = validate_config("web", WebConfig, {"sites": {"s": {"origins": ["HTTPS://Shop.Example"]}}})
    assert cfg.site_map["s"].origins == {"https://shop.example"}


def test_runs_out_of_the_hub_over_grpc(hub: Any) -> None:
    """The same adapter class in its own 'process': every call goes through the gRPC API."""
    with hub.run_adapter(WebAdapter, web_config(), "remote") as web:
        assert web.hub.mode == "remote"
        v = vid()
        r = post(f"{web.url}/v1/shop/collect", {"visitor": v, "events": [pv(), pv(f"{ORIGIN}/product/socks")]})
        assert r.json() == {"ok": True, "applied": 2, "duplicates": 0}
        assert hub.customer(("cookie", v))["hard_facts"]["interactions"] == 2
        # what the remote path hands the hub is what the in-process path records
        seen = hub.interactions(("cookie", v))
        assert {(i["channel"], i["touchpoint"], i["data"]["site"]) for i in seen} == {("web", "web:shop", "shop")}
        assert all(i["idempotency_key"].startswith("w:shop:") for i in seen), seen
        ats = [datetime.datetime.fromisoformat(i["at"].replace("Z", "+00:00")).timestamp() for i in seen]
        assert all(abs(at - time.time()) < 600 for at in ats), seen  # the arrival time, not 1970 or ms as s
        r = post(f"{web.url}/v1/shop/identify", {"visitor": v, "id": str(uuid.uuid4()),
                                                 "identities": {"email": "cy@example.com"}})
        assert r.status_code == 200
        d = HTTP.get(f"{web.url}/v1/shop/decide", params={"visitor": v, "placement": "p"},
                      headers={"Origin": ORIGIN})
        assert d.json()["actions"][0]["id"] == "discount-socks"


def test_started_by_the_hub_from_its_config_file(shopkeeper_hub_factory: Any) -> None:
    harness = shopkeeper_hub_factory({"adapters": {"web": web_config()}})
    assert "adapter:web" not in harness.hub.disabled
    adapter = harness.hub.pm.get_plugin("adapter:web")
    assert isinstance(adapter, WebAdapter)
    assert HTTP.get(f"{adapter.url}/healthz").json()["hub"] == "in-process"
    assert HTTP.get(f"{adapter.url}/sk.js").headers["content-type"].startswith("application/javascript")


class TestWebConformance(AdapterConformance):
    adapter_class = WebAdapter

    def adapter_config(self, tmp_path: Any) -> dict[str, Any]:
        return web_config()

    def exercise(self, harness: Any, adapter: Any, tmp_path: Any) -> list[tuple[str, str]]:
        v = "conformance-visitor-0001"
        events = [{"type": "page_view", "id": f"conf-event-{i:04d}", "data": {"url": f"{ORIGIN}/{i}"}}
                  for i in range(3)]
        assert post(f"{adapter.url}/v1/shop/collect", {"visitor": v, "events": events}).status_code == 200
        return [("cookie", v)]


# -- the snippet in a real browser --------------------------------------------------------


def shop_site(collector: str, secret: str | None = None) -> Starlette:
    """A tiny shop on its own origin that embeds the snippet; its back end signs identify."""

    def page(title: str, body: str) -> HTMLResponse:
        return HTMLResponse(f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<script>window.sk=window.sk||function(){{(sk.q=sk.q||[]).push(arguments)}};</script>
<script async src="{collector}/sk.js" data-site="shop" data-flush-ms="100"></script></head>
<body><nav><a id="nav-home" href="/">Home</a> <a id="nav-product" href="/product/trail-runner-2">Trail Runner 2</a>
<a id="nav-login" href="/login">Log in</a></nav><h1>{title}</h1>{body}</body></html>""")

    async def home(request: Request) -> HTMLResponse:
        return page("Home", '<div data-sk-placement="home_hero" id="hero"></div>')

    async def product(request: Request) -> HTMLResponse:
        return page("Trail Runner 2", '<button id="add-to-cart" onclick="sk(\'track\', \'cart_add\', '
                                      '{sku: \'trail-runner-2\', price: 129.0, quantity: 1})">Add to cart</button>')

    async def login(request: Request) -> HTMLResponse:
        if request.method == "GET":
            return page("Log in", '<form method="post"><input id="email" name="email">'
                                  '<input id="password" type="password" name="password">'
                                  '<button id="login" type="submit">Log in</button></form>')
        form = dict(x.split("=", 1) for x in (await request.body()).decode().split("&"))
        from urllib.parse import unquote_plus

        email = unquote_plus(form["email"])
        ids = {"email": email}
        sig = identify_signature(secret, ids) if secret else None
        call = json.dumps(ids), json.dumps({"traits": {"first_name": "Ann"}, "signature": sig})
        return page("Welcome", f"""<p id="welcome">Welcome back, {html.escape(email)}</p><script>
var o = {call[1]}; o.callback = function (err) {{ if (!err) location.href = '/account'; }};
sk('identify', {call[0]}, o);</script>""")

    async def account(request: Request) -> HTMLResponse:
        return page("Your account", '<section><h2>For you</h2><div data-sk-placement="account_offer" '
                                    'id="offer-slot"></div></section>')

    return Starlette(routes=[Route("/", home), Route("/product/{sku}", product),
                             Route("/login", login, methods=["GET", "POST"]), Route("/account", account)])


def test_browser_browses_logs_in_and_sees_the_decided_offer(hub: Any, chrome: Any) -> None:  # noqa: F811
    site = ThreadedServer(shop_site("http://127.0.0.1:0"), "127.0.0.1", 0, "shop")  # port known after bind
    origin = f"http://127.0.0.1:{site.port}"
    with hub.run_adapter(WebAdapter, web_config(origin, site={"identify_secret": SECRET}), "in-process") as web:
        site.server.config.app = shop_site(web.url, SECRET)
        site.start()
        try:
            driver = chrome()
            driver.get(f"{origin}/")
            wait_for(driver, lambda d: d.execute_script("return window.sk && window.sk.visitor"), what="snippet")
            visitor = driver.execute_script("return sk.visitor")
            cookie = driver.get_cookie("_sk_vid")
            assert cookie and cookie["value"] == visitor  # first-party: set on the shop's own origin
            driver.find_element("id", "nav-product").click()
            wait_for(driver, lambda d: d.title == "Trail Runner 2", what="product page")
            driver.find_element("id", "add-to-cart").click()
            # what the browser did before logging in is committed under the anonymous visitor
            anon = hub.wait_for(lambda: (c := hub.customer(("cookie", visitor)))
                                and {"cart_add", "click"} <= set(c["interaction_counts"]) and c,
                                what="anonymous history")
            assert not any(i["namespace"] == "email" for i in anon["identities"])
            driver.find_element("id", "nav-login").click()
            wait_for(driver, lambda d: d.title == "Log in", what="login page")
            driver.find_element("id", "email").send_keys("ann@example.com")
            driver.find_element("id", "password").send_keys("correct horse")
            driver.find_element("id", "login").click()
            wait_for(driver, lambda d: d.title == "Your account", what="identify, then the account page")
            offer = wait_for(driver, lambda d: d.find_elements("css selector", "#offer-slot [data-sk-offer]"),
                             what="the decided offer on the page")[0]
            assert offer.get_attribute("data-sk-offer") == "discount-trail-runner-2"
            assert "15% off Trail Runner 2 today" in offer.text
            ann = hub.wait_for(lambda: (c := hub.customer(("email", "ann@example.com"), recent=100))
                               and "offer_shown" in c["interaction_counts"] and c, what="offer_shown")
            urls = [i["data"].get("url", "") for i in ann["recent_interactions"] if i["type"] == "page_view"]
            assert f"{origin}/" in urls and f"{origin}/product/trail-runner-2" in urls  # from before log-in
            assert {"page_view", "click", "cart_add", "identify", "offer_shown"} <= set(ann["interaction_counts"])
            assert ann["id"] == hub.customer(("cookie", visitor))["id"]
            assert ann["traits"]["first_name"] == "Ann"
            keys = [i["idempotency_key"] for i in ann["recent_interactions"]]
            assert len(keys) == len(set(keys)) and all(k.startswith("w:shop:") for k in keys)
            # the page's queue drains: nothing left unacknowledged in localStorage
            wait_for(driver, lambda d: d.execute_script("return JSON.parse(localStorage.getItem('_sk_q_shop')||'[]')"
                                                        ".length === 0"), what="queue drained")
        finally:
            site.stop()
