"""Test sends: one campaign's message to a few test recipients (a seed list), before or during a run.

Why: whoever writes a campaign wants to see the email or the text on a real phone before a
hundred thousand customers do. A test send is an outbox intent like any other — written by the
one writer, delivered by the same adapters, and asked the same contact policy at the claim
(consent, quiet hours, caps: a seed is a customer like any other) — with two differences:

* it belongs to **no run**: its id is ``ct.<campaign>.<token>`` and its payload names the
  campaign under ``campaign_test``, not ``campaign`` — so no report, funnel, uplift or run count
  ever includes it, and responses to it are not attributed to the campaign;
* the recipient is named, not selected: ``email:kim@example.com``, ``phone:+4915112345678`` or
  ``customer:<id>`` must be an existing customer (test addresses are customers with consent,
  not strangers); the audience, the segment and the holdout are not asked. The channel is the
  customer's channel of choice among the campaign's messages (or ``channel`` when given).
"""

from __future__ import annotations

import secrets
from typing import Any

from .. import contact, outbox
from ..customer import now_us
from ..rules.actions import TemplateValueMissing
from .model import Campaign
from .plan import intent_of

PREFIX = "ct."


def _recipient(folders: Any, to: str) -> Any:
    kind, sep, value = to.partition(":")
    if not sep or not value.strip():
        raise ValueError(f"{to!r}: name a test recipient as email:ADDRESS, phone:+E164 or customer:ID")
    value = value.strip()
    if kind == "customer":
        return folders.customer(value)
    if kind not in ("email", "phone"):
        raise ValueError(f"{to!r}: {kind!r} is not email, phone or customer")
    if kind == "email":
        value = value.lower()
    return folders.customer_by_identity(kind, value)


def send_test(campaign: Campaign, recipients: list[str], *, channel: str = "", by: str = "") -> Any:
    """Writer operation: one test intent per recipient; returns a row per recipient
    (``to``, ``customer_id``, ``channel``, ``intent`` — or ``error`` saying why none was written).
    Raises ``ValueError`` for a malformed recipient or a channel the campaign has no message for
    (nothing is written)."""
    if not recipients:
        raise ValueError("name at least one test recipient")
    if channel and campaign.message(channel) is None:
        raise ValueError(f"campaign {campaign.name!r} has no message for channel {channel!r} "
                         f"(it has: {', '.join(m.channel for m in campaign.messages)})")

    def op(folders: Any, changes: Any) -> list[dict[str, str]]:
        found = [(to, _recipient(folders, to)) for to in recipients]  # every recipient checked first
        rows: list[dict[str, str]] = []
        at = now_us()
        for to, c in found:
            if c is None:
                rows.append({"to": to, "error": "no such customer (a test recipient must be a customer)"})
                continue
            choice = contact.choose_channel(c, [channel] if channel else campaign.channels, campaign.purpose,
                                            now=at)
            if not choice.channel:
                rows.append({"to": to, "customer_id": c.id,
                             "error": f"{choice.verdict.code}: {choice.verdict.detail}"})
                continue
            msg = campaign.message(choice.channel)
            assert msg is not None
            try:
                template, payload = intent_of(campaign, msg, c, "")
            except TemplateValueMissing as exc:
                rows.append({"to": to, "customer_id": c.id, "channel": choice.channel,
                             "error": f"render_failed: {exc}"})
                continue
            for key in ("campaign", "run", "priority"):
                payload.pop(key, None)
            payload["campaign_test"] = campaign.name
            iid = f"{PREFIX}{campaign.name}.{secrets.token_hex(6)}"
            outbox.enqueue(folders, c, channel=choice.channel, template=template, purpose=campaign.purpose,
                           payload=payload, source=f"campaign-test:{campaign.name}" + (f" by {by}" if by else ""),
                           intent_id=iid, at=at, changes=changes)
            rows.append({"to": to, "customer_id": c.id, "channel": choice.channel, "intent": iid})
        return rows

    return op


__all__ = ["send_test", "PREFIX"]
