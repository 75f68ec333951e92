"""Who gets what: the audience, the channel of choice, the holdout — and the dry run.

For one customer at one instant (:func:`decide`):

1. **audience** — in the campaign's segment (if it names one) and every condition holds
   (judged like a rule's conditions: :class:`~shopkeeper.rules.runtime.FactBuilder` and the
   reference semantics of :func:`shopkeeper.rules_engine.evaluate`);
2. **channel of choice** — :func:`shopkeeper.contact.choose_channel` (the one contact policy):
   the preferred consented channel with an address, else the next in the campaign's order;
   none → ``no_consent``, ``undeliverable``, ``suppressed_*``; then caps across every campaign
   and rule (claimed contacts plus the customer's queued marketing intents) → ``capped``;
3. **holdout** — among the customers who would receive it, a stable hash of campaign and
   customer keeps ``holdout`` percent back (``holdout``): the control group of the uplift.
   Taking it from the reachable customers keeps both groups alike (a holdout drawn from the
   whole audience would compare reachable with partly unreachable customers).

Quiet hours do not exclude: the intent is written and the policy holds it at the claim (the
dry run counts them as ``quiet_hours`` under ``deferred``).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from .. import contact, outbox
from ..customer import STATUS_ACTIVE, Customer, now_us
from ..rules.actions import TemplateValueMissing, render
from ..rules.runtime import FactBuilder
from ..rules_engine import evaluate
from .model import Campaign, MessageDef

HOLDOUT = "holdout"
NOT_IN_AUDIENCE = "not_in_audience"
#: what a decision can end in besides a channel: the contact policy's codes plus these
EXCLUDED = (contact.NO_CONSENT, contact.UNDELIVERABLE, contact.SUPPRESSED_BOUNCE, contact.SUPPRESSED_COMPLAINT,
            contact.CAPPED, HOLDOUT, "render_failed")


@dataclass(frozen=True)
class Decision:
    """One customer's part in a campaign: ``channel`` when they get a message, else ``code``.
    ``deferred`` is set when the message waits (quiet hours where they live)."""

    customer_id: str
    channel: str = ""
    code: str = ""
    detail: str = ""
    deferred: str = ""

    @property
    def sends(self) -> bool:
        return bool(self.channel) and not self.code


def in_audience(campaign: Campaign, customer: Customer, now: int) -> bool:
    if customer.status != STATUS_ACTIVE:
        return False
    if campaign.segment and campaign.segment not in customer.segments:
        return False
    if not campaign.fields:
        return True
    ev = {"type": "campaign", "channel": "", "ts": now, "data": {}, "touchpoint": "campaign"}
    msg = FactBuilder(customer, ev).message(campaign.fields, campaign.numeric_fields, campaign.history)
    return evaluate(campaign.condition, msg)


def in_holdout(campaign: str, customer_id: str, percent: float) -> bool:
    """Stable: the same customer is in or out of a campaign's holdout in every run and process."""
    if percent <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(f"{campaign}\0{customer_id}".encode()).digest()[:4], "big")
    return h % 10_000 < percent * 100


def queued_marketing(customer: Customer, policy: contact.ContactPolicy) -> int:
    """Outbound messages queued for the customer and not claimed yet (they count against the caps)."""
    box = outbox.outbox_of(customer)
    if box is None:
        return 0
    return sum(1 for it in box.values() if it.status == outbox.PENDING and policy.is_outbound(it.channel)
               and it.purpose not in policy.exempt_purposes)


def decide(campaign: Campaign, customer: Customer, now: int, policy: contact.ContactPolicy | None = None) -> Decision:
    """The decision for a customer already known to be in the audience."""
    pol = policy or contact.current()
    choice = contact.choose_channel(customer, campaign.channels, campaign.purpose, now=now, policy=pol,
                                    planned=queued_marketing(customer, pol))
    if not choice.channel:
        detail = "; ".join(f"{ch}: {v.detail}" for ch, v in choice.passed_over) or choice.verdict.detail
        return Decision(customer.id, "", choice.verdict.code, detail)
    v = choice.verdict
    if not v and v.code != contact.QUIET_HOURS:
        return Decision(customer.id, choice.channel, v.code, v.detail)
    if in_holdout(campaign.name, customer.id, campaign.holdout):
        return Decision(customer.id, choice.channel, HOLDOUT, f"in the {campaign.holdout:g}% holdout")
    return Decision(customer.id, choice.channel, "", "", v.code if not v else "")


