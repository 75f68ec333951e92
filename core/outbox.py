"""The outbox: messages the hub has decided to send, committed *before* anything is sent.

"Never a double send, never a lost one" rests on one rule: the intent to send is committed
in the customer first, then delivered, then marked sent. An intent lives in the
customer's own ``outbox`` (an ``OOBTree`` intent id -> :class:`OutboxItem`, so a busy
customer re-pickles one bucket, not the whole customer) and, while not final, in the
store-wide ``outbox`` index (``OOBTree`` (channel, intent id) -> customer id) that a
restarted adapter scans.

Life of an intent (every step is a committed transaction). Every intent ends in exactly one
of ``sent``, ``failed`` (with the reason), ``suppressed`` (with the contact policy's reason
code) or ``cancelled``::

    pending --message_dispatch(message_id)--> sending --email_sent / message_sent--> sent
      | ^                                       |  |--message_failed(status=failed)--> failed
      | '---message_failed(status=retry)--------'  '--message_failed(status=retry), attempts used up--> failed
      |--claim refused by the contact policy (consent withdrawn, complaint, bounce, cap)--> suppressed
      |--claim or enqueue in the customer's quiet hours--> pending with not_before = the window's end
      |    (claims and pending lists skip it until then; ends suppressed quiet_hours_expired
      |     when its validity, expires_at, ends first)
      |--message_failed(status=suppressed)--> suppressed
      '--message_cancelled--> cancelled

Writers:

* **rules and plugins inside a transaction** call :func:`enqueue` (the rules engine's
  "send a message" action does exactly this) — the intent commits with the event that
  caused it, or not at all;
* **anyone outside** records a ``message_request`` event (channel = the message's channel,
  ``data.template``, ``data.purpose``, ``data.intent`` optional, anything else = payload);
* **channel adapters** move an intent along by recording the events above
  (:data:`TRANSITION_TYPES`) like any other event: they take the one apply loop — identity
  resolution, the contact history, the processors — so a remote adapter (gRPC) and an
  in-process one do exactly the same thing. There is no second path for bookkeeping.

The contract a channel adapter builds on (the delivery helper does):

* a ``message_dispatch`` is the *claim*. It is **refused with FAILED_PRECONDITION and changes
  nothing** when it names an intent that is not the customer's its identities resolve to (or
  no intent), when the intent is final, or when it is held under another Message-ID;
* at the claim the **contact policy** (:func:`shopkeeper.contact.check`) is asked again: if
  consent was withdrawn since the intent was queued (or the customer complained, every
  address bounced, the cap is reached) the intent ends ``suppressed`` with the reason code,
  and the claim is reported rejected (FAILED_PRECONDITION, field ``consent`` or
  ``contact_policy``): do not send;
* **quiet hours defer, they do not drop**: an intent queued or claimed inside the customer's
  quiet window (:func:`shopkeeper.contact.quiet_until`) keeps its status and gets
  ``not_before``, the window's end; :func:`pending` leaves it out until then and a claim before
  then is reported rejected with field ``not_before`` (do not send, do not suppress: the scan
  of pending intents hands it over when it is due). A message whose ``expires_at`` comes
  first ends ``suppressed`` (``quiet_hours_expired``); one past ``expires_at`` at a claim ends
  ``suppressed`` (``expired``);
* the same naming rule holds for delivery reports (``email_sent``, ``message_sent``,
  ``message_failed``, ``message_cancelled``, a bounce naming an intent);
* **bounded retries**: each claim counts one attempt; ``message_failed`` with
  ``status: retry`` puts the intent back to ``pending`` until :data:`MAX_ATTEMPTS`, then it
  ends ``failed``; a claim after the attempts are used up ends it ``failed`` too, and the hub
  ends intents left ``sending`` with no attempts left when it starts (:func:`expire`);
* a hard bounce of a ``sent`` message is its late delivery report: it ends ``failed``;
* a crash between the claim and ``sent`` leaves the intent ``sending`` with its Message-ID:
  the adapter resolves it by that Message-ID (its delivery journal) instead of sending blindly
  again, and re-claims it with the *same* Message-ID otherwise.

Every new intent also gets a change-feed entry of kind ``outbox`` (``detail`` = the
intent as JSON) so adapters learn about it from ``Watch``, in or out of the hub process.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from BTrees.OOBTree import OOBTree

from . import contact
from .customer import _PICKLE4, Customer, _pack_fields, now_us
from .events import EventType, FieldSpec
from .plugins import hookimpl
from .store import Folders, StoreError

PENDING, SENDING, SENT, FAILED, SUPPRESSED, CANCELLED = "pending", "sending", "sent", "failed", "suppressed", \
    "cancelled"
FINAL = frozenset({SENT, FAILED, SUPPRESSED, CANCELLED})
#: event types that mark an intent sent (``data.intent`` names it)
SENT_TYPES = frozenset({"email_sent", "message_sent"})
#: outbox bookkeeping an adapter records (a claim, a delivery report, a failure, a cancellation)
TRANSITION_TYPES = frozenset({"message_dispatch", "message_failed", "message_cancelled"}) | SENT_TYPES
#: the event types that are outbox *bookkeeping*, not customer activity: they take the one apply
#: loop (contact history, hard facts, change feed) but only the processors that declare them in
#: their ``event_types`` run for them — the fast path of docs/plugins.md (*Processors*)
BOOKKEEPING_TYPES = TRANSITION_TYPES
#: claims of one intent before it ends ``failed`` (each adapter start that finds it ``sending``
#: and each ``message_failed`` with ``status: retry`` is one more attempt)
MAX_ATTEMPTS = 5
#: soft fact listing ``channel:address`` values that must not be sent to again
UNDELIVERABLE = "undeliverable"
#: a text's delivery report saying it did not arrive: the ``sent`` intent it names ends ``failed``
DLR_FAILED = "sms_undelivered"
FEED_KIND = "outbox"
#: the outbox's clock (µs): when pending lists and claims without a time of their own happen.
#: Tests replace it (``monkeypatch.setattr(outbox, "clock", ...)``) to move past quiet hours.
clock: Callable[[], int] = now_us


class OutboxItem(NamedTuple):
    """One intent to send, pickled into the customer's outbox bucket. Append new fields with defaults."""

    id: str
    channel: str
    template: str
    purpose: str = "marketing"
    payload: dict[str, Any] = {}  # never mutated
    created_at: int = 0
    source: str = ""  # rule or caller that asked
    status: str = PENDING
    message_id: str = ""
    updated_at: int = 0
    attempts: int = 0
    error: str = ""
    not_before: int = 0  # µs; claims and pending lists skip the intent until then (quiet hours)
    expires_at: int = 0  # µs; the message's validity ends then (0 = none)

    def as_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["payload"] = dict(self.payload)
        return d

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickled as one plain protocol-4 ``bytes`` value, like ``Interaction``: ZODB's pickler calls
        its Python ``persistent_id`` hook for every object it visits (~30 per item: 14 fields and the
        payload), and every claim and delivery report rewrites the customer's outbox tree. Items
        written before (class reference plus fields) still load."""
        return _unpack_item, (_pack_fields(self),)


def _unpack_item(packed: bytes) -> OutboxItem:
    """Rebuild an ``OutboxItem`` from ``__reduce__``'s bytes (module-level: pickles name it); fields
    appended since the item was written take their defaults."""
    return OutboxItem(*pickle.loads(_PICKLE4 + packed))


@dataclass
class Message:
    """What :func:`shopkeeper.hookspecs.shopkeeper_deliver` receives: one committed intent."""

    id: str
    customer_id: str
    channel: str
    template: str
    purpose: str = "marketing"
    payload: dict[str, Any] = field(default_factory=dict)
    status: str = PENDING
    message_id: str = ""
    cursor: int = 0  # change-feed cursor it came from (0 = found by a scan)
    attempts: int = 0  # claims so far (see MAX_ATTEMPTS)
    error: str = ""  # why the last attempt failed, or why the intent ended failed/suppressed
    not_before: int = 0  # µs; deferred until then (quiet hours): leave it to the pending scan
    expires_at: int = 0  # µs; the message's validity ends then (0 = none)

    @classmethod
    def from_item(cls, customer_id: str, item: OutboxItem | dict[str, Any], cursor: int = 0) -> Message:
        d = item.as_dict() if isinstance(item, OutboxItem) else dict(item)
        return cls(d["id"], customer_id, d["channel"], d["template"], d.get("purpose") or "marketing",
                   dict(d.get("payload") or {}), d.get("status") or PENDING, d.get("message_id") or "", cursor,
                   int(d.get("attempts") or 0), str(d.get("error") or ""), int(d.get("not_before") or 0),
                   int(d.get("expires_at") or 0))

    @classmethod
    def from_change(cls, change: dict[str, Any]) -> Message:
        """From a change-feed entry of kind ``outbox``."""
        return cls.from_item(change["customer_id"], json.loads(change["detail"]), int(change.get("cursor") or 0))


@dataclass
class Receipt:
    """A channel adapter's answer to ``shopkeeper_deliver``."""

    status: str  # accepted (sending in the background), sent, suppressed, failed
    message_id: str = ""
    detail: str = ""


