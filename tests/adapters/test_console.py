"""The web console: sessions behind the hub's API keys, the 360° page, live updates, explain,
unmerge (admin only), escaping, accessibility (axe-core) — over HTTP and in headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import json
import os
import re
import shutil
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from shopkeeper._proto.v1 import admin_pb2, admin_pb2_grpc
from shopkeeper.adapters.base import AdapterStartError, adapter_classes
from shopkeeper.adapters.console import ConsoleAdapter
from shopkeeper.adapters.email import EmailAdapter
from shopkeeper.engine import operations as domain
from shopkeeper.hub.config import ApiKey, hash_key, new_key
from shopkeeper.testing import make_certs

from .browser import chrome, wait_for  # noqa: F401 - fixture
from .conftest import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_DIR = ROOT / "adapters" / "console"
ARTIFACTS = ROOT / "artifacts" / "console"
DOCS_SHOTS = ROOT / "docs" / "console"
AXE = CONSOLE_DIR / "node_modules" / "axe-core" / "axe.min.js"
KEYS = {"console": new_key(), "admin": new_key(), "reader": new_key()}

pytestmark = pytest.mark.e2e


def add_keys(h: Any) -> None:
    """The hub's keys people log in with: console only, console + admin, and one without console."""
    keys = h.hub.config.api_keys
    keys.append(ApiKey("analyst", hash_key(KEYS["console"]), frozenset({"console"})))
    keys.append(ApiKey("ops-lead", hash_key(KEYS["admin"]), frozenset({"console", "admin"})))
    keys.append(ApiKey("web-site", hash_key(KEYS["reader"]), frozenset({"profiles:read", "interactions:write"})))


def start(factory: Any, **extra: Any) -> tuple[Any, Any]:
    h = factory({"adapters": {"console": {"listen": "127.0.0.1:0", "timeline_page": 50}, **extra},
                 "rules_dir": str(ROOT / "rules")})
    add_keys(h)
    return h, h.hub.adapters["console"]


@pytest.fixture
def hub_console(shopkeeper_hub_factory: Any) -> tuple[Any, Any]:
    return start(shopkeeper_hub_factory)


def login(console: Any, key: str, **kw: Any) -> contextlib.closing[httpx.Client]:
    c = httpx.Client(base_url=console.url, timeout=10, **kw)
    r = c.get("/login")
    pre = re.search(r'name="pre" value="([^"]+)"', r.text).group(1)
    r = c.post("/login", data={"api_key": key, "pre": pre})
    assert r.status_code == 303, r.text
    return contextlib.closing(c)


def csrf_of(client: httpx.Client, path: str = "/customers") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def merged_pair(h: Any, a_email: str, b_phone: str) -> tuple[str, str, str]:
    """Two customers merged through the hub's writer: (survivor id, absorbed id, merge id)."""
    a = h.send({"type": "page_view", "identities": {"email": a_email}, "data": {"url": "/a"}})[0]["customer_id"]
    b = h.send({"type": "page_view", "identities": {"phone": b_phone}, "data": {"url": "/b"}})[0]["customer_id"]
    rec = h.hub.writer.submit_op(lambda f, ch: domain.merge_customers(f, ch, a, b, "same person", "test")).result()
    return a, b, rec.id


# -- registration and configuration -------------------------------------------------------------


def test_registered_like_the_other_builtin_adapters_and_off_unless_configured(shopkeeper_hub: Any) -> None:
    assert adapter_classes(shopkeeper_hub.hub.pm)["console"] is ConsoleAdapter
    assert "console" not in shopkeeper_hub.hub.adapters  # not in the hub config: not running
    with pytest.raises(AdapterStartError, match="runs only inside the hub"):
        ConsoleAdapter.from_config({"listen": "127.0.0.1:0"}, shopkeeper_hub.remote()).start()


def test_config_is_checked() -> None:
    from shopkeeper.adapters.base import AdapterConfigError, validate_config
    from shopkeeper.adapters.console.config import ConsoleConfig

    with pytest.raises(AdapterConfigError, match="timeline_page"):
        validate_config("console", ConsoleConfig, {"timeline_page": 0})
    with pytest.raises(AdapterConfigError, match="tls_cert"):
        validate_config("console", ConsoleConfig, {"tls_cert": "a.pem"})


