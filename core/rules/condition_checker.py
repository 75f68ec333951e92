"""The condition half of the rule checker: the YAML front end of the one condition compiler.

:class:`ConditionChecker` reads the subjects (``event.x``, ``customer.x``, ``fact.x``, ``score.x``,
``segment.x``, ``history``, ...; customer values are the paths of :mod:`shopkeeper.paths`),
lowers each test (``is_not`` and ``not_in`` hold for a missing value, ``in`` is any of several
``eq``) to the one condition tree (:mod:`shopkeeper.conditions.tree`) and reports problems at the
YAML line they come from. What is checked on the tree is shared with the expression front end
(:mod:`shopkeeper.analysis.conditions`): the type check's rules and wording
(:func:`shopkeeper.conditions.type_problem`) and the fields a rule reads
(:func:`shopkeeper.conditions.fields`). The campaign checker reuses it for its audience
conditions. It is a mixin of :class:`shopkeeper.rules.checker.Checker`, which owns the
vocabulary and the diagnostics.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import yaml

from .. import paths
from ..conditions import All, AnyOf, Cmp, Condition, fields, kind_of, numeric_fields, type_problem
from ..conditions.analysis import HARD_KINDS
from ..conditions.analysis import subject_of as _subject_of
from ..customer import HARD_FACT_DEFAULTS
from ..events import EventTypes
from .model import HistorySpec, Rule
from .yamldoc import Marks, _plain, did_you_mean, parse_duration, parse_time

WHEN_KEYS = {"event", "conditions", "absent"}

_OPS = {"is": "eq", "eq": "eq", "equals": "eq", "is_not": "ne", "ne": "ne", "not": "ne",
        "gt": "gt", "above": "gt", "more_than": "gt", "gte": "gte", "at_least": "gte",
        "lt": "lt", "below": "lt", "less_than": "lt", "lte": "lte", "at_most": "lte",
        "in": "in", "one_of": "in", "not_in": "not_in", "not_one_of": "not_in", "exists": "exists"}

#: built-in soft facts and scores known to every rule set (plugins and files add more)
KNOWN_FACTS = {"price_sensitivity", "risk_attitude", "preferred_channel", "churn_risk", "lifecycle_stage",
               "vip", "language"}
KNOWN_SCORES = {"clv", "rfm", "recency", "frequency", "monetary", "p_alive", "churn_risk", "engagement",
                "expected_purchases"}
assert set(HARD_KINDS) == set(HARD_FACT_DEFAULTS)



class ConditionChecker:
    """Checks and compiles ``when:`` (event types, conditions, absent, history) of one rule."""

    event_types: EventTypes
    facts: set[str]
    scores: set[str]
    segments: set[str]
    tags: set[str]

    def err(self, marks: Marks, path: tuple, msg: str, *, key: bool = False,
            severity: str = "error") -> None:  # pragma: no cover - provided by Checker
        raise NotImplementedError

    def warn(self, marks: Marks, path: tuple, msg: str, *, key: bool = False) -> None:  # pragma: no cover
        raise NotImplementedError

    # when
    def _check_when(self, when: dict, marks: Marks, path: tuple, rule: Rule) -> None:
        for k in when:
            if k not in WHEN_KEYS:
                self.err(marks, path + (k,), f"unknown key {k!r} in `when`{did_you_mean(str(k), WHEN_KEYS)}",
                         key=True)
        ev = when.get("event")
        names = self.event_types.names()
        if ev is None:
            self.err(marks, path, "`when` needs `event:` (an event type such as order, a list, or any)")
            events: tuple[str, ...] = ("*",)
        else:
            lst = ev if isinstance(ev, list) else [ev]
            events = ()
            for j, t in enumerate(lst):
                p = path + ("event", j) if isinstance(ev, list) else path + ("event",)
                if t in ("any", "*"):
                    events += ("*",)
                elif not isinstance(t, str) or self.event_types.get(t) is None:
                    self.err(marks, p, f"unknown event type {t!r}{did_you_mean(str(t), names)}")
                else:
                    events += (t,)
            if not events:
                events = ("*",)
        rule.events = events
        items = []
        conds = when.get("conditions")
        if conds is not None:
            if not isinstance(conds, list):
                self.err(marks, path + ("conditions",), "`conditions` must be a list (all must hold)")
            else:
                items = [self._check_condition(c, marks, path + ("conditions", i), rule) for i, c in enumerate(conds)]
                rule.condition_labels = [(condition_label(c), marks.at(path + ("conditions", i))[0])
                                         for i, c in enumerate(conds) if items[i] is not None]
        rule.condition = All(tuple(c for c in items if c is not None))
        _check_contradictions(self, rule, marks, path)
        ab = when.get("absent")
        if ab is not None:
            ap = path + ("absent",)
            if not isinstance(ab, dict) or "event" not in ab or "within" not in ab:
                self.err(marks, ap, "`absent` needs `event` and `within`, e.g. {event: order, within: 24h}")
            else:
                lst = ab["event"] if isinstance(ab["event"], list) else [ab["event"]]
                for t in lst:
                    if not isinstance(t, str) or self.event_types.get(t) is None:
                        self.err(marks, ap + ("event",), f"unknown event type {t!r}{did_you_mean(str(t), names)}")
                try:
                    within = parse_duration(ab["within"])
                    if within <= 0:
                        raise ValueError("must be longer than 0")
                    rule.absent = (tuple(str(t) for t in lst), within)
                except ValueError as exc:
                    self.err(marks, ap + ("within",), f"`within`: {exc}")
                for k in ab:
                    if k not in ("event", "within"):
                        self.err(marks, ap + (k,), f"unknown key {k!r} in `absent`", key=True)

    def _field_for(self, subject: str, marks: Marks, p: tuple, rule: Rule) -> tuple[str, str] | None:
        """Map a condition subject to (message field, kind) or report why not. An old spelling
        (``soft.x``, ``hard.x``, ``scores.x``, ``traits.x``, ``counts.x``, ``f:x``) is read as the
        path it stands for, with a deprecation warning naming the new spelling."""
        head, _, rest = subject.partition(".")
        if head in paths.ALIASES or subject.startswith("f:"):
            try:
                old = paths.parse(subject)
            except paths.PathError as exc:
                self.err(marks, p, str(exc), key=True)
                return None
            self.warn(marks, p, f"{old.deprecation} (the old spelling still works, for now)", key=True)
            subject = old.canonical
            head, _, rest = subject.partition(".")
        if head == "event":
            if rest in ("type", "channel", "touchpoint"):
                return {"type": "ev", "channel": "ch", "touchpoint": "tp"}[rest], "str"
            fld = rest[5:] if rest.startswith("data.") else rest
            if not fld:
                self.err(marks, p, "`event.` must name a field, e.g. event.amount", key=True)
                return None
            kinds = set()
            declared: set[str] = set()
            for t in rule.events:
                et = self.event_types.get(t) if t != "*" else None
                if et is None or et.name == "custom":
                    kinds.add("any")
                    continue
                declared |= set(et.fields)
                spec = et.fields.get(fld)
                if spec is None:
                    kinds.add("missing")
                else:
                    kinds.add("str" if spec.kind is str else "number")
            if kinds == {"missing"}:
                self.err(marks, p, f"event field {fld!r} is not a field of {'/'.join(rule.events)} events"
                         f"{did_you_mean(fld, declared)}", key=True)
                return None
            kinds.discard("missing")
            return f"e__{fld}", (kinds.pop() if len(kinds) == 1 else "any")
        if head == "customer":
            if rest.startswith("count."):
                t = rest[6:]
                if self.event_types.get(t) is None:
                    self.err(marks, p, f"unknown event type {t!r}{did_you_mean(t, self.event_types.names())}",
                             key=True)
                    return None
                return f"n__{t}", kind_of(f"n__{t}")
            if rest not in HARD_KINDS:
                self.err(marks, p, f"unknown customer fact {rest!r}{did_you_mean(rest, HARD_KINDS)} "
                         f"(known: {', '.join(sorted(HARD_KINDS))}, count.<event type>)", key=True)
                return None
            return f"c__{rest}", kind_of(f"c__{rest}")
        # the kinds of customer values are the compiler's (conditions.kind_of); here, what is known
        table = {"fact": self.facts, "score": self.scores, "segment": self.segments, "tag": self.tags,
                 "trait": None, "identity": None, "consent": None}
        if head in table and rest:
            known = table[head]
            if head == "consent":
                key = paths.parse(subject).key
                return key, kind_of(key)
            if known is not None and rest not in known:
                msg = f"unknown {head} {rest!r}{did_you_mean(rest, known)}"
                if head in ("segment", "tag"):
                    self.warn(marks, p, msg + f" (no rule sets it; declare it under vocabulary: {head}s)", key=True)
                else:
                    self.err(marks, p, msg + f" (set it with an action or declare it under vocabulary: {head}s)",
                             key=True)
                    return None
            key = paths.parse(subject).key
            return key, kind_of(key)
        subjects = ["event.", "customer.", "fact.", "score.", "segment.", "tag.", "trait.", "identity.",
                    "consent.", "history", "first", "any"]
        self.err(marks, p, f"unknown condition subject {subject!r}{did_you_mean(subject, subjects)} "
                 "(use event.<field>, customer.<fact>, fact., score., segment., tag., trait., identity., "
                 "consent., history, first or any)", key=True)
        return None

    def _check_condition(self, c: Any, marks: Marks, p: tuple, rule: Rule) -> Condition | None:
        """One condition lowered to the tree; the fields it reads are added to ``rule``'s."""
        got = self._condition(c, marks, p, rule)
        if got is not None:
            rule.fields |= fields(got)
            rule.numeric_fields |= numeric_fields(got)
        return got

    def _condition(self, c: Any, marks: Marks, p: tuple, rule: Rule) -> Condition | None:
        if not isinstance(c, dict) or len(c) != 1:
            self.err(marks, p, "a condition is one `subject: test` pair, e.g. `- event.amount: {above: 100}`")
            return None
        (subject, test), = c.items()
        subject = str(subject)
        kp = p + (subject,)
        if subject in ("any", "all"):
            if not isinstance(test, list) or not test:
                self.err(marks, kp, f"`{subject}` takes a list of conditions")
                return None
            parts = [self._condition(x, marks, kp + (i,), rule) for i, x in enumerate(test)]
            parts = [x for x in parts if x is not None]
            return AnyOf(tuple(parts)) if subject == "any" else All(tuple(parts))
        if subject == "first":
            if not isinstance(test, bool):
                self.err(marks, kp, "`first` must be true or false (is this the customer's first such event?)")
                return None
            return Cmp("first", "eq", test)
        if subject == "history":
            return self._check_history(test, marks, kp, rule)
        got = self._field_for(subject, marks, kp, rule)
        if got is None:
            return None
        fld, kind = got
        if kind != "bool" and self._yaml11(marks, kp, subject):
            return None
        return self._check_test(fld, kind, test, marks, kp, rule)

    def _yaml11(self, marks: Marks, p: tuple, what: str) -> bool:
        """Flag ``yes``/``no``/``on``/``off`` where text is meant: YAML 1.1 reads them as true/false."""
        hit = marks.yaml11_under(p)
        if hit is None:
            return False
        at, text = hit
        self.err(marks, at, f"`{text}` is read as {str(text.lower() in ('yes', 'y', 'on')).lower()} (YAML 1.1 "
                 f"boolean) in {what}; write \"{text}\" in quotes for the text, or true/false")
        return True

    def _check_test(self, fld: str, kind: str, test: Any, marks: Marks, p: tuple, rule: Rule) -> Condition | None:
        if isinstance(test, list):
            test = {"in": test}
        if not isinstance(test, dict):
            test = {"is": test}
        parts: list[Condition] = []
        for raw_op, want in test.items():
            op = _OPS.get(str(raw_op))
            if op is None:
                self.err(marks, p + (raw_op,), f"unknown comparison {raw_op!r}{did_you_mean(str(raw_op), _OPS)}",
                         key=True)
                continue
            if op == "exists":
                if not isinstance(want, bool):
                    self.err(marks, p + (raw_op,), "`exists` must be true or false")
                    continue
                parts.append(Cmp(fld, "exists" if want else "missing"))
                continue
            values = want if op in ("in", "not_in") else [want]
            if op in ("in", "not_in") and (not isinstance(want, list) or not want):
                self.err(marks, p + (raw_op,), f"`{raw_op}` takes a non-empty list")
                continue
            ok = True
            for v in values:
                if not self._type_ok(kind, op, v, marks, p + (raw_op,), fld):
                    ok = False
            if not ok:
                continue
            if op == "in":
                parts.append(AnyOf(tuple(Cmp(fld, "eq", v) for v in values)))
            elif op == "not_in":
                # a missing value is not one of them (docs/rules.md, "Missing values")
                parts.append(AnyOf((Cmp(fld, "missing"), All(tuple(Cmp(fld, "ne", v) for v in values)))))
            elif op == "ne":
                parts.append(AnyOf((Cmp(fld, "missing"), Cmp(fld, "ne", want))))
            else:
                parts.append(Cmp(fld, op, want))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def _type_ok(self, kind: str, op: str, v: Any, marks: Marks, p: tuple, fld: str) -> bool:
        if isinstance(v, (_dt.date, _dt.datetime)):
            v = parse_time(v)
        problem = type_problem(kind, op, v, _subject_of(fld))
        if problem is not None:
            self.err(marks, p, problem)
            return False
        return True

    def _check_history(self, test: Any, marks: Marks, p: tuple, rule: Rule) -> Condition | None:
        if not isinstance(test, dict):
            self.err(marks, p, "`history` takes {count: <event type>, within: 7d, at_least: 3} or "
                     "{sum: <event type>.<field>, within: 90d, above: 500}")
            return None
        kind = "count" if "count" in test else "sum" if "sum" in test else None
        if kind is None:
            self.err(marks, p, "`history` needs `count: <event type>` or `sum: <event type>.<field>`")
            return None
        what = test[kind]
        lst = what if isinstance(what, list) else [what]
        types: list[str] = []
        fld = None
        for t in lst:
            if not isinstance(t, str):
                self.err(marks, p + (kind,), f"{t!r} is not an event type")
                return None
            if kind == "sum":
                t, _, fld_ = t.partition(".")
                if not fld_:
                    self.err(marks, p + (kind,), "`sum` needs <event type>.<field>, e.g. order.amount")
                    return None
                et = self.event_types.get(t)
                if et is not None and et.fields and fld_ not in et.fields and et.name != "custom":
                    self.err(marks, p + (kind,), f"event field {fld_!r} is not a field of {t} events"
                             f"{did_you_mean(fld_, et.fields)}")
                    return None
                fld = fld_
            if self.event_types.get(t) is None:
                self.err(marks, p + (kind,), f"unknown event type {t!r}{did_you_mean(t, self.event_types.names())}")
                return None
            types.append(t)
        within = None
        if test.get("within") is not None:
            try:
                within = parse_duration(test["within"])
            except ValueError as exc:
                self.err(marks, p + ("within",), f"`within`: {exc}")
                return None
        where: tuple[tuple[str, Any], ...] = ()
        if test.get("where") is not None:
            if not isinstance(test["where"], dict):
                self.err(marks, p + ("where",), "`where` takes field: value pairs the events must have")
                return None
            where = tuple(sorted((str(k), v) for k, v in test["where"].items()))
        spec = HistorySpec(kind, tuple(types), fld, within, where)
        rule.history[spec.key] = spec
        ops = {k: v for k, v in test.items() if k not in (kind, "within", "where")}
        if not ops:
            self.err(marks, p, "`history` needs a comparison, e.g. at_least: 3 or above: 500")
            return None
        return self._check_test(spec.key, "number", ops, marks, p, rule)