# -- the data ---------------------------------------------------------------------------


def outbox_of(customer: Customer, create: bool = False) -> OOBTree | None:
    box = getattr(customer, "outbox", None)
    if box is None and create:
        box = customer.outbox = OOBTree()
    return box


def create_index(root: Any) -> None:
    """The named evolve step ``outbox-index`` (this plugin's ``shopkeeper_evolve_steps``)."""
    if "outbox" not in root:
        root["outbox"] = OOBTree()


def index(folders: Folders, create: bool = False) -> OOBTree | None:
    """The store-wide index of intents not yet final: (channel, intent id) -> customer id.
    Made by the evolve step ``outbox-index``: with ``create``, a store opened without this
    plugin's steps is an error that says so, not a folder made here by whoever wrote first."""
    idx = folders.root.get("outbox")
    if idx is None and create:
        raise StoreError("the store has no outbox index: it was opened without the outbox plugin's evolve "
                         "step 'outbox-index' (open it with steps=shopkeeper.plugins.evolve_steps(pm))")
    return idx


def depth_by_channel(folders: Folders) -> dict[str, int]:
    """Intents not yet final, per channel (the index holds exactly those): for monitoring."""
    out: dict[str, int] = {}
    for channel, _iid in (index(folders) or {}).keys():
        out[channel] = out.get(channel, 0) + 1
    return out


