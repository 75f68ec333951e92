"""The one contact policy: may this customer be put in front of this message or offer, now?

Every path that can reach a person asks :func:`check` — ``Decide`` (first offers *and*
follow-ups, :mod:`shopkeeper.analysis.offers`, and the hub for every plugin's actions), the
rules' ``send_message``, the outbox claim (consent is re-checked at the moment an adapter
claims an intent, so a consent withdrawn between queueing and sending suppresses the send),
and campaign sends. Keeping it in one place is what makes "never against consent" a property
of the hub instead of a promise every caller must keep.

A :class:`Verdict` says yes, or no with a machine-readable ``code`` (the ``REASONS`` below)
and a sentence for people. ``Decide`` returns the code to the caller; the outbox records it
on a suppressed intent; the rules' explain output can show it.

What is checked, in this order (the first "no" wins):

1. **internal channels** (``agent``: an alert on an agent's screen) are no contact: allowed;
2. **consent** for (channel, purpose): an explicit, current grant (``Customer.may_contact``) —
   required for every message, and for offers on an *outbound* channel (a web page or an agent
   talking to the customer is a conversation the customer started; email, SMS, outbound calls
   and push are not) → ``no_consent``;
3. **suppression** after a spam complaint on the channel (soft fact ``contact.suppressed``)
   → ``suppressed_complaint``; after hard bounces of every known address of the channel
   (soft fact ``undeliverable``) → ``suppressed_bounce``;
4. **quiet hours** on outbound channels, in the customer's own time zone (see
   :func:`customer_timezone`) → ``quiet_hours``. For a message this *defers*, it does not drop:
   the outbox gives the intent a "not before" time, the end of the window (:func:`quiet_until`),
   and delivers it then; one whose validity ends before that is suppressed
   ``quiet_hours_expired`` (``expired`` when it is past its validity at a claim);
5. **frequency caps** on outbound contacts: at most ``max_per_day`` / ``max_per_week``
   messages claimed for sending (all outbound channels; :func:`contact_log`: the claim time each
   outbox item keeps, and the older ``contact.log`` soft fact of :func:`record_contact`) → ``capped``.

Purposes in ``exempt_purposes`` (default ``service``: order confirmations, password resets)
skip quiet hours and caps; they still need consent. Offers have their own weekly cap and
control group in the offer catalogue; their reasons use the same codes (``capped``,
``control_group``).

The policy's values come from the offer catalogue's ``policy:`` section
(``rules/offers/*.yaml``, see docs/analysis.md), loaded and hot-reloaded by the analysis
plugin, which installs it here with :func:`configure`, with the hub config's ``contact:``
section on top (an operator's word wins: ``default_timezone``, ``quiet_hours: null``…);
without either, the defaults of :class:`ContactPolicy` apply.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .customer import Customer, now_us

# -- reason codes (stable: callers match on them) -------------------------------------------
NO_CONSENT = "no_consent"
QUIET_HOURS = "quiet_hours"
CAPPED = "capped"
CONTROL_GROUP = "control_group"
SUPPRESSED_BOUNCE = "suppressed_bounce"
SUPPRESSED_COMPLAINT = "suppressed_complaint"
DECLINED = "declined"  # the customer declined this offer recently
NOT_ELIGIBLE = "not_eligible"  # no offer's condition, channel or dates fit
BUDGET = "budget_spent"  # an offer's budget or total cap is used up
UNDELIVERABLE = "undeliverable"  # no address on the channel (no phone number for SMS, no email address)
QUIET_HOURS_EXPIRED = "quiet_hours_expired"  # deferred past quiet hours, its validity would end first
EXPIRED = "expired"  # a message past its validity when it is claimed
NO_CANDIDATES = "no_candidates"  # no plugin proposed an offer for this placement and channel
REASONS = (NO_CONSENT, QUIET_HOURS, CAPPED, CONTROL_GROUP, SUPPRESSED_BOUNCE, SUPPRESSED_COMPLAINT, DECLINED,
           NOT_ELIGIBLE, BUDGET, UNDELIVERABLE, QUIET_HOURS_EXPIRED, EXPIRED, NO_CANDIDATES)
#: soft fact: the channel the customer prefers (set by a touch point, an agent, a rule or a model)
PREFERRED_CHANNEL = "preferred_channel"

US_PER_DAY = 86_400 * 1_000_000
#: soft fact: recent outbound contacts, ``((ts, channel), ...)`` newest last (caps read it)
CONTACT_LOG = "contact.log"
#: soft fact: ``{channel: reason}`` — channels suppressed after a spam complaint
SUPPRESSED = "contact.suppressed"
#: soft fact: the customer's IANA time zone (``Europe/Berlin``), set by a touch point or a rule
TIMEZONE = "timezone"
#: which identity namespace holds a channel's addresses (for bounce suppression)
ADDRESS_NAMESPACE = {"email": "email", "sms": "phone", "phone_out": "phone", "whatsapp": "phone"}


class Verdict(NamedTuple):
    """The policy's answer: ``ok``, else ``code`` (one of ``REASONS``) and ``detail`` for people."""

    ok: bool
    code: str = ""
    detail: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "code": self.code, "detail": self.detail}


