"""What rules mean in corner cases: missing values, templates without a value, cooldown with timers."""

from __future__ import annotations

from pathlib import Path

import yaml

from shopkeeper.rules import intents
from shopkeeper.rules.testing import run_one
from shopkeeper.store import Store

from .helpers import apply, event, service_for_dir, traces, write_rules


def _fired(result: object) -> list[str]:
    return [k for t in traces(result) for k in t["fired"]]


def test_is_not_and_not_one_of_hold_when_the_value_is_missing(store: Store, rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", """\
rules:
  - name: not_eur
    when: {event: order, conditions: [{event.currency: {is_not: EUR}}]}
    then: [{tag: not_eur}]
  - name: not_listed
    when: {event: order, conditions: [{event.currency: {not_one_of: [EUR, USD]}}]}
    then: [{tag: not_listed}]
  - name: above
    when: {event: order, conditions: [{event.items: {above: 0}}]}
    then: [{tag: above}]
  - name: equal
    when: {event: order, conditions: [{event.currency: GBP}]}
    then: [{tag: equal}]
""")
    svc = service_for_dir(rules_dir)
    assert svc.current.ok, svc.last_errors
    # no currency, no items: "is not EUR" holds (Unomi's reading); ordered and equality tests do not
    r = apply(store, svc, event("order", {"order_id": "1", "amount": 5}, who="m@example.com"))[0]
    assert sorted(_fired(r)) == ["not_eur", "not_listed"]
    r = apply(store, svc, event("order", {"order_id": "2", "amount": 5, "currency": "EUR"}, who="m@example.com"))[0]
    assert _fired(r) == []
    r = apply(store, svc, event("order", {"order_id": "3", "amount": 5, "currency": "GBP", "items": 1},
                                who="m@example.com"))[0]
    assert sorted(_fired(r)) == ["above", "equal", "not_eur", "not_listed"]


def test_a_missing_template_value_fails_the_action_visibly(store: Store, rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", """\
rules:
  - name: greet
    when: {event: identify}
    then:
      - send_message: {channel: email, template: hello, respect_consent: false,
                       payload: {line: "Dear {trait.first_name},"}}
  - name: greet_default
    when: {event: identify}
    then:
      - send_message: {channel: email, template: hello2, respect_consent: false,
                       payload: {line: "Dear {trait.first_name|customer},"}}
""")
    svc = service_for_dir(rules_dir)
    r = apply(store, svc, event("identify", {}, who="t@example.com"))[0]
    (trace,) = traces(r)
    assert [f["rule"] for f in trace["failures"]] == ["greet"]
    assert "template {trait.first_name} has no value" in trace["failures"][0]["reason"]
    with store.read() as f:
        msgs = intents(f.customer(r.customer_id))
    assert [(m["template"], m["payload"]["line"]) for m in msgs] == [("hello2", "Dear customer,")]


COOLDOWN_TIMER = """\
rules:
  - name: remind
    cooldown: 7d
    when:
      event: checkout_started
      absent: {event: order, within: 24h}
    then:
      - tag: reminded
"""


def test_cooldown_starts_when_the_timer_acts_not_when_it_is_armed(rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", COOLDOWN_TIMER)
    svc = service_for_dir(rules_dir)
    # the first checkout's timer is cancelled by an order: it never acted, so the second
    # checkout two days later (inside the 7-day cooldown of the *arming*) still gets its reminder
    problems = run_one(yaml.safe_load("""
steps:
  - event: checkout_started
  - {event: order, after: 1h, data: {order_id: A, amount: 3}}
  - {event: checkout_started, after: 2d}
  - wait: 2d
expect:
  fired_count: {remind: 1}
  tags: [reminded]
"""), svc)
    assert problems == []


def test_cooldown_still_limits_timers_that_acted(rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", COOLDOWN_TIMER)
    svc = service_for_dir(rules_dir)
    # two checkouts an hour apart arm two timers; the first acts, the second falls in its cooldown
    problems = run_one(yaml.safe_load("""
steps:
  - event: checkout_started
  - {event: checkout_started, after: 1h}
  - wait: 2d
expect:
  fired_count: {remind: 1}
"""), svc)
    assert problems == []


def test_a_rule_whose_any_holds_twice_fires_once(store: Store, rules_dir: Path) -> None:
    """durable_rules activates a rule once per branch of an ``$or`` that holds: the engine's
    answer is a set of rules (each rule's actions run once per event)."""
    write_rules(rules_dir, "r.yaml", """\
rules:
  - name: either
    when:
      event: order
      conditions:
        - any: [{event.amount: {above: 10}}, {event.order_id: "1"}]
    then: [{add_score: {name: engagement, by: 1, max: 100}}]
""")
    svc = service_for_dir(rules_dir)
    assert svc.current.ok, svc.last_errors
    r = apply(store, svc, event("order", {"order_id": "1", "amount": 50}, who="either@example.com"))[0]
    assert _fired(r) == ["either"]
    with store.read() as f:
        assert f.customer(r.customer_id).scores["engagement"].value == 1
