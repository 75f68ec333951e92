"""Costly facts (windowed history, identities) are computed only for the rules that need them.

The message an event is judged on holds the facts its event type's rules name. Most are in the
customer's record; a windowed history aggregate may load spilled history buckets and an
``identity.*`` test loads the customer's identities tree. When the cheap facts already decide a
rule, its costly facts cannot change the outcome, so they are left out of the message — and the
engine still judges every rule on it. These tests pin both halves: nothing costly is computed
when it cannot matter, and the engine's answer is the one the full message gives."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.rules.facts import FactBuilder, _Plan
from shopkeeper.rules.matching import All, AnyOf, Cmp, DurableEngine
from shopkeeper.store import Store

from .helpers import apply, event, service_for_dir, traces, write_rules

RULES = """\
rules:
  - name: sale_sms
    when:
      event: page_view
      conditions:
        - event.url: {in: ["/sale"]}
        - identity.phone: true
    then: [{tag: sale_sms}]
  - name: big_spender
    when:
      event: order
      conditions:
        - event.amount: {above: 100}
        - history: {sum: order.amount, within: 90d, above: 150}
    then: [{tag: big_spender}]
"""


def _fired(result: Any) -> list[str]:
    return [k for t in traces(result) for k in t["fired"]]


def test_costly_facts_are_computed_only_when_the_cheap_ones_leave_a_rule_undecided(
        store: Store, rules_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_rules(rules_dir, "r.yaml", RULES)
    svc = service_for_dir(rules_dir)
    assert svc.current.ok, svc.last_errors
    calls: list[str] = []
    real = FactBuilder._compute

    def computing(self: FactBuilder, f: str, history: dict[str, Any]) -> Any:
        if f.startswith(("h__", "i__")):
            calls.append(f[0] if f.startswith("h__") else f)
        return real(self, f, history)

    monkeypatch.setattr(FactBuilder, "_compute", computing)
    who = {"who": "p@example.com", "identities": {"email": "p@example.com", "phone": "+441234567890"}}

    r = apply(store, svc, event("page_view", {"url": "/home"}, **who))[0]
    assert (calls, _fired(r)) == ([], [])
    r = apply(store, svc, event("page_view", {"url": "/sale"}, **who))[0]
    assert (calls, _fired(r)) == (["i__phone"], ["sale_sms"])
    calls.clear()
    r = apply(store, svc, event("order", {"order_id": "1", "amount": 90}, **who))[0]
    assert (calls, _fired(r)) == ([], [])  # 90 is not above 100: the 90-day sum cannot matter
    r = apply(store, svc, event("order", {"order_id": "2", "amount": 120}, **who))[0]
    assert (calls, _fired(r)) == (["h"], ["big_spender"])  # 90 + 120 above 150


FIELDS = ("e__a", "e__b", "c__n", "h__x", "h__y", "i__phone")
COSTLY = {"h__x", "h__y", "i__phone"}


def _random_condition(rng: random.Random, depth: int = 0) -> Any:
    if depth < 2 and rng.random() < 0.45:
        kind = All if rng.random() < 0.6 else AnyOf
        return kind(tuple(_random_condition(rng, depth + 1) for _ in range(rng.randrange(0, 4))))
    f = rng.choice(FIELDS)
    if f == "i__phone":
        return Cmp(f, rng.choice(["eq", "ne", "exists", "missing"]), rng.choice([True, False]))
    return Cmp(f, rng.choice(["eq", "ne", "gt", "gte", "lt", "lte", "exists", "missing"]), rng.randrange(0, 4))


class _Builder(FactBuilder):
    """A FactBuilder whose facts come from a dict (None = the fact has no value)."""

    __slots__ = ("facts", "computed")

    def __init__(self, facts: dict[str, Any]) -> None:
        super().__init__(None, {"type": "t"})  # type: ignore[arg-type]
        self.facts = facts
        self.computed: set[str] = set()

    def _compute(self, f: str, history: dict[str, Any]) -> Any:
        self.computed.add(f)
        return self.facts[f]


class _Key:
    """Stands for a program as the key of its cached plan."""


class _Set:
    def __init__(self, conditions: list[Any]) -> None:
        self.conditions = conditions

    def conditions_for(self, event_type: str) -> list[Any]:
        return self.conditions


def test_the_engine_answers_the_same_without_the_facts_left_out() -> None:
    """durable_rules judges random rules on the lazily built message and on the full one: the same
    rules match, for every combination of values and missing facts."""
    saved = 0
    for seed in range(6):
        rng = random.Random(seed)
        conditions = [_random_condition(rng) for _ in range(8)]
        prog = DurableEngine().compile([(f"r{i}", c) for i, c in enumerate(conditions)])
        try:
            fields = set(FIELDS)
            for _ in range(150):
                values = [rng.choice([None, 0, 1, 2, 3]) for _ in FIELDS]
                facts = dict(zip(FIELDS, values, strict=True))
                facts["i__phone"] = None if values[-1] is None else values[-1] > 1
                full = FactBuilder.message(_Builder(facts), fields, set(), {})
                lazy_builder = _Builder(facts)
                key = _Key()  # a fresh cache key per case: plans are per program
                lazy = lazy_builder.message_for(_Set(conditions), "t", key, fields, set(), {})  # type: ignore[arg-type]
                assert prog.match(lazy or {"ev": "t"}) == prog.match(full), (conditions, facts)
                saved += len(COSTLY - lazy_builder.computed)
        finally:
            prog.close()
    assert saved > 100  # not vacuous: many costly facts were left out


def _event_condition(rng: random.Random) -> Any:
    """A random rule whose top level may hold conditions on the event's own fields."""
    items = [_random_condition(rng, 1) for _ in range(rng.randrange(0, 4))]
    if rng.random() < 0.7:
        items.append(Cmp(rng.choice(("e__a", "e__b", "ch")), rng.choice(["eq", "ne", "gte", "lt", "missing"]),
                         rng.randrange(0, 4)))
    top = rng.random()
    return All(tuple(items)) if top < 0.7 else AnyOf(tuple(items)) if top < 0.85 else items[0] if items else All(())


