"""The offer catalogue and next-best-action arbitration behind ``Decide``.

Offers live in ``rules/offers/*.yaml`` (or are added through :meth:`Catalogue.add`)::

    policy:                       # contact policy, one per catalogue (later files override keys)
      max_offers_per_week: 3      # offers shown to one customer in 7 days, all channels
      suppress_days_after_decline: 30
      quiet_hours: [21, 8]        # no outbound offers or messages 21:00-08:00, customer's local time
      outbound_channels: [email, sms, phone_out]
      default_timezone: UTC       # when the customer's own zone is unknown (see shopkeeper.contact)
      max_messages_per_day: 2     # outbound outbox messages per customer (null: no cap)
      max_messages_per_week: 5
      exempt_purposes: [service]  # no quiet hours or caps for these (consent still required)
      control_percent: 10         # stable hash-based hold-out group for measuring uplift
      learn_segments: [vip, lapsed]   # propensities are learned per offer × first of these
      follow_up_days: 7           # an offer shown on one channel is followed up on the next
    offers:
      - id: free_shipping
        title: Free shipping on your next order
        channels: [web, email, phone]
        placements: ["*"]
        eligible: hard.orders >= 1 and spend(days=365) > 50
        valid_from: 2024-01-01
        valid_until: 2030-12-31
        value: 5.0                # expected margin if accepted
        weight: 1.0               # business weight
        budget: 50000             # money: value × accepted may not exceed it
        cap_total: 1000000        # times shown, everyone
        cap_per_customer: 3       # times shown to one customer

The ``policy:`` section is also the hub's contact policy for messages (:mod:`shopkeeper.contact`):
the analysis plugin installs it, so the outbox claim and the rules' ``send_message`` obey the
same quiet hours, consent and caps as ``Decide``.

Arbitration, per request: **control group** (hash of the customer id: no offer, reason given)
→ **follow-up** of the offer last shown (if still valid, applicable and suitable — the contact
policy applies to follow-ups too; on an outbound channel a follow-up is a new contact, counted
and recorded) → for every offer: **eligibility** (validity dates, condition) →
**applicability** (channel, placement) → **suitability** (:func:`shopkeeper.contact.check` —
consent on outbound channels, complaint/bounce suppression, quiet hours in the customer's time
zone — then the weekly offer cap, suppression after a decline, per-customer cap, budget and
total cap) → **ranking** by a Thompson sample of P(accept) × value × weight. Every returned
action carries its reason; an empty answer has a machine-readable one
(:func:`decide_explained`, ``DecideResponse.no_offer_reason`` through the hub).

What was offered is recorded in the customer as an ``offer_shown`` interaction (the analysis
processor keeps ``soft['offer.current']`` and a short offer log): through the hub, the hub
records the actions marked ``"record": True`` itself (``shopkeeper.engine.decisions``, with a
``decision_id`` that de-duplicates a touch point's own report of the same decision); outside
the hub, :func:`decide_and_record` records it (and counts it as shown) in the same step.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .. import contact
from ..contact import ContactPolicy, Verdict
from ..customer import Customer, now_us
from ..offerlog import current_offer, first_report, offer_log, remember_outcome  # noqa: F401 - re-exported
from .conditions import Condition, ConditionError, DeprecationNotes, Env, compile_all, yaml_documents
from .propensity import ALL, NONE, PosteriorCache, record
from .state import count, customer_root, folder

US_PER_DAY = 86_400 * 1_000_000
DEFAULT_POLICY: dict[str, Any] = {
    "max_offers_per_week": 3,
    "suppress_days_after_decline": 30,
    "quiet_hours": [21, 8],
    "outbound_channels": ["email", "sms", "phone_out", "push"],
    "control_percent": 10,
    "control_salt": "shopkeeper-nba",
    "learn_segments": [],
    "follow_up_days": 7,
    "max_actions": 1,
    # the rest of the contact policy (shopkeeper.contact), for messages as well as offers
    "internal_channels": ["agent"],
    "default_timezone": "UTC",
    "max_messages_per_day": None,
    "max_messages_per_week": None,
    "exempt_purposes": ["service"],
}


@dataclass
class Offer:
    id: str
    title: str = ""
    channels: frozenset[str] = frozenset({"*"})
    placements: frozenset[str] = frozenset({"*"})
    eligible: Condition | None = None
    valid_from: int | None = None
    valid_until: int | None = None
    value: float = 1.0
    weight: float = 1.0
    budget: float | None = None
    cap_total: int | None = None
    cap_per_customer: int | None = None
    consent_purpose: str = "marketing"
    payload: dict[str, Any] = field(default_factory=dict)
    source: str = "api"

    def applies_to(self, channel: str, placement: str) -> bool:
        return (("*" in self.channels or channel in self.channels)
                and ("*" in self.placements or placement in self.placements))

    def valid_at(self, now: int) -> bool:
        return ((self.valid_from is None or now >= self.valid_from)
                and (self.valid_until is None or now < self.valid_until))


def _ts(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return int((v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp() * 1e6)
    if isinstance(v, date):
        return int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp() * 1e6)
    try:
        return _ts(datetime.fromisoformat(str(v)), where)
    except ValueError:
        raise ConditionError(f"{where}: {v!r} is not a date (YYYY-MM-DD)") from None


def make_offer(d: dict[str, Any], where: str = "api") -> Offer:
    import re

    if not isinstance(d, dict) or "id" not in d:
        raise ConditionError(f"{where}: an offer needs an 'id'")
    oid = d["id"]
    if not isinstance(oid, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", oid):
        raise ConditionError(f"{where}: offer id {oid!r} must be a short token")
    known = {"id", "title", "channels", "placements", "eligible", "valid_from", "valid_until", "value", "weight",
             "budget", "cap_total", "cap_per_customer", "consent_purpose", "payload"}
    unknown = set(d) - known
    if unknown:
        raise ConditionError(f"{where}: offer {oid}: unknown keys {sorted(unknown)} (known: {sorted(known)})")

    def num(k: str, default: Any) -> Any:
        v = d.get(k, default)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ConditionError(f"{where}: offer {oid}: {k} must be a non-negative number")
        return v

    return Offer(
        id=oid, title=str(d.get("title", "")),
        channels=frozenset(d.get("channels") or ["*"]), placements=frozenset(d.get("placements") or ["*"]),
        eligible=compile_all(d.get("eligible"), f"{where}: offer {oid}: eligible"),
        valid_from=_ts(d.get("valid_from"), f"{where}: offer {oid}: valid_from"),
        valid_until=_ts(d.get("valid_until"), f"{where}: offer {oid}: valid_until"),
        value=float(num("value", 1.0)), weight=float(num("weight", 1.0)), budget=num("budget", None),
        cap_total=num("cap_total", None), cap_per_customer=num("cap_per_customer", None),
        consent_purpose=str(d.get("consent_purpose", "marketing")), payload=dict(d.get("payload") or {}),
        source=where,
    )


class Catalogue:
    """The offers and the contact policy in force."""

    def __init__(self, offers: list[Offer] = (), policy: dict[str, Any] | None = None) -> None:  # type: ignore[assignment]
        self.offers: dict[str, Offer] = {o.id: o for o in offers}
        self.policy = {**DEFAULT_POLICY, **(policy or {})}
        self.posteriors = PosteriorCache()
        self._applicable: dict[tuple[str, str], list[Offer]] = {}
        self._contact: tuple[Any, ContactPolicy] | None = None
        self.warnings: list[str] = []  # old spellings in the files, with file:line (segments check)

    @property
    def contact(self) -> ContactPolicy:
        """The contact policy of this catalogue's ``policy:`` keys (rebuilt if they were changed)."""
        key = repr([self.policy.get(k) for k in ContactPolicy.KEYS]) + repr(contact._overrides)
        if self._contact is None or self._contact[0] != key:
            self._contact = (key, contact.policy_of(self.policy))
        return self._contact[1]

    def add(self, d: dict[str, Any] | Offer) -> Offer:
        o = d if isinstance(d, Offer) else make_offer(d)
        self.offers[o.id] = o
        self._applicable = {}
        return o

    def remove(self, offer_id: str) -> None:
        self.offers.pop(offer_id, None)
        self._applicable = {}

    def applicable(self, channel: str, placement: str) -> list[Offer]:
        """The offers for this channel and placement, in catalogue order (worked out once per
        pair and kept until the catalogue changes, instead of on every ``Decide``)."""
        key = (channel, placement)
        got = self._applicable.get(key)
        if got is None:
            got = [o for o in self.offers.values() if o.applies_to(channel, placement)]
            if len(self._applicable) < 10_000:
                self._applicable[key] = got
        return got


