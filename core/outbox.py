"""The outbox: messages the hub has decided to send, committed *before* anything is sent.

"Never a double send, never a lost one" rests on one rule: the intent to send is committed
in the customer first, then delivered, then marked sent. An intent lives in the
customer's own ``outbox`` (an ``OOBTree`` intent id -> :class:`OutboxItem`, so a busy
customer re-pickles one bucket, not the whole customer) and, while not final, in the
store-wide ``outbox`` index (``OOBTree`` (channel, intent id) -> customer id) that a
restarted adapter scans.

Life of an intent (every step is a committed transaction)::

    pending --message_dispatch(message_id)--> sending --email_sent / message_sent--> sent
       |                                         |--message_failed(status=failed)--> failed
       '--message_failed(status=suppressed)------'   (no consent, no usable address)

Writers:

* **rules and plugins inside a transaction** call :func:`enqueue` (the rules engine's
  "send a message" action does exactly this) — the intent commits with the event that
  caused it, or not at all;
* **anyone outside** records a ``message_request`` event (channel = the message's channel,
  ``data.template``, ``data.purpose``, ``data.intent`` optional, anything else = payload);
* **channel adapters** move an intent along by recording the events above; this module's
  processor applies them to the outbox inside the hub's transaction, so a remote adapter
  (gRPC) and an in-process one do exactly the same thing.

A ``message_dispatch`` is the *claim*: it is refused (the event is rejected) when the
intent is final, when another dispatcher holds it with a different Message-ID, or when the
customer's consent for ``(channel, purpose)`` is missing — the authoritative
``Customer.may_contact`` check, in the same transaction as the claim. A crash between the
claim and ``sent`` leaves the intent ``sending`` with its Message-ID: the adapter resolves
it by that Message-ID (its delivery journal) instead of sending blindly again.

Every new intent also gets a change-feed entry of kind ``outbox`` (``detail`` = the
intent as JSON) so adapters learn about it from ``Watch``, in or out of the hub process.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from BTrees.OOBTree import OOBTree

from .customer import STATUS_ACTIVE, Customer, now_us
from .events import EventType, FieldSpec
from .plugins import hookimpl
from .store import Folders

PENDING, SENDING, SENT, FAILED, SUPPRESSED = "pending", "sending", "sent", "failed", "suppressed"
FINAL = frozenset({SENT, FAILED, SUPPRESSED})
#: event types that mark an intent sent (``data.intent`` names it)
SENT_TYPES = frozenset({"email_sent", "message_sent"})
#: soft fact listing ``channel:address`` values that must not be sent to again
UNDELIVERABLE = "undeliverable"
FEED_KIND = "outbox"


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

    def as_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["payload"] = dict(self.payload)
        return d


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

    @classmethod
    def from_item(cls, customer_id: str, item: OutboxItem | dict[str, Any], cursor: int = 0) -> Message:
        d = item.as_dict() if isinstance(item, OutboxItem) else dict(item)
        return cls(d["id"], customer_id, d["channel"], d["template"], d.get("purpose") or "marketing",
                   dict(d.get("payload") or {}), d.get("status") or PENDING, d.get("message_id") or "", cursor)

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


def index(folders: Folders, create: bool = False) -> OOBTree | None:
    """The store-wide index of intents not yet final: (channel, intent id) -> customer id."""
    idx = folders.root.get("outbox")
    if idx is None and create:
        idx = folders.root["outbox"] = OOBTree()
    return idx


def get(customer: Customer, intent_id: str) -> OutboxItem | None:
    box = outbox_of(customer)
    return box.get(intent_id) if box is not None else None


def items(customer: Customer, status: str | None = None) -> list[OutboxItem]:
    box = outbox_of(customer)
    if box is None:
        return []
    return [it for it in box.values() if status is None or it.status == status]


def pending(folders: Folders, channels: tuple[str, ...] | None = None, limit: int = 10_000) -> list[Message]:
    """Intents not yet final (pending or sending), oldest channel key first; for restarts."""
    idx = index(folders)
    if idx is None:
        return []
    out: list[Message] = []
    for (channel, intent_id), cid in idx.items():
        if channels and channel not in channels:
            continue
        c = folders.customers.get(cid)
        item = get(c, intent_id) if c is not None else None
        if item is None:
            c = folders.customer(cid)  # merged since: the survivor holds the outbox now
            item = get(c, intent_id) if c is not None else None
        if item is not None and item.status not in FINAL:
            out.append(Message.from_item(c.id, item))
            if len(out) >= limit:
                break
    return out


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
            at: int | None = None, outputs: list[Any] | None = None, changes: Any = None) -> OutboxItem:
    """Record an intent to send in ``customer``'s outbox, in the current transaction.

    Call it from a processor or rule action (pass ``outputs=applied.result.outputs``) or
    from a hub write operation (pass ``changes``) so the ``outbox`` change-feed entry is
    published after the commit. ``payload`` holds references the template needs (offer
    id, campaign, subject…), not personal data: templates read the customer at send time.
    Re-enqueueing an existing ``intent_id`` returns the item unchanged (idempotent).
    """
    box = outbox_of(customer, create=True)
    assert box is not None
    intent_id = intent_id or new_intent_id()
    old = box.get(intent_id)
    if old is not None:
        return old
    at = at if at is not None else now_us()
    item = OutboxItem(intent_id, channel, template, purpose or "marketing", dict(payload or {}), at, source,
                      PENDING, "", at)
    box[intent_id] = item
    idx = index(folders, create=True)
    assert idx is not None
    idx[(channel, intent_id)] = customer.id
    _feed(folders, customer, item, outputs, changes)
    return item


def _feed(folders: Folders, customer: Customer, item: OutboxItem, outputs: list[Any] | None, changes: Any) -> None:
    if "changes" not in folders.root:  # a store without the hub's feed (generation < 3)
        return
    detail = json.dumps({"id": item.id, "channel": item.channel, "template": item.template,
                         "purpose": item.purpose, "payload": item.payload}, separators=(",", ":"), default=str)
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


class ClaimRefused(ValueError):
    """A ``message_dispatch`` that must not go ahead; rejects that event (field, reason)."""

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


def apply_event(folders: Folders, customer: Customer, event_type: str, channel: str, data: dict[str, Any],
                idempotency_key: str = "", source: str = "", outputs: list[Any] | None = None) -> None:
    """Apply one outbox event (request, dispatch, sent, failed, bounce) to ``customer``."""
    if event_type == "message_request":
        iid = data.get("intent") or ("rq" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
                                     if idempotency_key else None)
        payload = {k: v for k, v in data.items() if k not in ("template", "purpose", "intent")}
        enqueue(folders, customer, channel=channel, template=str(data["template"]),
                purpose=str(data.get("purpose") or "marketing"), payload=payload, source=source,
                intent_id=iid, outputs=outputs)
        return
    intent_id = data.get("intent")
    if event_type == "email_bounce":
        if str(data.get("kind", "")).lower() in ("hard", "permanent") and data.get("address"):
            mark_undeliverable(customer, "email", str(data["address"]), source or "bounce")
        if intent_id and get(customer, intent_id) is not None:
            owner, item = _find(folders, customer, intent_id, "email")
            if item.status != SENT or str(data.get("kind", "")).lower() in ("hard", "permanent"):
                _update(folders, owner, item, status=FAILED, error=f"bounce: {data.get('reason') or data.get('kind')}")
        return
    if not intent_id:
        return  # an email_sent without an intent: a message sent outside the outbox
    owner, item = _find(folders, customer, str(intent_id), channel)
    if event_type == "message_dispatch":
        mid = str(data.get("message_id") or "")
        if not mid:
            raise ClaimRefused("data.message_id", "required: the Message-ID this send will carry")
        if item.status in FINAL:
            raise ClaimRefused("data.intent", f"intent {item.id} is already {item.status}")
        if item.status == SENDING and item.message_id and item.message_id != mid:
            raise ClaimRefused("data.message_id", f"intent {item.id} is being sent as {item.message_id}")
        if not owner.may_contact(item.channel, item.purpose):
            raise ClaimRefused("consent", f"no {item.channel}/{item.purpose} consent for customer {owner.id}")
        _update(folders, owner, item, status=SENDING, message_id=mid, attempts=item.attempts + 1)
    elif event_type in SENT_TYPES:
        if item.status != SENT:
            _update(folders, owner, item, status=SENT, message_id=str(data.get("message_id") or item.message_id),
                    error="")
    elif event_type == "message_failed":
        status = SUPPRESSED if data.get("status") == SUPPRESSED else FAILED
        if item.status not in FINAL:
            _update(folders, owner, item, status=status, error=str(data.get("reason") or ""))
        if data.get("permanent") and data.get("address"):
            mark_undeliverable(owner, item.channel, str(data["address"]), source or "delivery")


#: outbox bookkeeping an adapter may record in batches with :func:`record_transitions`
TRANSITION_TYPES = frozenset({"message_dispatch", "message_failed"}) | SENT_TYPES


def record_transitions(folders: Folders, changes: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply many outbox bookkeeping events in the current transaction (a hub write operation).

    Each event is a dict ``type`` (one of :data:`TRANSITION_TYPES`), ``customer_id``,
    ``channel``, ``data`` (``intent``, ``message_id``…), ``idempotency_key``, ``touchpoint``,
    ``identities`` (pairs, kept on the interaction). It gets exactly what an ingested event
    gets for its part — the interaction in the contact history (hard facts, counts), its
    idempotency key, the ``interaction`` change-feed entry and the outbox transition with
    the same checks (a claim is refused when the intent is final, held under another
    Message-ID, or the consent is gone) — but without identity resolution (the adapter
    names the customer it read the intent from) and without the rules and segment
    processors: bookkeeping needs none of them, and they were most of its cost. One result
    per event, in order: ``{"index", "status": applied|duplicate|rejected, "customer_id",
    "error", "field"}``; a refused event changes nothing.
    """
    from .customer import Interaction

    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    applied = dups = 0
    feed_on = "changes" in folders.root
    for i, ev in enumerate(events):
        etype, key = ev["type"], ev.get("idempotency_key") or ""
        cid = ev.get("customer_id") or ""
        holder = folders.customer(cid) if cid and key else None
        if key and (key in seen or (holder is not None and holder.has_key(key, 0))):  # ts: stamped below
            out.append({"index": i, "status": "duplicate", "customer_id": holder.id if holder else cid,
                        "error": None, "field": None})
            dups += 1
            continue
        if etype not in TRANSITION_TYPES:
            out.append({"index": i, "status": "rejected", "customer_id": None, "field": "type",
                        "error": f"type: {etype!r} is not outbox bookkeeping"})
            continue
        customer = folders.customer(cid) if cid else None
        if customer is None or customer.status != STATUS_ACTIVE:  # unknown, or erased since
            out.append({"index": i, "status": "rejected", "customer_id": None, "field": "customer_id",
                        "error": f"customer_id: no customer {cid!r}"})
            continue
        channel = ev.get("channel") or "email"
        data = dict(ev.get("data") or {})
        touchpoint = ev.get("touchpoint") or ""
        try:
            apply_event(folders, customer, etype, channel, data, key, touchpoint)
        except ClaimRefused as exc:
            out.append({"index": i, "status": "rejected", "customer_id": customer.id, "error": str(exc),
                        "field": exc.field})
            continue
        ts = now_us()
        pairs = tuple(tuple(p) for p in ev.get("identities") or ())
        it = customer.add_interaction(Interaction(ts, ts, etype, channel, touchpoint, data, key, pairs, customer.id))
        if feed_on:
            kw = {"event_type": etype, "channel": channel, "at": it.ts, "interaction_key": it.key,
                  "segments": customer.segments.keys() if customer.segments else ()}
            if changes is not None:
                changes.add("interaction", customer.id, **kw)
            else:
                from .engine import feed

                feed.append(folders, "interaction", customer.id, **kw)
        if key:
            seen.add(key)
            customer.remember_key(key, 0)
        applied += 1
        out.append({"index": i, "status": "applied", "customer_id": customer.id, "error": None, "field": None})
    if applied:
        folders.count("interactions", applied)
    if dups:
        folders.count("duplicates", dups)
    return out


