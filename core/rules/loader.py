"""Reading, validating and compiling rule files.

A rule file is YAML: either a list of rules under ``rules:`` or a single rule mapping.
Everything is checked against the vocabulary defined in code (event types, customer facts,
actions contributed by plugins) and every problem is reported as ``file:line:col: message``
using the positions PyYAML keeps on its nodes. See ``docs/rules.md`` for the language.

The result is a :class:`RuleSet`: rules sorted by priority, grouped by event type, with the
conditions compiled to the engine-neutral tree of :mod:`shopkeeper.rules.matching` over the
fields of one flat message (see :mod:`shopkeeper.rules.facts`).

The work is split by job: :mod:`.yamldoc` (YAML with positions, durations), :mod:`.model`
(:class:`Rule`, :class:`RuleSet`), :mod:`.checker` and :mod:`.condition_checker` (validation
and compilation); this module reads a directory. The names below are re-exported so that
``shopkeeper.rules.loader`` keeps working for the code and plugins that import from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..events import DEFAULT_EVENT_TYPES, EventTypes
from .actions import Vocabulary
from .checker import Checker
from .condition_checker import condition_label
from .model import ActionCall, HistorySpec, Rule, RuleSet, content_hash, rule_hash
from .yamldoc import Diagnostic, Marks, _plain, did_you_mean, load_yaml, parse_duration, parse_time

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


__all__ = ["Diagnostic", "Marks", "Rule", "RuleSet", "HistorySpec", "ActionCall", "Checker", "load_directory",
           "check_sources", "load_yaml", "parse_duration", "parse_time", "rule_files", "is_test_file",
           "did_you_mean", "rule_hash", "catalogue_ids", "condition_label", "content_hash", "_plain"]
