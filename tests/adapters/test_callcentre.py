"""The call-centre adapter: CTI webhook -> live screen-pop in a real browser -> outcome back in the hub."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shopkeeper import hookimpl
from shopkeeper.adapters.base import AdapterConfigError, validate_config
from shopkeeper.adapters.callcentre import CallCentreAdapter
from shopkeeper.adapters.callcentre.config import CallCentreConfig, hash_password, verify_password
from shopkeeper.adapters.web import WebAdapter
from shopkeeper.testing import AdapterConformance

from .browser import chrome, wait_for  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

TOKEN = "cti-token-for-tests"
ORIGIN = "http://shop.test"
HTTP = httpx.Client(timeout=10)  # one client: httpx builds an SSL context per client (~0.3 s)
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36", "Origin": ORIGIN}
PASSWORDS = {"a-100": "maria-pw-1", "a-200": "tom-pw-2"}
HASHES = {a: hash_password(p, n=2**10) for a, p in PASSWORDS.items()}  # cheap N keeps the tests quick
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "agent-screen.png"


class NextBestAction:
    @hookimpl
    def shopkeeper_decide(self, customer, touchpoint, placement, context):
        if placement != "agent_screen":
            return None
        views = [it.data.get("url", "") for it in customer.interactions(type="page_view")]
        looked = [u.rsplit("/", 1)[-1] for u in views if "/product/" in u]
        out = [{"kind": "message", "id": "thank-loyalty", "score": 0.3,
                "reason": "long-standing customer: thank them for their loyalty"}]
        if looked:
            name = looked[-1].replace("-", " ").title()
            out.append({"kind": "offer", "id": f"bundle-{looked[-1]}", "score": 0.92,
                        "reason": f"browsed {name} on the web {len(looked)}× in the last hour and did not buy; "
                                  "price-sensitive segment responds to bundles",
                        "payload": {"title": f"{name} + care kit: 20% off",
                                    "text": "Offer the bundle; free delivery if ordered on this call."}})
        return out


def cc_config(**kw: Any) -> dict[str, Any]:
    return {"listen": "127.0.0.1:0", "cti_token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
            "agents": {"a-100": {"name": "Maria Lopez", "password": HASHES["a-100"]},
                       "a-200": {"name": "Tom Berg", "password": HASHES["a-200"]}}, **kw}


def ring(cc: Any, call_id: str, caller: str, agent: str = "a-100", token: str = TOKEN, **kw: Any) -> httpx.Response:
    body = {"event": "ringing", "call_id": call_id, "caller": caller, "agent": agent, **kw}
    return HTTP.post(f"{cc.url}/cti/calls", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def login(cc: Any, agent: str) -> httpx.Client:
    c = httpx.Client(base_url=cc.url, timeout=10)
    r = c.post("/login", data={"agent": agent, "password": PASSWORDS[agent]})
    assert r.status_code == 303 and r.headers["location"] == "/desk", r.text
    return c


class SSE:
    """Reads an agent's live stream on a thread; events land in a queue."""

    def __init__(self, client: httpx.Client) -> None:
        self.q: queue.Queue = queue.Queue()
        self.client = client
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.next("hello")

    def _run(self) -> None:
        try:
            with self.client.stream("GET", "/desk/events", timeout=httpx.Timeout(10, read=60)) as r:
                kind = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.q.put((kind, json.loads(line[6:]), time.time() * 1000))
        except Exception:  # noqa: BLE001 - closed by the test
            pass

    def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                k, data, _ = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if k == kind:
                return data
        return None


@pytest.fixture
def hub(shopkeeper_hub_factory: Any) -> Any:
    return shopkeeper_hub_factory(plugins=(NextBestAction(),))


@pytest.fixture
def cc(hub: Any) -> Iterator[Any]:
    with hub.run_adapter(CallCentreAdapter, cc_config(), "in-process") as adapter:
        yield adapter


def web_visit(hub: Any, web: Any, email: str, phone: str, products: list[str]) -> str:
    """A visitor browses anonymously, then logs in with e-mail and phone (through the web collector)."""
    v = str(uuid.uuid4())
    events = [{"type": "page_view", "id": str(uuid.uuid4()), "data": {"url": f"{ORIGIN}/"}}]
    events += [{"type": "page_view", "id": str(uuid.uuid4()), "data": {"url": f"{ORIGIN}/product/{p}"}}
               for p in products]
    r = HTTP.post(f"{web.url}/v1/shop/collect", content=json.dumps({"visitor": v, "events": events}), headers=UA)
    assert r.status_code == 200, r.text
    r = HTTP.post(f"{web.url}/v1/shop/identify", headers=UA, content=json.dumps(
        {"visitor": v, "id": str(uuid.uuid4()), "identities": {"email": email, "phone": phone},
         "traits": {"first_name": "Ann", "last_name": "Meyer", "city": "Hamburg"}}))
    assert r.status_code == 200, r.text
    return v


