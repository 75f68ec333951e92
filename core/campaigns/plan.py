"""Who gets what: the audience, the channel of choice, the holdout — and the dry run.

For one customer at one instant (:func:`decide`):

1. **audience** — in the campaign's segment (if it names one) and every condition holds
   (judged like a rule's conditions: :class:`~shopkeeper.rules.runtime.FactBuilder` and the
   reference semantics of :func:`shopkeeper.rules.matching.evaluate`);
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
from collections.abc import Iterator
from typing import Any, NamedTuple

from .. import audience, contact, outbox, paths
from ..audience import CardView
from ..conditions import All, Condition, evaluate
from ..conditions import fields as _fields_of
from ..customer import STATUS_ACTIVE, Customer, now_us
from ..rules.actions import TemplateValueMissing, render
from ..rules.runtime import FactBuilder
from .model import Campaign, MessageDef

try:  # CPython's own SHA-256: the same digest as OpenSSL's, half the cost on a few bytes (once per member)
    from _sha256 import sha256 as _sha256  # Python <= 3.11
except ImportError:  # pragma: no cover - 3.12 renamed it
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:
        _sha256 = hashlib.sha256

HOLDOUT = "holdout"
NOT_IN_AUDIENCE = "not_in_audience"
#: what a decision can end in besides a channel: the contact policy's codes plus these
EXCLUDED = (contact.NO_CONSENT, contact.UNDELIVERABLE, contact.SUPPRESSED_BOUNCE, contact.SUPPRESSED_COMPLAINT,
            contact.CAPPED, HOLDOUT, "render_failed")


class Decision(NamedTuple):
    """One customer's part in a campaign: ``channel`` when they get a message, else ``code``.
    ``deferred`` is set when the message waits (quiet hours where they live). A named tuple:
    the planner makes one per audience member."""

    customer_id: str
    channel: str = ""
    code: str = ""
    detail: str = ""
    deferred: str = ""

    @property
    def sends(self) -> bool:
        return bool(self.channel) and not self.code


def campaign_event(now: int) -> dict[str, Any]:
    """The event an audience's conditions are judged against (they name no event field)."""
    return {"type": "campaign", "channel": "", "ts": now, "data": {}, "touchpoint": "campaign"}


def in_audience(campaign: Campaign, customer: Customer, now: int, ev: dict[str, Any] | None = None) -> bool:
    """Whether ``customer`` is in the campaign's audience at ``now``; ``ev``: the
    :func:`campaign_event` of ``now``, when the caller judges many customers (made once)."""
    if customer.status != STATUS_ACTIVE:
        return False
    if campaign.segment and campaign.segment not in customer.segments:
        return False
    if not campaign.fields:
        return True
    msg = FactBuilder(customer, ev or campaign_event(now)).message(campaign.fields, campaign.numeric_fields,
                                                                  campaign.history)
    return evaluate(campaign.condition, msg)


def in_holdout(campaign: str, customer_id: str, percent: float) -> bool:
    """Stable: the same customer is in or out of a campaign's holdout in every run and process."""
    if percent <= 0:
        return False
    h = int.from_bytes(_sha256(f"{campaign}\0{customer_id}".encode()).digest()[:4], "big")
    return h % 10_000 < percent * 100


def queued_marketing(customer: Customer, policy: contact.ContactPolicy, priority: int = 0) -> int:
    """Outbound messages queued for the customer and not claimed yet that hold a cap slot against a
    campaign of ``priority``: those of equal or higher priority (a lower one gives its slot up at
    its claim, :func:`shopkeeper.outbox.reserved`)."""
    return outbox.reserved(customer, policy, priority, ties=True)


def capped_policy(policy: contact.ContactPolicy) -> bool:
    return policy.max_per_day is not None or policy.max_per_week is not None


