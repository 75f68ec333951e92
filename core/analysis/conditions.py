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
``days_since(type=None)``      days since the last interaction of ``type`` (any); missing (None) if never
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
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..customer import DAILY_KEEP_DAYS, SPEND

US_PER_DAY = 86_400 * 1_000_000


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message says where and why."""


def yaml_documents(directory: str | Path) -> Iterator[tuple[Path, Any]]:
    """(path, parsed document) for every ``*.yaml``/``*.yml`` in ``directory``, in name order (a
    missing directory has none); unparsable YAML is a :class:`ConditionError` naming the file."""
    import yaml

    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConditionError(f"{path}: not valid YAML: {exc}") from None
        yield path, doc


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

    def memo_count(self, type_: str, days: float) -> int:
        key = ("count", type_, days)
        m = self._memo
        if key in m:
            return m[key]
        v = m[key] = self.count(type_, days)
        return v

    def memo_spend(self, days: float) -> float:
        key = ("spend", days)
        m = self._memo
        if key in m:
            return m[key]
        v = m[key] = self.spend(days)
        return v

    def memo_days_since(self, type_: str | None) -> float | None:
        key = ("days_since", type_)
        m = self._memo
        if key in m:
            return m[key]
        v = m[key] = self.days_since(type_)
        return v

    def memo(self, key: Any, fn: Callable[[], Any]) -> Any:
        m = self._memo
        if key in m:
            return m[key]
        v = m[key] = fn()
        return v

    # aggregates --------------------------------------------------------------------
    # Windows are answered from the customer's per-day aggregates (``Customer.daily``): whole
    # days inside the window are summed, only the window's first (partial) day is read from the
    # history, and only if that day had a matching event. Customers without aggregates (records
    # older than them) and windows longer than what is kept read the history window instead.

    def _days(self, since: int) -> tuple[dict[int, dict[str, Any]], int] | None:
        daily = self.customer.daily
        if daily is None:
            return None
        m = self._memo
        floor = m.get(_FLOOR)
        if floor is None:
            floor = m[_FLOOR] = (max(daily) - DAILY_KEEP_DAYS) if daily else 0
        sd = since // US_PER_DAY
        if daily and sd < floor:
            return None
        return daily, sd

    def count(self, type_: str, days: float | None) -> int:
        c = self.customer
        if days is None:
            return c.hard.get("interactions", 0) if type_ == "*" else c.type_counts.get(type_, 0)
        since = self.now - int(days * US_PER_DAY)
        got = self._days(since)
        n = 0
        if got is None:
            for it in self.window(since):
                if type_ == "*" or it.type == type_:
                    n += 1
            return n
        daily, sd = got
        anyt = type_ == "*"
        for d, b in daily.items():
            if d > sd:
                n += sum(v for k, v in b.items() if k != SPEND) if anyt else b.get(type_, 0)
        b = daily.get(sd)
        if b and (anyt or b.get(type_)):
            for it in c.history.values(min=since, max=(sd + 1) * US_PER_DAY - 1):
                if anyt or it.type == type_:
                    n += 1
        return n

    def spend(self, days: float | None) -> float:
        c = self.customer
        if days is None:
            return float(c.hard.get("total_spend", 0.0))
        since = self.now - int(days * US_PER_DAY)
        got = self._days(since)
        total = 0.0
        if got is None:
            for it in self.window(since):
                if it.type == "order":
                    total += float(it.data.get("amount", 0.0))
            return round(total, 2)
        daily, sd = got
        for d, b in daily.items():
            if d > sd:
                total += b.get(SPEND, 0.0)
        b = daily.get(sd)
        if b and b.get("order"):
            for it in c.history.values(min=since, max=(sd + 1) * US_PER_DAY - 1):
                if it.type == "order":
                    total += float(it.data.get("amount", 0.0))
        return round(total, 2)

    def days_since(self, type_: str | None) -> float | None:
        """None when there was no such interaction: a missing value, so any comparison with it is
        false — a buyer who never viewed a page is not "30 days without a page view"."""
        c = self.customer
        if type_ is None or type_ == "*":
            last = c.hard.get("last_seen")
        elif type_ == "order":
            last = c.hard.get("last_order_at")
        elif not c.type_counts.get(type_):
            last = None
        elif c.last_at is not None:
            last = c.last_at.get(type_)
        else:
            last = None
            for it in c.interactions(type=type_, newest_first=True):
                last = it.ts
                break
        return None if last is None else (self.now - last) / US_PER_DAY


_FLOOR = ("daily-floor",)


@dataclass
class Condition:
    source: str
    fn: Callable[[Env], Any]
    deps: frozenset[str] = field(default_factory=frozenset)
    time_based: bool = False
    expr: str = ""  # the generated Python expression (``e``: the Env, ``c``: its customer)
    consts: dict[str, Any] = field(default_factory=dict)
    #: old spellings used, as (what was written, the path to write instead): checkers warn
    deprecated: tuple[tuple[str, str], ...] = ()

    def __call__(self, env: Env) -> bool:
        try:
            return bool(self.fn(env))
        except (TypeError, ZeroDivisionError):
            return False  # a missing value (None) compared or divided: the condition does not hold


_FUNCS = {"score", "soft", "trait", "consent", "count", "spend", "days_since", "days_since_first", "ctx",
          "in_segment"}
_ORDER_FACTS = {"orders", "total_spend", "last_order_at"}  # change only on an order
_REQUEST_NAMES = {"placement", "channel", "touchpoint"}
_SCORE_DEPS = ("order", "offer_shown", "offer_accepted", "offer_declined")  # what refits scores
#: the old function spellings of a customer value -> the path head they stand for (deprecated)
_OLD_PATHS = {"soft": "fact", "score": "score", "trait": "trait", "in_segment": "segment"}


_BIN_SRC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_CMP_SRC = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!=",
            ast.In: "in", ast.NotIn: "not in"}
_PLAIN = (int, float, str, bool, type(None))


def compile_condition(source: str, where: str = "condition") -> Condition:
    """Compile ``source``; raise :class:`ConditionError` naming ``where`` and the column.

    The checked tree is turned into the source of one small Python function (names and
    functions outside the vocabulary never get that far; constants are ``repr``'d or bound as
    values), compiled once: evaluating 50 segment conditions per event is then ~50 calls of
    straight-line code instead of a tree of closures.
    """
    if not isinstance(source, str) or not source.strip():
        raise ConditionError(f"{where}: a condition must be non-empty text")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"{where}:{exc.offset}: {exc.msg}: {source!r}") from None
    deps: set[str] = set()
    timed = [False]
    consts: dict[str, Any] = {}
    deprecated: list[tuple[str, str]] = []
    text = source.strip()

    def err(node: ast.AST, msg: str) -> ConditionError:
        return ConditionError(f"{where}:{getattr(node, 'col_offset', 0) + 1}: {msg} in {source!r}")

    def const(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        raise err(node, "expected a constant")

    def lit(v: Any) -> str:
        if type(v) in _PLAIN and not (isinstance(v, float) and v != v):
            r = repr(v)
            if r not in ("inf", "-inf"):
                return r
        name = f"_k{next(_NAMES)}"
        consts[name] = v
        return name

    def var() -> str:
        return f"_v{next(_NAMES)}"

    def comp(node: ast.AST) -> str:
        if isinstance(node, ast.Constant):
            return lit(node.value)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return lit(frozenset(const(x) for x in node.elts))
        if isinstance(node, ast.BoolOp):
            parts = [comp(v) for v in node.values]
            op = " and " if isinstance(node.op, ast.And) else " or "
            return f"(True if ({op.join(parts)}) else False)"
        if isinstance(node, ast.UnaryOp):
            inner = comp(node.operand)
            if isinstance(node.op, ast.Not):
                return f"(not {inner})"
            if isinstance(node.op, ast.USub):
                return f"(-{inner})"
            raise err(node, "unsupported operator")
        if isinstance(node, ast.BinOp):
            op = _BIN_SRC.get(type(node.op))
            if op is None:
                raise err(node, "unsupported operator")
            return f"({comp(node.left)} {op} {comp(node.right)})"
        if isinstance(node, ast.Compare):
            # a chain; a missing value (None) anywhere makes it false
            prev = var()
            terms = [f"({prev} := {comp(node.left)}) is not None"]
            for o, r in zip(node.ops, node.comparators, strict=True):
                op = _CMP_SRC.get(type(o))
                if op is None:
                    raise err(node, "unsupported comparison")
                cur = var()
                terms.append(f"({cur} := {comp(r)}) is not None")
                terms.append(f"{prev} {op} {cur}")
                prev = cur
            return "(" + " and ".join(terms) + ")"
        if isinstance(node, ast.Attribute):
            return path(node)
        if isinstance(node, ast.Name):
            if node.id == "segments":
                deps.add("*")
                return "c.segments"
            if node.id in _REQUEST_NAMES:
                return f"e.request.get({node.id!r})"
            if node.id in ("True", "False", "None"):
                return node.id
            raise err(node, f"unknown name {node.id!r} (known: customer.<fact>, fact.<name>, score.<name>, "
                            f"trait.<name>, segment.<name>, consent.<channel>, segments, placement, channel, "
                            f"touchpoint, and the functions {', '.join(sorted(_FUNCS))})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return call(node, node.func.id)
        raise err(node, f"unsupported expression {type(node).__name__}")

    def path(node: ast.Attribute) -> str:
        """``fact.vip``, ``customer.orders``, ``score.clv.value``... read by the one accessor."""
        parts: list[str] = []
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            raise err(node, f"unsupported expression {type(node).__name__}")
        dotted = ".".join([cur.id, *reversed(parts)])
        try:
            got = paths.parse(dotted)
        except paths.PathError as exc:
            raise err(node, str(exc)) from None
        if got.alias is not None:
            deprecated.append((got.alias, got.canonical))
        return read(got.key)

    def read(key: str) -> str:
        prefix, _, name = key.partition("__")
        if prefix == "c":
            deps.add("order" if name in _ORDER_FACTS else "*")
        elif prefix == "n":
            deps.add(name)
        elif prefix == "s":
            deps.update(_SCORE_DEPS)
        else:
            deps.add("*")
        return paths.source(key, lit, var)

    def old(node: ast.Call, new: str) -> str:
        """An old function spelling (``soft('vip')``): read as the path ``new``; a deprecation when
        the path can be written (every part a name)."""
        got = paths.parse(new)
        if all(part.isidentifier() for part in new.split(".")):
            deprecated.append((ast.get_source_segment(text, node) or new, got.canonical))
        return read(got.key)

    def call(node: ast.Call, fname: str) -> str:
        if fname not in _FUNCS:
            raise err(node, f"unknown function {fname!r} (known: {', '.join(sorted(_FUNCS))})")
        args = [const(a) for a in node.args]
        kw = {k.arg: const(k.value) for k in node.keywords}
        if fname in _OLD_PATHS:
            (name,) = args
            return old(node, f"{_OLD_PATHS[fname]}.{name}")
        if fname == "consent":
            channel = args[0] if args else kw.get("channel")
            purpose = args[1] if len(args) > 1 else kw.get("purpose", "marketing")
            return old(node, f"consent.{channel}" + ("" if purpose == "marketing" else f".{purpose}"))
        if fname == "count":
            type_ = args[0] if args else kw.get("type", "*")
            days = args[1] if len(args) > 1 else kw.get("days")
            deps.add(type_)
            if days is None:
                if type_ == "*":
                    return "c.hard.get('interactions', 0)"
                return f"c.type_counts.get({lit(type_)}, 0)"
            timed[0] = True
            return f"e.memo_count({lit(type_)}, {lit(days)})"
        if fname == "spend":
            days = args[0] if args else kw.get("days")
            deps.add("order")
            if days is None:
                return "float(c.hard.get('total_spend', 0.0))"
            timed[0] = True
            return f"e.memo_spend({lit(days)})"
        if fname == "days_since":
            type_ = args[0] if args else kw.get("type")
            deps.add(type_ or "*")
            timed[0] = True
            return f"e.memo_days_since({lit(type_)})"
        if fname == "days_since_first":
            timed[0] = True
            return f"((e.now - (c.hard.get('first_seen') or e.now)) / {US_PER_DAY})"
        if fname == "ctx":
            (name,) = args
            return f"e.request.get('context', {{}}).get({lit(name)})"
        raise err(node, f"unknown function {fname!r}")  # pragma: no cover

    try:
        expr = comp(tree.body)
    except ValueError as exc:  # unpacking a wrong number of arguments
        if isinstance(exc, ConditionError):
            raise
        raise ConditionError(f"{where}: wrong number of arguments in {source!r}") from None
    fn = _build(f"def _condition(e):\n    c = e.customer\n    return {expr}\n", consts, "_condition")
    return Condition(text, fn, frozenset(deps), timed[0], expr, consts, tuple(deprecated))


_NAMES = itertools.count()  # temporaries and constants are unique per process: conditions can share a function


def _build(code: str, consts: dict[str, Any], name: str) -> Callable[..., Any]:
    """Compile ``code``, made by this module from a checked tree (only names it generated:
    ``e``, ``c``, temporaries and bound constants) and return its function ``name``."""
    namespace: dict[str, Any] = {"__builtins__": {"float": float}, **consts}
    exec(compile(code, "<condition>", "exec"), namespace)  # noqa: S102 - generated from a checked tree
    return namespace[name]


def compile_membership(items: list[tuple[str, Condition]]) -> Callable[..., None]:
    """One function ``f(env, member, enter, leave)`` evaluating every ``(segment, condition)`` in
    order: ``enter(name)`` when a condition holds for a non-member, ``leave(name)`` when it no
    longer holds for a member (``member`` is the customer's live segment mapping, so a later
    ``in_segment()`` sees an earlier change, as when evaluated one by one)."""
    lines = ["def _membership(e, member, enter, leave):", "    c = e.customer"]
    consts: dict[str, Any] = {}
    for name, cond in items:
        consts.update(cond.consts)
        lines += ["    try:", f"        v = {cond.expr}", "    except (TypeError, ZeroDivisionError):",
                  "        v = False", "    if v:", f"        if {name!r} not in member:",
                  f"            enter({name!r})", f"    elif {name!r} in member:", f"        leave({name!r})"]
    if not items:
        lines.append("    return None")
    return _build("\n".join(lines) + "\n", consts, "_membership")


class DeprecationNotes:
    """``file:line: warning: deprecated spelling `soft('vip')`: write `fact.vip``` for the old
    spellings in the conditions of segment and offer files. A condition is a YAML scalar, so its
    line is found in the file's text: each old spelling is looked for from where the last one of
    that file was found, which follows the order the conditions are written in."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self._files: dict[str, tuple[list[str], list[int]]] = {}

    def add(self, path: str | Path, cond: Condition | None) -> None:
        if cond is None or not cond.deprecated:
            return
        key = str(path)
        if key not in self._files:
            try:
                text = Path(path).read_text()
            except OSError:
                text = ""
            self._files[key] = (text.splitlines(), [0])
        lines, cursor = self._files[key]
        for old, new in cond.deprecated:
            at = next((i for i in range(cursor[0], len(lines)) if old in lines[i]), None)
            if at is None:
                at = next((i for i in range(len(lines)) if old in lines[i]), cursor[0])
            cursor[0] = at
            self.notes.append(f"{key}:{at + 1}: warning: deprecated spelling `{old}`: write `{new}` "
                              "(the old spelling still works, for now)")


def compile_all(sources: Any, where: str) -> Condition | None:
    """A condition from text or a list of texts (all must hold); None when empty."""
    if sources is None or sources == [] or sources == "":
        return None
    if isinstance(sources, str):
        return compile_condition(sources, where)
    if isinstance(sources, list):
        return compile_condition(" and ".join(f"({s})" for s in sources), where)
    raise ConditionError(f"{where}: must be a condition or a list of conditions")