# -- HTTP-level behaviour ----------------------------------------------------------------


def test_passwords_are_scrypt_hashed() -> None:
    # a password with characters base64 never produces, so "not stored in the clear" cannot fail by
    # chance (with "pw" it did, once: a random salt's base64 can contain "pw")
    pw = "pw 1!"
    h = hash_password(pw, n=2**10)
    assert h.startswith("scrypt$1024$8$1$") and pw not in h
    assert verify_password(pw, h) and not verify_password("PW 1!", h) and not verify_password(pw, "garbage")
    assert hash_password(pw, n=2**10) != h  # salted


def test_config_is_validated_with_field_names() -> None:
    with pytest.raises(AdapterConfigError, match=r"adapter\.callcentre\.agents: .*password.*scrypt"):
        validate_config("callcentre", CallCentreConfig, cc_config(agents={"a-1": {"password": "plain"}}))
    with pytest.raises(AdapterConfigError, match=r"adapter\.callcentre\.cti_token_sha256: must be the 64"):
        validate_config("callcentre", CallCentreConfig, {**cc_config(), "cti_token_sha256": TOKEN})
    with pytest.raises(AdapterConfigError, match=r"adapter\.callcentre\.agents: required"):
        validate_config("callcentre", CallCentreConfig, {"cti_token_sha256": "0" * 64})


def test_login_logout_and_throttling(cc: Any) -> None:
    c = httpx.Client(base_url=cc.url, timeout=10)
    assert c.get("/desk").headers["location"] == "/login"
    assert c.get("/desk/events").status_code == 401
    bad = c.post("/login", data={"agent": "a-100", "password": "nope"})
    assert bad.status_code == 401 and "wrong password" in bad.text
    assert c.post("/login", data={"agent": "nobody", "password": "x"}).status_code == 401
    ok = c.post("/login", data={"agent": "a-100", "password": PASSWORDS["a-100"]})
    cookie = ok.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert c.get("/desk").status_code == 200
    forger = httpx.Client(base_url=cc.url, cookies={"sk_agent": c.cookies["sk_agent"].replace("a-100", "a-200")})
    assert forger.get("/desk/events").status_code == 401
    c.post("/logout")
    assert c.get("/desk").status_code == 303
    codes = [HTTP.post(f"{cc.url}/login", data={"agent": "a-200", "password": "guess"}).status_code
             for _ in range(12)]
    assert codes[-1] == 429