def render_text(text: str, customer: Customer) -> str:
    """A campaign text for one customer (``{trait.first_name|there}``): the rules' template syntax
    with the customer's values; :class:`TemplateValueMissing` when a placeholder has no value."""

    def lookup(path: str) -> Any:
        root, _, rest = path.partition(".")
        if root == "customer":
            return customer.id if rest == "id" else customer.hard.get(rest, customer.traits.get(rest))
        if root in ("fact", "score"):
            f = (customer.soft if root == "fact" else customer.scores).get(rest)
            return f.value if f is not None else None
        if root == "trait":
            return customer.traits.get(rest)
        return None

    return str(render(text, lookup))


def intent_of(campaign: Campaign, msg: MessageDef, customer: Customer, run_id: str) -> tuple[str, dict[str, Any]]:
    """(template, payload) of the outbox intent carrying ``msg`` to ``customer``. The payload names
    the campaign, run and message (responses are attributed by them) and, for a text channel, the
    rendered text the SMS adapter sends."""
    payload: dict[str, Any] = {"campaign": campaign.name, "run": run_id, "message": msg.key}
    if campaign.offer:
        payload["offer"] = campaign.offer
    if msg.subject:
        payload["subject"] = msg.subject
    if msg.text:
        payload["text"] = render_text(msg.text, customer)
    if msg.placement:
        payload["placement"] = msg.placement
    if msg.queue:
        payload["queue"] = msg.queue
    return msg.template or f"campaign:{campaign.name}", payload


def dry_run(store: Any, campaign: Campaign, *, now: int | None = None, examples: int = 3,
            policy: contact.ContactPolicy | None = None) -> dict[str, Any]:
    """How many would receive what on which channel, and why the others are excluded — read in
    one read transaction (a snapshot of the store): nothing is written, no connection commits."""
    now = now if now is not None else now_us()
    t0 = time.perf_counter()
    by_channel: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    deferred: Counter[str] = Counter()
    samples: dict[str, list[dict[str, str]]] = defaultdict(list)
    evaluated = audience = 0
    with store.read() as f:
        for cid, c in f.customers.items():
            evaluated += 1
            if evaluated % 5000 == 0:
                f.conn.cacheGC()  # one long read transaction: keep the object cache at its size
            if not in_audience(campaign, c, now):
                continue
            audience += 1
            d = decide(campaign, c, now, policy)
            if d.sends:
                try:
                    msg = campaign.message(d.channel)
                    if msg is not None and msg.text:
                        render_text(msg.text, c)
                except TemplateValueMissing as exc:
                    d = Decision(cid, d.channel, "render_failed", str(exc))
            if d.sends:
                by_channel[d.channel] += 1
                if d.deferred:
                    deferred[d.deferred] += 1
                continue
            excluded[d.code] += 1
            if len(samples[d.code]) < examples:
                samples[d.code].append({"customer": cid, "channel": d.channel, "detail": d.detail})
    return {"campaign": campaign.name, "version": campaign.version, "at": now, "evaluated": evaluated,
            "audience": audience, "recipients": sum(by_channel.values()), "by_channel": dict(by_channel),
            "excluded": dict(excluded), "deferred": dict(deferred), "examples": dict(samples),
            "messages": {m.channel: m.key for m in campaign.messages},
            "seconds": round(time.perf_counter() - t0, 3)}


def render_dry_run(r: dict[str, Any]) -> str:
    lines = [f"campaign {r['campaign']} (version {r['version']}): {r['evaluated']:,} customers evaluated, "
             f"{r['audience']:,} in the audience, {r['recipients']:,} would receive a message"]
    for ch, n in sorted(r["by_channel"].items(), key=lambda x: -x[1]):
        lines.append(f"  {ch:<12} {n:>9,}  {r['messages'].get(ch, '')}")
    if r["deferred"]:
        for code, n in r["deferred"].items():
            lines.append(f"  deferred     {n:>9,}  {code} (sent when they end)")
    if r["excluded"]:
        lines.append("excluded:")
        for code, n in sorted(r["excluded"].items(), key=lambda x: -x[1]):
            ex = r["examples"].get(code) or []
            hint = f"  e.g. {ex[0]['customer']}: {ex[0]['detail']}" if ex else ""
            lines.append(f"  {code:<22} {n:>9,}{hint}")
    return "\n".join(lines)


__all__ = ["Decision", "decide", "dry_run", "in_audience", "in_holdout", "intent_of", "render_text",
           "render_dry_run", "HOLDOUT", "EXCLUDED"]
