"""Reading, validating and compiling rule files.

A rule file is YAML: either a list of rules under ``rules:`` or a single rule mapping.
Everything is checked against the vocabulary defined in code (event types, customer facts,
actions contributed by plugins) and every problem is reported as ``file:line:col: message``
using the positions PyYAML keeps on its nodes. See ``docs/rules.md`` for the language.

The result is a :class:`RuleSet`: rules sorted by priority, grouped by event type, with the
conditions compiled to the engine-neutral tree of :mod:`shopkeeper.rules_engine` over the
fields of one flat message (see :mod:`shopkeeper.rules.facts`).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..customer import HARD_FACT_DEFAULTS
from ..events import DEFAULT_EVENT_TYPES, EventTypes
from ..rules_engine import All, AnyOf, Cmp, Condition
from .actions import ActionDef, Vocabulary, template_paths

# -- diagnostics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}:{self.line}:{self.col}: {tag}{self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    hint = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {hint[0]!r}?" if hint else ""


# -- YAML with positions ---------------------------------------------------------------

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Marks:
    """Positions of every node of one document, by path (tuple of keys and indexes)."""

    def __init__(self, file: str, base: tuple[int, int] = (1, 1)) -> None:
        self.file = file
        self.base = base
        self.value: dict[tuple, tuple[int, int]] = {}
        self.key: dict[tuple, tuple[int, int]] = {}
        #: paths of plain scalars YAML 1.1 read as booleans although written yes/no/on/off/y/n
        self.yaml11_bools: dict[tuple, str] = {}

    def yaml11_under(self, path: tuple) -> tuple[tuple, str] | None:
        """The first value at or under ``path`` written ``yes``/``no``/``on``/``off`` (read as a boolean)."""
        n = len(path)
        for p, text in self.yaml11_bools.items():
            if p[:n] == path:
                return p, text
        return None

    def at(self, path: tuple, *, key: bool = False) -> tuple[int, int]:
        table = self.key if key else self.value
        p = path
        while p:
            if p in table:
                return table[p]
            if p in self.value:
                return self.value[p]
            p = p[:-1]
        return self.value.get((), self.base)


def _construct(node: yaml.Node, path: tuple, marks: Marks, loader: Any) -> Any:
    marks.value[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            k = loader.construct_object(k_node, deep=True)
            if isinstance(k, (list, dict)):
                k = str(k)
            kp = path + (k,)
            marks.key[kp] = (k_node.start_mark.line + 1, k_node.start_mark.column + 1)
            if k in out:
                raise _DupKey(k, marks.key[kp])
            out[k] = _construct(v_node, kp, marks, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(n, path + (i,), marks, loader) for i, n in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, bool) and not node.style and node.value.lower() not in ("true", "false"):
        marks.yaml11_bools[path] = node.value
    return value


class _DupKey(Exception):
    def __init__(self, key: Any, pos: tuple[int, int]) -> None:
        self.key = key
        self.pos = pos


def load_yaml(text: str, file: str) -> tuple[Any, Marks, list[Diagnostic]]:
    """Parse one YAML document; return (value, marks, errors)."""
    marks = Marks(file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, marks, []
        return _construct(node, (), marks, loader), marks, []
    except _DupKey as exc:
        return None, marks, [Diagnostic(file, exc.pos[0], exc.pos[1], f"duplicate key {exc.key!r}")]
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        line, col = (m.line + 1, m.column + 1) if m else (1, 1)
        msg = " ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
        return None, marks, [Diagnostic(file, line, col, f"YAML error: {msg}")]
    except yaml.YAMLError as exc:
        return None, marks, [Diagnostic(file, 1, 1, f"YAML error: {exc}")]
    finally:
        loader.dispose()


# -- durations and times ---------------------------------------------------------------

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$")
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> int:
    """``30s``, ``30m``, ``24h``, ``7d``, ``2w`` -> µs.

    A bare number is refused: ``cooldown: 14`` silently meaning 14 *seconds* is the kind of
    mistake a rule author only finds in production."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30m, 24h or 7d, not a boolean")
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)):
        n = str(value).strip()
        raise ValueError(f"{n} has no unit: write {n}s, {n}m, {n}h, {n}d or {n}w")
    if isinstance(value, str):
        m = _DUR.match(value)
        if m:
            return int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1_000_000)
    raise ValueError(f"{value!r} is not a duration such as 30m, 24h, 7d or 2w")


