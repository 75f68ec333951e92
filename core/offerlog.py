"""Decide's offer records beside the customer: a small record of its own, folded in later.

Recording that ``Decide`` showed customer X offer O used to apply an ``offer_shown`` event to
X's record like any event: the whole customer (~4.3 KB pickled) was rewritten with the kept
indexes it marks, and every read connection that held X loaded it again (benchmarks §55: ~1.4 ms
of writer CPU per customer rewritten, +423 µs on the readers). Now the writer appends the record
to X's :class:`~shopkeeper.records.OfferLog` — a ``Persistent`` of its own, ~400 B, found in the
store's ``root['offer_logs']`` by customer id (not through an attribute of the customer: setting
one would rewrite the record, and a customer's first record is nearly always its only one for a
while — a first offer, then follow-ups that record nothing on an inbound channel). The first
record writes the tree's bucket and the log, later ones the log alone; the customer record is
not written (benchmarks §69).

The log is **folded** into X's record — each record applied as the ordinary loop would have: the
interaction in the history with its hard facts and per-day counts, its idempotency key, the offer
memory (``offer.decisions``, ``offer.log``, ``offer.current``) — when an answer or report of an
offer for X goes through the ordinary loop (``offer_accepted``, ``offer_declined``, a touch
point's ``offer_shown``: they come after the records and change the same memory), at a merge or
an unmerge of X, and when the log holds :data:`FOLD_AT` records.

Until then every reader sees the records as if folded:
- the history (``Customer.history``: the 360° view's recent interactions, the timeline, the
  exporters behind the uplift and offers reports) lists them (:func:`unfolded_interactions`);
- the offer memory ``Decide`` reads (caps, follow-ups, a touch point's report of the same
  decision counted once) merges them (:func:`offer_log`, :func:`current_offer`,
  :func:`decision_keys`) — never by changing the read transaction's copy of the customer, which
  would make that connection load the whole record again on its next read;
- the 360° view's and GetCustomer's hard facts, counts and soft facts (:func:`hard_facts`,
  :func:`soft_facts`), the Parquet export's customer row;
- exactly-once: a redelivered record is a duplicate (:func:`has_key`).

What does not count them before the fold: conditions that read the hard facts or per-day counts
(``hard.interactions``, ``days_since('page_view')``…) — as for outbox bookkeeping, a segment
over "any event" sees them at the customer's next event. A segment that reads ``offer_shown``'s
own counts or windows (``count('offer_shown', days=7)``), a central rule that reacts to it and a
customer with own rules or waiting timers get Decide's records through the ordinary loop.

Erasure drops the log with the rest (:func:`drop`); a merge folds both customers first, so
the absorbed customer's records follow to the survivor like its history. Stores written before
this have no log: nothing to fold or merge, and the named evolve step ``offer-logs`` makes the
(empty) tree.

The offer memory itself (:func:`remember_outcome`, :func:`first_report`) lives here too, the one
copy the analysis processor, ``decide_and_record`` and the fold share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hardfacts import count_hard_facts
from .records import OfferLog
from .values import US_PER_DAY, Interaction

if TYPE_CHECKING:
    from .customer import Customer

#: records an ``OfferLog`` holds before the writer folds it into the customer (each append
#: re-pickles the log: bounded, it stays a few hundred bytes)
FOLD_AT = 16
#: the source the ordinary loop's analysis processor gives the offer memory of an offer_shown
SHOWN_SOURCE = "event:offer_shown"


#: the store's offer logs: ``root['offer_logs']``, an ``OOBTree`` customer id -> ``OfferLog``, made by
#: the named evolve step ``offer-logs`` (:func:`create_logs`); a store without it has no log to read
ROOT = "offer_logs"
#: the idempotency keys of ``Decide``'s records (``decide.<decision_id>.<offer>``): only these can
#: be in a log, so exactly-once looks a log up for them alone
KEY_PREFIX = "decide."


def create_logs(root: Any) -> Any:
    """``root['offer_logs']``, made if missing; idempotent: the named evolve step ``offer-logs``."""
    from BTrees.OOBTree import OOBTree

    logs = root.get(ROOT)
    if logs is None:
        logs = root[ROOT] = OOBTree()
    return logs


def _logs(c: Customer) -> Any:
    jar = c._p_jar
    if jar is None or getattr(jar, "opened", True) is None:  # detached, or read after its connection closed
        return None
    return jar.root().get(ROOT)


def log_of(c: Customer) -> OfferLog | None:
    """``c``'s log of unfolded records, or None. Not an attribute of the customer: making one
    would rewrite the record, and a customer's first record is nearly always its only one for a
    while (a first offer, then follow-ups that record nothing on an inbound channel)."""
    logs = _logs(c)
    return logs.get(c.id) if logs is not None else None


def unfolded(c: Customer) -> tuple[tuple[Interaction, bool, int, int], ...]:
    log = log_of(c)
    return log.entries if log is not None else ()


def unfolded_interactions(c: Customer) -> dict[int, Interaction]:
    """The unfolded records' interactions by key (``shopkeeper.history`` lists them)."""
    return {e[0].key: e[0] for e in unfolded(c)}