def decide(campaign: Campaign, customer: Customer | CardView, now: int,
           policy: contact.ContactPolicy | None = None) -> Decision:
    """The decision for a customer (or their audience-index card, when the caps need nothing
    the card lacks) already known to be in the audience."""
    pol = policy or contact.current()
    planned = queued_marketing(customer, pol, campaign.priority) if capped_policy(pol) else 0  # type: ignore[arg-type]
    choice = contact.choose_channel(customer, campaign.channels, campaign.purpose, now=now, policy=pol,  # type: ignore[arg-type]
                                    planned=planned)
    if not choice.channel:
        detail = "; ".join(f"{ch}: {v.detail}" for ch, v in choice.passed_over) or choice.verdict.detail
        return Decision(customer.id, "", choice.verdict.code, detail)
    v = choice.verdict
    if not v.ok and v.code != contact.QUIET_HOURS:
        return Decision(customer.id, choice.channel, v.code, v.detail)
    if in_holdout(campaign.name, customer.id, campaign.holdout):
        return Decision(customer.id, choice.channel, HOLDOUT, f"in the {campaign.holdout:g}% holdout")
    return Decision(customer.id, choice.channel, "", "", "" if v.ok else v.code)


def card_part(campaign: Campaign) -> tuple[Condition, set[str]]:
    """The part of the audience's conditions an audience-index card answers: the conditions of
    the list (all must hold) whose every field is on the card. A customer whose card fails it is
    not in the audience, whatever the rest says — so the planner reads only the records of those
    who pass it. Conditions on history windows are never on the card."""
    items = campaign.condition.items if isinstance(campaign.condition, All) else (campaign.condition,)
    part = tuple(c for c in items if audience.answers(_fields_of(c)))
    return All(part), set().union(*(_fields_of(c) for c in part))


def render_text(text: str, customer: Customer) -> str:
    """A campaign text for one customer (``{trait.first_name|there}``): the rules' template syntax
    with the customer's values; :class:`TemplateValueMissing` when a placeholder has no value."""

    def lookup(path: str) -> Any:
        root, _, rest = path.partition(".")
        if root == "customer":
            return customer.id if rest == "id" else customer.hard.get(rest, customer.traits.get(rest))
        if root in ("fact", "score", "trait"):
            return paths.read(customer, paths.parse(path).key)  # the one accessor
        return None

    return str(render(text, lookup))


def intent_of(campaign: Campaign, msg: MessageDef, customer: Customer, run_id: str) -> tuple[str, dict[str, Any]]:
    """(template, payload) of the outbox intent carrying ``msg`` to ``customer``. The payload names
    the campaign, run and message (responses are attributed by them) and, for a text channel, the
    rendered text the SMS adapter sends."""
    payload: dict[str, Any] = {"campaign": campaign.name, "run": run_id, "message": msg.key,
                               "priority": campaign.priority}
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


def _needs_values(text: str) -> bool:
    """Whether ``text`` has a placeholder without a default (rendering it may fail per customer)."""
    try:
        render(text, lambda _path: None)
    except TemplateValueMissing:
        return True
    return False


