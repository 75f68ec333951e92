"""What ``Decide`` offered is recorded in the customer, so the next channel follows it up.

The ``shopkeeper_decide`` hook sees a read-only customer (``Decide`` is a read), so the hub
records the decision itself: every returned action of kind ``offer`` that its plugin marked
``"record": True`` (the analysis plugin does, except for follow-ups of an offer already shown;
other plugins' actions are left alone unless they opt in) becomes an internal
``offer_shown`` interaction, queued to the single writer and **not waited for** — ``Decide``
answers without an fsync on its path; the record commits with the writer's next group (up to
``Engine.offer_linger``, 50 ms, later if the writer is idle: it waits for more records to share
the transaction; read-your-writes across channels is eventual).

**The next Decide sees what this one recorded, committed or not.** What a decision records
changes what the next one may offer: a first offer shown makes the next answer its follow-up,
and every offer shown counts against the per-offer and weekly caps. So the offers this hub has
recorded for a customer wait in :class:`Pending` until their record has committed, and every
``Decide`` for that customer first shows them to the offer memory it reads (a volatile attribute
of the read transaction's copy: the record itself is not changed, see :meth:`Pending.apply`) and
holds the customer's lock from then until its own offers are in :class:`Pending`. Two fast or
concurrent Decides therefore answer one first offer and one follow-up, and never more contacts
than the caps allow. Other hubs on the same store see the record when it commits (Decides for one customer on two hubs
within the same few milliseconds may still both make a first offer; recording what was really
shown is still right then).

Each decision gets an id, returned in every action's payload as ``decision_id``. The internal
event's idempotency key is ``decide.<decision_id>.<offer>`` and its data carry
``decision_id``: a touch point that also reports ``offer_shown`` for the same decision (with
``decision_id`` in its data) is not counted twice — the analysis processor counts one
``shown`` per decision and offer.

Every action a plugin proposes passes the one contact policy (:func:`gather`): an offer or
message on an outbound channel (email, SMS…) needs consent and is held back in quiet hours,
whichever plugin proposed it. When nothing is left to offer, the answer says why, with a
machine-readable code (:class:`Decision`): a plugin may say so itself by returning an action of
kind ``none`` with ``reason_code`` and ``reason`` (the analysis plugin does); those markers are
never returned as actions.

This module is domain code: it does not import gRPC.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, fields
from typing import Any

from .. import contact
from ..analysis.offers import FIRST_CONTROL_DECISION
from ..customer import Customer, now_us
from ..events import Event, EventError, EventTypes, validate_event
from ..offerlog import decision_keys

log = logging.getLogger(__name__)

_CHANNEL = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class Decision(list):
    """The actions of one ``Decide`` (a list, best first) and, when it holds no offer, why:
    ``no_offer_reason`` (a :mod:`shopkeeper.contact` reason code such as ``no_consent``,
    ``quiet_hours``, ``capped``, ``control_group``, or ``no_candidates`` when nothing was
    proposed) and ``no_offer_detail`` (for people)."""

    no_offer_reason: str = ""
    no_offer_detail: str = ""


def gather(customer: Customer, channel: str, proposals: list[dict[str, Any]], limit: int | None = None,
           now: int | None = None, hour: int | None = None) -> Decision:
    """Rank every plugin's ``proposals``, hold back those the contact policy forbids on
    ``channel``, keep the first ``limit`` and say why there is no offer, if there is none."""
    out = Decision()
    why: contact.Verdict | None = None
    verdicts: dict[str, contact.Verdict] = {}
    for a in proposals:
        kind = a.get("kind")
        if kind == "none":
            if why is None and a.get("reason_code"):
                why = contact.Verdict(False, str(a["reason_code"]), str(a.get("reason") or ""))
            continue
        if kind in ("offer", "message") and not a.get("reason_code"):  # (a reason_code: a "no offer" note)
            purpose = str((a.get("payload") or {}).get("consent_purpose") or "marketing")
            v = verdicts.get(purpose)
            if v is None:
                v = verdicts[purpose] = contact.check(customer, channel, purpose, now=now, kind="offer", hour=hour,
                                                      count_caps=False)
            if not v:
                why = v if why is None else why  # (a refusal is falsy: no `or` here)
                continue
        out.append(a)
    out.sort(key=lambda a: -float(a.get("score", 0.0) or 0.0))
    if limit is not None:
        del out[limit:]
    if not any(a.get("kind") == "offer" for a in out):
        for a in out:  # a plugin's own "no offer" message (control group, weekly cap) says why
            if a.get("reason_code"):
                why = contact.Verdict(False, str(a["reason_code"]), str(a.get("reason") or ""))
                break
        if why is None:  # nothing was held back: nothing was proposed (an empty answer always says why)
            why = contact.Verdict(False, contact.NO_CANDIDATES, f"no offer was proposed for {channel or 'this channel'}"
                                  " (no plugin's catalogue, rule or model has one for this customer here)")
        out.no_offer_reason, out.no_offer_detail = why.code, why.detail
    return out


class _Shown:
    """One recorded offer, as the writer will remember it (``shopkeeper.offerlog``)."""

    __slots__ = ("key", "offer", "ts", "channel", "placement")

    def __init__(self, key: str, offer: str, ts: int, channel: str, placement: str) -> None:
        self.key, self.offer, self.ts, self.channel, self.placement = key, offer, ts, channel, placement


class Pending:
    """Offers this hub's Decides recorded whose records may not be visible to a read yet.

    A record leaves ``grace`` seconds after its commit, not at it: a ``Decide`` whose read
    transaction began before the commit does not see it in the store yet. Applying one the
    store already shows is avoided by its key (``decision_id:offer``, in ``offer.decisions`` or
    an unfolded record of the offer log), so keeping them a little longer never counts one twice.
    A record the writer refused or failed leaves at once.
    """

    def __init__(self, grace: float = 5.0, stripes: int = 64) -> None:
        self.grace = grace
        self._locks = [threading.Lock() for _ in range(stripes)]
        self._mu = threading.Lock()
        self._by_customer: dict[str, list[_Shown]] = {}
        self._leaving: deque[tuple[float, str, _Shown]] = deque()  # (when, customer, record), by when

    def lock(self, customer_id: str) -> threading.Lock:
        """Held from applying the pending records to a Decide's customer until its own are added."""
        return self._locks[hash(customer_id) % len(self._locks)]

    def __len__(self) -> int:
        with self._mu:
            return sum(len(v) for v in self._by_customer.values())

    def add(self, customer_id: str, shown: list[_Shown]) -> None:
        with self._mu:
            self._by_customer.setdefault(customer_id, []).extend(shown)

    def settle(self, customer_id: str, shown: list[_Shown], committed: bool) -> None:
        """The writer answered: a committed record leaves after ``grace``, a refused one now."""
        now = time.monotonic()
        with self._mu:
            if committed:
                self._leaving.extend((now + self.grace, customer_id, s) for s in shown)
            else:
                self._drop(customer_id, shown)
            while self._leaving and self._leaving[0][0] <= now:
                _when, cid, s = self._leaving.popleft()
                self._drop(cid, [s])

    def _drop(self, customer_id: str, shown: list[_Shown]) -> None:
        mine = self._by_customer.get(customer_id)
        if mine is None:
            return
        mine[:] = [s for s in mine if s not in shown]
        if not mine:
            del self._by_customer[customer_id]

    def apply(self, customer: Customer) -> int:
        """Show this customer's pending offers to the Decide in progress, as the writer will
        record them: put in the customer's volatile ``_v_pending_shown``, which the offer memory
        merges (``shopkeeper.offerlog.offer_log``, ``current_offer``) — the customer record is not
        changed, so the read connection keeps its copy (changing it, even in a transaction that is
        thrown away, made the connection load the whole record again on its next read). Those the
        store already shows are left out. The caller clears it (:meth:`done`). Returns how many."""
        with self._mu:
            mine = list(self._by_customer.get(customer.id, ()))
        if not mine:
            customer._v_pending_shown = ()
            return 0
        seen = decision_keys(customer)
        shown = tuple((s.ts, s.offer, s.channel, s.placement) for s in mine if s.key not in seen)
        customer._v_pending_shown = shown
        return len(shown)

    @staticmethod
    def done(customer: Customer) -> None:
        """The Decide is answered: its view of the pending offers goes (the next one takes its own)."""
        customer._v_pending_shown = ()