def has_key(c: Customer, key: str) -> bool:
    return key.startswith(KEY_PREFIX) and any(e[0].idempotency_key == key for e in unfolded(c))


def append(folders: Any, c: Customer, interaction: Interaction, counted: bool, at: int,
           key_ts: int) -> Interaction | None:
    """Record ``interaction`` in ``c``'s log under a key free in the record's window and the log
    (the fold re-keys it against the spilled history, which is not loaded for this). The first
    record makes the log: the tree's bucket and the log are written, not the customer. None when
    the store has no logs (``offer-logs`` not run): nothing changed."""
    logs = folders.root.get(ROOT)
    if logs is None:
        return None
    log = logs.get(c.id)
    if log is None:
        log = logs[c.id] = OfferLog()
    taken = {e[0].key for e in log.entries}
    recent = c._recent or ()
    key = interaction.ts
    while key in taken or key in recent:
        key += 1
    if key != interaction.key:
        interaction = interaction._replace(key=key)
    log.entries = (*log.entries, (interaction, counted, at, key_ts))
    return interaction


def fold(c: Customer) -> int:
    """Apply ``c``'s unfolded records to its record as the ordinary loop would have, in order, and
    drop the log. Returns how many were folded."""
    logs = _logs(c)
    log = logs.get(c.id) if logs is not None else None
    if log is None:
        return 0
    entries, log.entries = log.entries, ()
    del logs[c.id]
    for it, _counted, at, key_ts in entries:
        got = c.add_interaction(it)
        if it.idempotency_key:
            c.remember_key(it.idempotency_key, key_ts)
        d = it.data
        decision = d.get("decision_id")
        if not decision or first_report(c, f"{decision}:{d.get('offer')}", at):
            remember_outcome(c, str(d.get("offer")), "shown", got.ts, it.channel, str(d.get("placement", "")),
                             SHOWN_SOURCE)
    return len(entries)


def drop(c: Customer) -> None:
    """Erasure: the unfolded records go with the rest of the customer's data."""
    logs = _logs(c)
    log = logs.get(c.id) if logs is not None else None
    if log is not None:
        log.entries = ()
        del logs[c.id]


# -- the offer memory ----------------------------------------------------------------------

#: offer outcomes kept in ``offer.log``: the newest 32 of the last 60 days
_LOG_DAYS, _LOG_KEEP = 60, 32


def _logged(log: tuple, offer: str, outcome: str, ts: int) -> tuple:
    return tuple(e for e in log if ts - e[0] < _LOG_DAYS * US_PER_DAY)[-(_LOG_KEEP - 1):] + ((ts, offer, outcome),)


def _stored_log(c: Customer) -> tuple[tuple[int, str, str], ...]:
    f = c.soft.get("offer.log")
    return f.value if f is not None else ()


def remember_outcome(c: Customer, offer: str, outcome: str, ts: int, channel: str, placement: str,
                     source: str = "analysis") -> None:
    """Record an offer outcome in the customer (new immutable values, never mutated in place)."""
    c.set_soft_fact("offer.log", _logged(_stored_log(c), offer, outcome, ts), source, ts)
    if outcome == "shown":
        c.set_soft_fact("offer.current", {"offer": offer, "channel": channel, "placement": placement, "at": ts},
                        source, ts)
    elif outcome in ("accepted", "declined"):
        cur = c.soft.get("offer.current")
        if cur is not None and cur.value.get("offer") == offer:
            c.clear_soft_fact("offer.current")