def test_vendored_chart_library_is_the_one_the_lockfile_installs() -> None:
    lib = CONSOLE_DIR / "node_modules" / "chart.js"
    if not lib.is_dir():
        pytest.fail("run `sh scripts/install-test-deps.sh` (npm ci in adapters/console)", pytrace=False)
    assert filecmp.cmp(lib / "dist" / "chart.umd.js", CONSOLE_DIR / "static" / "vendor" / "chart.umd.js",
                       shallow=False), "static/vendor is stale: run adapters/console/scripts/vendor-assets.sh"
    assert (CONSOLE_DIR / "static" / "vendor" / "chart.js.LICENSE.md").read_text().startswith("The MIT License")


# -- security -----------------------------------------------------------------------------------


def test_no_page_or_endpoint_answers_without_a_session(hub_console: tuple[Any, Any]) -> None:
    h, console = hub_console
    cid = h.event("page_view", "walk@example.com", url="/")["customer_id"]
    public = {"/login", "/static/{name}", "/"}
    walked = 0
    with httpx.Client(base_url=console.url, timeout=10) as anon:
        for route in console.app.routes:
            if route.path in public:
                continue
            path = route.path.replace("{cid}", cid)
            for method in sorted(route.methods - {"HEAD"}):
                r = anon.request(method, path, data={"merge_id": "x", "csrf": "x"} if method == "POST" else None)
                walked += 1
                if path.startswith("/api/"):
                    assert r.status_code == 401, (method, path, r.status_code)
                    assert r.json() == {"error": "log in first (/login)"}
                elif method == "POST" and path == "/logout":
                    assert r.status_code == 303 and r.headers["location"] == "/login"
                else:
                    assert r.status_code == 303 and r.headers["location"].startswith("/login"), (method, path)
                assert "walk@example.com" not in r.text
    assert walked >= 20


def test_login_needs_a_key_with_the_console_scope_and_sets_a_strict_cookie(hub_console: tuple[Any, Any]) -> None:
    _h, console = hub_console
    def pre(r: httpx.Response) -> str:  # each login form carries a fresh double-submit token
        return re.search(r'name="pre" value="([^"]+)"', r.text).group(1)

    with httpx.Client(base_url=console.url, timeout=10) as c:
        r = c.post("/login", data={"api_key": "sk_wrong", "pre": pre(c.get("/login"))})
        assert r.status_code == 401 and "Unknown API key" in r.text
        r = c.post("/login", data={"api_key": KEYS["reader"], "pre": pre(r)})
        assert r.status_code == 403 and "lacks the &#39;console&#39; scope" in r.text
        r = c.post("/login", data={"api_key": KEYS["console"], "pre": "forged"})
        assert r.status_code == 403 and "expired" in r.text
        r = c.post("/login", data={"api_key": KEYS["console"], "pre": pre(r)})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "sk_console=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert "secure" not in cookie  # plain HTTP on loopback here; see the TLS test
        assert c.get("/api/customers", params={"q": "nobody@example.com"}).json()["customers"] == []
        # a POST without the session's CSRF token is refused, even with the session cookie
        assert c.post("/logout").status_code == 403
        assert c.post("/logout", data={"csrf": csrf_of(c)}).status_code == 303
        assert c.get("/api/customers").status_code == 401


def test_a_console_key_cannot_unmerge_an_admin_key_can(hub_console: tuple[Any, Any]) -> None:
    h, console = hub_console
    a, b, mid = merged_pair(h, "ann@example.com", "+14155550101")
    with login(console, KEYS["console"]) as c:
        token = csrf_of(c)
        r = c.post(f"/api/customers/{a}/unmerge", data={"merge_id": mid, "csrf": token})
        assert r.status_code == 403 and "lacks the 'admin' scope" in r.json()["error"]
        r = c.post(f"/customers/{a}/unmerge", data={"merge_id": mid, "csrf": token})
        assert r.status_code == 403
    assert h.customer(b)["id"] == a  # still merged: b resolves to the survivor
    with login(console, KEYS["admin"]) as c:
        token = csrf_of(c)
        assert c.post(f"/api/customers/{a}/unmerge", data={"merge_id": mid}).status_code == 403  # no CSRF token
        r = c.post(f"/api/customers/{a}/unmerge", data={"merge_id": "m-nope", "csrf": token})
        assert r.status_code == 400 and "is not a merge into customer" in r.json()["error"]
        r = c.post(f"/api/customers/{a}/unmerge", data={"merge_id": mid, "csrf": token})
        assert r.status_code == 200 and r.json()["absorbed"] == b
    assert h.customer(b)["id"] == b and h.customer(b)["status"] == "active"
    assert h.customer(("phone", "+14155550101"))["id"] == b


