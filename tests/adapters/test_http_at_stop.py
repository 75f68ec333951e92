"""The HTTP adapters while the hub stops: a write the stopping writer refused is a 503 with
``Retry-After`` (never a 500), and the sender's retry with the same ids counts once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shopkeeper.adapters.callcentre import CallCentreAdapter
from shopkeeper.adapters.web import WebAdapter
from shopkeeper.engine.writer import STOPPING

from .test_callcentre import SSE, cc_config, login, ring
from .test_web import ORIGIN, post, pv, vid, web_config

pytestmark = pytest.mark.e2e


@pytest.fixture
def hub(shopkeeper_hub_factory: Any) -> Any:
    return shopkeeper_hub_factory()


@pytest.fixture
def held(hub: Any) -> Iterator[threading.Event]:
    """The writer busy with a job in progress until the event is set (what a busy hub looks like)."""
    gate, running = threading.Event(), threading.Event()
    hub.hub.writer.submit_op(lambda f, ch: running.set() or gate.wait(60))
    assert running.wait(10)
    yield gate
    gate.set()


def refused_while_stopping(hub: Any, held: threading.Event, send: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``send()`` on a thread; once its write is queued, the hub's first stop step (the shed)."""
    writer = hub.hub.writer
    submitted = threading.Event()
    submit = writer.submit_events

    def spy(events: Any, *args: Any, **kw: Any) -> Any:
        fut = submit(events, *args, **kw)
        if not kw.get("linger"):  # not a Decide offer record: the adapter's write
            submitted.set()
        return fut

    monkeypatch.setattr(writer, "submit_events", spy)  # the hub's own jobs may queue too: wait for this one
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(send)
        assert submitted.wait(30), "the adapter's write never reached the writer"
        assert writer.shed() >= 1  # Hub.stop's first step
        r = answer.result(30)
    held.set()
    return r


def test_the_web_collector_answers_503_with_retry_after_and_the_retry_counts_once(
        hub: Any, held: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with hub.run_adapter(WebAdapter, web_config(), "in-process") as web:
        v, events = vid(), [pv(), pv(f"{ORIGIN}/cart")]
        body = {"visitor": v, "sent": 0, "events": events}
        r = refused_while_stopping(hub, held, lambda: post(f"{web.url}/v1/shop/collect", body), monkeypatch)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and STOPPING in r.text, (r.status_code, r.text)
        again = post(f"{web.url}/v1/shop/collect", body)  # the beacon's retry, same event ids
        assert again.json() == {"ok": True, "applied": 2, "duplicates": 0}


def test_the_call_centre_answers_503_with_retry_after_and_the_retry_counts_once(
        hub: Any, held: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with hub.run_adapter(CallCentreAdapter, cc_config(), "in-process") as cc:
        maria = login(cc, "a-100")
        sse = SSE(maria)
        assert ring(cc, "c-9", "+4915112345670").status_code == 202
        assert sse.next("pop") is not None
        h = {"X-Requested-With": "shopkeeper-desk"}
        outcome = {"disposition": "resolved", "notes": "stop test"}
        r = refused_while_stopping(hub, held, lambda: maria.post("/desk/calls/c-9/outcome", json=outcome, headers=h),
                                   monkeypatch)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and STOPPING in r.text, (r.status_code, r.text)
        again = maria.post("/desk/calls/c-9/outcome", json=outcome, headers=h)
        assert again.status_code == 200 and again.json()["recorded"] == ["applied"], again.text
