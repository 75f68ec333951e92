"""Decide's answer: an empty answer always says why (issue 14), whatever held the offer back."""

from __future__ import annotations

from shopkeeper import contact
from shopkeeper.customer import Customer
from shopkeeper.engine.decisions import gather


def test_an_answer_without_offers_says_nothing_was_proposed() -> None:
    got = gather(Customer("c1"), "web", [{"kind": "message", "id": "welcome", "score": 0.2}])
    assert [a["id"] for a in got] == ["welcome"]
    assert got.no_offer_reason == contact.NO_CANDIDATES == "no_candidates"
    assert "no offer was proposed for web" in got.no_offer_detail


def test_an_answer_with_an_offer_has_no_reason_and_a_refusal_keeps_its_own() -> None:
    c = Customer("c1")
    offer = {"kind": "offer", "id": "ten", "score": 0.9, "payload": {}}
    assert gather(c, "web", [offer]).no_offer_reason == ""
    assert gather(c, "email", [offer]).no_offer_reason == contact.NO_CONSENT  # no email consent
