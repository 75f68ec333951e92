"""One spelling for a customer's values (issue 19): ``customer.orders``, ``fact.vip``, ``score.clv``...

Rules, segment and offer conditions, campaign audiences, templates and FindCustomers read a
value through the one accessor (:mod:`shopkeeper.paths`). These tests pin that every spelling —
the new one and each old alias — gives the same value on the same customer in every consumer,
that each checker warns about an old spelling with file:line and the new spelling, and that a
rule and a segment saying the same thing agree on every customer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shopkeeper import paths
from shopkeeper.analysis.conditions import Env, compile_condition
from shopkeeper.analysis.segments import load_segments
from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.cli import main
from shopkeeper.customer import Customer, Interaction
from shopkeeper.engine.operations import fact_value
from shopkeeper.rules import load_directory
from shopkeeper.rules.actions import Vocabulary
from shopkeeper.rules.facts import FactBuilder
from shopkeeper.rules.matching import DurableEngine
from shopkeeper.rules.runtime import _event_types_with_rules

NOW = 1_800_000_000 * 1_000_000
TYPES = _event_types_with_rules()


def _customer(i: int) -> Customer:
    """Customer ``i`` of a small varied corpus: orders, facts, scores, traits, segments, consent."""
    c = Customer(f"c{i}", created_at=NOW - 400 * 86_400_000_000)
    for k in range(i % 4):
        ts = NOW - (k + 1) * 86_400_000_000
        c.add_interaction(Interaction(ts, ts, "order", "web", "", {"amount": 40.0 * (i % 5 + 1)}, f"o{i}-{k}", (),
                                      c.id))
    if i % 2:
        c.set_soft_fact("vip", i % 3 == 1, "test", NOW)
        c.set_soft_fact("price_sensitivity", ["low", "high"][i % 2], "test", NOW)
    if i % 3:
        c.set_score("clv", float(i * 100), "test", NOW)
        c.set_score("clv.value", float(i * 90), "test", NOW)
    c.set_traits({"city": ["Paris", "Lyon", "Nice"][i % 3]})
    if i % 4 == 1:
        c.join_segment("at_risk", NOW)
    if i % 5 < 3:
        c.set_consent("email", "marketing", i % 5 != 2, "test", NOW)
    return c


CUSTOMERS = [_customer(i) for i in range(12)]

#: (canonical path, its old spellings as paths, its old segment-condition spellings)
SPELLINGS = [
    ("customer.orders", ["hard.orders", "orders"], ["hard.orders"]),
    ("customer.total_spend", ["hard.total_spend", "total_spend"], ["hard.total_spend"]),
    ("customer.count.order", ["counts.order"], []),
    ("fact.vip", ["soft.vip", "f:vip"], ["soft('vip')"]),
    ("fact.price_sensitivity", ["soft.price_sensitivity", "f:price_sensitivity"], ["soft('price_sensitivity')"]),
    ("score.clv", ["scores.clv"], ["score('clv')"]),
    ("score.clv.value", ["scores.clv.value"], ["score('clv.value')"]),
    ("trait.city", ["traits.city"], ["trait('city')"]),
    ("segment.at_risk", [], ["in_segment('at_risk')"]),
    ("consent.email", [], ["consent('email')", "consent('email', 'marketing')"]),
]


@pytest.mark.parametrize(("canonical", "aliases", "old_conditions"), SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_every_spelling_reads_the_same_value_everywhere(canonical: str, aliases: list[str],
                                                        old_conditions: list[str]) -> None:
    key = paths.parse(canonical).key
    seen = set()
    for c in CUSTOMERS:
        want = paths.read(c, key)
        seen.add(repr(want))
        for spelling in [canonical, *aliases]:
            assert paths.value(c, spelling, bare_hard=True) == want, (spelling, c.id)
            assert fact_value(c, spelling) == want, ("FindCustomers", spelling, c.id)
        assert FactBuilder(c, {"type": "order", "data": {}, "ts": NOW, "channel": "web"})._compute(key, {}) == want
        env = Env(c, NOW)
        for expr in [canonical, *old_conditions]:  # a condition that is just the path: its value
            assert compile_condition(expr).fn(env) == want, (expr, c.id)
    assert len(seen) > 1, f"the corpus does not vary {canonical}"


def test_old_segment_spellings_compile_to_the_same_code_and_say_what_to_write() -> None:
    for canonical, _aliases, old_conditions in SPELLINGS:
        new = compile_condition(f"{canonical} == 1")
        assert new.deprecated == ()
        for old in old_conditions:
            cond = compile_condition(f"{old} == 1")
            assert cond.deprecated == ((old, canonical),)
            assert cond.deps == new.deps, old


def test_unknown_paths_are_errors_that_list_the_known_ones() -> None:
    with pytest.raises(paths.PathError, match="customer.<fact>"):
        paths.parse("profile.city")
    with pytest.raises(paths.PathError):
        paths.parse("orders")  # a bare name is FindCustomers' old spelling only


# -- the checkers warn, naming file:line and the new spelling ------------------------------

RULE = """\
rules:
  - name: vip_order
    when:
      event: order
      conditions:
        - soft.vip: true
        - hard.orders: {at_least: 2}
    then: [{tag: vip_buyer}]