OUTBOX_EVENT_TYPES = frozenset({"message_request", "message_dispatch", "message_failed", "email_bounce"}) | SENT_TYPES


def processor(folders: Folders, applied: Any) -> None:
    """Ingest processor: applies outbox events to the customer in the event's transaction."""
    ev = applied.event
    if ev.type not in OUTBOX_EVENT_TYPES:
        return
    # ClaimRefused propagates: the ingestor throws the transaction away and re-applies the
    # batch without this event, which is then reported rejected with field and reason.
    apply_event(folders, applied.customer, ev.type, ev.channel, ev.data, ev.idempotency_key,
                ev.touchpoint, applied.result.outputs)


# -- plugin hooks (this module is a built-in plugin) ------------------------------------

_S = str


@hookimpl
def shopkeeper_event_types() -> list[EventType]:
    return [
        EventType("message_request", "email", {"template": FieldSpec(_S, True), "purpose": FieldSpec(_S),
                                               "intent": FieldSpec(_S, max_length=64)},
                  "ask the hub to send a message (channel = the message's channel); other fields are the payload"),
        EventType("message_dispatch", "email", {"intent": FieldSpec(_S, True), "message_id": FieldSpec(_S, True)},
                  "an adapter claims an outbox intent and is about to send it with this Message-ID"),
        EventType("message_sent", "email", {"intent": FieldSpec(_S), "message_id": FieldSpec(_S)},
                  "a message on a channel other than email was delivered"),
        EventType("message_failed", "email", {"intent": FieldSpec(_S, True), "reason": FieldSpec(_S),
                                              "status": FieldSpec(_S), "address": FieldSpec(_S)},
                  "an outbox intent was not sent: status suppressed (consent, no address) or failed"),
    ]


@hookimpl
def shopkeeper_processors(hub: Any) -> list[Any]:
    return [processor]


__all__ = ["OutboxItem", "Message", "Receipt", "enqueue", "get", "items", "pending", "undeliverable",
           "mark_undeliverable", "apply_event", "processor", "record_transitions", "TRANSITION_TYPES",
           "PENDING", "SENDING", "SENT", "FAILED", "SUPPRESSED"]
