"""The rule language and its checker: exact file:line:col diagnostics, did-you-mean, types, duplicates."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from shopkeeper.cli import main
from shopkeeper.rules import load_directory
from shopkeeper.rules.actions import TemplateValueMissing, Vocabulary, render, template_paths
from shopkeeper.rules.loader import parse_duration
from shopkeeper.rules.matching import All, AnyOf, Cmp, DurableEngine, PythonEngine
from shopkeeper.rules.runtime import _event_types_with_rules

from .helpers import write_rules

TYPES = _event_types_with_rules()


def check(d: Path) -> list[str]:
    rs = load_directory(d, Vocabulary.builtin(), TYPES, now_us=int(time.time() * 1e6))
    return [str(x) for x in rs.errors + rs.warnings]


def test_yaml_syntax_error_has_line_and_column(rules_dir: Path) -> None:
    p = write_rules(rules_dir, "bad.yaml", "rules:\n  - name: x\n    when: {event: order\n    then: []\n")
    errs = check(rules_dir)
    assert len(errs) == 1
    assert errs[0].startswith(f"{p}:4:")  # where PyYAML noticed the unclosed flow mapping
    assert "YAML error" in errs[0]


def test_unknown_names_are_reported_at_their_position_with_a_hint(rules_dir: Path) -> None:
    p = write_rules(rules_dir, "r.yaml", """\
rules:
  - name: big
    when:
      event: ordr
      conditions:
        - customer.total_spnd: {above: 10}
        - score.clvv: {above: 1}
    then:
      - tagg: vip
  - name: ok_rule
    when:
      event: order
      conditions:
        - event.amout: {above: 10}
    then:
      - tag: {nam: vip}
""")
    errs = check(rules_dir)
    assert f"{p}:4:14: unknown event type 'ordr'; did you mean 'order'?" in errs
    assert any(e.startswith(f"{p}:6:11: unknown customer fact 'total_spnd'; did you mean 'total_spend'?")
               for e in errs), errs
    assert any(e.startswith(f"{p}:7:11: unknown score 'clvv'; did you mean 'clv'?") for e in errs), errs
    assert any(e.startswith(f"{p}:9:9: unknown action 'tagg'; did you mean 'tag'?") for e in errs), errs
    assert any(e.startswith(f"{p}:14:11: event field 'amout' is not a field of order events; did you mean 'amount'?")
               for e in errs), errs
    assert any(e.startswith(f"{p}:16:15: unknown parameter 'nam' for `tag`; did you mean 'name'?") for e in errs), errs


def test_type_errors(rules_dir: Path) -> None:
    p = write_rules(rules_dir, "t.yaml", """\
rules:
  - name: t
    when:
      event: order
      conditions:
        - event.amount: {above: lots}
        - event.currency: 3
        - segment.vip: yes please
        - customer.orders: {at_least: "2"}
    then:
      - add_score: {name: x, by: many}
      - propose_offer: {id: o, valid_for: soon}
""")
    errs = check(rules_dir)
    assert f"{p}:6:33: type error: `gt` needs a number, not str 'lots'" in errs
    assert f"{p}:7:27: type error: event.currency is text; 3 is int" in errs
    assert f"{p}:8:24: type error: segment.vip is true or false, not 'yes please'" in errs
    assert any(e.startswith(f"{p}:9:39: type error: `gte` needs a number") for e in errs), errs
    assert f"{p}:11:34: type error: `add_score.by` must be a number, not str 'many'" in errs
    assert any(e.startswith(f"{p}:12:43: type error: `propose_offer.valid_for`") for e in errs), errs


def test_duplicates_and_unreachable_rules(rules_dir: Path) -> None:
    a = write_rules(rules_dir, "a.yaml", """\
rules:
  - name: same
    when: {event: order}
    then: [{tag: a}]
  - name: twin
    when: {event: order}
    then: [{tag: a}]
  - name: never
    when:
      event: order
      conditions:
        - event.amount: {above: 100}
        - event.amount: {below: 50}
    then: [{tag: b}]
  - name: expired
    valid_until: 2001-01-01
    when: {event: order}
    then: [{tag: c}]