ALLOWED = Verdict(True)


@dataclass(frozen=True)
class ContactPolicy:
    """The contact rules in force. Build from a catalogue ``policy:`` mapping with :meth:`from_mapping`."""

    outbound_channels: frozenset[str] = frozenset({"email", "sms", "phone_out", "push"})
    internal_channels: frozenset[str] = frozenset({"agent"})
    quiet_hours: tuple[int, int] | None = (21, 8)  # [start, end) local hours; None = none
    default_timezone: str = "UTC"
    max_per_day: int | None = None  # outbound messages per customer and day (None = no cap)
    max_per_week: int | None = None
    exempt_purposes: frozenset[str] = frozenset({"service"})

    KEYS = ("outbound_channels", "internal_channels", "quiet_hours", "default_timezone", "max_messages_per_day",
            "max_messages_per_week", "exempt_purposes")

    @classmethod
    def from_mapping(cls, pol: dict[str, Any], where: str = "policy") -> ContactPolicy:
        """From a catalogue's ``policy:`` keys (unknown keys are left to the caller); raises
        ``ValueError`` naming the key on a bad value."""
        kw: dict[str, Any] = {}
        if "outbound_channels" in pol:
            kw["outbound_channels"] = frozenset(map(str, pol["outbound_channels"] or ()))
        if "internal_channels" in pol:
            kw["internal_channels"] = frozenset(map(str, pol["internal_channels"] or ()))
        if "exempt_purposes" in pol:
            kw["exempt_purposes"] = frozenset(map(str, pol["exempt_purposes"] or ()))
        if "quiet_hours" in pol:
            q = pol["quiet_hours"]
            if q:
                if (not isinstance(q, (list, tuple)) or len(q) != 2
                        or not all(isinstance(h, int) and 0 <= h <= 24 for h in q)):
                    raise ValueError(f"{where}: quiet_hours must be [start, end] hours 0-24, not {q!r}")
                kw["quiet_hours"] = (int(q[0]) % 24, int(q[1]) % 24)
            else:
                kw["quiet_hours"] = None
        if "default_timezone" in pol:
            tz = str(pol["default_timezone"])
            if zone(tz) is None:
                raise ValueError(f"{where}: default_timezone {tz!r} is not an IANA time zone (Europe/Berlin)")
            kw["default_timezone"] = tz
        for key, attr in (("max_messages_per_day", "max_per_day"), ("max_messages_per_week", "max_per_week")):
            if key in pol:
                v = pol[key]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise ValueError(f"{where}: {key} must be a whole number >= 0 (or null for no cap)")
                kw[attr] = v
        return cls(**kw)

    def is_outbound(self, channel: str) -> bool:
        return channel in self.outbound_channels

    def in_quiet_hours(self, hour: int) -> bool:
        q = self.quiet_hours
        if not q or q[0] == q[1]:
            return False
        start, end = q
        return (start <= hour or hour < end) if start > end else (start <= hour < end)


DEFAULT = ContactPolicy()
_lock = threading.Lock()
_current: ContactPolicy = DEFAULT
_keys: dict[str, Any] = {}  # the catalogue's policy keys
_overrides: dict[str, Any] = {}  # the hub config's ``contact:`` section


def policy_of(keys: dict[str, Any]) -> ContactPolicy:
    """The policy of a catalogue's ``policy:`` keys with the hub config's ``contact:`` on top."""
    return ContactPolicy.from_mapping({**keys, **_overrides})