def get(customer: Customer, intent_id: str) -> OutboxItem | None:
    box = outbox_of(customer)
    return box.get(intent_id) if box is not None else None


def items(customer: Customer, status: str | None = None) -> list[OutboxItem]:
    box = outbox_of(customer)
    if box is None:
        return []
    return [it for it in box.values() if status is None or it.status == status]


def pending(folders: Folders, channels: tuple[str, ...] | None = None, limit: int = 10_000, *,
            now: int | None = None, include_deferred: bool = False) -> list[Message]:
    """Intents not yet final (pending or sending) that are due at ``now`` (default :data:`clock`),
    oldest channel key first: what an adapter should claim (after a restart, on each sweep). Those
    deferred past ``now`` (``not_before``, quiet hours) are left out unless ``include_deferred``."""
    idx = index(folders)
    if idx is None:
        return []
    now = now if now is not None else clock()
    out: list[Message] = []
    for (channel, intent_id), cid in idx.items():
        if channels and channel not in channels:
            continue
        c = folders.customers.get(cid)
        item = get(c, intent_id) if c is not None else None
        if item is None:
            c = folders.customer(cid)  # merged since: the survivor holds the outbox now
            item = get(c, intent_id) if c is not None else None
        if item is not None and item.status not in FINAL and (include_deferred or item.not_before <= now):
            out.append(Message.from_item(c.id, item))
            if len(out) >= limit:
                break
    return out


