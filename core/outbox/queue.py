"""Writing intents: queueing one (with its change-feed entry), cancelling one, and ``_update``, the
one place an outbox item changes (and leaves the store-wide index when it ends)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from .. import contact
from ..customer import Customer, now_us
from ..store import Folders
from . import CANCELLED, FEED_KIND, FINAL, PENDING, SUPPRESSED, OutboxItem, get, index, outbox_of


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
    from ..engine import feed

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
