"""The claim's fast path: an accepted ``message_dispatch`` rewrites the outbox tree, not the customer.

Every email and text costs the hub two bookkeeping events, the claim and the delivery report.
Through the ordinary apply loop each one appends an interaction to the customer's recent
history, updates its hard facts and keeps its idempotency key in the customer record, so each
rewrites the whole ``Customer`` record (the largest pickle the writer makes) besides the
customer's outbox tree. The claim is the half nobody reads back from the history: the
campaign report, the uplift export and the agent's timeline read the *sent* event, and the
claim's own facts (Message-ID, attempt, time) are in the outbox item. So a claim that is
plainly accepted is applied here, by the same writer in the same group commit, changing only
the outbox tree:

* **the one writer, the same door**: this runs inside :meth:`Ingestor._attempt
  <shopkeeper.engine.ingest.Ingestor>` for events submitted like any other (``submit_events``),
  so the in-process adapters (``InProcessHub.record``) and remote ones (``RecordBatch`` over
  gRPC) take it alike; there is no second apply loop and no other thread commits;
* **only when nothing else wants the claim**: the ingestor takes it only when no processor but
  the outbox declares ``message_dispatch`` in its ``event_types`` (a rule or segment naming the
  claim sends it through the ordinary loop), and this function hands anything unusual back
  (returns None) before changing anything: several identities, an unknown or erased
  customer, an intent not found or not the customer's, final, held under another Message-ID,
  out of attempts, expired, deferred, or refused by the contact policy. The ordinary loop then
  applies it exactly as before (suppression, deferral, refusal with field and reason);
* **the same contact policy**: :func:`~shopkeeper.outbox.transitions.claim_verdict` is asked,
  as the ordinary path asks it; the contact the caps count is the item's ``claimed_at``
  (:func:`shopkeeper.contact.contact_log`), kept in the tree this writes anyway;
* **exactly once**: the claim's idempotency key is kept in the item (``claim_key``); a replay
  of it, or of a claim whose key an older hub kept in the customer record, is ``duplicate``;
* **published the same way**: one change-feed entry of kind ``interaction`` per claim
  (``event_type`` ``message_dispatch``, ``interaction_key`` 0: not in the history), handed
  to ``Watch`` and ``shopkeeper_committed`` after the commit like every other.

What a claim no longer does on this path: appear in the customer's interaction history and
hard facts (``counts.message_dispatch``), and run processors that do not declare it.
"""

from __future__ import annotations

from typing import Any

from .. import outbox as _box  # read at call time: tests move ``outbox.clock``
from ..customer import STATUS_ACTIVE
from ..identity import IdentityError, tombstone_key
from ..store import Folders
from ..values import Interaction
from . import DLR_DELIVERED, DLR_FAILED, FAILED, FINAL, MAX_ATTEMPTS, SENDING, SENT, SENT_TYPES
from .queue import _update
from .transitions import ClaimRefused, _find, accept_claim, claim_verdict

CLAIM = "message_dispatch"


def _sole_customer(folders: Folders, resolver: Any, ev: Any) -> tuple[Any, tuple[str, str]] | None:
    """The active customer ``ev``'s one identity points at now and that identity, normalised — or
    None for anything the ordinary loop must judge (several identities, traits, a warning, an
    unknown or erased or merged-away customer, an import's pinned customer)."""
    if ev.traits or len(ev.identities) != 1 or getattr(ev, "customer_id", None):
        return None
    try:
        pairs, warnings = resolver.normalize_pairs(ev.identities)
    except IdentityError:
        return None
    if len(pairs) != 1 or warnings:
        return None
    tombstones = folders.tombstones
    if tombstones and tombstone_key(folders, pairs[0]) in tombstones:
        return None
    customer = folders.customer_by_identity(*pairs[0])
    if customer is None or customer.status != STATUS_ACTIVE:
        return None
    return customer, pairs[0]


def _feed_entry(folders: Folders, customer: Any, ev: Any, at: int, key: int = 0) -> list[Any]:
    """The change-feed entry the ordinary loop's feed processor would write (kind ``interaction``)."""
    from ..engine import feed

    if "changes" not in folders.root:  # a store without the hub's feed (generation < 3)
        return []
    return [feed.append(folders, "interaction", customer.id, event_type=ev.type, channel=ev.channel, at=at,
                        interaction_key=key, segments=customer.segments.keys() if customer.segments else ())]


def _intent_of(folders: Folders, resolver: Any, ev: Any,
               intent_id: Any) -> tuple[Any, tuple[str, str], Any, Any] | None:
    """(customer, its identity, the owner of the intent's outbox, the intent) for a bookkeeping
    event ``ev`` naming ``intent_id`` — or None when the ordinary loop must judge it (see
    :func:`_sole_customer`; an intent the customer does not have on that channel)."""
    found = _sole_customer(folders, resolver, ev)
    if found is None:
        return None
    customer, pair = found
    try:
        owner, item = _find(folders, customer, str(intent_id), ev.channel)
    except ClaimRefused:
        return None
    return customer, pair, owner, item