"""


def test_rules_check_warns_about_each_old_spelling_with_file_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULE)
    rs = load_directory(tmp_path, Vocabulary.builtin(), TYPES, now_us=int(time.time() * 1e6))
    assert not rs.errors, rs.errors
    text = "\n".join(map(str, rs.warnings))
    assert f"{tmp_path / 'r.yaml'}:6:11: warning: deprecated spelling `soft.vip`: write `fact.vip`" in text, text
    assert f"{tmp_path / 'r.yaml'}:7:11: warning: deprecated spelling `hard.orders`: write `customer.orders`" in text
    got = CliRunner().invoke(main, ["rules", "check", str(tmp_path)])
    assert "deprecated spelling `soft.vip`: write `fact.vip`" in got.output, got.output


def test_a_rule_in_the_old_spelling_is_the_same_rule(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULE)
    (tmp_path / "n.yaml").write_text(RULE.replace("vip_order", "vip_order_new").replace("soft.vip", "fact.vip")
                                     .replace("hard.orders", "customer.orders"))
    rs = load_directory(tmp_path, Vocabulary.builtin(), TYPES, now_us=int(time.time() * 1e6))
    old, new = (next(r for r in rs.rules if r.name == n) for n in ("vip_order", "vip_order_new"))
    assert old.condition == new.condition and old.fields == new.fields


def test_segments_check_warns_about_each_old_spelling_with_file_line(tmp_path: Path) -> None:
    seg = tmp_path / "segments"
    seg.mkdir()
    (seg / "s.yaml").write_text("segments:\n  - name: loyal\n    when: fact.vip == True\n"
                                "  - name: vip\n    when: soft('vip') == True and hard.orders >= 2\n")
    (tmp_path / "offers").mkdir()
    (tmp_path / "offers" / "o.yaml").write_text("offers:\n  - id: o1\n    title: t\n"
                                                "    eligible: in_segment('vip')\n")
    segs = load_segments(seg)
    assert segs.warnings == [
        f"{seg / 's.yaml'}:5: warning: deprecated spelling `soft('vip')`: write `fact.vip` "
        "(the old spelling still works, for now)",
        f"{seg / 's.yaml'}:5: warning: deprecated spelling `hard.orders`: write `customer.orders` "
        "(the old spelling still works, for now)"]
    got = CliRunner().invoke(main, ["segments", "check", "--rules", str(tmp_path)])
    assert got.exit_code == 0, got.output
    assert f"{tmp_path / 'offers' / 'o.yaml'}:4: warning: deprecated spelling `in_segment('vip')`: " \
           "write `segment.vip`" in got.output, got.output
    assert f"{seg / 's.yaml'}:5: warning: deprecated spelling `soft('vip')`" in got.output


def test_the_campaign_checker_warns_about_old_spellings(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    p = tmp_path / "campaigns" / "c.yaml"
    p.write_text("campaigns:\n  - name: c\n    audience:\n      conditions:\n        - soft.vip: true\n"
                 "    messages:\n      - channel: sms\n        text: hi\n    schedule: now\n")
    cs = load_campaigns(tmp_path)
    text = "\n".join(map(str, cs.warnings))
    assert f"{p}:5:11: warning: deprecated spelling `soft.vip`: write `fact.vip`" in text, (text, cs.errors)


# -- a rule and a segment saying the same thing agree on every customer ---------------------

#: (rule condition in YAML, the same condition as a segment expression)
SAME = [
    ("customer.orders: {at_least: 2}", "customer.orders >= 2"),
    ("customer.total_spend: {above: 100}", "customer.total_spend > 100"),
    ("customer.count.order: {below: 2}", "customer.count.order < 2"),
    ("fact.vip: true", "fact.vip == True"),
    ("fact.price_sensitivity: high", "fact.price_sensitivity == 'high'"),
    ("score.clv: {at_least: 500}", "score.clv >= 500"),
    ("score.clv: {below: 300}", "score.clv < 300"),
    ("trait.city: {in: [Paris, Nice]}", "trait.city in ('Paris', 'Nice')"),
    ("segment.at_risk: true", "segment.at_risk"),
    ("consent.email: true", "consent.email"),
    ("consent.email: false", "not consent.email"),
]


def test_rules_and_segments_agree_on_the_corpus(tmp_path: Path) -> None:
    lines = ["rules:"]
    for i, (cond, _expr) in enumerate(SAME):
        lines += [f"  - name: r{i}", "    when:", "      event: order", "      conditions:", f"        - {cond}",
                  "    then: [{tag: t}]"]
    (tmp_path / "r.yaml").write_text("\n".join(lines) + "\n")
    rs = load_directory(tmp_path, Vocabulary.builtin(), TYPES, now_us=int(time.time() * 1e6))
    assert not rs.errors, rs.errors
    prog = DurableEngine().compile([(r.name, r.condition) for r in rs.rules])  # durable_rules judges the rules
    fields = set().union(*(r.fields for r in rs.rules))
    numeric = set().union(*(r.numeric_fields for r in rs.rules))
    segs = [compile_condition(expr) for _c, expr in SAME]
    try:
        outcomes: dict[int, set[bool]] = {i: set() for i in range(len(SAME))}
        for c in CUSTOMERS:
            msg = FactBuilder(c, {"type": "order", "data": {}, "ts": NOW, "channel": "web"}).message(
                fields, numeric, {})
            fired = set(prog.match(msg))
            env = Env(c, NOW)
            for i, seg in enumerate(segs):
                got: Any = seg(env)
                assert got == (f"r{i}" in fired), (SAME[i], c.id)
                outcomes[i].add(got)
        assert all(v == {True, False} for v in outcomes.values()), outcomes  # the corpus tells them apart
    finally:
        prog.close()


def test_the_shipped_files_use_the_one_spelling() -> None:
    repo = Path(__file__).resolve().parents[1]
    assert load_segments(repo / "rules" / "segments").warnings == []
    from shopkeeper.analysis.offers import load_catalogue

    assert load_catalogue(repo / "rules" / "offers").warnings == []