def priority_of(item: OutboxItem) -> int:
    """A queued message's claim on a cap slot: a campaign's ``priority`` (in its payload), else 0."""
    p = item.payload.get("priority", 0) if item.payload else 0
    return p if isinstance(p, int) else 0


def reserved(customer: Customer, policy: contact.ContactPolicy, priority: int, *, ties: bool,
             exclude: str = "") -> int:
    """Cap slots held by the customer's queued marketing messages (pending, outbound, not exempt)
    of higher ``priority`` — and of equal priority when ``ties`` (planning: a message already
    queued keeps its slot against an equal newcomer). At a claim (``ties=False``) a
    lower-priority message finds the slots of higher ones taken, so when two campaigns compete
    for a customer's cap the higher priority is the one sent, whichever is claimed first."""
    box = outbox_of(customer)
    if box is None:
        return 0
    n = 0
    for it in box.values():
        if it.status != PENDING or it.id == exclude or not policy.is_outbound(it.channel) \
                or it.purpose in policy.exempt_purposes:
            continue
        p = priority_of(it)
        if p > priority or (ties and p == priority):
            n += 1
    return n


def undeliverable(customer: Customer) -> set[str]:
    """``channel:address`` values known not to work (hard bounces, permanent failures)."""
    f = customer.soft.get(UNDELIVERABLE)
    return set(f.value) if f is not None else set()


def mark_undeliverable(customer: Customer, channel: str, address: str, source: str) -> None:
    bad = undeliverable(customer)
    key = f"{channel}:{address.strip().lower()}"
    if key not in bad:
        bad.add(key)
        customer.set_soft_fact(UNDELIVERABLE, sorted(bad), source)


def new_intent_id() -> str:
    return "ix" + secrets.token_hex(8)


def enqueue(folders: Folders, customer: Customer, *, channel: str, template: str, purpose: str = "marketing",
            payload: dict[str, Any] | None = None, source: str = "", intent_id: str | None = None,
            at: int | None = None, outputs: list[Any] | None = None, changes: Any = None,
            expires_at: int = 0) -> OutboxItem:
    """Record an intent to send in ``customer``'s outbox, in the current transaction.

    Call it from a processor or rule action (pass ``outputs=applied.result.outputs``) or
    from a hub write operation (pass ``changes``) so the ``outbox`` change-feed entry is
    published after the commit. ``payload`` holds references the template needs (offer
    id, campaign, subject…), not personal data: templates read the customer at send time.
    Re-enqueueing an existing ``intent_id`` returns the item unchanged (idempotent).
    Queued inside the customer's quiet hours, the intent gets ``not_before`` (their end); if
    ``expires_at`` (the message's validity, µs) comes first it ends ``suppressed`` at once.
    """
    box = outbox_of(customer, create=True)
    assert box is not None
    intent_id = intent_id or new_intent_id()
    old = box.get(intent_id)
    if old is not None:
        return old
    at = at if at is not None else now_us()
    purpose = purpose or "marketing"
    item = OutboxItem(intent_id, channel, template, purpose, dict(payload or {}), at, source, PENDING, "", at,
                      not_before=contact.quiet_until(customer, channel, purpose, at), expires_at=int(expires_at or 0))
    if item.not_before and item.expires_at and item.expires_at <= item.not_before:
        item = item._replace(status=SUPPRESSED, error=_expired_in_quiet_hours(item.expires_at, item.not_before))
    box[intent_id] = item
    if item.status not in FINAL:
        idx = index(folders, create=True)
        assert idx is not None
        idx[(channel, intent_id)] = customer.id
    _feed(folders, customer, item, outputs, changes)
    return item


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat(timespec="seconds")


def _expired_in_quiet_hours(expires_at: int, until: int) -> str:
    return (f"{contact.QUIET_HOURS_EXPIRED}: valid until {_iso(expires_at)}, held back by the customer's "
            f"quiet hours until {_iso(until)}")


