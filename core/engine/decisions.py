"""What ``Decide`` offered is recorded in the customer, so the next channel follows it up.

The ``shopkeeper_decide`` hook sees a read-only customer (``Decide`` is a read), so the hub
records the decision itself: every returned action of kind ``offer`` that its plugin marked
``"record": True`` (the analysis plugin does, except for follow-ups of an offer already shown;
other plugins' actions are left alone unless they opt in) becomes an internal
``offer_shown`` interaction, queued to the single writer and **not waited for** — ``Decide``
answers without an fsync on its path; the record commits with the writer's next group
(typically a few milliseconds later; read-your-writes across channels is eventual).

Each decision gets an id, returned in every action's payload as ``decision_id``. The internal
event's idempotency key is ``decide.<decision_id>.<offer>`` and its data carry
``decision_id``: a touch point that also reports ``offer_shown`` for the same decision (with
``decision_id`` in its data) is not counted twice — the analysis processor counts one
``shown`` per decision and offer.

This module is domain code: it does not import gRPC.
"""

from __future__ import annotations

import logging
import re
import secrets
from concurrent.futures import Future
from typing import Any

from ..customer import Customer, now_us
from ..events import EventError, EventTypes, validate_event

log = logging.getLogger(__name__)

_CHANNEL = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def new_decision_id() -> str:
    return secrets.token_hex(12)


def offers_to_record(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Offers made (not follow-ups), and a control-group decision's marker (``payload.group ==
    "control"``): the uplift report measures outcomes from each customer's first decision."""
    return [a for a in actions
            if a.get("id") and a.get("record")
            and (a.get("kind") == "offer" or (a.get("payload") or {}).get("group") == "control")
            and not (a.get("payload") or {}).get("follow_up")]


def shown_events(customer: Customer, actions: list[dict[str, Any]], decision_id: str, touchpoint: str,
                 placement: str, context: dict[str, Any], types: EventTypes, now: int | None = None) -> list[Any]:
    """The validated ``offer_shown`` events recording ``actions`` (empty if nothing to record)."""
    offers = offers_to_record(actions)
    if not offers:
        return []
    pairs = customer.identity_pairs()
    if not pairs:
        return []
    channel = str(context.get("channel") or touchpoint or "web")
    if not _CHANNEL.match(channel):
        channel = "web"
    ts = (now if now is not None else now_us()) / 1e6
    out = []
    for a in offers:
        raw = {"type": "offer_shown", "channel": channel, "ts": ts, "identities": [list(pairs[0])],
               "idempotency_key": f"decide.{decision_id}.{a['id']}"[:128], "touchpoint": touchpoint[:128],
               "data": {"offer": str(a["id"]), "placement": placement, "decision_id": decision_id,
                        "source": "decide", "group": str((a.get("payload") or {}).get("group") or "treatment")}}
        try:
            out.append(validate_event(raw, types))
        except EventError as exc:  # an odd offer id or touch point: answer anyway, say why it is not recorded
            log.warning("decision %s: offer %r not recorded: %s", decision_id, a.get("id"), exc)
    return out


def record(writer: Any, customer: Customer, actions: list[dict[str, Any]], touchpoint: str, placement: str,
           context: dict[str, Any], types: EventTypes) -> str:
    """If ``actions`` hold offers to record: give the decision an id (put on every action's
    payload as ``decision_id``) and queue their ``offer_shown`` records to ``writer`` without
    waiting. Returns the decision id, or "" when there is nothing to record."""
    if not offers_to_record(actions):
        return ""
    decision_id = new_decision_id()
    for a in actions:
        a["payload"] = {**(a.get("payload") or {}), "decision_id": decision_id}
    events = shown_events(customer, actions, decision_id, touchpoint, placement, context, types)
    if events:
        fut = writer.submit_events(events)
        fut.add_done_callback(lambda f: _report(f, decision_id))
    return decision_id


def _report(fut: Future, decision_id: str) -> None:
    exc = fut.exception()
    if exc is not None:
        log.warning("decision %s: recording the offers shown failed: %s", decision_id, exc)
        return
    for r in fut.result():
        if r.status == "rejected":
            log.warning("decision %s: offer record rejected: %s", decision_id, r.error)