def condition_label(c: Any) -> str:
    """One condition as its author wrote it, on one line: ``event.amount: {above: 1000}``."""
    text = yaml.safe_dump(_plain(c), default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[1:-1] if text.startswith("{") and text.endswith("}") else text


def _check_contradictions(chk: ConditionChecker, rule: Rule, marks: Marks, path: tuple) -> None:
    """Flag conditions no event can satisfy: x = a and x = b, x > 10 and x < 5."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    eq: dict[str, Any] = {}
    for c in rule.condition.items:  # type: ignore[union-attr]
        if not isinstance(c, Cmp):
            continue
        if c.op == "eq":
            if c.field in eq and eq[c.field] != c.value:
                chk.err(marks, path + ("conditions",), f"rule {rule.name!r} is unreachable: "
                        f"{_subject_of(c.field)} cannot be both {eq[c.field]!r} and {c.value!r}")
                return
            eq[c.field] = c.value
        elif c.op in ("gt", "gte"):
            lo[c.field] = max(lo.get(c.field, float("-inf")), c.value + (1e-9 if c.op == "gt" else 0))
        elif c.op in ("lt", "lte"):
            hi[c.field] = min(hi.get(c.field, float("inf")), c.value - (1e-9 if c.op == "lt" else 0))
    for f in lo:
        if f in hi and lo[f] > hi[f]:
            chk.err(marks, path + ("conditions",), f"rule {rule.name!r} is unreachable: no value of "
                    f"{_subject_of(f)} is both above {lo[f]:g} and below {hi[f]:g}")
            return