def parse_time(value: Any) -> int:
    if isinstance(value, _dt.datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
        return int(dt.timestamp() * 1_000_000)
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC).timestamp() * 1_000_000)
    if isinstance(value, str):
        try:
            dt = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None
        return parse_time(dt)
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time")


# -- compiled rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class HistorySpec:
    """An aggregate over the customer's history, pre-computed per event into one field."""

    kind: str  # count | sum
    types: tuple[str, ...]
    field: str | None
    within_us: int | None
    where: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        raw = json.dumps([self.kind, self.types, self.field, self.within_us, self.where], default=str)
        return "h__" + hashlib.sha1(raw.encode()).hexdigest()[:10]


@dataclass
class ActionCall:
    name: str
    params: dict[str, Any]
    line: int
    col: int


@dataclass
class Rule:
    name: str
    description: str
    priority: int
    enabled: bool
    events: tuple[str, ...]  # ("*",) = any event type
    condition: Condition
    actions: list[ActionCall]
    file: str
    line: int
    valid_from: int | None = None
    valid_until: int | None = None
    absent: tuple[tuple[str, ...], int] | None = None  # (event types, within µs)
    once: bool = False
    cooldown_us: int | None = None
    history: dict[str, HistorySpec] = field(default_factory=dict)
    fields: set[str] = field(default_factory=set)
    numeric_fields: set[str] = field(default_factory=set)
    source: dict[str, Any] = field(default_factory=dict)  # canonical mapping (what a customer rule stores)
    scope: str = "central"  # central | customer
    version: str = ""  # rule set content hash (central) or the rule's own hash (customer)
    #: (text as written, line) of each top-level condition, parallel to ``condition.items``:
    #: what explain and test coverage name
    condition_labels: list[tuple[str, int]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.name if self.scope == "central" else f"customer:{self.name}"

    def valid_at(self, ts: int) -> bool:
        return ((self.valid_from is None or ts >= self.valid_from)
                and (self.valid_until is None or ts < self.valid_until))


@dataclass
class RuleSet:
    rules: list[Rule]
    version: str
    files: list[str] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    tests: list[Path] = field(default_factory=list)
    #: files left out because they have errors (``load_directory(partial=True)``); the rest is in force
    excluded: list[str] = field(default_factory=list)
    #: offer ids of the catalogue (None = no catalogue) and those declared under ``vocabulary: offers``
    catalogue: set[str] | None = None
    declared_offers: set[str] = field(default_factory=set)
    #: segments rules set or declare
    segments: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.by_name = {r.name: r for r in self.rules}
        self.by_type: dict[str, list[Rule]] = {}
        any_type = [r for r in self.rules if "*" in r.events]
        types = {t for r in self.rules for t in r.events if t != "*"}
        for t in types:
            self.by_type[t] = [r for r in self.rules if t in r.events or "*" in r.events]
        self.any_type = any_type
        #: event types some rule names explicitly (``event`` or ``absent``): outbox bookkeeping
        #: reaches the rules only then (:class:`shopkeeper.rules.runtime.RulesProcessor`)
        self.named_types = frozenset(types | {t for r in self.rules if r.absent for t in r.absent[0]})
        self.programs: dict[str, Any] = {}
        self.fields: dict[str, tuple[set[str], set[str], dict[str, HistorySpec]]] = {}

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def usable(self) -> bool:
        """May be put in force: no errors, or the errors are confined to files left out."""
        return not self.errors or bool(self.excluded)

    def rules_for(self, event_type: str) -> list[Rule]:
        return self.by_type.get(event_type, self.any_type)

    def compile(self, engine: Any) -> RuleSet:
        """Build one engine program per event type (plus one for types no rule names)."""
        groups = dict(self.by_type)
        groups["*"] = self.any_type
        for t, rules in groups.items():
            live = [r for r in rules if r.enabled]
            if not live:
                continue
            self.programs[t] = engine.compile([(r.key, r.condition) for r in live])
            flds: set[str] = set()
            num: set[str] = set()
            hist: dict[str, HistorySpec] = {}
            for r in live:
                flds |= r.fields
                num |= r.numeric_fields
                hist.update(r.history)
            self.fields[t] = (flds, num, hist)
        return self

    def program_for(self, event_type: str) -> tuple[Any, tuple[set[str], set[str], dict[str, HistorySpec]]] | None:
        key = event_type if event_type in self.programs else "*"
        prog = self.programs.get(key)
        return (prog, self.fields[key]) if prog is not None else None

    def close(self) -> None:
        for p in self.programs.values():
            p.close()
        self.programs = {}


def content_hash(parts: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in parts:
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:12]


# -- the checker ------------------------------------------------------------------------

RULE_KEYS = {"name", "description", "priority", "enabled", "valid_from", "valid_until", "when", "then",
             "once", "cooldown"}
WHEN_KEYS = {"event", "conditions", "absent"}

_OPS = {"is": "eq", "eq": "eq", "equals": "eq", "is_not": "ne", "ne": "ne", "not": "ne",
        "gt": "gt", "above": "gt", "more_than": "gt", "gte": "gte", "at_least": "gte",
        "lt": "lt", "below": "lt", "less_than": "lt", "lte": "lte", "at_most": "lte",
        "in": "in", "one_of": "in", "not_in": "not_in", "not_one_of": "not_in", "exists": "exists"}
_NUMERIC_OPS = {"gt", "gte", "lt", "lte"}

#: built-in soft facts and scores known to every rule set (plugins and files add more)
KNOWN_FACTS = {"price_sensitivity", "risk_attitude", "preferred_channel", "churn_risk", "lifecycle_stage",
               "vip", "language"}
KNOWN_SCORES = {"clv", "rfm", "recency", "frequency", "monetary", "p_alive", "churn_risk", "engagement",
                "expected_purchases"}
HARD_KINDS = {"orders": "number", "total_spend": "number", "first_seen": "number", "last_seen": "number",
              "last_channel": "str", "last_order_at": "number", "interactions": "number"}
assert set(HARD_KINDS) == set(HARD_FACT_DEFAULTS)


class Checker:
    """Validates rule documents against the vocabulary and compiles them to :class:`Rule`."""

    def __init__(self, vocabulary: Vocabulary, event_types: EventTypes = DEFAULT_EVENT_TYPES, *,
                 now_us: int | None = None, offers: set[str] | None = None,
                 templates: dict[str, set[str]] | None = None) -> None:
        self.vocab = vocabulary
        #: offer ids of the catalogue (``rules/offers/``); None = not known, not cross-checked
        self.catalogue = offers
        self.offers: set[str] = set()  # declared under ``vocabulary: offers`` (offers only rules propose)
        #: channel -> template names the hub config's adapters know; channels absent are not checked
        self.templates = templates or {}
        self.event_types = event_types
        self.now_us = now_us
        self.diags: list[Diagnostic] = []
        self.facts = set(KNOWN_FACTS)
        self.scores = set(KNOWN_SCORES)
        self.segments: set[str] = set()
        self.tags: set[str] = set()

    # diagnostics
    def err(self, marks: Marks, path: tuple, msg: str, *, key: bool = False, severity: str = "error") -> None:
        line, col = marks.at(path, key=key)
        self.diags.append(Diagnostic(marks.file, line, col, msg, severity))

    def warn(self, marks: Marks, path: tuple, msg: str, *, key: bool = False) -> None:
        self.err(marks, path, msg, key=key, severity="warning")

    # vocabulary collected from every action of every document (first pass)
    def collect(self, doc: Any) -> None:
        for raw in _rule_list(doc):
            if not isinstance(raw, dict):
                continue
            for step in raw.get("then") or ():
                if not isinstance(step, dict) or len(step) != 1:
                    continue
                (name, params), = step.items()
                adef = self.vocab.actions.get(name)
                if adef is None:
                    continue
                p = adef.normalise(params)
                if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                    continue
                target = {"fact": self.facts, "score": self.scores, "segment": self.segments,
                          "tag": self.tags}.get(adef.defines or "")
                if target is not None:
                    target.add(p["name"])
        if isinstance(doc, dict):
            for kind, target in (("facts", self.facts), ("scores", self.scores), ("segments", self.segments),
                                 ("tags", self.tags), ("offers", self.offers)):
                declared = (doc.get("vocabulary") or {}).get(kind) if isinstance(doc.get("vocabulary"), dict) else None
                for n in declared or ():
                    target.add(str(n))

    # documents
    def check_document(self, doc: Any, marks: Marks, scope: str = "central") -> list[Rule]:
        if doc is None:
            return []
        if isinstance(doc, dict) and "rules" not in doc and "name" in doc:
            items: list[Any] = [doc]
            base: tuple = ()
            single = True
        elif isinstance(doc, dict):
            unknown = set(doc) - {"rules", "vocabulary"}
            for k in sorted(unknown, key=str):
                self.err(marks, (k,), f"unknown top-level key {k!r}{did_you_mean(str(k), ['rules', 'vocabulary'])}"
                         " (a rule file holds `rules:` and optionally `vocabulary:`)", key=True)
            items = doc.get("rules") or []
            base = ("rules",)
            single = False
            if not isinstance(items, list):
                self.err(marks, base, "`rules:` must be a list of rules")
                return []
        elif isinstance(doc, list):
            items, base, single = doc, (), False
        else:
            self.err(marks, (), "a rule file must be a mapping with `rules:` (a list of rules)")
            return []
        out = []
        for i, raw in enumerate(items):
            path = base if single else base + (i,)
            rule = self.check_rule(raw, marks, path, scope)
            if rule is not None:
                out.append(rule)
        return out

    def check_rule(self, raw: Any, marks: Marks, path: tuple, scope: str) -> Rule | None:
        if not isinstance(raw, dict):
            self.err(marks, path, "a rule must be a mapping with name, when and then")
            return None
        before = len([d for d in self.diags if d.severity == "error"])
        for k in raw:
            if k not in RULE_KEYS:
                self.err(marks, path + (k,), f"unknown rule key {k!r}{did_you_mean(str(k), RULE_KEYS)}", key=True)
        name = raw.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,79}", name or ""):
            self.err(marks, path + ("name",) if "name" in raw else path,
                     "every rule needs a `name`: letters, digits, _ . - (starting with a letter)")
            name = f"<rule at line {marks.at(path)[0]}>"
        desc = raw.get("description", "")
        if not isinstance(desc, str):
            self.err(marks, path + ("description",), "`description` must be text")
            desc = str(desc)
        prio = raw.get("priority", 0)
        if isinstance(prio, bool) or not isinstance(prio, int):
            self.err(marks, path + ("priority",), f"`priority` must be a whole number, not {prio!r}")
            prio = 0
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            self.err(marks, path + ("enabled",), f"`enabled` must be true or false, not {enabled!r}")
            enabled = True
        once = raw.get("once", False)
        if not isinstance(once, bool):
            self.err(marks, path + ("once",), f"`once` must be true or false, not {once!r}")
            once = False
        cooldown = None
        if raw.get("cooldown") is not None:
            try:
                cooldown = parse_duration(raw["cooldown"])
            except ValueError as exc:
                self.err(marks, path + ("cooldown",), f"`cooldown`: {exc}")
        window: list[int | None] = [None, None]
        for j, k in enumerate(("valid_from", "valid_until")):
            if raw.get(k) is not None:
                try:
                    window[j] = parse_time(raw[k])
                except ValueError as exc:
                    self.err(marks, path + (k,), f"`{k}`: {exc}")
        rule = Rule(name=name, description=desc, priority=prio, enabled=enabled, events=("*",), condition=All(()),
                    actions=[], file=marks.file, line=marks.at(path)[0], valid_from=window[0],
                    valid_until=window[1], once=once, cooldown_us=cooldown, scope=scope)
        if window[0] is not None and window[1] is not None and window[0] >= window[1]:
            self.err(marks, path + ("valid_until",), "unreachable: `valid_until` is not after `valid_from`")
        elif window[1] is not None and self.now_us is not None and window[1] <= self.now_us and enabled:
            self.warn(marks, path + ("valid_until",), f"rule {name!r} is unreachable: its validity ended")
        when = raw.get("when")
        if not isinstance(when, dict):
            self.err(marks, path + ("when",) if "when" in raw else path,
                     "every rule needs `when:` with at least `event:` (an event type, a list of them, or any)")
        else:
            self._check_when(when, marks, path + ("when",), rule)
        then = raw.get("then")
        if not isinstance(then, list) or not then:
            self.err(marks, path + ("then",) if "then" in raw else path,
                     "every rule needs `then:`, a list of actions such as `- tag: vip`")
        else:
            for i, step in enumerate(then):
                self._check_action(step, marks, path + ("then", i), rule)
        rule.source = _plain(raw)
        errors_now = len([d for d in self.diags if d.severity == "error"])
        return rule if errors_now == before else None

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
        """Map a condition subject to (message field, kind) or report why not."""
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
                return f"n__{t}", "number"
            if rest not in HARD_KINDS:
                self.err(marks, p, f"unknown customer fact {rest!r}{did_you_mean(rest, HARD_KINDS)} "
                         f"(known: {', '.join(sorted(HARD_KINDS))}, count.<event type>)", key=True)
                return None
            return f"c__{rest}", HARD_KINDS[rest]
        table = {"fact": ("f__", self.facts, "any"), "score": ("s__", self.scores, "number"),
                 "segment": ("g__", self.segments, "bool"), "tag": ("t__", self.tags, "bool"),
                 "trait": ("a__", None, "any"), "identity": ("i__", None, "bool"), "consent": ("k__", None, "bool")}
        if head in table and rest:
            prefix, known, kind = table[head]
            if head == "consent":
                ch, _, purpose = rest.partition(".")
                return f"k__{ch}__{purpose or 'marketing'}", "bool"
            if known is not None and rest not in known:
                msg = f"unknown {head} {rest!r}{did_you_mean(rest, known)}"
                if head in ("segment", "tag"):
                    self.warn(marks, p, msg + f" (no rule sets it; declare it under vocabulary: {head}s)", key=True)
                else:
                    self.err(marks, p, msg + f" (set it with an action or declare it under vocabulary: {head}s)",
                             key=True)
                    return None
            return prefix + rest, kind
        subjects = ["event.", "customer.", "fact.", "score.", "segment.", "tag.", "trait.", "identity.",
                    "consent.", "history", "first", "any"]
        self.err(marks, p, f"unknown condition subject {subject!r}{did_you_mean(subject, subjects)} "
                 "(use event.<field>, customer.<fact>, fact., score., segment., tag., trait., identity., "
                 "consent., history, first or any)", key=True)
        return None

    def _check_condition(self, c: Any, marks: Marks, p: tuple, rule: Rule) -> Condition | None:
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
            parts = [self._check_condition(x, marks, kp + (i,), rule) for i, x in enumerate(test)]
            parts = [x for x in parts if x is not None]
            return AnyOf(tuple(parts)) if subject == "any" else All(tuple(parts))
        if subject == "first":
            if not isinstance(test, bool):
                self.err(marks, kp, "`first` must be true or false (is this the customer's first such event?)")
                return None
            rule.fields.add("first")
            return Cmp("first", "eq", test)
        if subject == "history":
            return self._check_history(test, marks, kp, rule)
        got = self._field_for(subject, marks, kp, rule)
        if got is None:
            return None
        fld, kind = got
        rule.fields.add(fld)
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
            if op in _NUMERIC_OPS:
                rule.numeric_fields.add(fld)
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
        if v is None or isinstance(v, (list, dict)):
            self.err(marks, p, f"compare with a single value (text, number, true/false), not {v!r}")
            return False
        isnum = isinstance(v, (int, float)) and not isinstance(v, bool)
        if op in _NUMERIC_OPS and not isnum:
            self.err(marks, p, f"type error: `{op}` needs a number, not {type(v).__name__} {v!r}")
            return False
        if kind == "number" and not isnum:
            self.err(marks, p, f"type error: {_subject_of(fld)} is a number; {v!r} is {type(v).__name__}")
            return False
        if kind == "str" and not isinstance(v, str):
            if op in _NUMERIC_OPS:
                self.err(marks, p, f"type error: {_subject_of(fld)} is text; `{op}` needs a number field")
            else:
                self.err(marks, p, f"type error: {_subject_of(fld)} is text; {v!r} is {type(v).__name__}")
            return False
        if kind == "bool" and not isinstance(v, bool):
            self.err(marks, p, f"type error: {_subject_of(fld)} is true or false, not {v!r}")
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
        rule.fields.add(spec.key)
        ops = {k: v for k, v in test.items() if k not in (kind, "within", "where")}
        if not ops:
            self.err(marks, p, "`history` needs a comparison, e.g. at_least: 3 or above: 500")
            return None
        return self._check_test(spec.key, "number", ops, marks, p, rule)

    # then
    def _check_action(self, step: Any, marks: Marks, p: tuple, rule: Rule) -> None:
        if isinstance(step, str):
            step = {step: None}
        if not isinstance(step, dict) or len(step) != 1:
            self.err(marks, p, "an action is one `action: parameters` pair, e.g. `- tag: vip`")
            return
        (name, params), = step.items()
        kp = p + (name,)
        adef: ActionDef | None = self.vocab.actions.get(str(name))
        if adef is None:
            self.err(marks, kp, f"unknown action {name!r}{did_you_mean(str(name), self.vocab.actions)} "
                     f"(known: {', '.join(sorted(self.vocab.actions))})", key=True)
            return
        params = adef.normalise(params)
        if not isinstance(params, dict):
            self.err(marks, kp, f"`{name}` takes parameters {adef.signature()}")
            return
        ok = True
        for k, v in params.items():
            spec = adef.param(k)
            if spec is None:
                self.err(marks, kp + (k,), f"unknown parameter {k!r} for `{name}`"
                         f"{did_you_mean(str(k), [q.name for q in adef.params])}; it takes {adef.signature()}",
                         key=True)
                ok = False
                continue
            if spec.kind != "bool" and self._yaml11(marks, kp + (k,), f"`{name}.{k}`"):
                ok = False
                continue
            problem = spec.check(v)
            if problem:
                self.err(marks, kp + (k,), f"type error: `{name}.{k}` {problem}")
                ok = False
            for path_ in _templates_in(v):
                bad = template_paths(path_)
                if bad:
                    self.err(marks, kp + (k,), f"template {path_!r}: {bad}")
                    ok = False
        for q in adef.params:
            if q.required and q.name not in params:
                self.err(marks, kp, f"`{name}` needs `{q.name}`; it takes {adef.signature()}")
                ok = False
        if ok:
            self._cross_check(str(name), params, marks, kp)
            line, col = marks.at(kp, key=True)
            rule.actions.append(ActionCall(str(name), params, line, col))

    def _cross_check(self, name: str, params: dict[str, Any], marks: Marks, kp: tuple) -> None:
        """Offer ids against the catalogue, templates against the hub config: a typo here
        would otherwise only show as an offer nobody is shown or a message nobody can render."""
        oid = params.get("id")
        if name == "propose_offer" and self.catalogue is not None and isinstance(oid, str) and "{" not in oid:
            known = self.catalogue | self.offers
            if oid not in known:
                self.warn(marks, kp + ("id",),
                          f"offer {oid!r} is not in the offer catalogue (offers/){did_you_mean(oid, known)}; "
                          "declare offers only rules propose under `vocabulary: offers`")
        tpl, ch = params.get("template"), params.get("channel")
        if name == "send_message" and isinstance(tpl, str) and "{" not in tpl and ch in self.templates:
            known_t = self.templates[ch]
            if tpl not in known_t:
                self.warn(marks, kp + ("template",), f"{ch} template {tpl!r} is not one the {ch} adapter declares"
                          f"{did_you_mean(tpl, known_t)} (known: {', '.join(sorted(known_t)) or 'none'})")


