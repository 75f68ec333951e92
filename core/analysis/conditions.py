"""A small, safe condition language for segment definitions and offer eligibility.

Conditions are Python-like expressions, parsed with :mod:`ast` and compiled into closures
(no ``eval``): only the names and functions below are allowed, anything else is an error
with its position. Kept deliberately small; the central rules engine (``core/rules_engine.py``)
has its own language for rules. Examples::

    spend(days=90) > 100
    days_since('page_view') >= 30 and consent('email')
    score('clv.value') >= 500 or hard.orders >= 5
    'vip' in segments and count('email_click', days=30) == 0

=============================  ============================================================
name                           value
=============================  ============================================================
``hard.<fact>``                a hard fact: ``orders``, ``total_spend``, ``interactions``…
``score('name')``              a score value (``None`` when absent; comparisons with None are false)
``soft('name')``               a soft fact's value
``trait('name')``              a profile trait
``consent(channel, purpose)``  True only on an explicit grant (purpose defaults to marketing)
``segments``                   the set of segments the customer is in
``count(type, days=None)``     interactions of ``type`` (``'*'`` any) in the last ``days`` (or ever)
``spend(days=None)``           order amounts in the last ``days`` (or ever)
``days_since(type=None)``      days since the last interaction of ``type`` (any); 1e9 if never
``days_since_first()``         days since the customer was first seen
``placement``, ``channel``,    the ``Decide`` request (offers only): placement, channel and
``touchpoint``, ``ctx('k')``   touch point, and a key of the caller's context
=============================  ============================================================

Each compiled condition knows which event types can change its value (``deps``; ``'*'``
means any) and whether time alone can change it (``time_based``: windows and ``days_since``),
which is what keeps the per-event segment update cheap and tells the scheduler what to re-run.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

US_PER_DAY = 86_400 * 1_000_000
NEVER = 1e9


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message says where and why."""


class Env:
    """What a condition sees: one customer at one instant (plus a Decide request), with
    history aggregates computed once per evaluation and shared by every condition."""

    __slots__ = ("customer", "now", "request", "_memo", "_win_since", "_win")

    def __init__(self, customer: Any, now: int, request: dict[str, Any] | None = None) -> None:
        self.customer = customer
        self.now = now
        self.request = request or {}
        self._memo: dict[Any, Any] = {}
        self._win_since: int | None = None
        self._win: list[Any] = []

    def window(self, since: int) -> list[Any]:
        """Interactions at or after ``since``, read from the history once per evaluation (the
        widest window asked for so far is kept; narrower ones are filtered from it)."""
        if self._win_since is None or since < self._win_since:
            self._win = list(self.customer.history.values(min=since))
            self._win_since = since
            return self._win
        if since == self._win_since:
            return self._win
        return [it for it in self._win if it.key >= since]

    def memo(self, key: Any, fn: Callable[[], Any]) -> Any:
        m = self._memo
        if key in m:
            return m[key]
        v = m[key] = fn()
        return v

    # aggregates --------------------------------------------------------------------
    def count(self, type_: str, days: float | None) -> int:
        c = self.customer
        if days is None:
            return c.hard.get("interactions", 0) if type_ == "*" else c.type_counts.get(type_, 0)
        since = self.now - int(days * US_PER_DAY)
        n = 0
        for it in self.window(since):
            if type_ == "*" or it.type == type_:
                n += 1
        return n

    def spend(self, days: float | None) -> float:
        c = self.customer
        if days is None:
            return float(c.hard.get("total_spend", 0.0))
        since = self.now - int(days * US_PER_DAY)
        total = 0.0
        for it in self.window(since):
            if it.type == "order":
                total += float(it.data.get("amount", 0.0))
        return round(total, 2)

    def days_since(self, type_: str | None) -> float:
        c = self.customer
        if type_ is None or type_ == "*":
            last = c.hard.get("last_seen")
        elif type_ == "order":
            last = c.hard.get("last_order_at")
        elif not c.type_counts.get(type_):
            last = None
        else:
            last = None
            for it in c.interactions(type=type_, newest_first=True):
                last = it.ts
                break
        return NEVER if last is None else (self.now - last) / US_PER_DAY


@dataclass
class Condition:
    source: str
    fn: Callable[[Env], Any]
    deps: frozenset[str] = field(default_factory=frozenset)
    time_based: bool = False

    def __call__(self, env: Env) -> bool:
        try:
            return bool(self.fn(env))
        except (TypeError, ZeroDivisionError):
            return False  # a missing value (None) compared or divided: the condition does not hold


_CMP = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Eq: operator.eq, ast.NotEq: operator.ne,
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Mod: operator.mod}
_FUNCS = {"score", "soft", "trait", "consent", "count", "spend", "days_since", "days_since_first", "ctx",
          "in_segment"}
_ORDER_FACTS = {"orders", "total_spend", "last_order_at"}  # change only on an order
_REQUEST_NAMES = {"placement", "channel", "touchpoint"}


