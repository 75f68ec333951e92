"""Shared set-up for the campaign tests: a store of customers built offline (no hub holds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopkeeper.customer import Customer, now_us
from shopkeeper.identity import attach
from shopkeeper.store import Store

CAMPAIGN = """\
campaigns:
  - name: winter_sale
    description: twenty percent off for repeat buyers
    priority: 10
    audience:
      segment: repeat_buyers
      conditions:
        - customer.total_spend: {at_least: 50}
    schedule: {at: 2026-12-05T10:00:00Z}
    messages:
      - channel: email
        template: summer_sale
      - channel: sms
        text: "Hi {trait.first_name|there}: 20% off until Sunday. Reply STOP to opt out"
    offer: winback_20
    holdout: 10
    start: 2026-12-01
    end: 2027-01-31
"""


def write_campaign(rules: Path, text: str = CAMPAIGN, name: str = "winter.yaml") -> Path:
    d = rules / "campaigns"
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def add(f: Any, cid: str, *, email: str | None = None, phone: str | None = None,
        consents: dict[str, bool] | None = None, segments: tuple[str, ...] = ("repeat_buyers",),
        spend: float = 100.0, preferred: str | None = None, traits: dict[str, Any] | None = None) -> Customer:
    """One customer with identities, consents, segments and spend, in the open transaction."""
    now = now_us()
    c = f.add_customer(Customer(cid, created_at=now))
    if email:
        attach(f, c, ("email", email), "test", now)
    if phone:
        attach(f, c, ("phone", phone), "test", now)
    for ch, granted in (consents or {}).items():
        c.set_consent(ch, "marketing", granted, "test")
    for s in segments:
        c.join_segment(s, now)
    c.hard["total_spend"] = spend
    c.hard["orders"] = 2
    if preferred:
        c.set_soft_fact("preferred_channel", preferred, "test")
    if traits:
        c.set_traits(traits)
    return c


def population(store: Store, n: int = 40) -> dict[str, str]:
    """``n`` customers cycling through the interesting cases; returns id -> case."""
    cases = {}
    with store.transaction() as f:
        for i in range(n):
            cid = f"c{i:04d}"
            kind = ("email", "sms_pref", "no_consent", "no_address", "outside", "sms_only")[i % 6]
            cases[cid] = kind
            if kind == "email":
                add(f, cid, email=f"{cid}@example.com", consents={"email": True})
            elif kind == "sms_pref":
                add(f, cid, email=f"{cid}@example.com", phone=f"+4915112{i:05d}",
                    consents={"email": True, "sms": True}, preferred="sms", traits={"first_name": "Ann"})
            elif kind == "no_consent":
                add(f, cid, email=f"{cid}@example.com", consents={"email": False})
            elif kind == "no_address":
                add(f, cid, consents={"email": True})
            elif kind == "outside":
                add(f, cid, email=f"{cid}@example.com", consents={"email": True}, segments=())
            else:
                add(f, cid, phone=f"+4915113{i:05d}", consents={"sms": True, "email": True})
    return cases