def configure(keys: dict[str, Any] | None = None, *, overrides: dict[str, Any] | None = None) -> ContactPolicy:
    """Install the policy in force in this process: the analysis plugin passes the offer
    catalogue's ``policy:`` keys on each load or reload; the hub passes its config's ``contact:``
    section (which wins) when it starts."""
    global _current, _keys, _overrides
    with _lock:
        if keys is not None:
            _keys = {k: v for k, v in keys.items() if k in ContactPolicy.KEYS}
        if overrides is not None:
            _overrides = dict(overrides)
        _current = ContactPolicy.from_mapping({**_keys, **_overrides})
        return _current


def current() -> ContactPolicy:
    return _current


# -- time zones --------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=4096)
def _zone_of_phone(number: str) -> str | None:
    import phonenumbers
    from phonenumbers import timezone as pn_tz

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    zones = [z for z in pn_tz.time_zones_for_number(parsed) if zone(z) is not None]
    return zones[0] if len(zones) == 1 else None  # several zones (US, RU...): not known


@lru_cache(maxsize=512)
def _zone_of_country(country: str) -> str | None:
    import phonenumbers
    from phonenumbers import timezone as pn_tz

    example = phonenumbers.example_number(country.upper())
    if example is None:
        return None
    zones = [z for z in pn_tz.time_zones_for_number(example) if zone(z) is not None]
    return zones[0] if len(zones) == 1 else None


def customer_timezone(customer: Customer, policy: ContactPolicy | None = None) -> tuple[ZoneInfo, str]:
    """The customer's time zone and where it came from, first that answers:

    1. the soft fact ``timezone`` (an IANA name a touch point, agent or rule set) → ``"fact"``;
    2. a phone identity (E.164) whose number maps to exactly one zone (``phonenumbers``) → ``"phone"``;
    3. the trait ``country`` (ISO 3166 alpha-2) when that country has exactly one zone → ``"country"``;
    4. the policy's ``default_timezone`` (the hub's default, ``UTC`` unless configured) → ``"default"``.
    """
    pol = policy or _current
    f = customer.soft.get(TIMEZONE)
    if f is not None and isinstance(f.value, str) and zone(f.value) is not None:
        return zone(f.value), "fact"  # type: ignore[return-value]
    for number in customer.identities_in("phone"):
        name = _zone_of_phone(number if number.startswith("+") else "+" + number)
        if name:
            return zone(name), "phone"  # type: ignore[return-value]
    country = customer.traits.get("country") if customer.traits else None
    if isinstance(country, str) and len(country) == 2:
        name = _zone_of_country(country)
        if name:
            return zone(name), "country"  # type: ignore[return-value]
    return zone(pol.default_timezone) or zone("UTC"), "default"  # type: ignore[return-value]


def local_hour(customer: Customer, now: int, policy: ContactPolicy | None = None) -> int:
    tz, _src = customer_timezone(customer, policy)
    return datetime.fromtimestamp(now / 1e6, tz=UTC).astimezone(tz).hour


def quiet_until(customer: Customer, channel: str, purpose: str = "marketing", now: int | None = None,
                policy: ContactPolicy | None = None) -> int:
    """When the customer's quiet window holding back a message on ``channel`` for ``purpose`` at
    ``now`` ends (µs, the next ``quiet_hours`` end hour in their time zone); 0 when quiet hours
    do not hold it back (not in the window, an inbound channel, an exempt purpose). The outbox
    defers such a message to this time instead of dropping it."""
    pol = policy or _current
    q = pol.quiet_hours
    if not q or not pol.is_outbound(channel) or (purpose or "marketing") in pol.exempt_purposes:
        return 0
    now = now if now is not None else now_us()
    tz, _src = customer_timezone(customer, pol)
    local = datetime.fromtimestamp(now / 1e6, tz=UTC).astimezone(tz)
    if not pol.in_quiet_hours(local.hour):
        return 0
    day = local.date() + timedelta(days=1 if q[0] > q[1] and local.hour >= q[0] else 0)  # evening: ends tomorrow
    return int(datetime(day.year, day.month, day.day, q[1], tzinfo=tz).timestamp()) * 1_000_000


# -- contact memory ---------------------------------------------------------------------


def contact_log(customer: Customer) -> tuple[tuple[int, str], ...]:
    """(µs, channel) of the customer's outbound contacts, oldest first: the claims kept in the
    outbox's items (``OutboxItem.claimed_at``, written since the claim's fast path, so a claim
    rewrites the outbox tree and not the customer record) and the ``contact.log`` soft fact
    (claims before that, and :func:`record_contact`). Read only when a cap is configured."""
    f = customer.soft.get(CONTACT_LOG)
    old = f.value if f is not None else ()
    box = getattr(customer, "outbox", None)
    if box is None:
        return old
    claimed = [(at, it.channel) for it in box.values() if (at := getattr(it, "claimed_at", 0))]
    return tuple(sorted((*old, *claimed))) if claimed else old