def compile_condition(source: str, where: str = "condition") -> Condition:
    """Compile ``source``; raise :class:`ConditionError` naming ``where`` and the column."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError(f"{where}: a condition must be non-empty text")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"{where}:{exc.offset}: {exc.msg}: {source!r}") from None
    deps: set[str] = set()
    timed = [False]

    def err(node: ast.AST, msg: str) -> ConditionError:
        return ConditionError(f"{where}:{getattr(node, 'col_offset', 0) + 1}: {msg} in {source!r}")

    def const(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        raise err(node, "expected a constant")

    def comp(node: ast.AST) -> Callable[[Env], Any]:
        if isinstance(node, ast.Constant):
            v = node.value
            return lambda e: v
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = frozenset(const(x) for x in node.elts)
            return lambda e: items
        if isinstance(node, ast.BoolOp):
            parts = [comp(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda e: all(p(e) for p in parts)
            return lambda e: any(p(e) for p in parts)
        if isinstance(node, ast.UnaryOp):
            inner = comp(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda e: not inner(e)
            if isinstance(node.op, ast.USub):
                return lambda e: -inner(e)
            raise err(node, "unsupported operator")
        if isinstance(node, ast.BinOp):
            op = _BIN.get(type(node.op))
            if op is None:
                raise err(node, "unsupported operator")
            left, right = comp(node.left), comp(node.right)
            return lambda e: op(left(e), right(e))
        if isinstance(node, ast.Compare):
            left = comp(node.left)
            pairs = []
            for o, r in zip(node.ops, node.comparators, strict=True):
                f = _CMP.get(type(o))
                if f is None:
                    raise err(node, "unsupported comparison")
                pairs.append((f, comp(r)))

            def compare(e: Env) -> bool:
                a = left(e)
                for f, r in pairs:
                    b = r(e)
                    if a is None or b is None or not f(a, b):
                        return False
                    a = b
                return True

            return compare
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "hard":
            attr = node.attr
            deps.add("order" if attr in _ORDER_FACTS else "*")
            return lambda e: e.customer.hard.get(attr)
        if isinstance(node, ast.Name):
            if node.id == "segments":
                deps.add("*")
                return lambda e: e.customer.segments
            if node.id in _REQUEST_NAMES:
                name = node.id
                return lambda e: e.request.get(name)
            if node.id in ("True", "False", "None"):
                v = {"True": True, "False": False, "None": None}[node.id]
                return lambda e: v
            raise err(node, f"unknown name {node.id!r} (known: hard.<fact>, segments, placement, channel, "
                            f"touchpoint, and the functions {', '.join(sorted(_FUNCS))})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return call(node, node.func.id)
        raise err(node, f"unsupported expression {type(node).__name__}")

    def call(node: ast.Call, fname: str) -> Callable[[Env], Any]:
        if fname not in _FUNCS:
            raise err(node, f"unknown function {fname!r} (known: {', '.join(sorted(_FUNCS))})")
        args = [const(a) for a in node.args]
        kw = {k.arg: const(k.value) for k in node.keywords}
        if fname == "score":
            (name,) = args
            deps.update(("order", "offer_shown", "offer_accepted", "offer_declined"))
            return lambda e: (lambda f: f.value if f is not None else None)(e.customer.scores.get(name))
        if fname == "soft":
            (name,) = args
            deps.add("*")
            return lambda e: (lambda f: f.value if f is not None else None)(e.customer.soft.get(name))
        if fname == "trait":
            (name,) = args
            deps.add("*")
            return lambda e: e.customer.traits.get(name)
        if fname == "consent":
            channel = args[0] if args else kw.get("channel")
            purpose = args[1] if len(args) > 1 else kw.get("purpose", "marketing")
            deps.add("*")
            return lambda e: e.customer.may_contact(channel, purpose)
        if fname == "in_segment":
            (name,) = args
            deps.add("*")
            return lambda e: name in e.customer.segments
        if fname == "count":
            type_ = args[0] if args else kw.get("type", "*")
            days = args[1] if len(args) > 1 else kw.get("days")
            deps.add(type_)
            if days is not None:
                timed[0] = True
            key = ("count", type_, days)
            return lambda e: e.memo(key, lambda: e.count(type_, days))
        if fname == "spend":
            days = args[0] if args else kw.get("days")
            deps.add("order")
            if days is not None:
                timed[0] = True
            key = ("spend", days)
            return lambda e: e.memo(key, lambda: e.spend(days))
        if fname == "days_since":
            type_ = args[0] if args else kw.get("type")
            deps.add(type_ or "*")
            timed[0] = True
            key = ("days_since", type_)
            return lambda e: e.memo(key, lambda: e.days_since(type_))
        if fname == "days_since_first":
            timed[0] = True
            return lambda e: (e.now - (e.customer.hard.get("first_seen") or e.now)) / US_PER_DAY
        if fname == "ctx":
            (name,) = args
            return lambda e: e.request.get("context", {}).get(name)
        raise err(node, f"unknown function {fname!r}")  # pragma: no cover

    try:
        fn = comp(tree.body)
    except ValueError as exc:  # unpacking a wrong number of arguments
        if isinstance(exc, ConditionError):
            raise
        raise ConditionError(f"{where}: wrong number of arguments in {source!r}") from None
    return Condition(source.strip(), fn, frozenset(deps), timed[0])


def compile_all(sources: Any, where: str) -> Condition | None:
    """A condition from text or a list of texts (all must hold); None when empty."""
    if sources is None or sources == [] or sources == "":
        return None
    if isinstance(sources, str):
        return compile_condition(sources, where)
    if isinstance(sources, list):
        return compile_condition(" and ".join(f"({s})" for s in sources), where)
    raise ConditionError(f"{where}: must be a condition or a list of conditions")
