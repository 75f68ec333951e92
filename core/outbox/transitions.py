"""Outbox transitions: the contract a channel adapter builds on (the delivery helper does).

Writers:

* **rules and plugins inside a transaction** call :func:`enqueue` (the rules engine's
  "send a message" action does exactly this) — the intent commits with the event that
  caused it, or not at all;
* **anyone outside** records a ``message_request`` event (channel = the message's channel,
  ``data.template``, ``data.purpose``, ``data.intent`` optional, anything else = payload);
* **channel adapters** move an intent along by recording the events above
  (:data:`TRANSITION_TYPES`) like any other event: they take the one apply loop — identity
  resolution, the contact history, the processors — so a remote adapter (gRPC) and an
  in-process one do exactly the same thing. One documented exception, taken alike by both: a
  plainly accepted claim changes only the outbox tree, not the customer record
  (:mod:`shopkeeper.outbox.fastpath`, docs/plugins.md); it is applied by the same writer and
  published on the same change feed, and anything unusual takes the ordinary loop.

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
  ends ``failed``; a claim after the attempts are used up ends it ``failed`` too. So an intent a
  crashed adapter left ``sending`` with no attempts left ends ``failed`` at the claim its next
  scan of pending intents leads to — or ``sent``, when its journal shows it delivered; the hub
  walks no intent at start;
* a hard bounce of a ``sent`` message is its late delivery report: it ends ``failed``;
* a crash between the claim and ``sent`` leaves the intent ``sending`` with its Message-ID:
  the adapter resolves it by that Message-ID (its delivery journal) instead of sending blindly
  again, and re-claims it with the *same* Message-ID otherwise.

Every new intent also gets a change-feed entry of kind ``outbox`` (``detail`` = the
intent as JSON) so adapters learn about it from ``Watch``, in or out of the hub process.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from .. import contact
from .. import outbox as _box  # the package, read at call time: tests move its ``clock``
from ..customer import Customer, now_us
from ..store import Folders
from . import (
    CANCELLED,
    DLR_DELIVERED,
    DLR_FAILED,
    FAILED,
    FINAL,
    MAX_ATTEMPTS,
    PENDING,
    SENDING,
    SENT,
    SENT_TYPES,
    SUPPRESSED,
    TRANSITION_TYPES,
    OutboxItem,
    get,
    index,
    mark_undeliverable,
    priority_of,
    reserved,
)
from .queue import _expired_in_quiet_hours, _iso, _update, enqueue


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
    ended = item.status if item.status in FINAL else SUPPRESSED  # failed: a claim with the attempts used up
    res.error = f"{verdict.code}: {verdict.detail} (intent {item.id} is now {ended})"


def claim_verdict(owner: Customer, item: OutboxItem, now: int) -> tuple[contact.Verdict, int]:
    """The contact policy at a claim, read-only: (verdict, the end of the customer's quiet hours
    when that is the refusal, else 0). Both ways a claim is applied ask it (:func:`apply_event`
    and the fast path, :mod:`shopkeeper.outbox.fastpath`)."""
    pol = contact.current()
    held = reserved(owner, pol, priority_of(item), ties=False, exclude=item.id) \
        if pol.max_per_day is not None or pol.max_per_week is not None else 0
    verdict = contact.check(owner, item.channel, item.purpose, now=now, planned=held)
    until = contact.quiet_until(owner, item.channel, item.purpose, now) \
        if not verdict and verdict.code == contact.QUIET_HOURS else 0
    return verdict, until


def accept_claim(folders: Folders, owner: Customer, item: OutboxItem, mid: str, now: int, key: str) -> OutboxItem:
    """The intent becomes ``sending`` under ``mid``: one more attempt, the claim's key kept (a
    replay is a duplicate) and, for a first claim on an outbound channel, the contact the caps
    count (``claimed_at``). Changes the customer's outbox tree only, not the customer record."""
    claimed_at = item.claimed_at
    if item.status != SENDING and item.channel not in contact.current().internal_channels:
        claimed_at = now
    return _update(folders, owner, item, status=SENDING, message_id=mid, attempts=item.attempts + 1,
                   claimed_at=claimed_at, claim_key=key or item.claim_key)


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
    if event_type == DLR_DELIVERED:  # a contact-history entry: the intent stays sent
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
        verdict, until = claim_verdict(owner, item, now)
        if until and not (item.expires_at and item.expires_at <= until):
            _update(folders, owner, item, not_before=until)  # defer, don't drop
            return verdict
        if until:
            verdict = contact.Verdict(False, contact.QUIET_HOURS_EXPIRED,
                                      _expired_in_quiet_hours(item.expires_at, until).split(": ", 1)[1])
        if not verdict:
            _update(folders, owner, item, status=SUPPRESSED, error=f"{verdict.code}: {verdict.detail}")
            return verdict
        accept_claim(folders, owner, item, mid, now, idempotency_key)
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


OUTBOX_EVENT_TYPES = frozenset({"message_request", "email_bounce", "complaint", DLR_FAILED, DLR_DELIVERED}) \
    | TRANSITION_TYPES


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
    at = _box.clock() if getattr(ev, "stamped", False) else applied.interaction.ts
    refused = apply_event(folders, applied.customer, ev.type, ev.channel, ev.data, ev.idempotency_key,
                          ev.touchpoint, applied.result.outputs, at=at)
    if refused is not None:
        item = get(applied.customer, str(ev.data.get("intent"))) or OutboxItem(str(ev.data.get("intent")), "", "")
        _refuse_by_policy(applied, item, refused)


processor.event_types = OUTBOX_EVENT_TYPES  # type: ignore[attr-defined]  # the ingestor skips every other event