def record_contact(customer: Customer, channel: str, at: int, keep: int = 64) -> None:
    """Remember one outbound contact (an outbox claim) for the caps; last ``keep``, 8 days."""
    log = tuple(e for e in contact_log(customer) if at - e[0] < 8 * US_PER_DAY)[-(keep - 1):]
    customer.set_soft_fact(CONTACT_LOG, log + ((at, channel),), "contact", at)


def suppress_channel(customer: Customer, channel: str, reason: str, source: str, at: int | None = None) -> None:
    """Suppress marketing on ``channel`` (a spam complaint): kept until consent is granted again."""
    f = customer.soft.get(SUPPRESSED)
    cur = dict(f.value) if f is not None else {}
    cur[channel] = reason
    customer.set_soft_fact(SUPPRESSED, cur, source, at)


def lift_suppression(customer: Customer, channel: str) -> None:
    f = customer.soft.get(SUPPRESSED)
    if f is not None and channel in f.value:
        cur = {k: v for k, v in f.value.items() if k != channel}
        if cur:
            customer.set_soft_fact(SUPPRESSED, cur, f.source, f.at)
        else:
            customer.clear_soft_fact(SUPPRESSED)


def _bounced_out(customer: Customer, channel: str) -> bool:
    ns = ADDRESS_NAMESPACE.get(channel)
    f = customer.soft.get("undeliverable")
    if ns is None or f is None:
        return False
    bad = set(f.value)
    addresses = customer.identities_in(ns)
    return bool(addresses) and all(f"{channel}:{a.strip().lower()}" in bad for a in addresses)


# -- the check --------------------------------------------------------------------------


def check(customer: Customer, channel: str, purpose: str = "marketing", *, now: int | None = None,
          policy: ContactPolicy | None = None, kind: str = "message", hour: int | None = None,
          count_caps: bool = True, timing: bool = True, planned: int = 0) -> Verdict:
    """May ``customer`` be contacted on ``channel`` for ``purpose`` now? See the module docstring.

    ``kind`` is ``message`` (the outbox: consent always required) or ``offer`` (Decide: consent
    and quiet hours only on outbound channels). ``hour`` overrides the customer's local hour
    (a touch point that knows it: ``context.local_hour``). ``count_caps=False`` leaves the
    frequency caps out (an offer is capped by the catalogue's weekly offer cap instead);
    ``timing=False`` leaves out quiet hours and caps (queueing a message: they are asked when it
    is claimed for sending). ``planned`` counts contacts already queued but not claimed yet
    (a campaign planning a send counts the customer's pending marketing intents against the caps).
    """
    pol = policy or _current
    v = _eligibility(customer, channel, purpose, pol, kind)
    if v is not None:
        return v
    if not timing:
        return ALLOWED
    return _timing(customer, channel, pol, now if now is not None else now_us(), hour, count_caps, planned)


def _eligibility(customer: Customer, channel: str, purpose: str, pol: ContactPolicy, kind: str) -> Verdict | None:
    """The part of :func:`check` that does not depend on the time: the verdict when it decides
    (``ALLOWED`` for internal channels, inbound offers and exempt purposes; a refusal), else None:
    eligible, and quiet hours and caps (:func:`_timing`) decide. Apart so that
    :func:`choose_channel` asks it once per channel, not again for the channel it picks."""
    if channel in pol.internal_channels:
        return ALLOWED
    if kind == "offer" and not pol.is_outbound(channel):
        return ALLOWED  # the customer is here (web page, agent on the phone): no consent asked
    purpose = purpose or "marketing"
    if not customer.may_contact(channel, purpose):
        c = customer.consent(channel, purpose)
        why = "withdrawn" if c is not None else "never given"
        return Verdict(False, NO_CONSENT, f"no {purpose} consent on {channel} ({why})")
    if purpose in pol.exempt_purposes:
        return ALLOWED
    sup = customer.soft.get(SUPPRESSED)
    if sup is not None and channel in sup.value:
        return Verdict(False, SUPPRESSED_COMPLAINT, f"{channel} suppressed: {sup.value[channel]}")
    if _bounced_out(customer, channel):
        return Verdict(False, SUPPRESSED_BOUNCE, f"every {channel} address of the customer bounced")
    return None