def _feed(folders: Folders, customer: Customer, item: OutboxItem, outputs: list[Any] | None, changes: Any) -> None:
    if "changes" not in folders.root:  # a store without the hub's feed (generation < 3)
        return
    d = {"id": item.id, "channel": item.channel, "template": item.template, "purpose": item.purpose,
         "payload": item.payload}
    for k in ("not_before", "expires_at"):
        if getattr(item, k):
            d[k] = getattr(item, k)
    if item.status != PENDING:
        d["status"] = item.status
    detail = json.dumps(d, separators=(",", ":"), default=str)
    kw = {"event_type": "message_intent", "channel": item.channel, "detail": detail}
    if changes is not None:
        changes.add(FEED_KIND, customer.id, **kw)
        return
    from .engine import feed

    entry = feed.append(folders, FEED_KIND, customer.id, **kw)
    if outputs is not None:
        outputs.append(entry)


def _update(folders: Folders, customer: Customer, item: OutboxItem, **kw: Any) -> OutboxItem:
    new = item._replace(updated_at=now_us(), **kw)
    outbox_of(customer)[item.id] = new  # type: ignore[index]
    if new.status in FINAL:
        idx = index(folders)
        if idx is not None:
            idx.pop((item.channel, item.id), None)
    return new


def cancel(folders: Folders, customer: Customer, intent_id: str, reason: str) -> bool:
    """End a pending intent ``cancelled`` (a campaign run cancelled by its operator), in the current
    transaction; False when it is gone, final, or being sent (an adapter holds it: it finishes)."""
    item = get(customer, intent_id)
    if item is None or item.status != PENDING:
        return False
    _update(folders, customer, item, status=CANCELLED, error=reason)
    return True


class ClaimRefused(ValueError):
    """A claim or delivery report that must not be applied: the event is rejected with
    FAILED_PRECONDITION (``code``), naming ``field`` and ``reason``, and changes nothing."""

    code = "failed_precondition"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _find(folders: Folders, customer: Customer, intent_id: str, channel: str) -> tuple[Customer, OutboxItem]:
    """The intent ``intent_id`` of ``customer`` (the customer the event resolved to), or refuse.

    An intent queued for a customer merged into ``customer`` since is theirs too (the index
    names the absorbed id, which resolves to ``customer``); an intent of anyone else is refused:
    a key that may write interactions must not complete another customer's message."""
    item = get(customer, intent_id)
    if item is not None:
        return customer, item
    idx = index(folders)
    owner_id = idx.get((channel, intent_id)) if idx is not None else None
    if owner_id is not None:
        owner = folders.customers.get(owner_id)
        if owner is not None and folders.customer(owner_id) is customer:
            found = get(owner, intent_id)
            if found is not None:
                return owner, found
        raise ClaimRefused("data.intent", f"intent {intent_id!r} does not belong to customer {customer.id} "
                                          "(the customer this event's identities resolve to)")
    raise ClaimRefused("data.intent", f"no outbox intent {intent_id!r} for customer {customer.id}")


def _refuse_by_policy(applied: Any, item: OutboxItem, verdict: Any) -> None:
    """Report a claim the contact policy forbids as rejected (the adapter must not send) while the
    transaction keeps what it did to the intent: its end (``suppressed`` with the reason code), or
    its deferral (field ``not_before``: the intent stays as it was, to be claimed when due)."""
    res = applied.result
    res.status = "rejected"
    res.error_code = "failed_precondition"
    if item.status not in FINAL and item.not_before:
        res.error_field = "not_before"
        res.error = (f"{verdict.code}: {verdict.detail} (intent {item.id} stays {item.status}, "
                     f"deferred until {_iso(item.not_before)})")
        return
    res.error_field = "consent" if verdict.code == contact.NO_CONSENT else "contact_policy"
    res.error = f"{verdict.code}: {verdict.detail} (intent {item.id} is now {SUPPRESSED})"