def load_catalogue(directory: str | Path) -> Catalogue:
    offers: list[Offer] = []
    policy: dict[str, Any] = {}
    seen: dict[str, str] = {}
    notes = DeprecationNotes()
    for path, doc in yaml_documents(directory):
        if not isinstance(doc, dict):
            raise ConditionError(f"{path}: expected a mapping with 'offers:' and/or 'policy:'")
        pol = doc.get("policy") or {}
        unknown = set(pol) - set(DEFAULT_POLICY)
        if unknown:
            raise ConditionError(f"{path}: policy: unknown keys {sorted(unknown)}")
        try:
            ContactPolicy.from_mapping(pol, f"{path}: policy")
        except ValueError as exc:
            raise ConditionError(str(exc)) from None
        policy.update(pol)
        for i, item in enumerate(doc.get("offers") or []):
            o = make_offer(item, f"{path}: offers[{i}]")
            if o.id in seen:
                raise ConditionError(f"{path}: offers[{i}]: offer {o.id!r} is already defined in {seen[o.id]}")
            seen[o.id] = str(path)
            offers.append(o)
            notes.add(path, o.eligible)
    out = Catalogue(offers, policy)
    out.warnings = notes.notes
    return out


# -- per-customer offer memory (kept by the processor from outcome events) ---------------


