"""The one flat message a rule program sees: an event and the customer's values it needs.

:class:`FactBuilder` computes only the fields the rules for an event type use (prefixed
``e__`` event, ``c__`` customer, ``f__`` fact, ``s__`` score, ...: the field keys of
:mod:`shopkeeper.paths`, whose accessors read the customer's values); history aggregates
(``h__``) are computed here, in Python, from the customer's history BTree or daily totals.
Rules, explain and the campaign audience all judge a condition through it, so a condition
means the same thing everywhere.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .. import windows
from ..conditions import Condition
from ..conditions import fields as _fields_of
from ..conditions.analysis import judge as _judge
from ..conditions.python import compile_message
from ..conditions.tree import All
from ..customer import Customer, Interaction
from ..paths import READERS
from .model import HistorySpec

if TYPE_CHECKING:
    from .model import RuleSet


class FactBuilder:
    """Computes message fields for one (customer, event) lazily, each at most once."""

    __slots__ = ("customer", "event", "memo")

    def __init__(self, customer: Customer, event: dict[str, Any]) -> None:
        self.customer = customer
        self.event = event
        self.memo: dict[str, Any] = {}

    def message(self, fields: set[str], numeric: set[str], history: dict[str, HistorySpec]) -> dict[str, Any]:
        out: dict[str, Any] = {"ev": self.event["type"]}
        memo = self.memo
        for f in fields:
            if f in memo:
                v = memo[f]
            else:
                v = memo[f] = self._compute(f, history)
            if v is None:
                continue
            v = _scalar(f, v, numeric)
            if v is not _LEFT_OUT:
                out[f] = v
        return out

    def message_for(self, r_set: RuleSet, event_type: str, prog: Any,
                    fields: set[str], numeric: set[str], history: dict[str, HistorySpec]) -> dict[str, Any] | None:
        """The message for ``prog`` (``r_set``'s program for ``event_type``), computing its *costly*
        facts (:func:`_costly`: windowed history, identities) only for rules that the cheap facts
        leave undecided; None when the event's own fields already rule out every rule of the
        program (:attr:`_Plan.gate`), so nothing needs asserting.

        The gate reads only the event (``e__*``, channel, touchpoint): each rule's top-level
        conditions on those fields, judged by the reference semantics on the same values the full
        message would carry. A rule whose event conditions fail cannot match whatever the
        customer's facts are, so an event that no rule's event conditions admit (a page view of
        any URL but the sale pages, 3 in 4 events of the workload) is not built into a message and
        not asserted; every other event is asserted and durable_rules decides it.

        A rule that the cheap facts already decide gets the same answer whatever the costly ones
        are, so leaving them out of the message changes no match: the engine still judges every
        rule of the program on this message. It saves loading the spilled history or the identities
        record on most events (``identity.phone`` after a URL test that fails, a 90-day spend when
        the customer is already in the segment it grants)."""
        plan = plan_for(r_set, event_type, prog, fields)
        gate = plan.gate
        if gate is not None:
            own = self.message(plan.event_fields, numeric, history)
            if not any(holds(own) for holds in gate):
                return None
        msg = self.message(plan.cheap, numeric, history)
        if plan.undecided:
            done: set[str] = set()
            for cond, costly in plan.undecided:
                unknown = costly - done
                if unknown and _judge(cond, msg, unknown) is None:
                    got = self.message(unknown, numeric, history)
                    del got["ev"]
                    msg.update(got)
                    done |= unknown
        return msg

    def _compute(self, f: str, history: dict[str, HistorySpec]) -> Any:
        c, ev = self.customer, self.event
        if f == "ch":
            return ev["channel"]
        if f == "tp":
            return ev.get("touchpoint")
        if f == "first":
            return c.type_counts.get(ev["type"], 0) == 1
        prefix, _, name = f.partition("__")
        if prefix == "e":
            return ev["data"].get(name)
        if prefix == "h":
            spec = history.get(f)
            return history_value(c, spec, ev["ts"]) if spec is not None else None
        read = READERS.get(prefix)  # a customer value: the one accessor (shopkeeper.paths)
        return read(c, name) if read is not None else None


def _costly(field: str) -> bool:
    """Facts that may load records of their own: windowed history (spilled buckets) and
    identities (the customer's identities tree); every other fact is in the customer's record."""
    return field.startswith(("h__", "i__"))


def _of_event(field: str) -> bool:
    """Fields read from the event itself (its data, channel, touchpoint): the same whoever the
    customer is."""
    return field.startswith("e__") or field in ("ch", "tp")


def _event_gate(conditions: list[Condition]) -> tuple[set[str], list[Any]] | None:
    """The fields and, per rule, the test of its top-level conditions that read only the event:
    a rule can hold only if its test does. None when some rule has no such condition (it may hold
    on any event of the type: the gate would always be open)."""
    fields: set[str] = set()
    tests: list[Any] = []
    for cond in conditions:
        parts = cond.items if isinstance(cond, All) else (cond,)
        own = [c for c in parts if all(_of_event(f) for f in _fields_of(c))]
        if not own:
            return None
        fields.update(*(_fields_of(c) for c in own))
        tests.append(compile_message(All(tuple(own))))
    return fields, tests


class _Plan:
    """Which fields of a program's message are cheap, which rules need costly ones, and which
    events no rule can match (``gate``)."""

    __slots__ = ("cheap", "undecided", "event_fields", "gate", "_own")

    def __init__(self, fields: set[str], conditions: list[Condition]) -> None:
        gate = _event_gate(conditions) if conditions else None
        self.event_fields, self.gate = gate if gate is not None else (set(), None)
        self.cheap = {f for f in fields if not _costly(f)}
        self.undecided: list[tuple[Condition, set[str]]] = []
        for cond in conditions:
            costly = {f for f in _fields_of(cond) if _costly(f)}
            if costly:
                self.undecided.append((cond, costly))
        covered = set().union(*(c for _, c in self.undecided)) if self.undecided else set()
        # a costly field no condition names (cannot happen today) is computed up front
        self.cheap |= {f for f in fields if _costly(f) and f not in covered}
        #: the gate's fields as (field, where it is read from): what ``FactBuilder._compute`` reads
        self._own = tuple((f, 1 if f == "ch" else 2 if f == "tp" else f.partition("__")[2])
                          for f in sorted(self.event_fields))

    def closed(self, event_type: str, channel: str, touchpoint: str, data: Any, numeric: set[str]) -> bool:
        """True when the gate rules out every rule of the program for an event of these values —
        the same answer as building the event's own fields into a :class:`FactBuilder` message
        (the same values, the same numeric guard and text conversion, ``_scalar``), without the
        event dict, the builder and its memo: 3 in 4 events of the workload stop here."""
        gate = self.gate
        if gate is None:
            return False
        own: dict[str, Any] = {"ev": event_type}
        for f, src in self._own:
            v = channel if src == 1 else touchpoint if src == 2 else data.get(src)
            if v is not None:
                v = _scalar(f, v, numeric)
                if v is not _LEFT_OUT:
                    own[f] = v
        for holds in gate:
            if holds(own):
                return False
        return True


#: what :func:`_scalar` answers for a value the message leaves out
_LEFT_OUT = object()


def _scalar(f: str, v: Any, numeric: set[str]) -> Any:
    """A fact's value as the message carries it: a text where a number is compared is left out
    (the condition is false in every engine), a non-scalar becomes its text."""
    if f in numeric and (isinstance(v, bool) or not isinstance(v, (int, float))):
        return _LEFT_OUT
    return v if isinstance(v, (str, bool, int, float)) else str(v)


def plan_for(r_set: Any, event_type: str, prog: Any, fields: set[str]) -> _Plan:
    """``prog``'s plan, made once: kept in the rule set's ``plans`` (a plain dict: a
    ``WeakKeyDictionary``'s ``get`` is a Python call, ~1.5 µs per event) or, for an object
    without one, in :data:`_PLANS`."""
    plans = getattr(r_set, "plans", None)
    if plans is None:
        plans = _PLANS
    plan = plans.get(prog)
    if plan is None:
        plan = plans[prog] = _Plan(fields, r_set.conditions_for(event_type))
    return plan


#: program -> its _Plan (programs are replaced on reload; the plans go with them)
_PLANS: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()


def history_value(c: Customer, spec: HistorySpec, at: int) -> float | int:
    """A rule's ``history:`` value at the event's time ``at``: the window ``[at - within, at]``
    read by the one windowed aggregate (:func:`shopkeeper.windows.total`), sums rounded to 6
    decimals as the rules' language says."""
    since = at - spec.within_us if spec.within_us is not None else None
    if spec.kind == "count" and since is None and not spec.where and len(spec.types) >= 1:
        return sum(c.type_counts.get(t, 0) for t in spec.types)  # all-time counts are kept as facts
    if spec.kind == "count":
        return windows.total(c, spec.types, since, at + 1, where=spec.where)
    return round(windows.total(c, spec.types, since, at + 1, field=spec.field or "", where=spec.where), 6)


def _from_history(c: Customer, spec: HistorySpec, since: int | None, until: int) -> float | int:
    """The same figure read from every interaction of ``[since, until)`` (tests compare with it)."""
    got = windows.scan(c.interactions(since=since, until=until), spec.types,
                       spec.field or "" if spec.kind == "sum" else None, spec.where)
    return got if spec.kind == "count" else round(got, 6)


def event_dict(it: Interaction, idempotency_key: str = "") -> dict[str, Any]:
    return {"type": it.type, "channel": it.channel, "ts": it.ts, "touchpoint": it.touchpoint, "key": it.key,
            "data": dict(it.data), "idempotency_key": idempotency_key or it.idempotency_key}