def test_no_event_a_rule_would_match_is_left_out_before_durable_rules() -> None:
    """The event gate: an event is not asserted only when its own fields rule out every rule of
    the program. durable_rules judges random rules on the full message of random events and
    customers; whenever the gate closed, it matched nothing — and the gate did close often."""
    fields = {*FIELDS, "ch"}
    closed = matched = 0
    for seed in range(8):
        rng = random.Random(100 + seed)
        conditions = [_event_condition(rng) for _ in range(rng.randrange(1, 4))]
        prog = DurableEngine().compile([(f"r{i}", c) for i, c in enumerate(conditions)])
        try:
            for _ in range(150):
                facts = {f: rng.choice([None, 0, 1, 2, 3]) for f in fields}
                facts["i__phone"] = None if facts["i__phone"] is None else facts["i__phone"] > 1
                facts["ch"] = rng.choice([None, 1, 2, "web"])
                full = prog.match(FactBuilder.message(_Builder(facts), fields, {"e__a", "e__b"}, {}))
                lazy = _Builder(facts).message_for(_Set(conditions), "t", prog, fields, {"e__a", "e__b"}, {})
                if lazy is None:
                    closed += 1
                    assert full == [], (conditions, facts)
                else:
                    assert prog.match(lazy) == full, (conditions, facts)
                    matched += bool(full)
        finally:
            prog.close()
    assert closed > 200 and matched > 100  # not vacuous: both sides of the gate were taken


def test_the_gate_stays_open_when_a_rule_has_no_condition_on_the_event() -> None:
    plan = _Plan({"e__a", "c__n"}, [Cmp("e__a", "eq", 1), All((Cmp("c__n", "gt", 1),))])
    assert plan.gate is None
    plan = _Plan({"e__a", "c__n"}, [Cmp("e__a", "eq", 1), All((Cmp("c__n", "gt", 1), Cmp("ch", "eq", "web")))])
    assert plan.event_fields == {"e__a", "ch"} and len(plan.gate or ()) == 2


def test_a_plan_computes_up_front_a_costly_fact_no_condition_names() -> None:
    plan = _Plan({"e__a", "h__x"}, [Cmp("e__a", "eq", 1)])
    assert plan.cheap == {"e__a", "h__x"} and plan.undecided == []


def test_the_gate_judged_on_the_interaction_closes_exactly_when_the_message_would() -> None:
    """``RulesService.evaluate`` asks the gate on the interaction's own values (``_Plan.closed``)
    before it builds the event dict, the builder or any message (3 in 4 events of the workload stop
    there, docs/benchmarks.md §67). It must close exactly when ``message_for`` would: for missing
    values, numbers, texts, a text where a number is compared, booleans and non-scalars."""
    fields = {*FIELDS, "ch"}
    numeric = {"e__a", "e__b"}
    values = [None, 0, 1, 2, 3, "2", "web", True, [1], {"x": 1}]
    closed = opened = 0
    for seed in range(10):
        rng = random.Random(300 + seed)
        conditions = [_event_condition(rng) for _ in range(rng.randrange(1, 4))]
        plan = _Plan(fields, conditions)
        if plan.gate is None:
            continue
        for _ in range(150):
            data = {k: rng.choice(values) for k in ("a", "b") if rng.random() < 0.8}
            channel = rng.choice([None, 1, 2, "web"])
            facts: dict[str, Any] = dict.fromkeys(FIELDS)
            facts.update({f"e__{k}": v for k, v in data.items()})
            facts["ch"] = channel
            lazy = _Builder(facts).message_for(_Set(conditions), "t", _Key(), fields, numeric, {})
            got = plan.closed("t", channel, None, data, numeric)  # type: ignore[arg-type]
            assert got == (lazy is None), (conditions, data, channel)
            closed += got
            opened += not got
    assert closed > 200 and opened > 200  # not vacuous


def test_an_event_the_gate_closes_builds_nothing_and_a_rule_it_admits_still_fires(
        store: Store, rules_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page view no rule's event conditions admit returns before the event dict and the builder
    (on the old code each page view built both); the sale page still reaches durable_rules and fires."""
    from shopkeeper.rules import runtime

    write_rules(rules_dir, "r.yaml", RULES)
    svc = service_for_dir(rules_dir)
    built: list[str] = []
    real = runtime.event_dict

    def counting(it: Any, key: str = "") -> dict[str, Any]:
        built.append(it.type)
        return real(it, key)

    monkeypatch.setattr(runtime, "event_dict", counting)
    who = {"who": "g@example.com", "identities": {"email": "g@example.com", "phone": "+441234567890"}}
    r = apply(store, svc, event("page_view", {"url": "/home"}, **who), event("page_view", {"url": "/about"}, **who))
    assert (built, [_fired(x) for x in r]) == ([], [[], []])
    r = apply(store, svc, event("page_view", {"url": "/sale"}, **who))[0]
    assert (built, _fired(r)) == (["page_view"], ["sale_sms"])
