"""Intents a crashed adapter left ``sending`` with their attempts used up: the hub's start walks
none of them (it loaded the customer of every intent not yet final, one by one: the 10M hub took
9-40 s to open), and the adapter's next scan resolves each one — marked sent when its journal
shows it delivered (the start-up walk failed it first), ended failed by its claim otherwise.
Nothing is sent again."""

from __future__ import annotations

from typing import Any

import pytest

from shopkeeper import outbox
from shopkeeper.adapters.email import EmailAdapter
from shopkeeper.customer import Customer
from shopkeeper.testing import start_hub

from .conftest import SmtpSink
from .test_email import email_config, requested_intent

pytestmark = pytest.mark.e2e


def _claimed_to_the_limit(h: Any, who: str) -> str:
    """A customer whose intent was claimed MAX_ATTEMPTS times under one Message-ID (an adapter
    that crashed after each claim): left ``sending`` with no attempt left. Its Message-ID."""
    addr, mid = requested_intent(h, who)
    for n in range(outbox.MAX_ATTEMPTS):
        got = h.send({"type": "message_dispatch", "identities": {"email": addr}, "idempotency_key": f"d-{who}{n}",
                      "data": {"intent": f"intent-{who}", "message_id": mid}})
        assert got[0]["status"] == "applied", got
    return mid


def _intent(h: Any, who: str) -> outbox.OutboxItem:
    view = h.customer(("email", f"{who}@example.com"))
    with h.hub.store.read() as f:
        return outbox.get(f.customer(view["id"]), f"intent-{who}")


def test_a_restarted_hub_walks_no_intent_and_the_adapter_resolves_the_exhausted_ones(
        smtp: SmtpSink, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    h = start_hub(store_uri=uri)
    try:
        mids = {who: _claimed_to_the_limit(h, who) for who in ("a", "b")}
    finally:
        h.close()
        h.hub.stop(grace=0.5)
    loaded: list[str] = []
    setstate = Customer.__setstate__

    def counting(self: Customer, state: Any) -> None:
        loaded.append(type(self).__name__)
        setstate(self, state)

    monkeypatch.setattr(Customer, "__setstate__", counting)
    h = start_hub(store_uri=uri)
    try:
        assert loaded == [], f"the hub's start loaded {len(loaded)} customers"
        monkeypatch.setattr(Customer, "__setstate__", setstate)
        assert [_intent(h, w).status for w in ("a", "b")] == [outbox.SENDING] * 2
        # a was delivered before the crash (its Message-ID is in the journal); b never was
        (tmp_path / "journal.log").write_text(mids["a"] + "\n")
        with h.run_adapter(EmailAdapter, email_config(smtp, tmp_path)):
            h.wait_for(lambda: [_intent(h, w).status for w in ("a", "b")] == [outbox.SENT, outbox.FAILED],
                       what="a sent, b failed")
        b = _intent(h, "b")
        assert "retries exhausted" in b.error and b.attempts == outbox.MAX_ATTEMPTS, b
        assert smtp.messages == [], "an exhausted intent was sent again"
    finally:
        h.close()
        h.hub.stop(grace=0.5)


def test_a_claim_with_the_attempts_used_up_is_refused_and_says_the_intent_failed(shopkeeper_hub: Any) -> None:
    h = shopkeeper_hub
    mid = _claimed_to_the_limit(h, "x")
    got = h.send({"type": "message_dispatch", "identities": {"email": "x@example.com"}, "idempotency_key": "d-x9",
                  "data": {"intent": "intent-x", "message_id": mid}})[0]
    assert got["status"] == "rejected" and "retries_exhausted" in got["error"], got
    assert "is now failed" in got["error"], got  # it said "suppressed"
    assert _intent(h, "x").status == outbox.FAILED
