"""What a condition tree needs and what can change it, and whether a comparison is well typed:
computed once, here, for rules, segments, offers and campaigns alike.

* :func:`fields` / :func:`numeric_fields` — the message fields a rule's tree reads (what the
  :class:`~shopkeeper.rules.facts.FactBuilder` computes per event, and which of them are ordered
  as numbers, so a text there is left out of the message).
* :func:`dependencies` — the event types that can change the condition's value (``'*'``: any)
  and whether time alone can (windows, ``days_since``): what keeps the per-event segment update
  to the segments an event can change, and tells the scheduler what to re-run.
* :func:`judge` — a rule's tree in three-valued logic on a message that lacks some fields: the
  rules runtime computes costly facts (a 90-day window, identities) only when it matters.
* :func:`kind_of` / :func:`type_problem` — the kind of a customer value (number, text, true/false)
  and the one wording of a comparison that can never hold (``customer.orders`` against a text),
  reported by each front end at its own position (a YAML line, a column in an expression).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from .tree import ORDERING, All, AnyOf, Arith, Call, Cmp, Condition, Field, Neg, Not, Truth

#: the kept customer facts (``customer.<fact>``) and their kinds
HARD_KINDS = {"orders": "number", "total_spend": "number", "first_seen": "number", "last_seen": "number",
              "last_channel": "str", "last_order_at": "number", "interactions": "number"}
#: kept facts that change only on an order
ORDER_FACTS = frozenset({"orders", "total_spend", "last_order_at"})
#: the event types on which scores are refitted
SCORE_DEPS = ("order", "offer_shown", "offer_accepted", "offer_declined")
#: field-key prefix -> kind, for the prefixes whose kind does not depend on the name
_PREFIX_KINDS = {"n": "number", "s": "number", "g": "bool", "t": "bool", "i": "bool", "k": "bool", "h": "number"}


class Deps(NamedTuple):
    events: frozenset[str]  # event types that can change the value; '*' = any
    time_based: bool  # time alone can change it


def walk(node: Any) -> Iterator[Any]:
    """Every node of a tree (conditions and values), depth first."""
    yield node
    if isinstance(node, (All, AnyOf)):
        for c in node.items:
            yield from walk(c)
    elif isinstance(node, Not):
        yield from walk(node.item)
    elif isinstance(node, Truth):
        yield from walk(node.value)
    elif isinstance(node, Cmp):
        yield Field(node.field) if isinstance(node.field, str) else node.field
        if not isinstance(node.field, str):
            yield from walk(node.field)
        yield from walk(node.value)
    elif isinstance(node, Arith):
        yield from walk(node.left)
        yield from walk(node.right)
    elif isinstance(node, Neg):
        yield from walk(node.operand)


def fields(cond: Any) -> set[str]:
    """The field keys ``cond`` reads."""
    return {n.key for n in walk(cond) if isinstance(n, Field)}


def field_list(cond: Any) -> list[str]:
    """The field keys ``cond`` reads, each once, in the order written."""
    return list(dict.fromkeys(n.key for n in walk(cond) if isinstance(n, Field)))


def numeric_fields(cond: Any) -> set[str]:
    """The fields ``cond`` orders against a number (``gt: 5``…): a non-number there makes the
    comparison false, so the message leaves it out."""
    return {n.field for n in walk(cond) if isinstance(n, Cmp) and n.op in ORDERING and isinstance(n.field, str)
            and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)}


def field_deps(key: str, history: Mapping[str, Any] | None = None) -> Deps:
    """What can change the value of field ``key`` (``history``: the specs of ``h__`` keys)."""
    prefix, _, name = key.partition("__")
    if prefix == "c":
        return Deps(frozenset({"order" if name in ORDER_FACTS else "*"}), False)
    if prefix == "n":
        return Deps(frozenset({name}), False)
    if prefix == "s":
        return Deps(frozenset(SCORE_DEPS), False)
    if prefix in ("r", "x"):
        return Deps(frozenset(), False)  # the Decide request: no event changes it
    if prefix == "h" and history is not None and key in history:
        spec = history[key]
        return Deps(frozenset(spec.types), spec.within_us is not None)
    return Deps(frozenset({"*"}), False)


def call_deps(call: Call) -> Deps:
    fn, args = call.fn, call.args
    if fn == "count":
        return Deps(frozenset({args[0]}), args[1] is not None)
    if fn == "spend":
        return Deps(frozenset({"order"}), args[0] is not None)
    if fn == "days_since":
        return Deps(frozenset({args[0] or "*"}), True)
    return Deps(frozenset(), True)  # days_since_first


def dependencies(cond: Any, history: Mapping[str, Any] | None = None) -> Deps:
    """The event types that can change ``cond`` and whether time alone can."""
    events: set[str] = set()
    timed = False
    for n in walk(cond):
        if isinstance(n, Field):
            d = field_deps(n.key, history)
        elif isinstance(n, Call):
            d = call_deps(n)
        else:
            continue
        events |= d.events
        timed = timed or d.time_based
    return Deps(frozenset(events), timed)


def judge(cond: Condition, msg: dict[str, Any], unknown: set[str]) -> bool | None:
    """``cond`` on ``msg`` in three-valued logic: None when it depends on a field in ``unknown``
    (the same semantics as :func:`shopkeeper.conditions.evaluate`, which every back end follows):
    whether the cheap fields of a rule's message already decide it (a rule's tree: Cmp under
    All/AnyOf)."""
    if isinstance(cond, Cmp):
        from .python import evaluate  # the back end depends on this module's kinds, not the other way

        return None if cond.field in unknown else evaluate(cond, msg)
    pending = False
    if isinstance(cond, All):
        for c in cond.items:
            got = judge(c, msg, unknown)
            if got is False:
                return False
            pending = pending or got is None
        return None if pending else True
    for c in cond.items:
        got = judge(c, msg, unknown)
        if got is True:
            return True
        pending = pending or got is None
    return None if pending else False


def kind_of(key: str) -> str:
    """``number``, ``str``, ``bool`` or ``any`` for a customer value's field key."""
    prefix, _, name = key.partition("__")
    if prefix == "c":
        return HARD_KINDS.get(name, "any")
    return _PREFIX_KINDS.get(prefix, "any")