def new_decision_id() -> str:
    return secrets.token_hex(12)


def offers_to_record(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Offers to record (the analysis plugin marks first offers, and follow-ups on an outbound
    channel, which are new contacts). A control-group decision records no interaction (see
    :func:`record`)."""
    return [a for a in actions if a.get("kind") == "offer" and a.get("id") and a.get("record")]


def control_marked(actions: list[dict[str, Any]]) -> bool:
    return any(a.get("record") and (a.get("payload") or {}).get("group") == "control" for a in actions)


def _mark_control(folders: Any, changes: Any, customer_id: str, at: int) -> None:
    """The writer op of a control-group mark: a soft fact on the customer, published on the change
    feed as a ``soft_fact`` entry (``shopkeeper.engine.feed.KINDS``) like any change to a customer."""
    c = folders.customer(customer_id)
    if c is not None and FIRST_CONTROL_DECISION not in c.soft:
        c.set_soft_fact(FIRST_CONTROL_DECISION, at, "decide", at)
        if changes is not None:
            changes.add("soft_fact", customer_id, at=at, detail=FIRST_CONTROL_DECISION)


@dataclass(slots=True)
class ShownEvent(Event):
    """An ``offer_shown`` record that carries the customer ``Decide`` resolved it to
    (``resolved_id``), so the writer need not resolve its identity again through the identities
    index — cold in a big store, ~4.4 objects loaded per record (benchmarks §55). The writer
    checks the id against what happened since (:meth:`~shopkeeper.identity.Resolver.resolve_known`): a merge is
    followed to the survivor, an erased customer resolves in full and is refused."""

    resolved_id: str = ""


#: ``Event``'s fields, in order: a ``ShownEvent`` copies them all, whatever ``Event`` grows
_EVENT_FIELDS = tuple(f.name for f in fields(Event))


def _carrying(ev: Event, customer_id: str) -> ShownEvent:
    return ShownEvent(*(getattr(ev, name) for name in _EVENT_FIELDS), resolved_id=customer_id)


def shown_events(customer: Customer, actions: list[dict[str, Any]], decision_id: str, touchpoint: str,
                 placement: str, context: dict[str, Any], types: EventTypes, now: int | None = None,
                 identity: tuple[str, str] | None = None) -> list[Any]:
    """The validated ``offer_shown`` events recording ``actions`` (empty if nothing to record).

    ``identity``: the one the caller named the customer by (it resolved to ``customer`` in this
    read), used to address the records. Without it the customer's first identity is, which
    loads their identities record — a separate object the Decide otherwise never touches, cold
    in the read connection's cache for most customers (~230 µs per recorded Decide, benchmarks §38)."""
    offers = offers_to_record(actions)
    if not offers:
        return []
    pairs = [identity] if identity is not None else customer.identity_pairs()
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
                        "source": "decide"}}
        try:
            out.append(_carrying(validate_event(raw, types), customer.id))
        except EventError as exc:
            if identity is not None and exc.field.startswith("identities"):  # named in a form events refuse
                return shown_events(customer, actions, decision_id, touchpoint, placement, context, types, now)
            # an odd offer id or touch point: answer anyway, say why it is not recorded
            log.warning("decision %s: offer %r not recorded: %s", decision_id, a.get("id"), exc)
    return out