""")
    b = write_rules(rules_dir, "b.yaml", "rules:\n  - name: same\n    when: {event: call}\n    then: [{tag: d}]\n")
    errs = check(rules_dir)
    assert f"{b}:2:1: duplicate rule name 'same' (also at {a}:2)" in errs
    assert any(e.startswith(f"{a}:5:1: duplicate rule: 'twin' has the same when and then as 'same'") for e in errs)
    assert any(e.startswith(f"{a}:12:9: rule 'never' is unreachable") for e in errs), errs
    assert f"{a}:16:18: warning: rule 'expired' is unreachable: its validity ended" in errs


def test_missing_parts_and_unknown_keys(rules_dir: Path) -> None:
    p = write_rules(rules_dir, "m.yaml", "rules:\n  - name: m\n    whn: {event: order}\n    then: []\n")
    errs = check(rules_dir)
    assert f"{p}:3:5: unknown rule key 'whn'; did you mean 'when'?" in errs
    assert any(e.startswith(f"{p}:2:5: every rule needs `when:`") for e in errs), errs
    assert any(e.startswith(f"{p}:4:11: every rule needs `then:`") for e in errs), errs


def test_templates_are_checked_and_rendered_safely() -> None:
    assert template_paths("Hi {trait.first_name}, {event.amount:.2f}") == ""
    assert "unknown name 'evnt'" in template_paths("{evnt.amount}")
    assert "bad format" in template_paths("{event.amount:zz}")
    look = {"event.amount": 12.5, "trait.first_name": "Ann"}.get
    assert render("{event.amount}", look) == 12.5  # one placeholder keeps its type
    assert render("Hi {trait.first_name}: {event.amount:.2f} {{x}}", look) == "Hi Ann: 12.50 {x}"
    with pytest.raises(TemplateValueMissing, match=r"\{event.__class__\} has no value"):
        render("{event.__class__}", lambda p: None)  # nothing is evaluated
    # a missing value fails the action instead of rendering "Dear ," ...
    with pytest.raises(TemplateValueMissing, match="trait.first_name"):
        render("Dear {trait.first_name},", lambda p: None)
    # ... unless the template names a default
    assert render("Dear {trait.first_name|customer},", lambda p: None) == "Dear customer,"
    assert render("{trait.first_name|}", lambda p: None) == ""
    assert render("{score.clv|0:.1f} {score.clv|n/a}", lambda p: 2.25) == "2.2 2.25"


def test_durations() -> None:
    assert parse_duration("24h") == 24 * 3600 * 1_000_000
    assert parse_duration("7d") == 7 * 86400 * 1_000_000
    assert parse_duration("90s") == 90_000_000
    for bare in (90, 14.5, "14"):  # a bare number silently meant seconds: now it needs a unit
        with pytest.raises(ValueError, match="has no unit"):
            parse_duration(bare)


def test_engines_agree() -> None:
    rules = [("a", Cmp("x", "eq", 1)), ("b", Cmp("x", "ne", 1)), ("c", Cmp("x", "gt", 0.5)),
             ("d", AnyOf((Cmp("s", "eq", "no"), Cmp("b", "eq", True)))), ("e", Cmp("x", "missing")),
             ("f", All((Cmp("x", "exists"), Cmp("x", "lte", 1)))), ("g", All(())), ("h", Cmp("s", "gt", "a"))]
    d, p = DurableEngine().compile(rules), PythonEngine().compile(rules)
    for msg in [{"x": 1}, {"x": 2, "s": "hi"}, {"b": True}, {}, {"x": 0.4, "b": False}, {"x": 1}]:
        assert d.match(msg) == p.match(msg), msg
    d.close()


def test_cli_check_exit_status(rules_dir: Path) -> None:
    write_rules(rules_dir, "ok.yaml", "rules:\n  - name: a\n    when: {event: order}\n    then: [{tag: a}]\n")
    r = CliRunner().invoke(main, ["rules", "check", str(rules_dir)])
    assert r.exit_code == 0, r.output
    p = write_rules(rules_dir, "bad.yaml", "rules:\n  - name: b\n    when: {event: oder}\n    then: [{tag: a}]\n")
    r = CliRunner().invoke(main, ["rules", "check", str(rules_dir)])
    assert r.exit_code == 1
    assert f"{p}:3:19: unknown event type 'oder'; did you mean 'order'?" in r.output


def test_shipped_rules_are_clean() -> None:
    r = CliRunner().invoke(main, ["rules", "check", "--strict", str(Path(__file__).resolve().parents[2] / "rules")])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("n", [1, 63, 64, 65, 500])
def test_many_rules_matching_one_event_all_fire(n: int) -> None:
    """durable_rules refuses a fact that activates too many rules of one ruleset (its error 303,
    the evaluation stack): a hub with 500 rules on `order` must still fire every one that matches."""
    rules = [(f"r{i:03d}", Cmp("event.amount", "gt", i)) for i in range(n)]
    prog = DurableEngine().compile(rules)
    try:
        assert prog.match({"event.amount": 10_000}) == [rid for rid, _ in rules]
        assert prog.match({"event.amount": 10}) == [f"r{i:03d}" for i in range(min(n, 10))]
    finally:
        prog.close()
