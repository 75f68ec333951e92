"""The compiled rule model: :class:`Rule` and :class:`RuleSet`, what the checker produces.

Kept apart from the checker so that the runtime, explain and the campaign runner depend on
the shape of a rule and not on how a file is validated. Nothing here is persistent: a rule
set is rebuilt from the files at every start and reload.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .matching import Condition
from .yamldoc import Diagnostic

_NONE_YET = object()  # RuleSet.program_for: an event type not asked about yet

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

    @functools.cached_property
    def plain(self) -> bool:
        """Whether the params are scalars with no ``{`` in any text: nothing to render, nothing an
        action could change in the rule through them, so a run passes them as they are (rendering
        walked and copied them on every run: ~35 calls per action, benchmarks §72)."""
        return all(not isinstance(v, (dict, list, set)) and not (isinstance(v, str) and "{" in v)
                   for v in self.params.values())


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
        #: the conditions of each program's rules (the runtime judges which costly facts a message needs)
        self.conditions: dict[str, list[Condition]] = {}
        #: program -> the runtime's plan of its message (``shopkeeper.rules.facts.plan_for``)
        self.plans: dict[Any, Any] = {}
        #: event type -> what :meth:`program_for` answers (emptied when the programs change)
        self._for_type: dict[str, Any] = {}

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
        self._for_type = {}
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
            self.conditions[t] = [r.condition for r in live]
        return self

    def program_for(self, event_type: str) -> tuple[Any, tuple[set[str], set[str], dict[str, HistorySpec]]] | None:
        got = self._for_type.get(event_type, _NONE_YET)  # asked for every event: one dict read
        if got is _NONE_YET:
            key = event_type if event_type in self.programs else "*"
            prog = self.programs.get(key)
            got = self._for_type[event_type] = (prog, self.fields[key]) if prog is not None else None
        return got

    def conditions_for(self, event_type: str) -> list[Condition]:
        """The conditions of the rules :meth:`program_for` compiled for ``event_type``."""
        return self.conditions.get(event_type if event_type in self.programs else "*", [])

    def close(self) -> None:
        for p in self.programs.values():
            p.close()
        self.programs = {}
        self._for_type = {}


def content_hash(parts: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in parts:
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:12]


def rule_hash(source: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:12]