# ``offer_log``, ``remember_outcome`` and ``first_report`` live in ``shopkeeper.offerlog`` (imported
# above): the offer memory is the customer's record and Decide's unfolded offer records together.


#: The action a control-group decision answers with (no offer).
CONTROL_OFFER = "nba-control"
#: Soft fact the hub sets once, at a control-group customer's first decision: when the uplift
#: report starts counting their outcomes (a treated customer's first ``offer_shown`` says it).
FIRST_CONTROL_DECISION = "nba.control_since"


def in_control_group(customer_id: str, percent: float, salt: str) -> bool:
    if percent <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()[:8], "big")
    return (h % 10_000) < percent * 100


def learn_segment(c: Customer, policy: dict[str, Any]) -> str:
    for s in policy.get("learn_segments") or ():
        if s in c.segments:
            return s
    return NONE


# -- Decide ------------------------------------------------------------------------------


def decide(catalogue: Catalogue, customer: Customer, touchpoint: str, placement: str,
           context: dict[str, Any] | None = None, now: int | None = None,
           rng: random.Random | None = None, explain: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Next best action(s) for one customer: a list of action dicts with reasons (best first).

    ``explain``, when given, receives one ``{"offer", "outcome", "why", "code"}`` per catalogue
    offer (``chosen`` or ``excluded``/``ranked_lower``; ``code`` is the contact policy's reason
    code when it excluded the offer): ``shopkeeper offers decide --explain``."""
    return decide_explained(catalogue, customer, touchpoint, placement, context, now, rng, explain)[0]


def decide_explained(catalogue: Catalogue, customer: Customer, touchpoint: str, placement: str,
                     context: dict[str, Any] | None = None, now: int | None = None,
                     rng: random.Random | None = None, explain: list[dict[str, Any]] | None = None,
                     ) -> tuple[list[dict[str, Any]], Verdict]:
    """:func:`decide`, and when it offers nothing, why: a :class:`shopkeeper.contact.Verdict`
    with a machine-readable ``code`` (``control_group``, ``capped``, ``no_consent``,
    ``quiet_hours``, ``declined``, ``not_eligible``…). Every offer — a first offer or a
    follow-up — passes :func:`shopkeeper.contact.check` for this channel first."""
    context = context or {}

    def why(o: Offer | str, outcome: str, reason: str, code: str = "") -> None:
        if explain is not None:
            explain.append({"offer": o if isinstance(o, str) else o.id, "outcome": outcome, "why": reason,
                            "code": code})

    def all_offers(outcome: str, reason: str, but: str | None = None, code: str = "") -> None:
        for oid in catalogue.offers:
            if oid != but:
                why(oid, outcome, reason, code)

    pol = catalogue.policy
    cpol = catalogue.contact
    now = now if now is not None else int(context.get("now_us") or now_us())
    channel = str(context.get("channel") or touchpoint or "web")
    rng = rng or random
    if in_control_group(customer.id, float(pol["control_percent"]), str(pol["control_salt"])):
        all_offers("excluded", f"the customer is in the control group ({pol['control_percent']}% hold-out)",
                   code=contact.CONTROL_GROUP)
        text = (f"control group ({pol['control_percent']}% hold-out, stable per customer): "
                "no offer, to measure uplift")
        # "record": the hub notes the customer's first control decision (soft fact nba.control_since,
        # no interaction), so the uplift report knows when to start counting their outcomes
        return [{"kind": "message", "id": CONTROL_OFFER, "score": 0.0, "record": True, "reason": text,
                 "reason_code": contact.CONTROL_GROUP, "payload": {"group": "control"}}], \
            Verdict(False, contact.CONTROL_GROUP, text)
    root = customer_root(customer)
    outcomes = folder(root, "outcomes") if root is not None else None
    env = Env(customer, now, {"placement": placement, "channel": channel, "touchpoint": touchpoint,
                              "context": context})
    log = offer_log(customer)
    week_ago = now - 7 * US_PER_DAY
    shown_week = sum(1 for ts, _o, k in log if k == "shown" and ts >= week_ago)
    suppress = pol["suppress_days_after_decline"] * US_PER_DAY
    declined = {o for ts, o, k in log if k == "declined" and now - ts < suppress}
    shown_by_offer: dict[str, int] = {}
    for _ts, o, k in log:
        if k == "shown":
            shown_by_offer[o] = shown_by_offer.get(o, 0) + 1
    outbound = cpol.is_outbound(channel)
    hour = context.get("local_hour")
    seg = learn_segment(customer, pol)
    verdicts: dict[str, Verdict] = {}  # the contact policy's answer per consent purpose, once per decision

    def suitable(o: Offer, follow_up: bool = False) -> Verdict:
        """May the offer be made now (the contact policy, then the offer's own limits)?"""
        v = verdicts.get(o.consent_purpose)
        if v is None:
            v = verdicts[o.consent_purpose] = contact.check(
                customer, channel, o.consent_purpose, now=now, policy=cpol, kind="offer",
                hour=int(hour) if hour is not None else None, count_caps=False)
        if not v:
            return v
        if o.id in declined:
            return Verdict(False, contact.DECLINED, f"declined within {pol['suppress_days_after_decline']} days")
        if not follow_up and o.cap_per_customer is not None and shown_by_offer.get(o.id, 0) >= o.cap_per_customer:
            return Verdict(False, contact.CAPPED, f"shown {o.cap_per_customer} times already")
        if o.cap_total is not None and count(outcomes, (o.id, ALL, "shown")) >= o.cap_total:
            return Verdict(False, contact.BUDGET, "total cap reached")
        if o.budget is not None and count(outcomes, (o.id, ALL, "accepted")) * o.value >= o.budget:
            return Verdict(False, contact.BUDGET, "budget spent")
        return contact.ALLOWED

    week_cap = Verdict(False, contact.CAPPED, f"contact policy: {shown_week} offers shown in 7 days "
                                              f"(at most {pol['max_offers_per_week']})")
    capped = shown_week >= pol["max_offers_per_week"]
    # follow-up: the offer this customer was last shown, on whatever channel. On an outbound
    # channel it is a new contact like any other: counted against the weekly cap and recorded.
    c = current_offer(customer)  # the record's, or an offer record not folded into it yet
    first_refusal: Verdict | None = None
    if c is not None:
        o = catalogue.offers.get(c.get("offer"))
        age = now - int(c.get("at", 0))
        if (o is not None and age < pol["follow_up_days"] * US_PER_DAY and o.valid_at(now)
                and o.applies_to(channel, placement) and (o.eligible is None or o.eligible(env))):
            why_not = suitable(o, follow_up=True)
            if why_not and outbound and capped:
                why_not = week_cap
            if why_not:
                a, b = catalogue.posteriors.get(outcomes, o.id, seg)
                why(o, "chosen", "follow-up of the offer last shown, not yet answered")
                all_offers("excluded", f"a follow-up of {o.id} comes first", but=o.id)
                action = {"kind": "offer", "id": o.id, "score": 1e9,
                          "reason": f"follow-up: shown on {c.get('channel')}/{c.get('placement')} "
                                    f"{age / 3.6e9:.1f} h ago, not yet answered",
                          "payload": {**o.payload, "title": o.title, "value": o.value, "p_accept": a / (a + b),
                                      "group": "treatment", "follow_up": True}}
                if outbound:
                    action["record"] = True  # a new contact: the caps must see it
                return [action], contact.ALLOWED
            first_refusal = why_not

    if capped:
        all_offers("excluded", week_cap.detail, code=contact.CAPPED)
        return [{"kind": "message", "id": "nba-rest", "score": 0.0, "reason": week_cap.detail,
                 "reason_code": contact.CAPPED, "payload": {"group": "treatment"}}], week_cap
    ranked: list[tuple[float, Offer, float, float]] = []
    eligible: dict[str, bool] = {}  # offers often share a condition: evaluate each once per decision
    posteriors = catalogue.posteriors
    applicable = catalogue.applicable(channel, placement)
    if explain is not None:
        for o in catalogue.offers.values():
            if o not in applicable:
                why(o, "excluded", f"not for channel {channel} / placement {placement} (channels "
                                   f"{sorted(o.channels)}, placements {sorted(o.placements)})")
    for o in applicable:
        if not o.valid_at(now):
            why(o, "excluded", "outside its valid_from/valid_until")
            continue
        cond = o.eligible
        if cond is not None:
            ok = eligible.get(cond.source)
            if ok is None:
                ok = eligible[cond.source] = cond(env)
            if not ok:
                why(o, "excluded", f"not eligible: {cond.source}")
                continue
        v = suitable(o)
        if not v:
            why(o, "excluded", v.detail, v.code)
            if first_refusal is None:
                first_refusal = v
            continue
        a, b = posteriors.get(outcomes, o.id, seg)
        sample = rng.betavariate(a, b)
        ranked.append((sample * o.value * o.weight, o, sample, a / (a + b)))
    ranked.sort(key=lambda r: -r[0])
    out = []
    top = int(context.get("max_actions") or pol["max_actions"])
    for i, (score, o, sample, _mean) in enumerate(ranked):
        if i < top:
            why(o, "chosen", f"ranked {i + 1} of {len(ranked)} suitable offers: sampled P(accept) {sample:.3f} × "
                             f"value {o.value:g} × weight {o.weight:g} = {score:.3f}")
        else:
            why(o, "ranked_lower", f"ranked {i + 1} of {len(ranked)} ({score:.3f}); {top} shown at most")
    for score, o, sample, mean in ranked[:top]:
        out.append({"kind": "offer", "id": o.id, "score": score, "record": True,
                    "reason": f"P(accept)≈{mean:.3f} (sampled {sample:.3f}, segment {seg}) × value {o.value:g} "
                              f"× weight {o.weight:g}; best of {len(ranked)} suitable offers",
                    "payload": {**o.payload, "title": o.title, "value": o.value, "p_accept": mean,
                                "group": "treatment"}})
    if out:
        return out, contact.ALLOWED
    if first_refusal is not None:
        return [], first_refusal
    return [], Verdict(False, contact.NOT_ELIGIBLE,
                       f"no offer is valid, eligible and applicable on {channel}/{placement}")


def decide_and_record(store: Any, catalogue: Catalogue, customer_id: str, touchpoint: str, placement: str,
                      context: dict[str, Any] | None = None, now: int | None = None) -> list[dict[str, Any]]:
    """Decide and record the chosen offer in the customer in one transaction, for callers that do
    not report ``offer_shown`` themselves (the next channel then follows the same offer up).

    Through the engine's offline writer: for offline tools and tests on a store no hub holds. In
    a hub, ``Decide`` records offers through the writer (``shopkeeper.engine.decisions``)."""
    from ..engine.offline import OfflineWriter

    now = now if now is not None else now_us()

    def op(f: Any, _changes: Any) -> list[dict[str, Any]]:
        c = f.customer(customer_id)
        if c is None:
            raise KeyError(customer_id)
        actions = decide(catalogue, c, touchpoint, placement, context, now)
        channel = str((context or {}).get("channel") or touchpoint or "web")
        outcomes = folder(f, "outcomes")
        for a in actions:
            if a["kind"] == "offer" and a.get("record"):
                remember_outcome(c, a["id"], "shown", now, channel, placement, "decide")
                if outcomes is not None:
                    record(outcomes, a["id"], learn_segment(c, catalogue.policy), "shown")
        return actions

    return OfflineWriter(store, note="shopkeeper: decide").apply(op)
