"""Campaign tests: ``campaigns/*.test.yaml`` beside the campaign files, run by ``shopkeeper campaign test``.

A test describes one customer and what the campaign should do with them::

    tests:
      - name: SMS lovers get the text
        campaign: winter_sale
        customer:
          identities: {email: kim@example.com, phone: "+4915112345678"}
          consents: {email: true, sms: true}
          segments: [repeat_buyers]
          facts: {preferred_channel: sms}
          traits: {first_name: Kim}
          hard: {total_spend: 80, orders: 3}
        expect: {channel: sms, text: "Hi Kim: 20% off at Shopkeeper until Sunday. Reply STOP to opt out"}
      - name: no consent, no message
        campaign: winter_sale
        customer: {identities: {email: lee@example.com}, segments: [repeat_buyers], hard: {total_spend: 80}}
        expect: {excluded: no_consent}

``expect`` takes ``channel`` (and ``text``: the rendered SMS), ``excluded`` (a reason code:
no_consent, undeliverable, capped, suppressed_complaint, suppressed_bounce, render_failed) or
``audience: false``. The holdout is left out (it is random by design); quiet hours too.
The customer lives in a throw-away in-memory store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import contact
from ..customer import Customer, now_us
from ..identity import attach
from ..plugins import builtin_evolve_steps
from ..rules.actions import TemplateValueMissing
from ..store import Store
from .model import CampaignSet
from .plan import decide, in_audience, render_text


@dataclass
class Result:
    file: str
    name: str
    ok: bool
    message: str = ""

    def __str__(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.file}: {self.name}" + (f"\n      {self.message}"
                                                                               if self.message else "")


def test_files(rules_dir: Path) -> list[Path]:
    d = rules_dir / "campaigns"
    return sorted([*d.glob("*.test.yaml"), *d.glob("*.test.yml")]) if d.is_dir() else []


def _customer(f: Any, spec: dict[str, Any]) -> Customer:
    now = now_us()
    c = f.add_customer(Customer("test-customer", created_at=now))
    for ns, value in (spec.get("identities") or {}).items():
        attach(f, c, (str(ns), str(value)), "test", now)
    for ch, granted in (spec.get("consents") or {}).items():
        c.set_consent(str(ch), "marketing", bool(granted), "test")
    for s in spec.get("segments") or ():
        c.join_segment(str(s), now)
    for k, v in (spec.get("facts") or {}).items():
        c.set_soft_fact(str(k), v, "test")
    for k, v in (spec.get("scores") or {}).items():
        c.set_score(str(k), float(v), "test")
    for k, v in (spec.get("hard") or {}).items():
        c.hard[str(k)] = v
    if spec.get("traits"):
        c.set_traits(dict(spec["traits"]))
    return c


def run_one(t: dict[str, Any], cs: CampaignSet) -> tuple[bool, str]:
    name = t.get("campaign")
    if name not in cs.campaigns:
        return False, f"unknown campaign {name!r} (known: {', '.join(sorted(cs.campaigns)) or 'none'})"
    camp = dataclasses.replace(cs.campaigns[name], holdout=0.0)
    expect = t.get("expect") or {}
    unknown = set(expect) - {"channel", "text", "excluded", "audience"}
    if unknown or not expect:
        return False, f"expect takes channel, text, excluded or audience (got {sorted(unknown) or 'nothing'})"
    store = Store.open("memory://", steps=builtin_evolve_steps())
    try:
        with store.read() as f:  # thrown away at the end: a test changes nothing
            c = _customer(f, t.get("customer") or {})
            now = now_us()
            inside = in_audience(camp, c, now)
            if "audience" in expect:
                if bool(expect["audience"]) != inside:
                    where = "in" if inside else "out"
                    return False, f"expected audience: {expect['audience']}, the customer is {where}"
                if len(expect) == 1:
                    return True, ""
            if not inside:
                return False, "the customer is not in the audience"
            d = decide(camp, c, now, dataclasses.replace(contact.current(), quiet_hours=None))
            text = None
            if d.sends:
                msg = camp.message(d.channel)
                try:
                    text = render_text(msg.text, c) if msg is not None and msg.text else None
                except TemplateValueMissing as exc:
                    d = dataclasses.replace(d, code="render_failed", detail=str(exc))
            got = f"channel {d.channel}" if d.sends else f"excluded: {d.code} ({d.detail})"
            if "excluded" in expect and (d.sends or d.code != expect["excluded"]):
                return False, f"expected excluded: {expect['excluded']}, got {got}"
            if "channel" in expect and (not d.sends or d.channel != expect["channel"]):
                return False, f"expected channel {expect['channel']}, got {got}"
            if "text" in expect and text != expect["text"]:
                return False, f"expected text {expect['text']!r}, got {text!r}"
    finally:
        store.close()
    return True, ""


def run_test_file(path: Path, cs: CampaignSet) -> list[Result]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [Result(str(path), "(file)", False, f"cannot read: {exc}")]
    tests = doc.get("tests") if isinstance(doc, dict) else None
    if not isinstance(tests, list) or not tests:
        return [Result(str(path), "(file)", False, "expected `tests:`, a list of tests")]
    out = []
    for i, t in enumerate(tests):
        if not isinstance(t, dict):
            out.append(Result(str(path), f"tests[{i}]", False, "a test is a mapping with name, campaign, "
                                                               "customer, expect"))
            continue
        ok, msg = run_one(t, cs)
        out.append(Result(str(path), str(t.get("name") or f"tests[{i}]"), ok, msg))
    return out
