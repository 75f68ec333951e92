"""Issue 16's "done when" for SMS, end to end: a campaign over a segment reaches each customer on their
channel of choice — SMS through a real Kannel (bearerbox + smsbox + fake SMSC), email through a real
SMTP server (aiosmtpd) — the delivery reports and a STOP reply come back attributed to the campaign's
run, and the run's report counts them per channel with the uplift against the holdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shopkeeper import outbox
from shopkeeper.adapters.email import EmailAdapter
from shopkeeper.adapters.sms import SmsAdapter
from shopkeeper.campaigns import runs
from shopkeeper.client import Client
from shopkeeper.customer import now_us

pytestmark = pytest.mark.e2e

SHORTCODE = "12345"
CAMPAIGN = """\
campaigns:
  - name: spring_mix
    audience:
      segment: spring_list
    messages:
      - {channel: email, template: summer_sale}
      - {channel: sms, text: "Hi {trait.first_name|there}: spring is here. Reply STOP to opt out"}
    holdout: 20
"""


def _people() -> dict[str, dict[str, Any]]:
    """phone/email, consents and preferred channel of each case (numbers: valid UK mobiles of this test's own)."""
    people: dict[str, dict[str, Any]] = {}
    for i in range(12):  # both addresses, both consents, SMS preferred: SMS
        people[f"pref{i}"] = {"phone": f"+4474006{i:05d}", "email": f"pref{i}@example.com",
                              "consents": ("sms", "email"), "preferred": "sms"}
    for i in range(12):  # both addresses, both consents, nothing preferred: the campaign's order, email
        people[f"mail{i}"] = {"phone": f"+4474007{i:05d}", "email": f"mail{i}@example.com",
                              "consents": ("sms", "email")}
    for i in range(8):  # prefers email but has no email consent: the fallback, SMS
        people[f"fall{i}"] = {"phone": f"+4474008{i:05d}", "email": f"fall{i}@example.com", "consents": ("sms",),
                              "preferred": "email"}
    for i in range(4):  # no consent on any channel: excluded
        people[f"none{i}"] = {"phone": f"+4474009{i:05d}", "email": f"none{i}@example.com", "consents": ()}
    return people


def test_a_campaign_reaches_sms_and_email_recipients_on_their_channel_of_choice(
        shopkeeper_hub_factory: Any, kannel: Any, smtp: Any, tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "spring.yaml").write_text(CAMPAIGN)
    h = shopkeeper_hub_factory({"rules_dir": str(tmp_path)})
    people = _people()
    res = h.send(*({"type": "identify", "identities": {"phone": p["phone"], "email": p["email"]},
                    "traits": {"first_name": name.capitalize()}} for name, p in people.items()))
    assert all(r["status"] == "applied" for r in res), res
    for p in people.values():
        for channel in p["consents"]:
            h.grant(("phone", p["phone"]), channel)

    def enrol(folders: Any, _changes: Any) -> None:  # the segment and the preferences, through the one writer
        for p in people.values():
            c = folders.customer_by_identity("phone", p["phone"])
            c.join_segment("spring_list", now_us())
            if p.get("preferred"):
                c.set_soft_fact("preferred_channel", p["preferred"], "test")

    h.hub.writer.submit_op(enrol).result()
    since = len(kannel.received())
    sms_cfg = kannel.adapter_config(journal=str(tmp_path / "sms-journal.log"), retry_delays=[0.2, 0.5])
    email_cfg = {"from_addr": "shop@example.com", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                 "secret": "s", "http_listen": None,
                 "journal": str(tmp_path / "email-journal.log"), "retry_delays": [0.05, 0.1]}
    with h.run_adapter(SmsAdapter, sms_cfg), h.run_adapter(EmailAdapter, email_cfg), \
            Client(h.address, h.api_key) as client:
        run = client.start_campaign("spring_mix")
        h.wait_for(lambda: client.campaign_run(run.id).status == runs.DONE, timeout=60, what="the run to be planned")
        with h.hub.store.read() as f:
            intents = {f.customers[cid].identities_in("phone")[0]: it for cid, c in f.customers.items()
                       for it in outbox.items(c) if it.payload.get("run") == run.id}
            plan = dict(runs.get_run(f, run.id).plan)
        by_phone = {p["phone"]: name for name, p in people.items()}
        texted = {ph for ph, it in intents.items() if it.channel == "sms"}
        mailed = {ph for ph, it in intents.items() if it.channel == "email"}
        # channel of choice: SMS for who prefers it or may only be texted, email by the campaign's order otherwise
        assert texted and mailed and not texted & mailed
        assert all(by_phone[ph][:4] in ("pref", "fall") for ph in texted), sorted(by_phone[ph] for ph in texted)
        assert all(by_phone[ph][:4] == "mail" for ph in mailed), sorted(by_phone[ph] for ph in mailed)
        assert not any(by_phone[ph].startswith("none") for ph in intents)
        held = sum(1 for v in plan.values() if v[1] == "holdout")
        assert held and len(intents) + held == 32  # everyone reachable is either treated or held out

        def reports_in() -> bool:
            return all(h.interactions(("phone", ph), "sms_delivered") for ph in texted)

        h.wait_for(lambda: all(_status(h, ph, it.id) == outbox.SENT for ph, it in intents.items()), timeout=90,
                   what="every intent of the run to be sent")
        h.wait_for(reports_in, timeout=60, what="a delivery report of every SMS")
        got = kannel.settle()[since:]
        # each texted number once, with its text; nobody else texted; each mailed address once
        assert sorted(m["to"] for m in got) == sorted(texted)
        assert all(m["text"] == f"Hi {by_phone[m['to']].capitalize()}: spring is here. Reply STOP to opt out"
                   for m in got), got
        to_addrs = sorted(a for env in smtp.envelopes for a in env.rcpt_tos)
        assert to_addrs == sorted(people[by_phone[ph]]["email"] for ph in mailed)
        for ph in texted:  # the delivery report names the campaign, its run and its intent
            (dlr,) = h.interactions(("phone", ph), "sms_delivered")
            assert {k: dlr["data"].get(k) for k in ("campaign", "run", "intent")} == \
                {"campaign": "spring_mix", "run": run.id, "intent": intents[ph].id}
        # a STOP reply to the campaign's text: consent withdrawn, and it counts for this run
        stopper = sorted(texted)[0]
        kannel.mo(stopper, SHORTCODE, "STOP")
        h.wait_for(lambda: h.interactions(("phone", stopper), "unsubscribe"), timeout=30, what="the STOP")
        report = json.loads(client.campaign_report(run.id).json)
        text = client.campaign_report(run.id).text
    sms, email = report["funnel"]["sms"], report["funnel"]["email"]
    assert sms["intents"] == sms["sent"] == sms["delivered"] == len(texted), sms
    assert sms["stop"] == 1, sms
    assert email["intents"] == email["sent"] == len(mailed), email
    u = report["uplift"]
    assert u["treated"] == len(intents) and u["control"] == held
    assert u["ci_low"] <= u["difference"] <= u["ci_high"]
    assert "95% interval" in text


def _status(h: Any, phone: str, intent: str) -> str | None:
    with h.hub.store.read() as f:
        c = f.customer_by_identity("phone", phone)
        it = outbox.get(c, intent) if c is not None else None
        return it.status if it is not None else None