def apply_event(folders: Folders, customer: Customer, event_type: str, channel: str, data: dict[str, Any],
                idempotency_key: str = "", source: str = "", outputs: list[Any] | None = None,
                at: int | None = None) -> contact.Verdict | None:
    """Apply one outbox event (request, dispatch, sent, failed, cancelled, bounce, complaint) to
    ``customer``. Raises :class:`ClaimRefused` (nothing may change) when the event names an intent
    that is not this customer's, is final already, or is held under another Message-ID. Returns
    the contact policy's refusal when a claim was turned into a suppression (the caller reports
    the claim rejected), else None."""
    now = at if at is not None else now_us()
    if event_type == "message_request":
        iid = data.get("intent") or ("rq" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
                                     if idempotency_key else None)
        payload = {k: v for k, v in data.items() if k not in ("template", "purpose", "intent", "valid_until")}
        enqueue(folders, customer, channel=channel, template=str(data["template"]),
                purpose=str(data.get("purpose") or "marketing"), payload=payload, source=source,
                intent_id=iid, outputs=outputs, at=now, expires_at=_valid_until(data.get("valid_until")))
        return None
    intent_id = data.get("intent")
    if event_type == "complaint":
        contact.suppress_channel(customer, channel, f"complaint: {data.get('reason') or 'spam report'}",
                                 source or "complaint", now)
    if event_type in ("email_bounce", "complaint"):
        if event_type == "email_bounce" and str(data.get("kind", "")).lower() in ("hard", "permanent") \
                and data.get("address"):
            mark_undeliverable(customer, "email", str(data["address"]), source or "bounce")
        if intent_id:
            owner, item = _find(folders, customer, str(intent_id), channel)
            hard = event_type == "email_bounce" and str(data.get("kind", "")).lower() in ("hard", "permanent")
            # a hard bounce is the late delivery report of a "sent" message: it did not arrive
            if item.status not in FINAL or (hard and item.status == SENT):
                _update(folders, owner, item, status=FAILED,
                        error=f"{event_type}: {data.get('reason') or data.get('kind')}")
        return None
    if event_type == DLR_FAILED:
        _undelivered(folders, customer, channel, data)
        return None
    if not intent_id:
        return None  # an email_sent without an intent: a message sent outside the outbox
    owner, item = _find(folders, customer, str(intent_id), channel)
    if event_type == "message_dispatch":
        mid = str(data.get("message_id") or "")
        if not mid:
            raise ClaimRefused("data.message_id", "required: the Message-ID this send will carry")
        if item.status in FINAL:
            raise ClaimRefused("data.intent", f"intent {item.id} is already {item.status}")
        if item.status == SENDING and item.message_id and item.message_id != mid:
            raise ClaimRefused("data.message_id", f"intent {item.id} is being sent as {item.message_id}")
        if item.attempts >= MAX_ATTEMPTS:
            _update(folders, owner, item, status=FAILED,
                    error=f"retries exhausted: claimed {item.attempts} times without a delivery report"
                          + (f" (last error: {item.error})" if item.error else ""))
            return contact.Verdict(False, "retries_exhausted", f"intent {item.id} claimed {item.attempts} times")
        if item.expires_at and now >= item.expires_at:
            _update(folders, owner, item, status=SUPPRESSED,
                    error=f"{contact.EXPIRED}: valid until {_iso(item.expires_at)}, claimed {_iso(now)}")
            return contact.Verdict(False, contact.EXPIRED, f"intent {item.id} was valid until {_iso(item.expires_at)}")
        if item.not_before > now:  # deferred: nothing changes, the pending scan hands it over when due
            return contact.Verdict(False, contact.QUIET_HOURS, f"deferred until {_iso(item.not_before)}")
        # the one contact policy, again at the moment of sending: consent may have been withdrawn,
        # the customer may have complained, it may be night where they live (-> deferred), the cap
        # may be reached
        pol = contact.current()
        held = reserved(owner, pol, priority_of(item), ties=False, exclude=item.id) \
            if pol.max_per_day is not None or pol.max_per_week is not None else 0
        verdict = contact.check(owner, item.channel, item.purpose, now=now, planned=held)
        until = contact.quiet_until(owner, item.channel, item.purpose, now) \
            if not verdict and verdict.code == contact.QUIET_HOURS else 0
        if until and not (item.expires_at and item.expires_at <= until):
            _update(folders, owner, item, not_before=until)  # defer, don't drop
            return verdict
        if until:
            verdict = contact.Verdict(False, contact.QUIET_HOURS_EXPIRED,
                                      _expired_in_quiet_hours(item.expires_at, until).split(": ", 1)[1])
        if not verdict:
            _update(folders, owner, item, status=SUPPRESSED, error=f"{verdict.code}: {verdict.detail}")
            return verdict
        if item.status != SENDING and item.channel not in contact.current().internal_channels:
            contact.record_contact(owner, item.channel, now)
        _update(folders, owner, item, status=SENDING, message_id=mid, attempts=item.attempts + 1)
    elif event_type in SENT_TYPES:
        if item.status in (FAILED, SUPPRESSED, CANCELLED):
            raise ClaimRefused("data.intent", f"intent {item.id} is already {item.status}: it cannot be sent")
        if item.status != SENT:
            _update(folders, owner, item, status=SENT, message_id=str(data.get("message_id") or item.message_id),
                    error="")
    elif event_type == "message_cancelled":
        if item.status == SENT:
            raise ClaimRefused("data.intent", f"intent {item.id} was sent already")
        if item.status not in FINAL:
            _update(folders, owner, item, status=CANCELLED, error=str(data.get("reason") or "cancelled"))
    elif event_type == "message_failed":
        status = str(data.get("status") or FAILED)
        reason = str(data.get("reason") or "")
        if item.status not in FINAL:
            if status == "retry" and item.attempts < MAX_ATTEMPTS:
                _update(folders, owner, item, status=PENDING, error=reason)  # tried again at the next claim
            elif status == "retry":
                _update(folders, owner, item, status=FAILED,
                        error=f"retries exhausted after {item.attempts} attempts: {reason}")
            else:
                _update(folders, owner, item, status=SUPPRESSED if status == SUPPRESSED else FAILED, error=reason)
        if data.get("permanent") and data.get("address"):
            mark_undeliverable(owner, item.channel, str(data["address"]), source or "delivery")
    return None