def fast_claim(folders: Folders, resolver: Any, ev: Any) -> tuple[str, str, list[Any]] | None:
    """Apply the claim ``ev`` changing only the customer's outbox tree and return (``applied`` or
    ``duplicate``, the customer id, its change-feed entries), or return None (nothing changed:
    the ordinary apply loop takes it). See the module docstring."""
    data = ev.data
    intent_id, mid = data.get("intent"), data.get("message_id")
    if ev.type != CLAIM or not intent_id or not mid:
        return None
    got = _intent_of(folders, resolver, ev, intent_id)
    if got is None:
        return None
    customer, _pair, owner, item = got
    key = ev.idempotency_key
    if key and (item.claim_key == key or customer.has_key(key, 0 if ev.stamped else ev.ts)):
        return "duplicate", customer.id, []
    if item.status in FINAL or item.attempts >= MAX_ATTEMPTS \
            or (item.status == SENDING and item.message_id and item.message_id != mid):
        return None
    now = _box.clock() if ev.stamped else ev.ts
    if (item.expires_at and now >= item.expires_at) or item.not_before > now:
        return None
    verdict, _until = claim_verdict(owner, item, now)
    if not verdict:
        return None
    accept_claim(folders, owner, item, str(mid), now, key)
    return "applied", customer.id, _feed_entry(folders, customer, ev, now)


def fast_sent(folders: Folders, resolver: Any, ev: Any) -> tuple[str, str, list[Any]] | None:
    """Apply the delivery report ``ev`` (``email_sent`` / ``message_sent`` naming an intent that is
    ``pending`` or ``sending``): the intent becomes ``sent`` in the outbox tree and the event's
    interaction is filed in the customer's spilled history tree (:meth:`History.file
    <shopkeeper.history.History.file>`) — the contact history shows it — without
    rewriting the customer record; its key is kept in the item (``report_key``: a replay is
    ``duplicate``). Anything else (no intent, an intent already ``sent`` under another key, final,
    not the customer's) returns None: the ordinary loop applies or refuses it as before."""
    intent_id = ev.data.get("intent")
    if ev.type not in SENT_TYPES or not intent_id:
        return None
    got = _intent_of(folders, resolver, ev, intent_id)
    if got is None:
        return None
    customer, pair, owner, item = got
    key = ev.idempotency_key
    if key and ((item.report_key == key and item.status == SENT) or customer.has_key(key, 0 if ev.stamped else ev.ts)):
        return "duplicate", customer.id, []
    if item.status in FINAL:  # sent under another key, or ended otherwise: the ordinary loop judges it
        return None
    _update(folders, owner, item, status=SENT, message_id=str(ev.data.get("message_id") or item.message_id),
            error="", report_key=key)
    it = customer.history.file(Interaction(ev.ts, ev.ts, ev.type, ev.channel, ev.touchpoint, ev.data, key,
                                               (pair,), customer.id))
    return "applied", customer.id, _feed_entry(folders, customer, ev, ev.ts, it.key)


def fast_dlr(folders: Folders, resolver: Any, ev: Any) -> tuple[str, str, list[Any]] | None:
    """Apply a text's final delivery report (:data:`~shopkeeper.outbox.DLR_DELIVERED` or
    :data:`~shopkeeper.outbox.DLR_FAILED`) for a ``sent`` intent under the same Message-ID: its
    interaction is filed in the history tree like :func:`fast_sent`'s, an undelivered one ends the
    intent ``failed`` (as :func:`~shopkeeper.outbox.transitions._undelivered` does), and its key is
    kept in the item (``dlr_key``). A second report, one for another send, or one naming no intent
    of the customer's returns None: the ordinary loop records it as before."""
    data = ev.data
    intent_id, mid = data.get("intent"), str(data.get("message_id") or "")
    if ev.type not in (DLR_DELIVERED, DLR_FAILED) or not intent_id:
        return None
    got = _intent_of(folders, resolver, ev, intent_id)
    if got is None:
        return None
    customer, pair, owner, item = got
    key = ev.idempotency_key
    if key and (item.dlr_key == key or customer.has_key(key, 0 if ev.stamped else ev.ts)):
        return "duplicate", customer.id, []
    if item.dlr_key or item.status != SENT or (mid and mid != item.message_id):
        return None
    if ev.type == DLR_FAILED:
        _update(folders, owner, item, status=FAILED, dlr_key=key,
                error=f"{data.get('status') or 'undelivered'}: {data.get('reason') or 'delivery report'}")
    else:
        _update(folders, owner, item, dlr_key=key)
    it = customer.history.file(Interaction(ev.ts, ev.ts, ev.type, ev.channel, ev.touchpoint, ev.data, key,
                                               (pair,), customer.id))
    return "applied", customer.id, _feed_entry(folders, customer, ev, ev.ts, it.key)


#: the outbox processor's ``fast_paths`` (event type -> handler), which the ingestor reads
FAST_PATHS = {CLAIM: fast_claim, **dict.fromkeys(SENT_TYPES, fast_sent), DLR_DELIVERED: fast_dlr,
              DLR_FAILED: fast_dlr}

__all__ = ["fast_claim", "fast_sent", "fast_dlr", "FAST_PATHS"]