def _templates_in(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v] if "{" in v else []
    if isinstance(v, dict):
        return [t for x in v.values() for t in _templates_in(x)]
    if isinstance(v, list):
        return [t for x in v for t in _templates_in(x)]
    return []


def condition_label(c: Any) -> str:
    """One condition as its author wrote it, on one line: ``event.amount: {above: 1000}``."""
    text = yaml.safe_dump(_plain(c), default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[1:-1] if text.startswith("{") and text.endswith("}") else text


def _subject_of(fld: str) -> str:
    prefix, _, rest = fld.partition("__")
    names = {"e": "event.", "c": "customer.", "f": "fact.", "s": "score.", "g": "segment.", "t": "tag.",
             "a": "trait.", "i": "identity.", "k": "consent.", "n": "customer.count.", "h": "history#"}
    return names.get(prefix, "") + rest.replace("__", ".") if rest else fld


def _check_contradictions(chk: Checker, rule: Rule, marks: Marks, path: tuple) -> None:
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


def _rule_list(doc: Any) -> list[Any]:
    if isinstance(doc, dict) and "rules" not in doc and "name" in doc:
        return [doc]
    if isinstance(doc, dict):
        r = doc.get("rules")
        return r if isinstance(r, list) else []
    return doc if isinstance(doc, list) else []


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v.isoformat()
    return v


# -- loading a directory ---------------------------------------------------------------

#: sub-directories of the rules directory that hold other things (segment and offer
#: definitions of the analysis plugin) and are not rule files
RESERVED_DIRS = {"segments", "offers", "campaigns", "tests", "fixtures"}


def is_test_file(p: Path) -> bool:
    return p.name.endswith((".test.yaml", ".test.yml", "_test.yaml", "_test.yml"))


def rule_files(directory: Path) -> list[Path]:
    out = []
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory)
        if any(part.startswith((".", "_")) or part in RESERVED_DIRS for part in rel.parts[:-1]):
            continue
        if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith((".", "_")):
            out.append(p)
    return out