def test_script_in_a_trait_is_escaped_on_the_page(hub_console: tuple[Any, Any]) -> None:
    h, console = hub_console
    evil = "<script>document.title='owned'</script>"
    cid = h.send({"type": "page_view", "identities": {"email": "eve@example.com"}, "traits": {"name": evil},
                  "data": {"url": "/x?<img src=x onerror=alert(1)>"}})[0]["customer_id"]
    with login(console, KEYS["console"]) as c:
        for path in (f"/customers/{cid}", "/customers?q=eve@example.com"):
            html = c.get(path).text
            assert evil not in html and "<img src=x" not in html
            assert "&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;" in html
        assert c.get(f"/customers/{cid}").headers["content-security-policy"].startswith("default-src 'self'")


# -- reading ------------------------------------------------------------------------------------


def test_search_by_identity_prefix_segment_fact_and_id(hub_console: tuple[Any, Any]) -> None:
    h, console = hub_console
    ann = h.send({"type": "order", "identities": {"email": "Ann.Lee@Example.com", "phone": "+14155550123"},
                  "traits": {"city": "Paris"}, "data": {"order_id": "A1", "amount": 20}})[0]["customer_id"]
    bob = h.event("page_view", "bob@example.com", url="/")["customer_id"]
    with login(console, KEYS["console"]) as c:
        def ids(q: str) -> list[str]:
            r = c.get("/api/customers", params={"q": q})
            assert r.status_code == 200, r.text
            return [x["id"] for x in r.json()["customers"]]

        assert ids("ann.lee@example.com") == [ann]  # normalised like the hub does
        assert ids("+14155550123") == [ann]
        assert ids("phone:+14155550123") == [ann]
        assert ids(ann) == [ann]
        assert ids("bob@") == [bob]  # a prefix
        assert ids("traits.city=Paris") == [ann]
        assert ids("orders>=1") == [ann]
        assert ids("nobody@example.com") == []
        # a second order: ann enters repeat_buyers (rules/segments), found by segment and counted per day
        h.send({"type": "order", "identities": {"email": "ann.lee@example.com"},
                "data": {"order_id": "A2", "amount": 30}})
        assert ids("segment:repeat_buyers") == [ann]
        moves = c.get("/api/segments").json()["moves"]
        assert [(m["segment"], m["entered"], m["left"]) for m in moves] == [("repeat_buyers", 1, 0)]
        assert "repeat_buyers" in c.get("/segments").text
        r = c.get("/api/customers", params={"q": "x" * 300})
        assert r.status_code == 400 and "at most 256" in r.json()["error"]
        # the page: without script, a plain form and a table
        html = c.get("/customers", params={"q": "bob@example.com"}).text
        assert f'href="/customers/{bob}"' in html


def test_timeline_pages_through_every_interaction_newest_first(hub_console: tuple[Any, Any]) -> None:
    h, console = hub_console
    n = 130
    events = [{"type": "page_view", "identities": {"email": "many@example.com"}, "idempotency_key": f"pv{i}",
               "data": {"url": f"/p/{i}"}} for i in range(n)]
    cid = h.send(*events)[0]["customer_id"]
    with login(console, KEYS["console"]) as c:
        keys: list[int] = []
        token = ""
        pages = 0
        while True:
            r = c.get(f"/api/customers/{cid}/timeline", params={"page": token} if token else {})
            assert r.status_code == 200, r.text
            body = r.json()
            keys += [it["key"] for it in body["interactions"]]
            pages += 1
            token = body["next_page"]
            if not token:
                break
        assert pages == 3 and len(keys) == n == len(set(keys)) and keys == sorted(keys, reverse=True)
        page1 = c.get(f"/customers/{cid}").text
        older = re.search(r'id="older" href="([^"]+)"', page1).group(1).replace("&amp;", "&")
        assert c.get(older).text.count("<tr data-key=") == 50
        r = c.get(f"/api/customers/{cid}/timeline", params={"page": "garbage"})
        assert r.status_code == 400
        assert c.get("/api/customers/nope/timeline").status_code == 404


