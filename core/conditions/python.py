"""The Python back end: a condition tree turned into the source of one small function, compiled once.

Two readers of values, one code generator:

* **customer** (segments, offers, campaign and explain use of the expression language): the
  function is ``f(e)`` over an :class:`~shopkeeper.analysis.conditions.Env` (``e.customer`` is
  ``c``); a customer value is read with the one accessor's inlined expression
  (:func:`shopkeeper.paths.source`), an aggregate (``count('order', days=30)``) through the
  Env's per-evaluation memo, the Decide request from ``e.request``.
* **message** (the rules' reference semantics: the rules durable_rules cannot judge, explain,
  costly-fact planning, campaign audiences): the function is ``f(m)`` over the flat message the
  :class:`~shopkeeper.rules.facts.FactBuilder` built, reading ``m.get(key)``.

Straight-line generated code instead of a tree of closures or an interpreter: evaluating the ~50
segment conditions per event is ~50 lines of ``and``/``or`` over locals, and the membership update
is one function for all of them. Only names this module generates reach the compiled text
(``e``, ``c``, ``m``, temporaries ``_v<n>`` and bound constants ``_k<n>``); every value written
by an author is a ``repr`` of a plain literal or a bound constant.

A comparison with a missing value is false; ordering holds only between two numbers or two
texts (:mod:`shopkeeper.conditions.tree`). A ``TypeError`` or ``ZeroDivisionError`` while
evaluating (arithmetic on a missing value, a list where a number was expected) makes the whole
condition false.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

from .. import paths
from .analysis import kind_of
from .tree import ORDERING, All, AnyOf, Arith, Call, Cmp, Const, Field, Neg, Not, Truth, left_of, right_of

US_PER_DAY = 86_400 * 1_000_000
_CMP_SRC = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_PLAIN = (int, float, str, bool, type(None))
_NAMES = itertools.count()  # temporaries and constants are unique per process: conditions can share a function
#: what may not be ordered against a number (a bool is an int to Python, not to a condition)
_NOT_NUMBER = (bool, str)


#: an aggregate local of a membership function not computed yet (``generate``'s ``memo``)
_U = object()


class Unsupported(ValueError):
    """A tree the chosen reader cannot evaluate (an aggregate in a flat message)."""


class Source:
    """The generated expression of one tree and the constants it binds."""

    __slots__ = ("expr", "consts")

    def __init__(self, expr: str, consts: dict[str, Any]) -> None:
        self.expr = expr
        self.consts = consts


def generate(cond: Any, reader: str, memo: dict[str, str] | None = None) -> Source:
    """The Python expression of condition ``cond`` for ``reader`` (``customer`` or ``message``).

    ``memo`` (the membership function's, shared by all its conditions): each aggregate and score
    read (``e.memo_days_since('page_view')``) becomes a local of that function, computed on first use
    and reused by every later condition — instead of a method call and a dict lookup in the Env's
    memo per use (~28 per customer for ``bench_analysis``'s 50 segments). ``memo`` maps the call's
    text to its local's name; :func:`membership` starts every such local unset (``_U``)."""
    consts: dict[str, Any] = {}
    # with the function's own memo, the aggregate itself (``e.spend``), not the Env's memoising wrapper
    # (``e.memo_spend``): a second memo in a dict behind a method call (~10 reads per customer, §93)
    agg = "" if memo is not None else "memo_"

    def memo_call(text: str) -> str:
        if memo is None:
            return text
        name = memo.get(text)
        if name is None:
            name = memo[text] = f"_m{next(_NAMES)}"
        return f"({name} if {name} is not _U else ({name} := {text}))"

    def lit(v: Any) -> str:
        if type(v) in _PLAIN and not (isinstance(v, float) and (v != v or v in (float("inf"), float("-inf")))):
            return repr(v)
        name = f"_k{next(_NAMES)}"
        consts[name] = v
        return name

    def tmp() -> str:
        return f"_v{next(_NAMES)}"

    def read(key: str) -> str:
        if reader == "message":
            return f"m.get({lit(key)})"
        prefix, _, name = key.partition("__")
        if prefix == "r":
            return f"e.request.get({lit(name)})"
        if prefix == "x":
            return f"e.request.get('context', {{}}).get({lit(name)})"
        if prefix not in paths.READERS:
            raise Unsupported(f"{key!r} is not a customer value")
        if prefix == "s":  # the customer's scores merged once per evaluation, not a table walk per name
            return memo_call(f"e.memo_score({lit(name)})")
        return paths.source(key, lit, tmp)

    def call(node: Call) -> str:
        if reader == "message":
            raise Unsupported(f"{node.fn}() is evaluated on a customer, not a message")
        fn, args = node.fn, node.args
        if fn == "count":
            type_, days = args
            if days is None:
                return "c.hard.get('interactions', 0)" if type_ == "*" else f"c.type_counts.get({lit(type_)}, 0)"
            return memo_call(f"e.{agg}count({lit(type_)}, {lit(days)})")
        if fn == "spend":
            (days,) = args
            return "float(c.hard.get('total_spend', 0.0))" if days is None else memo_call(f"e.{agg}spend({lit(days)})")
        if fn == "days_since":
            return memo_call(f"e.{agg}days_since({lit(args[0])})")
        if fn == "days_since_first":
            return f"((e.now - (c.hard.get('first_seen') or e.now)) / {US_PER_DAY})"
        raise Unsupported(f"unknown aggregate {fn!r}")

    def value(node: Any) -> str:
        if isinstance(node, Field):
            return read(node.key)
        if isinstance(node, Const):
            return lit(node.value)
        if isinstance(node, Call):
            return call(node)
        if isinstance(node, Arith):
            return f"({value(node.left)} {node.op} {value(node.right)})"
        if isinstance(node, Neg):
            return f"(-{value(node.operand)})"
        raise Unsupported(f"not a value: {node!r}")

    def numeric(node: Any) -> bool:
        """Values that are numbers (or missing) by construction — aggregates, arithmetic, and the
        customer values of kind number (kept facts, counts, scores: written as numbers by the
        engine, and left out of a rule's message when not) — need no bool/text guard: the guard
        cost a third of the segment update's CPU."""
        if isinstance(node, Field):
            return kind_of(node.key) == "number" and not node.key.startswith("h__")
        return isinstance(node, (Call, Arith, Neg))

    def cmp(node: Cmp) -> str:
        left, op = left_of(node), node.op
        if op == "exists":
            return f"({value(left)} is not None)"
        if op == "missing":
            return f"({value(left)} is None)"
        v = tmp()
        lhs = f"({v} := {value(left)})"
        right = right_of(node)
        if op in ("in", "not_in"):
            r = tmp()
            sym = "in" if op == "in" else "not in"
            return f"({lhs} is not None and ({r} := {value(right)}) is not None and {v} {sym} {r})"
        sym = _CMP_SRC[op]
        if isinstance(right, Const):
            want = right.value
            if want is None:
                return "False"  # nothing compares with a missing value
            if op not in ORDERING:
                return f"({lhs} is not None and {v} {sym} {lit(want)})"
            if isinstance(want, bool):
                return "False"  # no ordering on booleans
            if isinstance(want, str):
                return f"(isinstance({lhs}, str) and {v} {sym} {lit(want)})"
            if isinstance(want, (int, float)):
                if numeric(left):
                    return f"({lhs} is not None and {v} {sym} {lit(want)})"
                return f"({lhs} is not None and not isinstance({v}, _NOT_NUMBER) and {v} {sym} {lit(want)})"
        r = tmp()
        rhs = f"({r} := {value(right)})"
        if op not in ORDERING:
            return f"({lhs} is not None and {rhs} is not None and {v} {sym} {r})"
        if numeric(left) and numeric(right):
            return f"({lhs} is not None and {rhs} is not None and {v} {sym} {r})"
        return (f"({lhs} is not None and {rhs} is not None and not isinstance({v}, bool) "
                f"and not isinstance({r}, bool) and isinstance({v}, str) == isinstance({r}, str) and {v} {sym} {r})")

    def cond_src(node: Any) -> str:
        if isinstance(node, Cmp):
            return cmp(node)
        if isinstance(node, All):
            return "(" + " and ".join(cond_src(c) for c in node.items) + ")" if node.items else "True"
        if isinstance(node, AnyOf):
            return "(" + " or ".join(cond_src(c) for c in node.items) + ")" if node.items else "False"
        if isinstance(node, Not):
            return f"(not {cond_src(node.item)})"
        if isinstance(node, Truth):
            return value(node.value)
        raise Unsupported(f"not a condition: {node!r}")

    return Source(cond_src(cond), consts)


def build(code: str, consts: dict[str, Any], name: str) -> Callable[..., Any]:
    """Compile ``code`` (made by this module from a tree) and return its function ``name``."""
    # the exceptions too: the membership function catches them by name (without them a condition
    # dividing by a zero fact raised NameError out of the whole function instead of being false)
    namespace: dict[str, Any] = {"__builtins__": {"float": float, "isinstance": isinstance, "str": str,
                                                  "bool": bool, "TypeError": TypeError,
                                                  "ZeroDivisionError": ZeroDivisionError},
                                 "_NOT_NUMBER": _NOT_NUMBER, "_U": _U, **consts}
    exec(compile(code, "<condition>", "exec"), namespace)  # noqa: S102 - generated from a checked tree
    return namespace[name]


def customer_function(src: Source) -> Callable[[Any], Any]:
    """``f(env)`` from a customer-reader :class:`Source`: the expression's value as it is (a
    condition that is just a path gives the value); the caller turns it into a truth value and
    a ``TypeError``/``ZeroDivisionError`` into False."""
    return build(f"def _condition(e):\n    c = e.customer\n    return {src.expr}\n", src.consts, "_condition")


def compile_message(cond: Any) -> Callable[[dict[str, Any]], bool]:
    """``f(message) -> bool``: ``cond`` judged on a flat message (the rules' reference semantics)."""
    src = generate(cond, "message")
    code = (f"def _condition(m):\n    try:\n        return True if {src.expr} else False\n"
            "    except (TypeError, ZeroDivisionError):\n        return False\n")
    return build(code, src.consts, "_condition")


@functools.lru_cache(maxsize=8192)
def _cached(cond: Any) -> Callable[[dict[str, Any]], bool]:
    return compile_message(cond)


#: id(tree) -> (tree, its function): found without hashing the whole tree on every call (the
#: tree is held, so its id is not reused while it is here); equal trees share one compilation
_BY_ID: dict[int, tuple[Any, Callable[[dict[str, Any]], bool]]] = {}


def evaluate(cond: Any, message: dict[str, Any]) -> bool:
    """``cond`` on ``message``; each distinct tree is compiled once (kept in a bounded cache)."""
    got = _BY_ID.get(id(cond))
    if got is None or got[0] is not cond:
        try:
            fn = _cached(cond)
        except TypeError:  # a constant that cannot be hashed
            fn = compile_message(cond)
        if len(_BY_ID) >= 8192:
            _BY_ID.clear()
        got = _BY_ID[id(cond)] = (cond, fn)
    return got[1](message)


def membership(items: list[tuple[str, Source]], memo_locals: Any = ()) -> Callable[..., None]:
    """One function ``f(env, member, enter, leave)`` evaluating every ``(segment, source)`` in
    order: ``enter(name)`` when a condition holds for a non-member, ``leave(name)`` when it no
    longer holds for a member (``member`` is the customer's live segment mapping, so a later
    ``segment.x`` sees an earlier change, as when evaluated one by one). ``memo_locals``: the
    names :func:`generate` gave the shared aggregate reads (its ``memo``), all unset at the start."""
    lines = ["def _membership(e, member, enter, leave):", "    c = e.customer"]
    if memo_locals:
        lines.append("    " + " = ".join(memo_locals) + " = _U")
    consts: dict[str, Any] = {}
    for name, src in items:
        consts.update(src.consts)
        lines += ["    try:", f"        v = {src.expr}", "    except (TypeError, ZeroDivisionError):",
                  "        v = False", "    if v:", f"        if {name!r} not in member:",
                  f"            enter({name!r})", f"    elif {name!r} in member:", f"        leave({name!r})"]
    if not items:
        lines.append("    return None")
    return build("\n".join(lines) + "\n", consts, "_membership")
