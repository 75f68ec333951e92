"""The rule test runner (``shopkeeper rules test``) fails when it should: one test per weak expectation
it used to accept (exact lists, counts, "none", misspelt names), and ``--coverage``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from shopkeeper.cli import main
from shopkeeper.rules.testing import Coverage, run_one

from .helpers import service_for_dir, write_rules

RULES = """\
vocabulary:
  offers: [thanks_10]
rules:
  - name: big_order
    when:
      event: order
      conditions:
        - event.amount: {above: 100}
    then:
      - propose_offer: {id: thanks_10, valid_for: 7d}
      - send_message: {channel: email, template: thanks, respect_consent: false}
      - join_segment: big_buyers
  - name: any_order
    when: {event: order}
    then:
      - tag: buyer
  - name: never
    when:
      event: order
      conditions:
        - event.amount: {above: 100000}
    then:
      - tag: whale
"""
BIG_ORDER = "steps: [{event: order, data: {order_id: A, amount: 150}}]\n"
SMALL_ORDER = "steps: [{event: order, data: {order_id: A, amount: 5}}]\n"


@pytest.fixture
def svc(rules_dir: Path):  # type: ignore[no-untyped-def]
    write_rules(rules_dir, "r.yaml", RULES)
    write_rules(rules_dir / "offers", "catalogue.yaml", "offers:\n  - {id: free_shipping, title: Free shipping}\n")
    write_rules(rules_dir / "segments", "s.yaml", "segments:\n  - {name: repeat_buyers, when: hard.orders >= 2}\n")
    s = service_for_dir(rules_dir)
    assert s.current.ok, s.last_errors
    return s


def run(svc, steps: str, expect: str) -> list[str]:  # type: ignore[no-untyped-def]
    return run_one(yaml.safe_load(steps + "expect:\n" + expect), svc)


def test_the_right_expectations_pass(svc) -> None:  # type: ignore[no-untyped-def]
    assert run(svc, BIG_ORDER, """
  fired: [big_order, any_order]
  not_fired: [never]
  fired_count: {big_order: 1, never: 0}
  offers: [thanks_10]
  messages: [{channel: email, template: thanks}]
  segments: [big_buyers]
  tags: [buyer]
  alerts: 0
""") == []
    assert run(svc, SMALL_ORDER, "  offers: []\n  messages: []\n  segments: 0\n  fired: [any_order]\n") == []


@pytest.mark.parametrize("expect, says", [
    ("offers: 0", "offers count"),                      # `offers: 0` passed while an offer existed
    ("offers: []", "offers:"),                          # `offers: []` always passed
    ("no_offers: true", "offers:"),
    ("messages: []", "messages:"),                      # `messages: []` always passed
    ("messages: 0", "message count"),
    ("fired: [big_order]", "rules fired:"),             # lists only checked inclusion
    ("segments: []", "segments:"),
    ("tags: [other]", "tags:"),
    ("messages: [{channel: email, template: thanks}, {channel: email, template: thanks}]", "messages:"),
])
def test_each_weak_expectation_now_fails(svc, expect: str, says: str) -> None:  # type: ignore[no-untyped-def]
    problems = run(svc, BIG_ORDER, "  " + expect + "\n")
    assert problems and says in problems[0], problems


def test_offers_five_is_a_count_not_a_type_error(svc) -> None:  # type: ignore[no-untyped-def]
    problems = run(svc, BIG_ORDER, "  offers: 5\n")
    assert len(problems) == 1 and "offers count" in problems[0]
    assert "expected: 5" in problems[0] and '["thanks_10"]' in problems[0]


def test_includes_is_the_explicit_way_to_check_part_of_a_list(svc) -> None:  # type: ignore[no-untyped-def]
    assert run(svc, BIG_ORDER, "  fired: {includes: [big_order]}\n") == []
    problems = run(svc, BIG_ORDER, "  fired: {includes: [never]}\n")
    assert problems and "rules fired (includes)" in problems[0]


@pytest.mark.parametrize("expect, says", [
    ("not_fired: [big_ordr]", "unknown rule 'big_ordr'; did you mean 'big_order'?"),  # passed silently
    ("fired_count: {big_ordr: 0}", "unknown rule 'big_ordr'"),                           # passed silently
    ("fired: {includes: [nope]}", "unknown rule 'nope'"),
    ("offers: [thanks_11]", "unknown offer 'thanks_11'; did you mean 'thanks_10'?"),
    ("messages: [{channel: email, template: thank}]", "unknown template 'thank'"),
    ("not_segments: [big_buyer]", "unknown segment 'big_buyer'"),
    ("segments: {includes: [repeat_buyer]}", "unknown segment 'repeat_buyer'; did you mean 'repeat_buyers'?"),
    ("fird: [big_order]", "unknown expectation 'fird'"),
])
def test_unknown_names_are_errors(svc, expect: str, says: str) -> None:  # type: ignore[no-untyped-def]
    problems = run(svc, SMALL_ORDER, "  " + expect + "\n")
    assert any(says in p for p in problems), problems


def test_a_segment_of_the_segment_definitions_is_known(svc) -> None:  # type: ignore[no-untyped-def]
    assert run(svc, SMALL_ORDER, "  not_segments: [repeat_buyers]\n") == []


def test_an_unexpected_action_failure_fails_the_test(rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", """\
rules:
  - name: greet
    when: {event: identify}
    then:
      - tag: "{trait.nickname}"
""")
    svc = service_for_dir(rules_dir)
    problems = run(svc, "steps: [{event: identify}]\n", "  not_fired: []\n")
    assert problems and "1 rule action(s) failed" in problems[0] and "trait.nickname" in problems[0]
    assert run(svc, "steps: [{event: identify}]\n", "  failures: 1\n") == []


def test_coverage_names_unfired_rules_and_conditions_never_seen_failing(svc) -> None:  # type: ignore[no-untyped-def]
    cov = Coverage()
    assert run_one(yaml.safe_load(BIG_ORDER + "expect: {fired: {includes: [big_order]}}\n"), svc, cov) == []
    rep = cov.report(svc.current.rules)
    assert rep["fired"] == 2 and [x["rule"] for x in rep["not_fired"]] == ["never"]
    assert [(x["rule"], x["condition"]) for x in rep["never_true"]] == [("never", "event.amount: {above: 100000}")]
    assert [x["rule"] for x in rep["never_false"]] == ["big_order"]  # only a big order was tried
    run_one(yaml.safe_load(SMALL_ORDER + "expect: {fired: [any_order]}\n"), svc, cov)
    assert cov.report(svc.current.rules)["never_false"] == []


def test_rules_test_coverage_cli(svc, rules_dir: Path) -> None:  # type: ignore[no-untyped-def]
    write_rules(rules_dir, "r.test.yaml", "tests:\n  - name: big\n    " + BIG_ORDER.replace("\n", "") +
                "\n    expect: {fired: [big_order, any_order]}\n")
    r = CliRunner().invoke(main, ["rules", "test", str(rules_dir), "--coverage"])
    assert r.exit_code == 0, r.output
    assert "coverage: 2/3 rules fired" in r.output
    assert "rule never never fired" in r.output
    assert "big_order: condition `event.amount: {above: 100}` never failed" in r.output
    r = CliRunner().invoke(main, ["rules", "test", str(rules_dir), "--coverage", "--json"])
    rep = json.loads(r.output[r.output.index("{"):])
    assert rep["rules"] == 3 and rep["fired"] == 2
