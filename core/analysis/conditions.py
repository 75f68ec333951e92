"""A small, safe condition language for segment definitions and offer eligibility.

Conditions are Python-like expressions, parsed with :mod:`ast` (no ``eval``): only the names
and functions below are allowed, anything else is an error with its position. This module is
the expression *front end* of the one condition compiler (:mod:`shopkeeper.conditions`): it
lowers an expression to the condition tree the rules' YAML lowers to as well, type-checks a
customer value against a constant with the rules' wording, and leaves the dependencies to the
one analysis and the code to the Python back end. :class:`Env` is what the generated code reads
at evaluation time (history aggregates, the Decide request). Examples::

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
which is what keeps the per-event segment update cheap and tells the scheduler what to re-run
(both from :func:`shopkeeper.conditions.dependencies`, the analysis rules use too).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths, windows
from ..conditions import tree as T
from ..conditions.analysis import HARD_KINDS, dependencies, kind_of, subject_of, type_problem
from ..conditions.python import Source, customer_function, generate, membership

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

    __slots__ = ("customer", "now", "request", "_memo", "_win_since", "_win", "_scores", "_tables")

    def __init__(self, customer: Any, now: int, request: dict[str, Any] | None = None,
                 tables: Any = None) -> None:
        """``tables``: the store's score tables (``scoretable.tables_in``), read once by a caller that
        judges many active customers in one view (a full re-evaluation's batch) instead of from the
        root per customer (``tables_of``: a ``Connection.root()`` and a walk of ``root['scores']``)."""
        self.customer = customer
        self.now = now
        self.request = request or {}
        self._memo: dict[Any, Any] = {}
        self._win_since: int | None = None
        self._win: list[Any] = []
        self._scores: dict[str, Any] | None = None
        self._tables = tables

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

    def memo_score(self, name: str) -> Any:
        """The value of score ``name`` (None: not scored). Every score of the customer is merged
        once per evaluation (``ScoreView.as_dict``: the score tables looked up and each row read
        once) — a ``get`` per name walked the root's tables for each of them (9 per customer for
        ``bench_analysis``'s 50 segments, ~8% of a full re-evaluation, docs/benchmarks.md §54)."""
        got = self._scores
        if got is None:
            got = self._scores = self.customer.scores.as_dict(self._tables)
        fact = got.get(name)
        return None if fact is None else fact.value

    def memo(self, key: Any, fn: Callable[[], Any]) -> Any:
        m = self._memo
        if key in m:
            return m[key]
        v = m[key] = fn()
        return v

    # aggregates --------------------------------------------------------------------
    # Windows run from ``now - days`` with no end, read by the one windowed aggregate
    # (:func:`shopkeeper.windows.total`: per-day aggregates for whole days, the history for an
    # edge day they cannot decide); a history read it needs comes from this evaluation's window.

    def _read(self, c: Any, since: int | None, until: int | None) -> Any:
        if until is None and since is not None:
            return self.window(since)
        return c.history.values(min=since, max=None if until is None else until - 1)

    def count(self, type_: str, days: float | None) -> int:
        c = self.customer
        if days is None:
            return c.hard.get("interactions", 0) if type_ == "*" else c.type_counts.get(type_, 0)
        if type_ != "*" and not c.type_counts.get(type_):
            return 0  # never one of this type (the all-time count, as days_since reads it): none in any window
        return windows.total(c, (type_,), self.now - int(days * US_PER_DAY), None, None, (), self._read)  # type: ignore[return-value]

    def spend(self, days: float | None) -> float:
        c = self.customer
        if days is None:
            return float(c.hard.get("total_spend", 0.0))
        if not c.type_counts.get("order"):
            return 0.0  # never ordered: nothing spent in any window
        got = windows.total(c, _ORDER, self.now - int(days * US_PER_DAY), None, "amount", (), self._read)
        return float(round(got, 2))

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


_ORDER = ("order",)


@dataclass
class Condition:
    """A compiled condition: its tree (the one intermediate form, :mod:`shopkeeper.conditions`),
    what it depends on (from the one analysis) and its function (from the Python back end)."""

    source: str
    fn: Callable[[Env], Any]
    deps: frozenset[str] = field(default_factory=frozenset)
    time_based: bool = False
    expr: str = ""  # the generated Python expression (``e``: the Env, ``c``: its customer)
    consts: dict[str, Any] = field(default_factory=dict)
    #: old spellings used, as (what was written, the path to write instead): checkers warn
    deprecated: tuple[tuple[str, str], ...] = ()
    tree: Any = None

    def __call__(self, env: Env) -> bool:
        try:
            return bool(self.fn(env))
        except (TypeError, ZeroDivisionError):
            return False  # a missing value in arithmetic, a list where a number was expected


_AGGREGATES = {"count", "spend", "days_since", "days_since_first"}
_FUNCS = {"score", "soft", "trait", "consent", "ctx", "in_segment", *_AGGREGATES}
_REQUEST_NAMES = {"placement", "channel", "touchpoint"}
#: the old function spellings of a customer value -> the path head they stand for (deprecated)
_OLD_PATHS = {"soft": "fact", "score": "score", "trait": "trait", "in_segment": "segment"}

_BIN_SRC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_CMP_OPS = {ast.Gt: "gt", ast.GtE: "gte", ast.Lt: "lt", ast.LtE: "lte", ast.Eq: "eq", ast.NotEq: "ne"}


def parse_condition(source: str, where: str = "condition") -> tuple[Any, tuple[tuple[str, str], ...]]:
    """The front end: ``source`` parsed, checked and lowered to a condition tree
    (:mod:`shopkeeper.conditions.tree`), with the old spellings it used. Raises
    :class:`ConditionError` naming ``where``, the column and why."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError(f"{where}: a condition must be non-empty text")
    text = source.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"{where}:{exc.offset}: {exc.msg}: {source!r}") from None
    deprecated: list[tuple[str, str]] = []

    def err(node: ast.AST, msg: str) -> ConditionError:
        return ConditionError(f"{where}:{getattr(node, 'col_offset', 0) + 1}: {msg} in {source!r}")

    def const(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        raise err(node, "expected a constant")

    def cond(node: ast.AST) -> Any:
        """A node in a condition's place."""
        if isinstance(node, ast.BoolOp):
            items = tuple(cond(v) for v in node.values)
            return T.All(items) if isinstance(node.op, ast.And) else T.AnyOf(items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return T.Not(cond(node.operand))
        if isinstance(node, ast.Compare):
            parts: list[Any] = []
            left = node.left
            for o, r in zip(node.ops, node.comparators, strict=True):
                parts.append(compare(node, left, o, r))
                left = r
            return parts[0] if len(parts) == 1 else T.All(tuple(parts))
        return T.Truth(value(node))

    def compare(node: ast.Compare, left: ast.AST, o: ast.cmpop, right: ast.AST) -> Any:
        if isinstance(o, (ast.In, ast.NotIn)):
            if isinstance(right, ast.Name) and right.id == "segments":
                # 'vip' in segments: the path segment.vip
                name = const(left)
                got = T.Truth(T.Field(paths.parse(f"segment.{name}").key))
                return got if isinstance(o, ast.In) else T.Not(got)
            lhs = value(left)
            if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):  # 'vip' in trait.tags: containment
                return T.Cmp(lhs, "in" if isinstance(o, ast.In) else "not_in", value(right))
            wants = tuple(dict.fromkeys(const(x) for x in right.elts))
            if isinstance(o, ast.In):
                return T.AnyOf(tuple(cmp_node(node, lhs, "eq", T.Const(w)) for w in wants))
            return T.All((cmp_node(node, lhs, "exists", None),
                          *(cmp_node(node, lhs, "ne", T.Const(w)) for w in wants)))
        op = _CMP_OPS.get(type(o))
        if op is None:
            raise err(node, "unsupported comparison")
        return cmp_node(node, value(left), op, value(right))

    def cmp_node(node: ast.AST, lhs: Any, op: str, rhs: Any) -> T.Cmp:
        """A comparison; a customer value against a constant is type-checked and kept flat."""
        if isinstance(lhs, T.Field) and (rhs is None or isinstance(rhs, T.Const)):
            want = None if rhs is None else rhs.value
            if rhs is not None and want is not None:
                problem = type_problem(kind_of(lhs.key), op, want, subject_of(lhs.key), strict=False)
                if problem is not None:
                    raise err(node, problem)
            return T.Cmp(lhs.key, op, want)
        return T.Cmp(lhs, op, rhs)

    def value(node: ast.AST) -> Any:
        """A node in a value's place."""
        if isinstance(node, ast.Constant):
            return T.Const(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = value(node.operand)
            return T.Const(-inner.value) if isinstance(inner, T.Const) else T.Neg(inner)
        if isinstance(node, ast.BinOp):
            op = _BIN_SRC.get(type(node.op))
            if op is None:
                raise err(node, "unsupported operator")
            return T.Arith(op, value(node.left), value(node.right))
        if isinstance(node, ast.Attribute):
            return path(node)
        if isinstance(node, ast.Name):
            if node.id in _REQUEST_NAMES:
                return T.Field(f"r__{node.id}")
            if node.id == "segments":
                raise err(node, "`segments` only in `'name' in segments` (or write segment.<name>)")
            raise err(node, f"unknown name {node.id!r} (known: customer.<fact>, fact.<name>, score.<name>, "
                            f"trait.<name>, segment.<name>, consent.<channel>, segments, placement, channel, "
                            f"touchpoint, and the functions {', '.join(sorted(_FUNCS))})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return call(node, node.func.id)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise err(node, "a list of constants belongs after `in`")
        raise err(node, f"unsupported expression {type(node).__name__}")

    def path(node: ast.Attribute) -> T.Field:
        """``fact.vip``, ``customer.orders``, ``score.clv.value``... read by the one accessor."""
        parts: list[str] = []
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            raise err(node, f"unsupported expression {type(node).__name__}")
        try:
            got = paths.parse(".".join([cur.id, *reversed(parts)]))
        except paths.PathError as exc:
            raise err(node, str(exc)) from None
        if got.key.startswith("c__") and got.key[3:] not in HARD_KINDS:
            name = got.key[3:]
            near = difflib.get_close_matches(name, HARD_KINDS, n=1)
            raise err(node, f"unknown customer fact {name!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                      + f" (known: {', '.join(sorted(HARD_KINDS))}, count.<event type>)")
        if got.alias is not None:
            deprecated.append((got.alias, got.canonical))
        return T.Field(got.key)

    def old(node: ast.Call, new: str) -> T.Field:
        """An old function spelling (``soft('vip')``): read as the path ``new``; a deprecation when
        the path can be written (every part a name)."""
        got = paths.parse(new)
        if all(part.isidentifier() for part in new.split(".")):
            deprecated.append((ast.get_source_segment(text, node) or new, got.canonical))
        return T.Field(got.key)

    def call(node: ast.Call, fname: str) -> Any:
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
            return T.Call("count", (args[0] if args else kw.get("type", "*"),
                                    args[1] if len(args) > 1 else kw.get("days")))
        if fname == "spend":
            return T.Call("spend", (args[0] if args else kw.get("days"),))
        if fname == "days_since":
            return T.Call("days_since", (args[0] if args else kw.get("type"),))
        if fname == "days_since_first":
            return T.Call("days_since_first")
        (name,) = args  # ctx('key')
        return T.Field(f"x__{name}")

    try:
        return cond(tree.body), tuple(deprecated)
    except ValueError as exc:  # unpacking a wrong number of arguments
        if isinstance(exc, ConditionError):
            raise
        raise ConditionError(f"{where}: wrong number of arguments in {source!r}") from None


def compile_condition(source: str, where: str = "condition") -> Condition:
    """Compile ``source``; raise :class:`ConditionError` naming ``where`` and the column.

    The front end (:func:`parse_condition`) gives the tree; its dependencies come from the one
    analysis (:func:`shopkeeper.conditions.dependencies`) and its function from the Python back
    end, compiled once: evaluating 50 segment conditions per event is then ~50 calls of
    straight-line code instead of a tree of closures.
    """
    tree, deprecated = parse_condition(source, where)
    deps = dependencies(tree)
    src = generate(tree, "customer")
    return Condition(source.strip(), customer_function(src), deps.events, deps.time_based, src.expr, src.consts,
                     deprecated, tree)


def compile_membership(items: list[tuple[str, Condition]]) -> Callable[..., None]:
    """One function ``f(env, member, enter, leave)`` for every ``(segment, condition)`` in order
    (:func:`shopkeeper.conditions.python.membership`)."""
    memo: dict[str, str] = {}  # each aggregate and score read once per evaluation, as a local
    srcs = [(name, generate(cond.tree, "customer", memo) if cond.tree is not None else Source(cond.expr, cond.consts))
            for name, cond in items]
    return membership(srcs, list(memo.values()))


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
