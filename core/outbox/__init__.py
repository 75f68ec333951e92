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


The package is split by job; every name stays importable from ``shopkeeper.outbox``
(pickles name :class:`OutboxItem` and ``_unpack_item`` here, so they never move):

* this module: the records (:class:`OutboxItem`, :class:`Message`, :class:`Receipt`), the
  states, and reading a customer's outbox and the store-wide index (:func:`pending`);
* :mod:`shopkeeper.outbox.queue`: writing intents (:func:`enqueue`, :func:`cancel`) and the one
  place an item changes (``_update``), with its change-feed entry;
* :mod:`shopkeeper.outbox.transitions`: the contract with channel adapters — claims, delivery
  reports, failures, bounces — applied by the ingest processor (:func:`processor`);
* :mod:`shopkeeper.outbox.fastpath`: the claim's fast path (an accepted claim rewrites the
  outbox tree, not the customer record);
* :mod:`shopkeeper.outbox.plugin`: the hook implementations (event types, the processor).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from BTrees.OOBTree import OOBTree

from .. import contact
from ..customer import _PICKLE4, Customer, _pack_fields, now_us
from ..store import Folders, StoreError

PENDING, SENDING, SENT, FAILED, SUPPRESSED, CANCELLED = "pending", "sending", "sent", "failed", "suppressed", \
    "cancelled"
FINAL = frozenset({SENT, FAILED, SUPPRESSED, CANCELLED})
#: event types that mark an intent sent (``data.intent`` names it)
SENT_TYPES = frozenset({"email_sent", "message_sent"})
#: outbox bookkeeping an adapter records (a claim, a delivery report, a failure, a cancellation)
TRANSITION_TYPES = frozenset({"message_dispatch", "message_failed", "message_cancelled"}) | SENT_TYPES
#: the event types that are outbox *bookkeeping*, not customer activity: they take the one apply
#: loop (contact history, hard facts, change feed) but only the processors that declare them in
#: their ``event_types`` run for them — docs/plugins.md (*Processors*); an accepted claim, a sent
#: report and a text's final delivery report take the fast paths (:mod:`shopkeeper.outbox.fastpath`:
#: the outbox tree and a history bucket, not the customer record)
BOOKKEEPING_TYPES = TRANSITION_TYPES | {"sms_delivered", "sms_undelivered"}  # with a text's delivery reports
#: claims of one intent before it ends ``failed`` (each adapter start that finds it ``sending``
#: and each ``message_failed`` with ``status: retry`` is one more attempt)
MAX_ATTEMPTS = 5
#: soft fact listing ``channel:address`` values that must not be sent to again
UNDELIVERABLE = "undeliverable"
#: a text's delivery report saying it did not arrive: the ``sent`` intent it names ends ``failed``
DLR_FAILED = "sms_undelivered"
#: a text's delivery report saying it reached the phone (a contact-history entry; the intent stays ``sent``)
DLR_DELIVERED = "sms_delivered"
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
    #: µs of the first accepted claim: the contact the caps count (``contact.contact_log``). Kept in
    #: the item, not in a soft fact of the customer, so a claim rewrites the outbox tree only
    claimed_at: int = 0
    #: the idempotency key of the claim that made it ``sending``: a replay of that claim is a
    #: duplicate (the claim's fast path keeps no key in the customer record)
    claim_key: str = ""
    #: the idempotency key of the delivery report that made it ``sent`` (or ended it) on the
    #: reports' fast path: a replay of that report is a duplicate (no key in the customer record)
    report_key: str = ""
    #: the idempotency key of the text's final delivery report (:data:`DLR_DELIVERED` or
    #: :data:`DLR_FAILED`) taken by the reports' fast path: its replay is a duplicate
    dlr_key: str = ""

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
    """The customer's outbox tree; with ``create``, made if missing — and with it the customer's
    spilled history tree, in the same write of the customer record, so that the intents'
    delivery reports file their interactions there and never rewrite the record
    (:mod:`shopkeeper.outbox.fastpath`)."""
    box = getattr(customer, "outbox", None)
    if box is None and create:
        box = customer.outbox = OOBTree()
        customer.history.tree()
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


