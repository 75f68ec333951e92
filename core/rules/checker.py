"""The rule checker: a rule document validated against the vocabulary and compiled to :class:`Rule`.

The checker reads the structure of a rule (name, priority, validity, ``then:`` actions and their
parameters, template names) and hands ``when:`` to :class:`ConditionChecker`. Problems are
collected as :class:`Diagnostic` with positions, never raised: a file with ten mistakes is
reported with ten messages.
"""

from __future__ import annotations

import re
from typing import Any

from ..events import DEFAULT_EVENT_TYPES, EventTypes
from .actions import ActionDef, Vocabulary, template_paths
from .condition_checker import KNOWN_FACTS, KNOWN_SCORES, ConditionChecker
from .matching import All
from .model import ActionCall, Rule
from .yamldoc import Diagnostic, Marks, _plain, did_you_mean, parse_duration, parse_time

RULE_KEYS = {"name", "description", "priority", "enabled", "valid_from", "valid_until", "when", "then",
             "once", "cooldown"}


class Checker(ConditionChecker):
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


def _rule_list(doc: Any) -> list[Any]:
    if isinstance(doc, dict) and "rules" not in doc and "name" in doc:
        return [doc]
    if isinstance(doc, dict):
        r = doc.get("rules")
        return r if isinstance(r, list) else []
    return doc if isinstance(doc, list) else []