class Judge:
    """Every audience member's :class:`Decision`, in customer-id order, read in the read
    transaction of ``folders``: what the dry run counts and the snapshot stores.

    With the audience index (``shopkeeper.audience``) it reads the segment's member set and
    the members' cards — buckets of dozens of customers — instead of every customer record;
    a customer's record is read only for what a card does not answer: caps for a customer
    already contacted or with queued messages (when the policy has caps), conditions on facts
    outside the card, a text whose placeholders have no default (to find ``render_failed``).
    For conditions the card cannot answer, the records read are bounded by the index: only
    active members of the segment whose card passes the conditions it does answer
    (:func:`card_part`). Without the index (a store not evolved yet) every customer record is
    read. ``evaluated`` counts the customers judged (those outside the segment are judged by
    the index)."""

    def __init__(self, folders: Any, campaign: Campaign, now: int, policy: contact.ContactPolicy | None = None,
                 stop: Any = None) -> None:
        self.f, self.campaign, self.now = folders, campaign, now
        self.policy = policy or contact.current()
        self.stop = stop
        self.evaluated = 0
        self.audience = 0
        self.stopped = False
        self.record_reads = 0
        self.texts = {m.channel: m.text for m in campaign.messages if m.text and _needs_values(m.text)}

    def _with_text(self, d: Decision, c: Any) -> Decision:
        text = self.texts.get(d.channel) if d.sends else None
        if text is None:
            return d
        try:
            render_text(text, c)
        except TemplateValueMissing as exc:
            return Decision(d.customer_id, d.channel, "render_failed", str(exc))
        return d

    def _gc(self, i: int) -> bool:
        if i % 5000 == 4999:
            self.f.conn.cacheGC()  # one long read transaction: keep the object cache at its size
            if self.stop is not None and self.stop.is_set():
                self.stopped = True
        return self.stopped

    def __iter__(self) -> Iterator[Decision]:
        f, campaign, now = self.f, self.campaign, self.now
        if audience.cards_of(f.root) is None:
            yield from self._records()
            return
        if not audience.answers(campaign.fields) or campaign.history:
            yield from self._members()
            return
        self.evaluated = audience.size_of(f.root)
        caps = capped_policy(self.policy)
        customers = f.customers
        orders = bool(campaign.fields & audience.CARD_FIELDS)  # the order facts, only when a condition names one
        segments = {f[3:] for f in campaign.fields if f.startswith("g__")}  # member sets the conditions name
        cards = audience.iter_cards(f.root, campaign.segment, orders, segments)
        ev = campaign_event(now)
        for i, (cid, card) in enumerate(cards):
            if self._gc(i):
                return
            if card[0] != STATUS_ACTIVE:
                continue
            view = audience.CardView(cid, card)
            if not in_audience(campaign, view, now, ev):  # type: ignore[arg-type]
                continue
            self.audience += 1
            c: Any = view
            if caps and view.contacted:
                c = customers[cid]
                self.record_reads += 1
            d = decide(campaign, c, now, self.policy)
            if d.sends and d.channel in self.texts:
                if c is view:
                    c = customers[cid]
                    self.record_reads += 1
                d = self._with_text(d, c)
            yield d

    def _members(self) -> Iterator[Decision]:
        """Conditions on facts outside the card: the records of the segment's active members
        whose card passes the part of the conditions it answers, and no others."""
        f, campaign, now = self.f, self.campaign, self.now
        self.evaluated = audience.size_of(f.root)
        cond, fields = card_part(campaign)
        numeric = campaign.numeric_fields & fields
        ev = campaign_event(now)
        customers = f.customers
        segments = {x[3:] for x in fields if x.startswith("g__")}  # member sets the card's part names
        cards = audience.iter_cards(f.root, campaign.segment, bool(fields & audience.CARD_FIELDS), segments)
        for i, (cid, card) in enumerate(cards):
            if self._gc(i):
                return
            if card[0] != STATUS_ACTIVE:
                continue
            if fields and not evaluate(cond, FactBuilder(CardView(cid, card), ev).message(fields, numeric, {})):  # type: ignore[arg-type]
                continue
            c = customers[cid]
            self.record_reads += 1
            if not in_audience(campaign, c, now, ev):
                continue
            self.audience += 1
            yield self._with_text(decide(campaign, c, now, self.policy), c)

    def _records(self) -> Iterator[Decision]:
        campaign, now = self.campaign, self.now
        for i, (_cid, c) in enumerate(self.f.customers.items()):
            self.evaluated += 1
            self.record_reads += 1
            if self._gc(i):
                return
            if not in_audience(campaign, c, now):
                continue
            self.audience += 1
            yield self._with_text(decide(campaign, c, now, self.policy), c)


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
    with store.read() as f:
        judge = Judge(f, campaign, now, policy)
        for d in judge:
            cid = d.customer_id
            if d.sends:
                by_channel[d.channel] += 1
                if d.deferred:
                    deferred[d.deferred] += 1
                continue
            excluded[d.code] += 1
            if len(samples[d.code]) < examples:
                samples[d.code].append({"customer": cid, "channel": d.channel, "detail": d.detail})
    return {"campaign": campaign.name, "version": campaign.version, "at": now, "evaluated": judge.evaluated,
            "audience": judge.audience, "record_reads": judge.record_reads,
            "recipients": sum(by_channel.values()), "by_channel": dict(by_channel),
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


__all__ = ["Decision", "Judge", "decide", "dry_run", "in_audience", "in_holdout", "intent_of", "render_text",
           "card_part", "render_dry_run", "HOLDOUT", "EXCLUDED"]
