"""Explain "why" and "why not": every rule's outcome for a customer and an event, every offer's for Decide."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from shopkeeper.analysis.offers import Catalogue, decide, make_offer
from shopkeeper.cli import main
from shopkeeper.rules import add_customer_rule, tags
from shopkeeper.rules.explain import ExplainError, explain_customer, render_text
from shopkeeper.store import Store

from .helpers import apply, event, service_for_dir, write_rules

RULES = """\
rules:
  - name: big_order
    priority: 10
    cooldown: 7d
    when:
      event: order
      conditions:
        - customer.orders: {at_least: 1}
        - event.amount: {above: 100}
    then:
      - tag: big_spender
  - name: euro_only
    when:
      event: order
      conditions:
        - event.currency: EUR
    then:
      - tag: euro
  - name: switched_off
    enabled: false
    when: {event: order}
    then: [{tag: never}]
  - name: on_identify
    when: {event: identify}
    then: [{tag: known}]
  - name: chase
    when:
      event: checkout_started
      absent: {event: order, within: 24h}
    then: [{tag: chased}]
"""


def _by_rule(x: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in x["rules"]}


@pytest.fixture
def setup(store: Store, rules_dir: Path):  # type: ignore[no-untyped-def]
    write_rules(rules_dir, "r.yaml", RULES)
    svc = service_for_dir(rules_dir)
    assert svc.current.ok, svc.last_errors
    cid = apply(store, svc, event("identify", who="ex@example.com"))[0].customer_id
    return svc, cid


def test_every_rule_has_an_outcome_with_the_failing_condition_and_the_value_seen(store, setup) -> None:  # type: ignore[no-untyped-def]
    svc, cid = setup
    with store.read() as f:
        x = explain_customer(svc, f, f.customer(cid), event={"type": "order", "data": {"order_id": "1", "amount": 150}})
    got = _by_rule(x)
    assert set(got) == {"big_order", "euro_only", "switched_off", "on_identify", "chase"}  # every rule
    assert got["big_order"]["outcome"] == "fired" and got["big_order"]["effects"] == ["tag: tagged big_spender"]
    e = got["euro_only"]
    assert e["outcome"] == "condition_failed"
    assert e["condition"] == {"index": 1, "text": "event.currency: EUR", "line": 16, "seen": "(missing)"}
    assert got["switched_off"]["outcome"] == "disabled"
    assert got["on_identify"]["outcome"] == "other_event" and "listens to identify" in got["on_identify"]["why"]
    assert x["hypothetical"] is True
    with store.read() as f:  # a dry run: nothing was kept
        assert tags(f.customer(cid)) == ["known"]


def test_the_customer_who_did_not_get_it_sees_which_condition_and_value(store, setup) -> None:  # type: ignore[no-untyped-def]
    svc, cid = setup
    with store.read() as f:
        x = explain_customer(svc, f, f.customer(cid), event={"type": "order", "data": {"order_id": "1", "amount": 20}})
    b = _by_rule(x)["big_order"]
    assert b["outcome"] == "condition_failed"
    assert b["condition"]["text"] == "event.amount: {above: 100}" and b["condition"]["seen"] == 20
    assert "condition 2 (event.amount: {above: 100}, line 9) does not hold: saw 20" in render_text(x)


def test_cooldown_once_and_timer_state_are_explained(store, setup) -> None:  # type: ignore[no-untyped-def]
    svc, cid = setup
    apply(store, svc, event("order", {"order_id": "A", "amount": 500}, who="ex@example.com"))
    # an hour ago: its 24-hour timer is still pending now
    apply(store, svc, event("checkout_started", {"cart_value": 5}, who="ex@example.com", ts=time.time() - 3600))
    with store.read() as f:
        x = explain_customer(svc, f, f.customer(cid), event={"type": "order", "data": {"order_id": "B", "amount": 900}})
        got = _by_rule(x)
        assert got["big_order"]["outcome"] == "cooldown" and "not again before" in got["big_order"]["why"]
        assert [t["rule"] for t in x["timers_pending"]] == ["chase"]
        assert [t["rule"] for t in x["timers_cancelled"]] == ["chase"]  # this order would cancel it
        y = explain_customer(svc, f, f.customer(cid), event={"type": "checkout_started", "data": {"cart_value": 9}})
        assert _by_rule(y)["chase"]["outcome"] == "timer"


def test_customer_rules_are_explained_too(store, setup) -> None:  # type: ignore[no-untyped-def]
    svc, cid = setup
    with store.transaction() as f:
        add_customer_rule(f, cid, "name: mine\nwhen: {event: order, conditions: [{event.amount: {below: 10}}]}\n"
                          "then: [{tag: small}]\n")
    with store.read() as f:
        x = explain_customer(svc, f, f.customer(cid), event={"type": "order", "data": {"order_id": "1", "amount": 50}})
    mine = _by_rule(x)["customer:mine"]
    assert mine["scope"] == "customer" and mine["outcome"] == "condition_failed" and mine["condition"]["seen"] == 50


def test_a_recorded_event_by_its_key_and_clear_errors(store, setup) -> None:  # type: ignore[no-untyped-def]
    svc, cid = setup
    with store.read() as f:
        c = f.customer(cid)
        key = next(c.interactions()).idempotency_key
        x = explain_customer(svc, f, c, event_key=key)
        assert x["hypothetical"] is False and x["event"]["type"] == "identify"
        assert _by_rule(x)["on_identify"]["outcome"] in ("fired", "fired_recorded")
        with pytest.raises(ExplainError, match="no interaction with key"):
            explain_customer(svc, f, c, event_key="nope")
        with pytest.raises(ExplainError, match="not valid"):
            explain_customer(svc, f, c, event={"type": "ordr"})


def test_explain_cli_text_and_json(tmp_path: Path, rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", RULES)
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    apply(store, service_for_dir(rules_dir), event("identify", who="cli@example.com"))
    store.close()
    ev = tmp_path / "ev.json"
    ev.write_text('{"type": "order", "data": {"order_id": "Z", "amount": 12}}')
    base = ["rules", "explain", "--store", uri, "--dir", str(rules_dir), "email:cli@example.com"]
    r = CliRunner().invoke(main, [*base, str(ev)])
    assert r.exit_code == 0, r.output
    assert "NOT FIRED  big_order" in r.output and "saw 12" in r.output and "(hypothetical)" in r.output
    assert "listen to other event types: chase, on_identify" in r.output
    r = CliRunner().invoke(main, [*base, str(ev), "--json"])
    assert r.exit_code == 0, r.output
    assert {x["rule"]: x["outcome"] for x in json.loads(r.output)["rules"]}["big_order"] == "condition_failed"
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 2 and "give EVENT_FILE" in r.output


def test_decide_explains_every_offer(store: Store) -> None:
    cat = Catalogue([make_offer({"id": "web_only", "channels": ["web"], "value": 5}),
                     make_offer({"id": "phone_only", "channels": ["phone"]}),
                     make_offer({"id": "buyers", "eligible": "hard.orders >= 1"}),
                     make_offer({"id": "cheap", "channels": ["web"], "value": 0.01})],
                    {"control_percent": 0, "max_actions": 1})
    with store.transaction() as f:
        from shopkeeper.customer import Customer

        c = Customer(f.new_customer_id())
        f.add_customer(c)
        why: list[dict] = []
        actions = decide(cat, c, "web", "home", {}, explain=why)
    got = {w["offer"]: (w["outcome"], w["why"]) for w in why}
    assert set(got) == {"web_only", "phone_only", "buyers", "cheap"}
    assert got["phone_only"][0] == "excluded" and "not for channel web" in got["phone_only"][1]
    assert got["buyers"] == ("excluded", "not eligible: hard.orders >= 1")
    chosen = [o for o, (k, _) in got.items() if k == "chosen"]
    assert chosen == [actions[0]["id"]] and got[({"web_only", "cheap"} - set(chosen)).pop()][0] == "ranked_lower"