def record(writer: Any, customer: Customer, actions: list[dict[str, Any]], touchpoint: str, placement: str,
           context: dict[str, Any], types: EventTypes, pending: Pending | None = None, linger: float = 0.0,
           identity: tuple[str, str] | None = None) -> str:
    """If ``actions`` hold offers to record: give the decision an id (put on every action's
    payload as ``decision_id``) and queue their ``offer_shown`` records to ``writer`` without
    waiting (``linger``: how long the writer may hold them for company, see
    :meth:`~.writer.Writer.submit_events`), and to ``pending`` until they commit. Returns the
    decision id, or "" when there is nothing to record. ``identity``: see :func:`shown_events`.

    A control-group decision (nothing shown) records no interaction: the customer's first one
    sets the soft fact :data:`FIRST_CONTROL_DECISION` (a writer operation, once per customer),
    which is when the uplift report starts counting their outcomes. Like the offer records it
    is not waited for and lingers for company (``linger``): it commits in the writer's next
    group's transaction instead of a transaction and fsync of its own (benchmarks §39). Nothing
    a Decide answers depends on it — only the uplift report reads it, and it counts from the
    mark's ``at`` (this decision's time), not from its commit — and an event submitted after it
    (the customer's next purchase) commits with it or later, never before."""
    if control_marked(actions) and FIRST_CONTROL_DECISION not in customer.soft:
        cid, at = customer.id, now_us()
        writer.submit_op(lambda folders, changes: _mark_control(folders, changes, cid, at), linger=linger)
    if not offers_to_record(actions):
        return ""
    decision_id = new_decision_id()
    for a in actions:
        a["payload"] = {**(a.get("payload") or {}), "decision_id": decision_id}
    events = shown_events(customer, actions, decision_id, touchpoint, placement, context, types, identity=identity)
    if events:
        cid = customer.id
        shown = [_Shown(f"{decision_id}:{e.data['offer']}".replace(" ", "_"), str(e.data["offer"]),
                        e.ts, e.channel, placement) for e in events]
        if pending is not None:
            pending.add(cid, shown)
        fut = writer.submit_events(events, linger=linger) if linger else writer.submit_events(events)
        fut.add_done_callback(lambda f: _report(f, decision_id, pending, cid, shown))
    return decision_id


def _report(fut: Future, decision_id: str, pending: Pending | None = None, customer_id: str = "",
            shown: list[_Shown] | None = None) -> None:
    exc = fut.exception()
    if pending is not None and shown:
        refused = [s for s, r in zip(shown, fut.result(), strict=False) if r.status == "rejected"] \
            if exc is None else shown
        pending.settle(customer_id, refused, committed=False)
        pending.settle(customer_id, [s for s in shown if s not in refused], committed=True)
    if exc is not None:
        log.warning("decision %s: recording the offers shown failed: %s", decision_id, exc)
        return
    for r in fut.result():
        if r.status == "rejected":
            log.warning("decision %s: offer record rejected: %s", decision_id, r.error)