def first_report(c: Customer, key: str, at: int) -> bool:
    """True the first time ``key`` (``decision_id:offer``) is reported for this customer; the
    last 64 keys are kept in ``soft['offer.decisions']``, as one space-separated string (one
    object for the pickler to visit, not 64: it is re-pickled with the customer)."""
    key = key.replace(" ", "_")
    f = c.soft.get("offer.decisions")
    seen = f.value.split() if f is not None else []
    if key in seen:
        return False
    c.set_soft_fact("offer.decisions", " ".join([*seen[-63:], key]), "analysis", at)
    return True


def _shown(c: Customer) -> list[tuple[int, str, str, str]]:
    """(ts, offer, channel, placement) of the shown offers not in the record yet, in order: the
    unfolded records counted as first reports, then what this hub's ``Decide`` put in
    ``_v_pending_shown`` for the call in progress (``shopkeeper.engine.decisions.Pending``)."""
    out = [(it.ts, str(it.data.get("offer")), it.channel, str(it.data.get("placement", "")))
           for it, counted, _at, _k in unfolded(c) if counted]
    pending = getattr(c, "_v_pending_shown", None)
    if pending:
        out.extend(pending)
    return out


def offer_log(c: Customer) -> tuple[tuple[int, str, str], ...]:
    """Recent (ts, offer, outcome) of this customer, newest last (at most 32, 60 days): the
    record's, with the shown offers not folded in yet."""
    log = _stored_log(c)
    for ts, offer, _ch, _pl in _shown(c):
        log = _logged(log, offer, "shown", ts)
    return log


def current_offer(c: Customer) -> dict[str, Any] | None:
    """The offer last shown and not yet answered (``offer.current``'s value), unfolded ones included."""
    shown = _shown(c)
    if shown:
        ts, offer, channel, placement = shown[-1]
        return {"offer": offer, "channel": channel, "placement": placement, "at": ts}
    f = c.soft.get("offer.current")
    return f.value if f is not None else None


def decision_keys(c: Customer) -> set[str]:
    """The ``decision_id:offer`` keys reported for this customer, unfolded records included."""
    f = c.soft.get("offer.decisions")
    seen = set(f.value.split()) if f is not None else set()
    for it, _counted, _at, _k in unfolded(c):
        seen.add(f"{it.data.get('decision_id')}:{it.data.get('offer')}".replace(" ", "_"))
    return seen


def soft_facts(c: Customer) -> dict[str, Any]:
    """``c.soft`` with the unfolded records' offer memory, as the fold would leave it (the 360°
    view). Values are ``Fact``s; nothing in ``c`` changes."""
    entries = unfolded(c)
    if not entries:
        return c.soft
    from .values import Fact

    soft = dict(c.soft)
    log = _stored_log(c)
    seen = soft["offer.decisions"].value.split() if "offer.decisions" in soft else []
    for it, _counted, at, _k in entries:
        d = it.data
        key = f"{d.get('decision_id')}:{d.get('offer')}".replace(" ", "_")
        if d.get("decision_id") and key in seen:
            continue
        if d.get("decision_id"):
            seen = [*seen[-63:], key]
            soft["offer.decisions"] = Fact(" ".join(seen), "analysis", at)
        offer = str(d.get("offer"))
        log = _logged(log, offer, "shown", it.ts)
        soft["offer.log"] = Fact(log, SHOWN_SOURCE, it.ts)
        soft["offer.current"] = Fact({"offer": offer, "channel": it.channel, "placement": str(d.get("placement", "")),
                                      "at": it.ts}, SHOWN_SOURCE, it.ts)
    return soft


def hard_facts(c: Customer) -> tuple[dict[str, Any], dict[str, int]]:
    """``c.hard`` and ``c.type_counts`` with the unfolded records counted, as the fold would
    leave them (the 360° view); copies, nothing in ``c`` changes."""
    hard, counts = dict(c.hard), dict(c.type_counts)
    for it, *_rest in unfolded(c):
        count_hard_facts(hard, counts, it)  # as the fold will: the one counting the apply loop uses
    return hard, counts