def type_problem(kind: str, op: str, v: Any, subject: str, *, strict: bool = True) -> str | None:
    """Why ``<subject of kind> <op> v`` is ill typed, or None. The wording is the one both front
    ends report. ``strict`` (rules): the constant must be of the field's kind and ordering needs
    a number. Not strict (the expression language, Python-like): only comparisons that can never
    hold are refused (``customer.orders == 'x'``, ``trait.city > true``); ``segment.vip == 1`` and
    ``trait.city > 'M'`` are allowed, as Python allows them."""
    if v is None or isinstance(v, (list, dict)):
        return f"compare with a single value (text, number, true/false), not {v!r}"
    isnum = isinstance(v, (int, float)) and not isinstance(v, bool)
    if op in ORDERING and not isnum and (strict or isinstance(v, bool) or kind not in ("str", "any")):
        return f"type error: `{op}` needs a number, not {type(v).__name__} {v!r}"
    if kind == "number" and not isnum and (strict or isinstance(v, str)):
        return f"type error: {subject} is a number; {v!r} is {type(v).__name__}"
    if kind == "str" and not isinstance(v, str):
        if op in ORDERING:
            return f"type error: {subject} is text; `{op}` needs a number field"
        return f"type error: {subject} is text; {v!r} is {type(v).__name__}"
    if kind == "bool" and not isinstance(v, bool) and (strict or isinstance(v, str)):
        return f"type error: {subject} is true or false, not {v!r}"
    return None


def subject_of(key: str) -> str:
    """A field key as its author spells it: ``f__vip`` -> ``fact.vip``."""
    prefix, _, rest = key.partition("__")
    if prefix == "k" and rest.endswith("__marketing"):
        rest = rest[: -len("__marketing")]  # the default purpose is not written
    names = {"e": "event.", "c": "customer.", "f": "fact.", "s": "score.", "g": "segment.", "t": "tag.",
             "a": "trait.", "i": "identity.", "k": "consent.", "n": "customer.count.", "h": "history#",
             "r": "", "x": "ctx."}
    return names.get(prefix, "") + rest.replace("__", ".") if rest else key