def load_directory(directory: str | Path, vocabulary: Vocabulary | None = None,
                   event_types: EventTypes = DEFAULT_EVENT_TYPES, *, now_us: int | None = None,
                   templates: dict[str, set[str]] | None = None, partial: bool = False) -> RuleSet:
    """Read every rule file under ``directory``; never raises for bad content (see ``errors``).

    Offer ids are checked against the catalogue in ``offers/`` beside the rules and message
    templates against ``templates`` (channel -> names, from the hub config). With ``partial``,
    files with errors are left out and the others form the set (``RuleSet.excluded`` names
    the files left out, ``errors`` still says why): one bad file must not switch off every rule.
    """
    d = Path(directory)
    vocab = vocabulary or Vocabulary.builtin()
    if not d.is_dir():
        # no directory, no rules: a hub started elsewhere runs without rules (and says so)
        return RuleSet([], content_hash([]), warnings=[Diagnostic(str(d), 0, 0, "no such rules directory",
                                                                  "warning")])
    sources = []
    tests = []
    for p in rule_files(d):
        if is_test_file(p):
            tests.append(p)
            continue
        try:
            sources.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            sources.append((str(p), None))
            _ = exc
    offers, extra = catalogue_ids(d / "offers")
    rs = check_sources(sources, vocab, event_types, now_us=now_us, offers=offers, templates=templates)
    if partial and rs.errors:
        bad = {e.file for e in rs.errors}
        errors = list(rs.errors)
        while True:
            good = [(n, t) for n, t in sources if n not in bad]
            rs = check_sources(good, vocab, event_types, now_us=now_us, offers=offers, templates=templates)
            if not rs.errors:
                break
            errors += [e for e in rs.errors if e not in errors]
            bad |= {e.file for e in rs.errors}  # a file that leant on a left-out one goes too
        rs.errors = errors
        rs.excluded = sorted(bad)
    rs.warnings = extra + rs.warnings
    rs.tests = tests
    return rs