def test_cti_webhook_is_authenticated_and_validated(cc: Any) -> None:
    assert ring(cc, "c-1", "+14155550100", token="wrong").status_code == 401
    r = HTTP.post(f"{cc.url}/cti/calls", json={"call_id": "c-1"}, timeout=5)
    assert r.status_code == 401
    for body, field in (({"call_id": "c 1", "caller": "+14155550100", "agent": "a-100"}, "call_id"),
                        ({"call_id": "c-1", "caller": "+14155550100", "agent": "zz"}, "agent"),
                        ({"call_id": "c-1", "caller": "call me", "agent": "a-100"}, "caller"),
                        ({"call_id": "c-1", "caller": "+14155550100", "agent": "a-100", "event": "x"}, "event")):
        r = HTTP.post(f"{cc.url}/cti/calls", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code in (400, 422) and r.json()["field"] == field, (body, r.text)


def test_pops_only_reach_the_agent_the_call_is_routed_to(hub: Any, cc: Any) -> None:
    hub.send({"type": "order", "identities": {"phone": "+14155550100", "email": "ann@example.com"},
              "data": {"order_id": "o1", "amount": 99.5}})
    maria, tom = login(cc, "a-100"), login(cc, "a-200")
    ms, ts = SSE(maria), SSE(tom)
    r = ring(cc, "c-42", "(415) 555-0100")  # a national format: the hub normalises it to E.164
    assert r.status_code == 202 and r.json()["screens"] == 1
    pop = ms.next("pop")
    assert pop["customer"]["id"] == hub.customer(("email", "ann@example.com"))["id"]
    assert pop["customer"]["hard_facts"]["orders"] == 1
    assert ts.next("pop", timeout=0.5) is None  # Tom's desk saw nothing
    assert tom.get("/desk/calls/c-42").status_code == 404
    r = tom.post("/desk/calls/c-42/outcome", json={"disposition": "resolved"},
                 headers={"X-Requested-With": "shopkeeper-desk"})
    assert r.status_code == 404
    assert ring(cc, "c-42", "+14155550100", agent="a-200").status_code == 409  # not re-routable by a replay
    assert maria.get("/desk/calls/c-42").json()["call"]["id"] == "c-42"


def test_outcome_validation_and_unknown_caller(hub: Any, cc: Any) -> None:
    maria = login(cc, "a-100")
    sse = SSE(maria)
    assert ring(cc, "c-7", "+4915112345678").status_code == 202
    pop = sse.next("pop")
    assert pop["customer"] is None and pop["actions"] == []
    h = {"X-Requested-With": "shopkeeper-desk"}
    assert maria.post("/desk/calls/c-7/outcome", json={"disposition": "resolved"}).status_code == 403  # no header
    r = maria.post("/desk/calls/c-7/outcome", json={"disposition": "party"}, headers=h)
    assert r.status_code == 400 and r.json()["field"] == "disposition"
    r = maria.post("/desk/calls/c-7/outcome", json={"disposition": "sale", "offer": "free-tv",
                                                    "offer_response": "accepted"}, headers=h)
    assert r.status_code == 400 and r.json()["field"] == "offer"  # never offered on this call
    r = maria.post("/desk/calls/c-7/outcome", json={"disposition": "wrong_number", "notes": "asked for Bob"},
                   headers=h)
    assert r.status_code == 200, r.text
    view = hub.customer(("phone", "+4915112345678"))  # the outcome created the profile by phone
    (call,) = [i for i in view["recent_interactions"] if i["type"] == "call"]
    assert call["channel"] == "phone" and call["data"]["disposition"] == "wrong_number"
    again = maria.post("/desk/calls/c-7/outcome", json={"disposition": "wrong_number"}, headers=h)
    assert again.json()["recorded"] == ["duplicate"]  # a double submit counts once


def test_runs_out_of_the_hub_over_grpc(hub: Any) -> None:
    hub.send({"type": "page_view", "identities": {"phone": "+14155550123"}, "data": {"url": "/product/kettle"}})
    with hub.run_adapter(CallCentreAdapter, cc_config(), "remote") as cc:
        assert cc.hub.mode == "remote"
        maria = login(cc, "a-100")
        sse = SSE(maria)
        assert ring(cc, "r-1", "+14155550123").status_code == 202
        pop = sse.next("pop")
        assert pop["actions"][0]["id"] == "bundle-kettle"
        assert pop["customer"]["history"][0]["data"]["url"] == "/product/kettle"
        r = maria.post("/desk/calls/r-1/outcome", headers={"X-Requested-With": "shopkeeper-desk"},
                       json={"disposition": "sale", "offer": "bundle-kettle", "offer_response": "declined"})
        assert r.status_code == 200, r.text
        # live: the committed outcome comes back through the gRPC Watch stream and re-pops the screen.
        # The ring's Decide queued an offer_shown record that may commit (and re-pop) first: skip
        # updates until the one that carries the outcome.
        deadline = time.monotonic() + 10
        update = sse.next("pop")
        while (update is not None and update["customer"]["history"][0]["type"] == "offer_shown"
               and time.monotonic() < deadline):
            update = sse.next("pop")
        assert update is not None and update["reason"] == "update"
        assert update["customer"]["history"][0]["type"] in ("call", "offer_declined")
    types = {i["type"] for i in hub.customer(("phone", "+14155550123"))["recent_interactions"]}
    assert {"call", "offer_declined", "page_view"} <= types


class TestCallCentreConformance(AdapterConformance):
    adapter_class = CallCentreAdapter

    def adapter_config(self, tmp_path: Any) -> dict[str, Any]:
        return cc_config()

    def exercise(self, harness: Any, adapter: Any, tmp_path: Any) -> list[tuple[str, str]]:
        maria = login(adapter, "a-100")
        assert ring(adapter, "conf-1", "+14155550199").status_code == 202
        r = maria.post("/desk/calls/conf-1/outcome", json={"disposition": "resolved"},
                       headers={"X-Requested-With": "shopkeeper-desk"})
        assert r.status_code == 200, r.text
        return [("phone", "+14155550199")]


# -- the agent desk in a real browser ------------------------------------------------------


def test_agent_desk_in_browser_pops_web_history_and_records_the_outcome(hub: Any, chrome: Any,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    with hub.run_adapter(WebAdapter, {"listen": "127.0.0.1:0", "sites": {"shop": {"origins": [ORIGIN]}}},
                         "in-process") as web, \
            hub.run_adapter(CallCentreAdapter, cc_config(), "in-process") as cc:
        hub.send({"type": "order", "identities": {"email": "ann.meyer@example.com"},
                  "data": {"order_id": "o-77", "amount": 184.9}, "ts": time.time() - 86400 * 40})
        hub.send({"type": "email_open", "identities": {"email": "ann.meyer@example.com"},
                  "data": {"campaign": "spring-running"}, "ts": time.time() - 86400 * 2})
        hub.grant(("email", "ann.meyer@example.com"), "email")
        hub.in_process().set_consent(("email", "ann.meyer@example.com"), "sms", "marketing", False, "web form")
        visitor = web_visit(hub, web, "ann.meyer@example.com", "+1 415 555 0142", ["trail-runner-2", "trail-runner-2"])

        driver = chrome()
        driver.get(f"{cc.url}/login")
        driver.find_element("id", "agent").send_keys("a-100")
        driver.find_element("id", "password").send_keys("not-her-password")
        driver.find_element("id", "login-submit").click()
        # the refusal is a new page: wait for it (finding the element at once raced the submit under load)
        wait_for(driver, lambda d: "wrong password" in d.find_element("id", "login-error").text, what="the refusal")
        driver.find_element("id", "password").send_keys(PASSWORDS["a-100"])
        driver.find_element("id", "login-submit").click()
        wait_for(driver, lambda d: "on" in d.find_element("id", "live").get_attribute("class"), what="live stream")
        assert driver.find_element("id", "agent-name").text.startswith("Maria Lopez")

        driver.execute_script("window.__beforeRing = true")  # gone if the page reloads
        r = ring(cc, "call-9001", "+14155550142")
        assert r.status_code == 202 and r.json()["screens"] == 1
        wait_for(driver, lambda d: d.execute_script("return window.skDesk.timings.length") >= 1, timeout=5,
                 what="the screen-pop")
        # a live push into the open page, not a reload (how fast: benchmarks/bench_screenpop.py, not
        # a timing budget here, which failed on a loaded machine)
        assert driver.execute_script("return window.__beforeRing === true")
        assert driver.find_element("id", "cust-name").text == "Ann Meyer"
        history = driver.find_elements("css selector", "#history li")
        kinds = [(li.get_attribute("data-channel"), li.get_attribute("data-type")) for li in history]
        assert ("web", "page_view") in kinds and ("web", "identify") in kinds  # the web visit minutes ago
        assert ("email", "email_open") in kinds and ("web", "order") in kinds  # and the other channels
        assert "/product/trail-runner-2" in driver.find_element("id", "history").text
        consents = driver.find_element("id", "cust-consents").text
        assert "✓ email" in consents and "✕ sms" in consents
        nba = driver.find_element("id", "nba-body")
        assert nba.get_attribute("data-action") == "bundle-trail-runner-2"
        assert "browsed Trail Runner 2 on the web 2×" in nba.text

        # live: the customer keeps browsing during the call -> the desk updates by itself
        r = HTTP.post(f"{web.url}/v1/shop/collect", headers=UA, content=json.dumps(
            {"visitor": visitor, "events": [{"type": "page_view", "id": str(uuid.uuid4()),
                                             "data": {"url": f"{ORIGIN}/checkout"}}]}))
        assert r.status_code == 200
        wait_for(driver, lambda d: "/checkout" in d.find_element("id", "history").text, what="live update")

        driver.find_element("id", "offer-accept").click()
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element("id", "disposition")).select_by_value("sale")
        driver.find_element("id", "notes").send_keys("Ordering the bundle by phone; wants delivery on Friday.")
        # docs/images/agent-screen.png is refreshed on request only, so test runs leave the tree clean
        shot = SCREENSHOT if os.environ.get("SHOPKEEPER_UPDATE_SCREENSHOTS") else tmp_path / "agent-screen.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        driver.find_element("id", "outcome-submit").click()
        wait_for(driver, lambda d: d.find_element("id", "outcome-status").get_attribute("data-saved") == "call-9001",
                 what="outcome saved")

        ann = hub.customer(("email", "ann.meyer@example.com"), recent=50)
        (call,) = [i for i in ann["recent_interactions"] if i["type"] == "call"]
        assert call["data"]["disposition"] == "sale" and call["data"]["agent"] == "a-100"
        assert "Friday" in call["data"]["notes"] and call["channel"] == "phone"
        (acc,) = [i for i in ann["recent_interactions"] if i["type"] == "offer_accepted"]
        assert acc["data"]["offer"] == "bundle-trail-runner-2" and acc["channel"] == "phone"
        assert ann["id"] == hub.customer(("cookie", visitor))["id"]
        # the closed loop is visible on the desk too: the call lands in the history shown
        wait_for(driver, lambda d: d.find_elements("css selector", "#history li[data-type='call']"),
                 what="the recorded call in the desk's history")