def test_served_over_tls_with_secure_cookies_when_the_hub_has_tls(shopkeeper_hub_factory: Any, tmp_path: Path) -> None:
    make_certs(tmp_path)
    h = shopkeeper_hub_factory({"tls": {"cert": str(tmp_path / "server.pem"), "key": str(tmp_path / "server.key")},
                                "adapters": {"console": {"listen": "127.0.0.1:0"}}, "rules_dir": str(ROOT / "rules")})
    add_keys(h)
    console = h.hub.adapters["console"]
    assert console.url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with httpx.Client(base_url=console.url, timeout=10, verify=trust) as c:
        pre = re.search(r'name="pre" value="([^"]+)"', c.get("/login").text).group(1)
        r = c.post("/login", data={"api_key": KEYS["console"], "pre": pre})
        assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
    with pytest.raises(httpx.HTTPError):
        httpx.get(console.url.replace("https://", "http://") + "/login", timeout=5)


# -- in the browser -----------------------------------------------------------------------------


class GatedSmtp(SmtpSink):
    """An SMTP server that holds each message until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.to_thread(self.gate.wait, 20)
        return await super().handle_DATA(server, session, envelope)


def axe_check(driver: Any, page: str) -> None:
    """axe-core in the page: no serious or critical violations."""
    if not AXE.is_file():
        pytest.fail("axe-core missing: run `sh scripts/install-test-deps.sh` (npm ci in adapters/console)",
                    pytrace=False)
    driver.execute_script(AXE.read_text())
    driver.set_script_timeout(30)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map("
        "v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"{page}: accessibility violations: {bad}"


def main_text(driver: Any) -> str:
    """The page's main text, read in one script call (navigation may replace the element meanwhile)."""
    return driver.execute_script("const m = document.querySelector('main'); return m ? m.innerText : '';")


def shoot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("SHOPKEEPER_UPDATE_DOCS_SCREENSHOTS"):
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SHOTS / f"{name}.png")