def catalogue_ids(directory: Path) -> tuple[set[str] | None, list[Diagnostic]]:
    """The offer ids of the catalogue in ``directory`` (None when there is none: nothing to check)."""
    if not directory.is_dir():
        return None, []
    try:
        from ..analysis.offers import load_catalogue

        return set(load_catalogue(directory).offers), []
    except Exception as exc:  # the analysis plugin reports its own errors; here it only limits the check
        return None, [Diagnostic(str(directory), 0, 0, f"offer catalogue not read, offer ids not checked: {exc}",
                                 "warning")]


def check_sources(sources: list[tuple[str, str | None]], vocab: Vocabulary,
                  event_types: EventTypes = DEFAULT_EVENT_TYPES, *, now_us: int | None = None,
                  scope: str = "central", offers: set[str] | None = None,
                  templates: dict[str, set[str]] | None = None) -> RuleSet:
    chk = Checker(vocab, event_types, now_us=now_us, offers=offers, templates=templates)
    docs = []
    for name, text in sources:
        if text is None:
            chk.diags.append(Diagnostic(name, 0, 0, "cannot read file (not UTF-8 text?)"))
            continue
        doc, marks, errs = load_yaml(text, name)
        chk.diags.extend(errs)
        if not errs:
            docs.append((doc, marks))
            chk.collect(doc)
    rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    shapes: dict[str, Rule] = {}
    for doc, marks in docs:
        for r in chk.check_document(doc, marks, scope):
            if r.name in seen:
                o = seen[r.name]
                chk.diags.append(Diagnostic(r.file, r.line, 1, f"duplicate rule name {r.name!r} "
                                            f"(also at {o.file}:{o.line})"))
                continue
            shape = json.dumps({k: v for k, v in r.source.items() if k in ("when", "then")}, sort_keys=True,
                               default=str)
            if shape in shapes and r.enabled and shapes[shape].enabled:
                o = shapes[shape]
                chk.diags.append(Diagnostic(r.file, r.line, 1, f"duplicate rule: {r.name!r} has the same when "
                                            f"and then as {o.name!r} ({o.file}:{o.line}) and would act twice"))
                continue
            shapes[shape] = r
            seen[r.name] = r
            rules.append(r)
    version = content_hash((n, (t or "").encode()) for n, t in sorted(sources))
    for r in rules:
        r.version = version if scope == "central" else rule_hash(r.source)
    rules.sort(key=lambda r: (-r.priority, r.name))
    diags = list(dict.fromkeys(chk.diags))  # each problem once, in the order found
    errors = [d for d in diags if d.severity == "error"]
    warnings = [d for d in diags if d.severity != "error"]
    rs = RuleSet(rules, version, files=[n for n, _ in sources], errors=errors, warnings=warnings)
    rs.catalogue = offers
    rs.declared_offers = set(chk.offers)
    rs.segments = set(chk.segments)
    return rs


def rule_hash(source: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:12]


__all__ = ["Diagnostic", "Rule", "RuleSet", "HistorySpec", "ActionCall", "Checker", "load_directory",
           "check_sources", "load_yaml", "parse_duration", "parse_time", "rule_files", "is_test_file",
           "did_you_mean", "rule_hash", "catalogue_ids"]