def _undelivered(folders: Folders, customer: Customer, channel: str, data: dict[str, Any]) -> None:
    """A delivery report saying a ``sent`` text did not arrive (Kannel: undelivered to the phone,
    or rejected by the SMSC) ends its intent ``failed``, like a hard bounce. Only the report of
    the send that made it ``sent`` (same Message-ID) counts; a report naming no intent of this
    customer's is still recorded, it moves nothing."""
    intent_id = data.get("intent")
    if not intent_id:
        return
    try:
        owner, item = _find(folders, customer, str(intent_id), channel)
    except ClaimRefused:
        return
    mid = str(data.get("message_id") or "")
    if item.status == SENT and (not mid or mid == item.message_id):
        _update(folders, owner, item, status=FAILED,
                error=f"{data.get('status') or 'undelivered'}: {data.get('reason') or 'delivery report'}")


def _valid_until(value: Any) -> int:
    """``data.valid_until`` of a ``message_request`` (ISO 8601; no zone = UTC) -> µs, 0 when absent."""
    if value in (None, ""):
        return 0
    try:
        dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ClaimRefused("data.valid_until", f"{value!r} is not an ISO 8601 time (2026-12-24T18:00:00+01:00)") \
            from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()) * 1_000_000


OUTBOX_EVENT_TYPES = frozenset({"message_request", "email_bounce", "complaint", DLR_FAILED}) | TRANSITION_TYPES