def _timing(customer: Customer, channel: str, pol: ContactPolicy, now: int, hour: int | None, count_caps: bool,
            planned: int) -> Verdict:
    """Quiet hours and frequency caps, for a customer :func:`_eligibility` let through."""
    outbound = pol.is_outbound(channel)
    if outbound and pol.quiet_hours:
        h = hour if hour is not None else local_hour(customer, now, pol)
        if pol.in_quiet_hours(int(h)):
            tz, src = customer_timezone(customer, pol)
            return Verdict(False, QUIET_HOURS, f"quiet hours {pol.quiet_hours[0]}:00-{pol.quiet_hours[1]}:00 "
                                               f"(local hour {h} in {tz.key}, from the {src})")
    if count_caps and outbound and (pol.max_per_day is not None or pol.max_per_week is not None):
        log = contact_log(customer)
        for cap, days, label in ((pol.max_per_day, 1, "day"), (pol.max_per_week, 7, "week")):
            if cap is None:
                continue
            n = sum(1 for ts, _ch in log if now - ts < days * US_PER_DAY) + planned
            if n >= cap:
                return Verdict(False, CAPPED, f"{n} outbound messages in the last {label} (at most {cap})")
    return ALLOWED


# -- channel of choice -----------------------------------------------------------------


class Choice(NamedTuple):
    """:func:`choose_channel`'s answer: the channel (``""`` when none may be used), the policy's
    verdict for it (quiet hours, caps), and why each channel tried before it was passed over."""

    channel: str
    verdict: Verdict
    passed_over: tuple[tuple[str, Verdict], ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.channel) and self.verdict.ok


def has_address(customer: Customer, channel: str) -> bool:
    """Whether the customer has somewhere to send ``channel`` to (channels without an address
    namespace — web, agent, push — always do)."""
    ns = ADDRESS_NAMESPACE.get(channel)
    return ns is None or bool(customer.identities_in(ns))


def choose_channel(customer: Customer, channels: list[str] | tuple[str, ...], purpose: str = "marketing", *,
                   now: int | None = None, policy: ContactPolicy | None = None, planned: int = 0) -> Choice:
    """The customer's channel of choice among ``channels`` (the sender's fallback order): their
    preferred channel (soft fact ``preferred_channel``) first when it is one of them, then the
    others in order; the first with an address, consent and no suppression (complaint, bounce)
    wins. Quiet hours and caps are then asked for that channel (they hold for every outbound
    channel alike, so falling back would not help). Nothing found: ``channel`` is ``""`` and
    ``verdict`` is the reason of the first channel tried (the one the customer would get)."""
    pol = policy or _current
    now = now if now is not None else now_us()
    order = list(dict.fromkeys(channels))
    pref = customer.soft.get(PREFERRED_CHANNEL)
    if pref is not None and pref.value in order:
        order.remove(pref.value)
        order.insert(0, pref.value)
    passed: list[tuple[str, Verdict]] = []
    for ch in order:
        kind = "message" if pol.is_outbound(ch) or ch in pol.internal_channels else "offer"
        if not has_address(customer, ch):
            ns = ADDRESS_NAMESPACE[ch]
            passed.append((ch, Verdict(False, UNDELIVERABLE, f"no {ns} address for {ch}")))
            continue
        v = _eligibility(customer, ch, purpose, pol, kind)  # check(timing=False), then timing once for the pick
        if v is None:
            v = _timing(customer, ch, pol, now, None, True, planned)
        elif not v.ok:
            passed.append((ch, v))
            continue
        return Choice(ch, v, tuple(passed))
    first = passed[0][1] if passed else Verdict(False, NOT_ELIGIBLE, "no channel to choose from")
    return Choice("", first, tuple(passed))


__all__ = ["ContactPolicy", "Verdict", "ALLOWED", "DEFAULT", "REASONS", "check", "configure", "current",
           "Choice", "choose_channel", "has_address", "UNDELIVERABLE", "PREFERRED_CHANNEL", "quiet_until",
           "QUIET_HOURS_EXPIRED", "EXPIRED",
           "customer_timezone", "local_hour", "policy_of", "record_contact", "contact_log", "suppress_channel",
           "lift_suppression", "NO_CONSENT", "QUIET_HOURS", "CAPPED", "CONTROL_GROUP", "SUPPRESSED_BOUNCE",
           "SUPPRESSED_COMPLAINT", "DECLINED", "NOT_ELIGIBLE", "BUDGET"]