def test_console_in_chromium(shopkeeper_hub_factory: Any, chrome: Any, smtp_gated: GatedSmtp) -> None:  # noqa: F811
    """One browser session: log in, search, live events, an email intent pending -> sent against a
    real SMTP server, explain a rule that did not fire, unmerge refused then done, every page
    screenshotted at 1280x800 and checked by axe-core."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    h, console = start(shopkeeper_hub_factory)
    email = "maria@example.com"
    cid = h.send({"type": "page_view", "identities": {"email": email, "phone": "+14155550142"},
                  "traits": {"name": "Maria Lopez", "city": "Lisbon"}, "data": {"url": "/product/kettle"}})[0][
        "customer_id"]
    h.grant(cid, "email")
    h.send({"type": "order", "identities": {"email": email}, "data": {"order_id": "O-1", "amount": 20.0}})
    other = h.send({"type": "page_view", "identities": {"phone": "+14155550199"}, "data": {"url": "/"}})[0][
        "customer_id"]
    rec = h.hub.writer.submit_op(lambda f, ch: domain.merge_customers(f, ch, cid, other, "same caller", "test")
                                 ).result()

    d = chrome(width=1280, height=800)
    # the page area itself 1280x800 (the window size includes the browser's own frame)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    visited: list[str] = []

    def check(name: str) -> None:
        wait_for(d, lambda d: d.execute_script("return document.readyState") == "complete", what=f"{name} loaded")
        for canvas in d.find_elements(By.CSS_SELECTOR, "canvas[data-chart]"):
            wait_for(d, lambda d, c=canvas: c.get_attribute("data-drawn") or c.get_attribute("data-error"),
                     what=f"{name}: chart {canvas.get_attribute('id')} drawn")
            assert not canvas.get_attribute("data-error"), canvas.get_attribute("data-error")
        shoot(d, name)
        axe_check(d, name)
        visited.append(name)

    # log in (a page asked for without a session goes to the login form and comes back)
    d.get(console.url + "/customers")
    wait_for(d, lambda d: "/login" in d.current_url, what="redirect to login")
    check("login")
    d.find_element(By.ID, "api_key").send_keys(KEYS["console"])
    d.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_for(d, lambda d: d.current_url.endswith("/customers"), what="logged in")

    # search by email, open the customer
    d.find_element(By.ID, "q").send_keys(email)
    d.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait_for(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results a"), what="search results")
    check("search")
    d.find_element(By.CSS_SELECTOR, "#results a").click()
    wait_for(d, lambda d: d.find_elements(By.ID, "timeline"), what="the 360° page")
    assert "Maria Lopez" in d.find_element(By.TAG_NAME, "h1").text
    wait_for(d, lambda d: "Live:" in d.find_element(By.ID, "live").text, what="the live stream")
    d.execute_script("window.__sk_marker = 1")  # survives only if the page is not reloaded

    # a new event appears without a reload
    h.send({"type": "page_view", "identities": {"email": email}, "data": {"url": "/product/live-kettle"}})
    wait_for(d, lambda d: "live-kettle" in d.find_element(By.CSS_SELECTOR, "#timeline tbody tr").text,
             what="the new page view at the top of the timeline")

    # an email intent: pending while no email adapter runs, sent once it delivers through real SMTP
    h.send({"type": "message_request", "channel": "email", "identities": {"email": email},
            "idempotency_key": "console-welcome", "data": {"template": "welcome", "intent": "int-console-1"}})

    def state() -> str:
        return d.execute_script(  # one read in the page: the live update may replace the rows at any time
            "const e = document.querySelector('#intents tr[data-intent=\"int-console-1\"] td.state');"
            "return e ? e.textContent : '';")

    wait_for(d, lambda d: state() == "pending", what="the intent shown pending")
    check("customer")
    with h.run_adapter(EmailAdapter, {"from_addr": "shop@example.com", "smtp_host": "127.0.0.1",
                                      "smtp_port": smtp_gated.port, "secret": "s"}):
        wait_for(d, lambda d: state() == "sending", what="the intent claimed (sending)")
        smtp_gated.gate.set()
        wait_for(d, lambda d: state() == "sent", what="the intent sent", timeout=20)
    assert smtp_gated.messages and smtp_gated.messages[0]["To"] == email
    assert d.execute_script("return window.__sk_marker") == 1

    # explain a rule that did not fire for the order of 20
    d.find_element(By.PARTIAL_LINK_TEXT, "Explain why a rule").click()
    wait_for(d, lambda d: d.find_elements(By.ID, "event_key"), what="the explain form")
    sel = Select(d.find_element(By.ID, "event_key"))
    sel.select_by_visible_text(next(o.text for o in sel.options if " order " in o.text))
    d.find_element(By.CSS_SELECTOR, "form.explain button").click()
    wait_for(d, lambda d: d.find_elements(By.ID, "explain-result"), what="the explanation")
    row = next(r for r in d.find_elements(By.CSS_SELECTOR, "#explain-result tbody tr")
               if r.find_element(By.TAG_NAME, "td").text == "big_order_alert")
    assert "condition_failed" in row.text and "does not hold" in row.text and "20" in row.text
    check("explain")

    # the consent given above (SetConsent's interaction) is in the consent history and the timeline
    d.get(f"{console.url}/customers/{cid}")
    assert "consent on email" in d.find_element(By.ID, "consent-history").text
    assert "granted" in d.find_element(By.ID, "consent-history").text

    # a rule author's question, from the console alone: "why did Maria get no retention offer after
    # her return?" — search, open her, the timeline row's explain link, read the rule's row. The
    # steps are timed by the machine (a scripted walkthrough, not a person; docs/console.md)
    h.send({"type": "return", "identities": {"email": email}, "data": {"order_id": "O-1", "amount": 5.0}})
    steps: list[tuple[str, float]] = []
    t0 = time.perf_counter()

    def step(name: str) -> None:
        steps.append((name, round(time.perf_counter() - t0, 3)))

    d.get(f"{console.url}/customers")
    d.find_element(By.ID, "q").send_keys(email)
    d.find_element(By.CSS_SELECTOR, "form.search button").click()  # click 1
    wait_for(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results a"), what="search results")
    step("search by e-mail")
    d.find_element(By.CSS_SELECTOR, "#results a").click()  # click 2
    wait_for(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline tbody tr"), what="the 360° page")
    step("open the customer")
    row = next(r for r in d.find_elements(By.CSS_SELECTOR, "#timeline tbody tr") if "return" in r.text)
    row.find_element(By.LINK_TEXT, "explain").click()  # click 3
    wait_for(d, lambda d: d.find_elements(By.ID, "explain-result"), what="the explanation of the return")
    why = next(r for r in d.find_elements(By.CSS_SELECTOR, "#explain-result tbody tr")
               if r.find_element(By.TAG_NAME, "td").text == "retention_offer")
    step("explain the return; read retention_offer's row")
    assert "condition_failed" in why.text and "churn_risk" in why.text and "0.3" in why.text, why.text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "why-no-offer-walkthrough.json").write_text(json.dumps(
        {"clicks": 3, "typed": ["the customer's e-mail"], "steps_seconds": steps, "answer": why.text}, indent=1))

    # a reload through the API, with a key: the rules page says who, from where, and that no rule changed
    with grpc.insecure_channel(h.address) as ch:
        admin_pb2_grpc.AdminStub(ch).ReloadRules(admin_pb2.ReloadRulesRequest(), metadata=(("x-api-key", h.api_key),))

    # the other pages
    for name in ("rules", "segments", "outbox", "hub"):
        d.get(f"{console.url}/{name}")
        check(name)
        if name == "rules":
            assert "big_order_alert" in d.find_element(By.ID, "rules").text
            reloads = d.find_element(By.ID, "reloads").text
            assert "conformance" in reloads and "127.0.0.1" in reloads and "no rule changed" in reloads, reloads
            assert d.find_element(By.ID, "chart-fires-hourly").get_attribute("data-drawn")
        if name == "hub":  # the campaigns section: funnels when the hub has campaign runs
            assert "Campaigns" in main_text(d) and "rules: serving" in main_text(d)

    # unmerge: refused with the console key, done with an admin key
    d.get(f"{console.url}/customers/{cid}")
    d.find_element(By.CSS_SELECTOR, "#merges button.danger").click()
    wait_for(d, lambda d: "lacks the 'admin' scope" in main_text(d),
             what="the refusal")
    assert h.customer(other)["id"] == cid  # still merged
    d.get(f"{console.url}/customers/{cid}")
    d.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(d, lambda d: d.find_elements(By.ID, "api_key"), what="logged out")
    d.find_element(By.ID, "api_key").send_keys(KEYS["admin"])
    d.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_for(d, lambda d: d.current_url.endswith("/customers"), what="logged in as admin")
    d.get(f"{console.url}/customers/{cid}")
    d.find_element(By.CSS_SELECTOR, "#merges button.danger").click()
    wait_for(d, lambda d: "Unmerged" in main_text(d), what="the unmerge")
    assert h.customer(other)["id"] == other and h.customer(other)["status"] == "active" and rec.id
    assert visited == ["login", "search", "customer", "explain", "rules", "segments", "outbox", "hub"]


@pytest.fixture
def smtp_gated() -> Any:
    from aiosmtpd.controller import Controller

    from shopkeeper.testing import free_port

    sink = GatedSmtp()
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port)
    ctl.start()
    sink.port = port  # type: ignore[attr-defined]
    yield sink
    sink.gate.set()
    ctl.stop()


def test_campaign_funnels_on_the_hub_page(shopkeeper_hub_factory: Any, tmp_path: Path) -> None:
    """The campaigns section shows each run's funnel per channel once the hub has campaign runs."""
    from shopkeeper.campaigns import runs
    from shopkeeper.client import Client

    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "big.yaml").write_text(
        "campaigns:\n  - name: big_buyers\n    audience:\n      conditions:\n        - customer.orders: {at_least: 1}\n"
        "    messages:\n      - {channel: email, template: summer_sale}\n")
    h = shopkeeper_hub_factory({"rules_dir": str(tmp_path), "adapters": {"console": {"listen": "127.0.0.1:0"}}})
    add_keys(h)
    for i in range(3):
        h.event("order", f"b{i}@example.com", amount=50.0, order_id=f"o{i}")
        h.grant(("email", f"b{i}@example.com"))
    with Client(h.address, h.api_key) as c:
        run = c.start_campaign("big_buyers")
        h.wait_for(lambda: c.campaign_run(run.id).status == runs.DONE, what="the run to finish")
    with login(h.hub.adapters["console"], KEYS["console"]) as s:
        got = s.get("/api/campaigns").json()
        row = next(r for r in got["rows"] if r["name"] == f"big_buyers / {run.id}")
        assert row["channel"] == "email" and row["intents"] == 3
        html = s.get("/hub").text
        assert 'id="campaign-funnels"' in html and f"big_buyers / {run.id}" in html
