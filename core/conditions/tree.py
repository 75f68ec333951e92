"""The one intermediate form of a condition: a small typed tree both condition languages compile to.

Rules (YAML ``when: conditions:``, :mod:`shopkeeper.rules.condition_checker`) and segments, offers
and campaigns (the Python-like expressions of :mod:`shopkeeper.analysis.conditions`) are two
*front ends*: each parses its own surface syntax, lowers its own surface semantics (a rule's
``is_not`` holds for a missing value; a segment's ``!=`` does not) and produces this tree.
Everything after that is done once, on the tree: the dependency analysis and type check
(:mod:`shopkeeper.conditions.analysis`), the Python code generator (:mod:`shopkeeper.conditions.python`)
and the durable_rules translation (:mod:`shopkeeper.rules.matching`, the only importer of
``durable_rules``).

Leaves name customer and event values by their *field key* (``c__orders``, ``f__vip``, ``e__amount``,
``h__…``; see :mod:`shopkeeper.paths`), the keys of the rules engine's flat message, so a rule's
tree is exactly what durable_rules is given: :class:`Cmp` of a field and a constant under
:class:`All` / :class:`AnyOf`. The expression language needs a little more — arithmetic,
value-against-value comparisons, negation and the windowed aggregates (``count('order', days=30)``)
that are computed at evaluation time — which the other node types carry. Such trees run on the
Python back end only.

Semantics, the same in every back end: a comparison with a missing value (None) is false, except
``missing``/``exists``; ordering (``gt``…) never holds between a boolean and anything, nor
between text and a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: comparison operators of :class:`Cmp` every back end takes (``in`` a list of constants is
#: lowered to ``eq``/``ne`` by the front ends)
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "exists", "missing")
#: containment of one value in another (``'vip' in trait.tags``): the Python back end only
CONTAINMENT = ("in", "not_in")
ORDERING = frozenset({"gt", "gte", "lt", "lte"})


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """A value read by field key: a customer value (``f__vip``), an event field (``e__amount``,
    ``ev``, ``ch``, ``tp``, ``first``), a history aggregate (``h__…``) or, in offers, the Decide
    request (``r__placement``, ``x__<context key>``)."""

    key: str


@dataclass(frozen=True, slots=True)
class Const:
    value: Any


@dataclass(frozen=True, slots=True)
class Call:
    """An aggregate computed when the condition is evaluated, at the evaluation's instant:
    ``count`` (type, days), ``spend`` (days), ``days_since`` (type), ``days_since_first`` ()."""

    fn: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Arith:
    """``left <op> right`` with op one of ``+ - * / %``; a missing operand makes the condition false."""

    op: str
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Any


Value = Field | Const | Call | Arith | Neg


# -- conditions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cmp:
    """``field <op> value``. ``field`` is a field key (a rule's, always) or a value node; ``value``
    a constant (a rule's, always) or a value node. A missing value never matches (except ``missing``)."""

    field: Any
    op: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Any


@dataclass(frozen=True, slots=True)
class Truth:
    """A value used as a condition (``consent.email``, ``segment.vip``, ``customer.orders``):
    holds when the value is truthy."""

    value: Any


Condition = Cmp | All | AnyOf | Not | Truth


def left_of(cmp: Cmp) -> Any:
    """The left side of ``cmp`` as a value node."""
    return Field(cmp.field) if isinstance(cmp.field, str) else cmp.field


def right_of(cmp: Cmp) -> Any:
    """The right side of ``cmp`` as a value node."""
    v = cmp.value
    return v if isinstance(v, (Field, Const, Call, Arith, Neg)) else Const(v)


def is_flat(cond: Any) -> bool:
    """A tree of field-against-constant comparisons under All/AnyOf: what a rule is, and what
    an engine matching a flat message (durable_rules) can take."""
    if isinstance(cond, Cmp):
        return (cond.op in OPS and isinstance(cond.field, str)
                and not isinstance(cond.value, (Field, Const, Call, Arith, Neg)))
    if isinstance(cond, (All, AnyOf)):
        return all(is_flat(c) for c in cond.items)
    return False
