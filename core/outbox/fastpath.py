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
from . import FINAL, MAX_ATTEMPTS, SENDING
from .transitions import ClaimRefused, _find, accept_claim, claim_verdict

CLAIM = "message_dispatch"


def fast_claim(folders: Folders, resolver: Any, ev: Any) -> tuple[str, str, list[Any]] | None:
    """Apply the claim ``ev`` changing only the customer's outbox tree and return (``applied`` or
    ``duplicate``, the customer id, its change-feed entries), or return None (nothing changed:
    the ordinary apply loop takes it). See the module docstring."""
    data = ev.data
    intent_id, mid = data.get("intent"), data.get("message_id")
    if ev.type != CLAIM or not intent_id or not mid or ev.traits or len(ev.identities) != 1:
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
    try:
        owner, item = _find(folders, customer, str(intent_id), ev.channel)
    except ClaimRefused:
        return None
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
    from ..engine import feed

    if "changes" not in folders.root:  # a store without the hub's feed (generation < 3)
        return "applied", customer.id, []
    return "applied", customer.id, [feed.append(folders, "interaction", customer.id, event_type=CLAIM,
                                                channel=ev.channel, at=now,
                                                segments=customer.segments.keys() if customer.segments else ())]


#: the outbox processor's ``fast_paths`` (event type -> handler), which the ingestor reads
FAST_PATHS = {CLAIM: fast_claim}

__all__ = ["fast_claim", "FAST_PATHS"]