def states(folders: Folders, refs: list[tuple[str, str]]) -> list[tuple[OutboxItem | None, Customer | None]]:
    """``(intent, customer)`` for each ``(customer id, intent id)``, read in the caller's one read
    transaction: what a channel adapter reads before it delivers, in process
    (``InProcessHub.outbox_batch``) and out of it (``Outbox.GetIntents``) alike. The customer is
    the one the id leads to now (a merged id leads to the survivor); the intent is looked up in
    the record the id names first, then in the survivor's (a merge moves the outbox)."""
    out: list[tuple[OutboxItem | None, Customer | None]] = []
    for cid, iid in refs:
        c = folders.customers.get(cid)
        item = get(c, iid) if c is not None else None
        live = folders.customer(cid)
        if item is None and live is not None and live is not c:
            item = get(live, iid)
        out.append((item, live))
    return out


def contact_view(c: Customer) -> dict[str, Any]:
    """The part of the 360° view (:func:`shopkeeper.view.customer_view`) a channel adapter needs to
    address and identify a message — id, status, identities, traits, soft facts as stored (the
    ``undeliverable`` list) — marked ``"view": "contact"``. The batched read before a delivery
    builds this instead of the whole view for an adapter that asks for it (an email whose templates
    do not name ``customer``): no hard facts or offer log, scores, segments, consents or ISO times
    per message (docs/benchmarks.md §74). Decide's offer records not folded yet are not in it."""
    from ..view import iso

    return {"view": "contact", "id": c.id, "status": c.status,
            "identities": [{"namespace": ns, "value": v} for ns, v in c.identities.keys()],
            "traits": dict(c.traits),
            "soft_facts": {k: {"value": f.value, "source": f.source, "at": iso(f.at)} for k, f in c.soft.items()}}


def items(customer: Customer, status: str | None = None) -> list[OutboxItem]:
    box = outbox_of(customer)
    if box is None:
        return []
    return [it for it in box.values() if status is None or it.status == status]


def pending(folders: Folders, channels: tuple[str, ...] | None = None, limit: int = 10_000, *,
            now: int | None = None, include_deferred: bool = False, refs_only: bool = False) -> list[Message]:
    """Intents not yet final (pending or sending) that are due at ``now`` (default :data:`clock`),
    oldest channel key first: what an adapter should claim (after a restart, on each sweep). Those
    deferred past ``now`` (``not_before``, quiet hours) are left out unless ``include_deferred``.

    ``refs_only``: every intent of the store-wide index on ``channels``, deferred ones too, as a
    ``Message`` with only its id, customer id (as indexed: a merge may have moved it) and channel
    (``status`` empty: not read),
    without loading any customer — for an adapter that reads each intent and its customer
    anyway before it delivers (:func:`states`); the full scan loaded every customer and its
    outbox here, and the adapter's read loaded them again."""
    idx = index(folders)
    if idx is None:
        return []
    now = now if now is not None else clock()
    out: list[Message] = []
    for (channel, intent_id), cid in idx.items():
        if channels and channel not in channels:
            continue
        if refs_only:
            out.append(Message(intent_id, cid, channel, "", status=""))  # status "": not read
            if len(out) >= limit:
                break
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


# the jobs, re-exported: ``shopkeeper.outbox.enqueue`` & co. are the public names (imported last:
# they build on the records above)
from .fastpath import FAST_PATHS  # noqa: E402
from .queue import cancel, enqueue, new_intent_id  # noqa: E402
from .transitions import (  # noqa: E402
    OUTBOX_EVENT_TYPES,
    ClaimRefused,
    apply_event,
    processor,
)

processor.fast_paths = FAST_PATHS  # type: ignore[attr-defined]  # see shopkeeper.engine.ingest.Processor

__all__ = ["OutboxItem", "Message", "Receipt", "enqueue", "cancel", "get", "items", "pending",
           "undeliverable", "mark_undeliverable", "apply_event", "processor", "ClaimRefused", "TRANSITION_TYPES",
           "MAX_ATTEMPTS", "PENDING", "SENDING", "SENT", "FAILED", "SUPPRESSED", "CANCELLED", "FINAL",
           "OUTBOX_EVENT_TYPES", "new_intent_id", "index", "outbox_of", "depth_by_channel",
           "reserved", "priority_of", "clock", "states", "contact_view"]