def processor(folders: Folders, applied: Any) -> None:
    """Ingest processor: applies outbox events to the customer in the event's transaction.

    :class:`ClaimRefused` propagates: the ingestor throws the transaction away and re-applies
    the batch without this event, which is then reported rejected (FAILED_PRECONDITION) with
    field and reason — nothing changed. A claim the contact policy forbids commits the intent's
    suppression and is reported rejected too."""
    ev = applied.event
    if ev.type not in OUTBOX_EVENT_TYPES:
        return
    # an event the sender gave no time happens at the hub's now: the outbox's clock
    at = clock() if getattr(ev, "stamped", False) else applied.interaction.ts
    refused = apply_event(folders, applied.customer, ev.type, ev.channel, ev.data, ev.idempotency_key,
                          ev.touchpoint, applied.result.outputs, at=at)
    if refused is not None:
        item = get(applied.customer, str(ev.data.get("intent"))) or OutboxItem(str(ev.data.get("intent")), "", "")
        _refuse_by_policy(applied, item, refused)


processor.event_types = OUTBOX_EVENT_TYPES  # type: ignore[attr-defined]  # the ingestor skips every other event


def expire(folders: Folders, changes: Any = None, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Finish intents left ``sending`` with their attempts used up (an adapter that crashed on
    them each time): they end ``failed`` with the reason. Run by the hub at start, on the writer;
    returns how many ended."""
    idx = index(folders)
    if idx is None:
        return 0
    n = 0
    for (_channel, intent_id), cid in list(idx.items()):
        c = folders.customers.get(cid)
        item = get(c, intent_id) if c is not None else None
        if item is not None and item.status == SENDING and item.attempts >= max_attempts:
            _update(folders, c, item, status=FAILED,
                    error=f"retries exhausted: claimed {item.attempts} times without a delivery report")
            n += 1
    return n


# -- plugin hooks (this module is a built-in plugin) ------------------------------------

_S = str


@hookimpl
def shopkeeper_evolve_steps() -> list[Any]:
    """The store-wide index of intents not yet final (``root['outbox']``)."""
    from .store import EvolveStep

    return [EvolveStep("outbox-index", create_index)]


@hookimpl
def shopkeeper_event_types() -> list[EventType]:
    return [
        EventType("message_request", "email", {"template": FieldSpec(_S, True), "purpose": FieldSpec(_S),
                                               "intent": FieldSpec(_S, max_length=64), "valid_until": FieldSpec(_S)},
                  "ask the hub to send a message (channel = the message's channel); valid_until (ISO 8601): not "
                  "sent after then, nor deferred past it by quiet hours; other fields are the payload"),
        EventType("message_dispatch", "email", {"intent": FieldSpec(_S, True), "message_id": FieldSpec(_S, True)},
                  "an adapter claims an outbox intent and is about to send it with this Message-ID"),
        EventType("message_sent", "email", {"intent": FieldSpec(_S), "message_id": FieldSpec(_S)},
                  "a message on a channel other than email was delivered"),
        EventType("message_failed", "email", {"intent": FieldSpec(_S, True), "reason": FieldSpec(_S),
                                              "status": FieldSpec(_S), "address": FieldSpec(_S)},
                  "an outbox intent was not sent: status suppressed (consent, no address), failed, "
                  "or retry (a temporary failure: pending again until the attempts are used up)"),
        EventType("message_cancelled", "email", {"intent": FieldSpec(_S, True), "reason": FieldSpec(_S)},
                  "an outbox intent that is not sent yet is withdrawn (it ends cancelled)"),
        EventType("complaint", "email", {"reason": FieldSpec(_S), "intent": FieldSpec(_S)},
                  "a spam complaint (feedback loop): marketing on this channel is suppressed until consent "
                  "is granted again"),
    ]


@hookimpl
def shopkeeper_processors(hub: Any) -> list[Any]:
    return [processor]


__all__ = ["OutboxItem", "Message", "Receipt", "enqueue", "cancel", "get", "items", "pending",
           "undeliverable", "mark_undeliverable", "apply_event", "processor", "ClaimRefused", "TRANSITION_TYPES",
           "MAX_ATTEMPTS", "PENDING", "SENDING", "SENT", "FAILED", "SUPPRESSED", "CANCELLED", "FINAL"]
