"""One condition compiler (issue 19): rules' YAML and the segment/offer expressions are two front
ends of one tree, analysed once, run by two back ends (durable_rules and Python) that agree.

The corpus of customers and the rule/segment pairs are those of ``test_condition_paths``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_condition_paths import CUSTOMERS, NOW, SAME, TYPES

import shopkeeper.rules.matching as matching
from shopkeeper import conditions
from shopkeeper.analysis.conditions import ConditionError, Env, compile_condition
from shopkeeper.analysis.offers import load_catalogue
from shopkeeper.analysis.segments import load_segments
from shopkeeper.conditions import All, AnyOf, Cmp, Field, Not, Truth, dependencies
from shopkeeper.conditions.python import customer_function, generate
from shopkeeper.rules import load_directory
from shopkeeper.rules.actions import Vocabulary
from shopkeeper.rules.facts import FactBuilder
from shopkeeper.rules.matching import DurableEngine, PythonEngine

EV = {"type": "order", "data": {}, "ts": NOW, "channel": "web"}


def _rules(tmp_path: Path, conds: list[str]) -> list:
    lines = ["rules:"]
    for i, cond in enumerate(conds):
        lines += [f"  - name: r{i}", "    when:", "      event: order", "      conditions:", f"        - {cond}",
                  "    then: [{tag: t}]"]
    (tmp_path / "r.yaml").write_text("\n".join(lines) + "\n")
    rs = load_directory(tmp_path, Vocabulary.builtin(), TYPES, now_us=int(time.time() * 1e6))
    assert not rs.errors, rs.errors
    return sorted(rs.rules, key=lambda r: int(r.name[1:]))


def test_both_front_ends_lower_to_the_same_tree(tmp_path: Path) -> None:
    rules = _rules(tmp_path, [c for c, _ in SAME])
    same = 0
    for rule, (yaml_cond, expr) in zip(rules, SAME, strict=True):
        (rule_tree,) = rule.condition.items
        tree = compile_condition(expr).tree
        if yaml_cond.endswith(": true") or yaml_cond.endswith(": false"):
            continue  # `segment.x: true` is a comparison, `segment.x` a truth value: same meaning, shown below
        assert tree == rule_tree, (yaml_cond, expr)
        same += 1
    assert same >= 7
    assert compile_condition("customer.orders >= 2").tree == Cmp("c__orders", "gte", 2)
    assert compile_condition("trait.city in ('Paris', 'Nice')").tree == AnyOf(
        (Cmp("a__city", "eq", "Paris"), Cmp("a__city", "eq", "Nice")))
    assert compile_condition("not consent.email").tree == Not(Truth(Field("k__email__marketing")))
    # each front end keeps its own surface semantics: a rule's is_not holds for a missing value
    (ne,) = _rules(tmp_path, ["fact.price_sensitivity: {is_not: high}"])[0].condition.items
    assert ne == AnyOf((Cmp("f__price_sensitivity", "missing"), Cmp("f__price_sensitivity", "ne", "high")))
    assert compile_condition("fact.price_sensitivity != 'high'").tree == Cmp("f__price_sensitivity", "ne", "high")


def test_one_dependency_analysis_for_rules_and_segments(tmp_path: Path) -> None:
    rules = _rules(tmp_path, [c for c, _ in SAME] + ["history: {count: order, within: 30d, at_least: 2}",
                                                     "history: {count: page_view, at_least: 1}"])
    exprs = [e for _, e in SAME] + ["count('order', days=30) >= 2", "count('page_view') >= 1"]
    for rule, expr in zip(rules, exprs, strict=True):
        seg = compile_condition(expr)
        got = dependencies(rule.condition, rule.history)
        assert (got.events, got.time_based) == (seg.deps, seg.time_based), expr
    assert compile_condition("customer.orders >= 2").deps == {"order"}
    assert compile_condition("count('order', days=30) >= 2").time_based
    assert dependencies(rules[-2].condition, rules[-2].history) == ({"order"}, True)
    assert conditions.fields(rules[0].condition) == rules[0].fields == {"c__orders"}


#: flat trees (what rules compile to) that exercise every operator and the semantics edges
FLAT = [
    Cmp("c__orders", "gte", 2), Cmp("c__total_spend", "lt", 100), Cmp("f__vip", "eq", True),
    Cmp("f__price_sensitivity", "ne", "high"), Cmp("s__clv", "exists"), Cmp("s__clv", "missing"),
    Cmp("a__city", "gt", "M"),  # text ordering: durable_rules would judge it otherwise; the Python back end does
    Cmp("g__at_risk", "gt", 0),  # no ordering on booleans
    All((Cmp("c__orders", "gt", 0), AnyOf((Cmp("a__city", "eq", "Paris"), Cmp("k__email__marketing", "eq", True))))),
    AnyOf((Cmp("s__clv", "missing"), All((Cmp("s__clv", "gte", 300), Cmp("s__clv", "lt", 900))))),
    All(()), AnyOf(()),
]


def test_the_back_ends_agree_on_the_corpus() -> None:
    rules = [(f"t{i}", t) for i, t in enumerate(FLAT)]
    durable = DurableEngine().compile(rules)
    python = PythonEngine().compile(rules)
    keys = set().union(*(conditions.fields(t) for t in FLAT))
    numeric = set().union(*(conditions.numeric_fields(t) for t in FLAT))
    customer_fns = [customer_function(generate(t, "customer")) for t in FLAT]
    seen: dict[str, set[bool]] = {rid: set() for rid, _ in rules}
    try:
        for c in CUSTOMERS:
            msg = FactBuilder(c, EV).message(keys, numeric, {})
            want = [rid for rid, t in rules if conditions.evaluate(t, msg)]
            assert durable.match(msg) == want, c.id
            assert python.match(msg) == want, c.id
            env = Env(c, NOW)
            for (rid, _t), fn in zip(rules, customer_fns, strict=True):
                assert bool(fn(env)) == (rid in want), (rid, c.id)  # the customer reader: the same answer
                seen[rid].add(rid in want)
    finally:
        durable.close()
    assert sum(len(v) == 2 for v in seen.values()) >= 8, seen  # the corpus tells most of them apart
    assert seen["t7"] == {False} and seen["t10"] == {True} and seen["t11"] == {False}


def test_the_old_import_paths_are_the_compiler() -> None:
    assert matching.Cmp is conditions.Cmp and matching.All is conditions.All and matching.AnyOf is conditions.AnyOf
    assert matching.evaluate is conditions.evaluate


def test_a_type_error_says_which_file_which_condition_and_why(tmp_path: Path) -> None:
    seg = tmp_path / "segments"
    seg.mkdir()
    (seg / "s.yaml").write_text("segments:\n  - name: big\n    when: customer.orders == 'lots'\n")
    with pytest.raises(ConditionError) as got:
        load_segments(seg)
    assert str(got.value) == (f"{seg / 's.yaml'}: segments[0] (big):1: type error: customer.orders is a number; "
                              "'lots' is str in \"customer.orders == 'lots'\"")
    offers = tmp_path / "offers"
    offers.mkdir()
    (offers / "o.yaml").write_text("offers:\n  - id: o1\n    title: O\n    eligible: consent.email == 'yes'\n")
    with pytest.raises(ConditionError, match=r"o\.yaml.*offer o1: eligible:1: type error: consent\.email is true "
                                             r"or false, not 'yes'"):
        load_catalogue(offers)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("rules:\n  - name: r\n    when:\n      event: order\n      conditions:\n"
                                  "        - customer.orders: {above: lots}\n    then: [{tag: t}]\n")
    rs = load_directory(rules, Vocabulary.builtin(), TYPES, now_us=int(time.time() * 1e6))
    assert [str(e) for e in rs.errors] == [f"{rules / 'r.yaml'}:6:36: type error: `gt` needs a number, not str 'lots'"]
    # Python-like comparisons that can hold stay allowed in the expression language
    assert compile_condition("segment.vip == 1").tree == Cmp("g__vip", "eq", 1)
    assert compile_condition("trait.city > 'M'").tree == Cmp("a__city", "gt", "M")


def test_the_expression_language_keeps_containment_and_names_unknown_facts() -> None:
    from shopkeeper.customer import Customer

    c = Customer("t", created_at=NOW)
    c.set_traits({"tags": ["vip", "b2b"], "city": "Paris"})
    env = Env(c, NOW)
    assert compile_condition("'vip' in trait.tags")(env)
    assert not compile_condition("'vip' not in trait.tags")(env)
    assert not compile_condition("'x' in trait.missing")(env)  # a missing value: false, as any comparison
    assert not compile_condition("'x' not in trait.missing")(env)
    with pytest.raises(ConditionError, match=r"where:1: unknown customer fact 'ordrs'; did you mean 'orders'\?"):
        compile_condition("customer.ordrs > 1", "where")
