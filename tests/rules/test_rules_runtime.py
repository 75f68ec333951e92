"""Rules at run time: every action, history conditions, timers (incl. restart), customer rules,
reload atomicity, failing actions, the example rules and their tests, end to end through the Ingestor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shopkeeper.cli import main
from shopkeeper.rules import (
    ActionDef,
    CustomerRuleError,
    Param,
    RulesConfig,
    RulesService,
    TimerRunner,
    Vocabulary,
    add_customer_rule,
    intents,
    proposals,
    remove_customer_rule,
    tags,
)
from shopkeeper.rules.plugin import shopkeeper_decide
from shopkeeper.store import Store

from .helpers import REPO, apply, event, service_for_dir, traces, write_rules

ALL_ACTIONS = """\
rules:
  - name: everything
    description: uses every built-in action
    when:
      event: order
    then:
      - set_fact: {name: price_sensitivity, value: "{event.currency}"}
      - clear_fact: language
      - add_score: {name: engagement, by: "{event.items}"}
      - set_score: {name: clv, value: "{event.amount}"}
      - tag: buyer
      - untag: prospect
      - join_segment: buyers
      - leave_segment: prospects
      - propose_offer: {id: "thanks-{event.order_id}", score: 0.7, valid_for: 7d}
      - propose_message: {id: survey, placement: agent_screen}
      - send_message: {channel: email, template: receipt, purpose: service, payload: {order: "{event.order_id}"}}
      - alert_agent: {message: "order {event.order_id} for {event.amount:.2f}", queue: sales}
      - emit_event: {type: custom, data: {name: order_followup}}
  - name: on_followup
    when:
      event: custom
      conditions:
        - event.name: order_followup
    then:
      - tag: followed_up
"""


def test_every_action(store: Store, rules_dir: Path) -> None:
    write_rules(rules_dir, "all.yaml", ALL_ACTIONS)
    svc = service_for_dir(rules_dir)
    assert svc.current.ok, svc.last_errors
    with store.transaction() as f:
        pass
    r = apply(store, svc, event("identify", {}, traits={"first_name": "Ann"}))[0]
    with store.transaction() as f:
        c = f.customer(r.customer_id)
        c.set_soft_fact("language", "de", "test")
        c.join_segment("prospects")
        c.rule_state["tags"] = {"prospect": {}}
        c.set_consent("email", "service", True, "test")
    res = apply(store, svc, event("order", {"order_id": "O1", "amount": 99.5, "items": 3, "currency": "EUR"}))[0]
    assert res.status == "applied"
    tr = traces(res)[0]
    assert tr["fired"] == ["everything"]  # the emitted event is a new event: on_followup fires in its own trace
    assert tr["rules_version"] == svc.current.version
    assert not tr["failures"]
    with store.read() as f:
        c = f.customer(res.customer_id)
        assert "followed_up" in tags(c)  # ... and it did
        assert c.soft["price_sensitivity"].value == "EUR"
        assert c.soft["price_sensitivity"].source == f"rule:everything@{svc.current.version}"
        assert "language" not in c.soft
        assert c.scores["engagement"].value == 3
        assert c.scores["clv"].value == 99.5
        assert tags(c) == ["buyer", "followed_up"]
        assert "buyers" in c.segments and "prospects" not in c.segments
        assert c.rule_state["provenance"]["segment:buyers"]["rule"] == "everything"
        props = {p["id"]: p for p in proposals(c)}
        assert props["thanks-O1"]["score"] == 0.7 and props["thanks-O1"]["kind"] == "offer"
        assert props["thanks-O1"]["payload"]["rules_version"] == svc.current.version
        assert proposals(c, placement="home_hero") == [props["thanks-O1"]]  # the survey is for agents only
        assert [a["id"] for a in shopkeeper_decide(c, "web", "agent_screen", {})] == ["survey", "thanks-O1"]
        sent = intents(c)
        msgs = [i for i in sent if i["channel"] == "email"]
        alerts = [i for i in sent if i["channel"] == "agent"]
        assert len(msgs) == 1 and msgs[0]["template"] == "receipt" and msgs[0]["payload"]["order"] == "O1"
        assert alerts[0]["payload"]["message"] == "order O1 for 99.50"
        assert c.type_counts.get("custom") == 1  # the emitted event is in the history


def test_history_conditions_and_first_time(store: Store, rules_dir: Path) -> None:
    write_rules(rules_dir, "h.yaml", """\
rules:
  - name: first_order
    when: {event: order, conditions: [{first: true}]}
    then: [{tag: first}]
  - name: three_views_in_an_hour
    once: true
    when:
      event: page_view
      conditions:
        - history: {count: page_view, within: 1h, at_least: 3}
    then: [{tag: browsing}]
  - name: spent_500_in_90d
    when:
      event: order
      conditions:
        - history: {sum: order.amount, within: 90d, above: 500}
    then: [{tag: big_spender}]
  - name: eur_orders
    when:
      event: order
      conditions:
        - history: {count: order, where: {currency: EUR}, at_least: 2}
    then: [{tag: euro}]
""")
    svc = service_for_dir(rules_dir)
    t0 = time.time() - 30 * 86400
    fired = []
    steps = [event("order", {"order_id": "1", "amount": 300, "currency": "EUR"}, ts=t0),
             event("page_view", {"url": "/"}, ts=t0 + 10), event("page_view", {"url": "/"}, ts=t0 + 4000),
             event("page_view", {"url": "/"}, ts=t0 + 4100), event("page_view", {"url": "/"}, ts=t0 + 4200),
             event("order", {"order_id": "2", "amount": 250, "currency": "USD"}, ts=t0 + 5000),
             event("order", {"order_id": "3", "amount": 10, "currency": "EUR"}, ts=t0 + 6000)]
    for ev in steps:
        fired.append([n for t in traces(apply(store, svc, ev)[0]) for n in t["fired"]])
    assert fired == [["first_order"], [], [], [], ["three_views_in_an_hour"], ["spent_500_in_90d"],
                     ["eur_orders", "spent_500_in_90d"]]


CART = """\
rules:
  - name: abandoned
    when:
      event: checkout_started
      absent: {event: order, within: 2s}
    then:
      - tag: abandoned
      - propose_offer: {id: "comeback-{event.cart_value}"}
"""


def test_absence_timer_fires_or_is_cancelled(store: Store, rules_dir: Path) -> None:
    write_rules(rules_dir, "cart.yaml", CART)
    svc = service_for_dir(rules_dir)
    now = time.time()
    a = apply(store, svc, event("checkout_started", {"cart_value": 10}, who="a@x.com", ts=now))[0]
    b = apply(store, svc, event("checkout_started", {"cart_value": 20}, who="b@x.com", ts=now))[0]
    assert traces(a)[0]["timers_scheduled"][0]["rule"] == "abandoned"
    cancel = apply(store, svc, event("order", {"order_id": "x", "amount": 5}, who="b@x.com", ts=now + 1))[0]
    assert traces(cancel)[0]["timers_cancelled"][0]["rule"] == "abandoned"
    with store.transaction() as f:
        assert svc.fire_due(f, int((now + 1.5) * 1e6)) == []  # not due yet
    with store.transaction() as f:
        fired = svc.fire_due(f, int((now + 2.5) * 1e6))
    assert [t["customer_id"] for t in fired] == [a.customer_id]
    with store.read() as f:
        assert tags(f.customer(a.customer_id)) == ["abandoned"]
        assert tags(f.customer(b.customer_id)) == []
        assert [p["id"] for p in proposals(f.customer(a.customer_id))] == ["comeback-10"]
        assert not f.root["rule_timers"]
        assert not f.customer(a.customer_id).rule_state["timers"]


def test_pending_timers_survive_a_restart_and_fire_within_a_second(tmp_path: Path, rules_dir: Path) -> None:
    write_rules(rules_dir, "cart.yaml", CART)
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    svc = service_for_dir(rules_dir)
    start = time.time()
    ids = [apply(store, svc, event("checkout_started", {"cart_value": i}, who=f"c{i}@x.com", ts=start))[0].customer_id
           for i in range(5)]
    store.close()  # the process "stops" with five pending timers
    svc2 = service_for_dir(rules_dir)  # a new process: nothing in memory
    store2 = Store.open(uri)
    fired_at: dict[str, float] = {}

    def seen(traces_: list) -> None:
        for t in traces_:
            fired_at[t["customer_id"]] = time.time()

    runner = TimerRunner(store2, svc2, on_fired=seen).start()
    try:
        deadline = start + 2 + 5
        while len(fired_at) < 5 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert sorted(fired_at) == sorted(ids)
    due = start + 2
    assert all(t - due < 1.0 for t in fired_at.values()), {k: t - due for k, t in fired_at.items()}
    with store2.read() as f:
        assert all(tags(f.customer(i)) == ["abandoned"] for i in ids)
        assert not f.root["rule_timers"]
    store2.close()


PERSONAL = """\
name: back_in_stock
description: tell me when SKU-1 is back
when:
  event: custom
  conditions:
    - event.name: restocked
    - event.sku: SKU-1
then:
  - propose_message: {id: back_in_stock_sku1, reason: "SKU-1 is back"}
"""


def test_customer_rules_are_validated_capped_and_evaluated(store: Store, rules_dir: Path) -> None:
    write_rules(rules_dir, "c.yaml", "rules:\n  - name: central\n    when: {event: custom}\n    then: [{tag: c}]\n")
    svc = service_for_dir(rules_dir)
    cid = apply(store, svc, event("identify"))[0].customer_id
    with store.transaction() as f:
        assert add_customer_rule(f, cid, PERSONAL, added_by="test") == ["back_in_stock"]
    with pytest.raises(CustomerRuleError, match=r"mine.yaml:4:10: unknown event type 'cstom'"):
        with store.transaction() as f:
            add_customer_rule(f, cid, PERSONAL.replace("event: custom", "event: cstom"), name="mine.yaml")
    with store.transaction() as f:
        for i in range(4):
            add_customer_rule(f, cid, PERSONAL.replace("back_in_stock", f"r{i}"))
    with pytest.raises(CustomerRuleError, match="at most 5 per customer"):
        with store.transaction() as f:
            add_customer_rule(f, cid, PERSONAL.replace("back_in_stock", "sixth"))
    with store.transaction() as f:
        assert remove_customer_rule(f, cid, "r3")
        assert not remove_customer_rule(f, cid, "r3")
        for i in range(3):
            remove_customer_rule(f, cid, f"r{i}")
    res = apply(store, svc, event("custom", {"name": "restocked", "sku": "SKU-1"}))[0]
    tr = traces(res)[0]
    assert tr["fired"] == ["customer:back_in_stock", "central"]  # same priority: the customer's own first
    other = apply(store, svc, event("custom", {"name": "restocked", "sku": "SKU-1"}, who="bob@x.com"))[0]
    assert traces(other)[0]["fired"] == ["central"]  # someone else's rule is not mine
    with store.read() as f:
        p = proposals(f.customer(cid))
        assert p[0]["id"] == "back_in_stock_sku1" and p[0]["payload"]["rule"] == "customer:back_in_stock"


def test_customer_rule_cli(tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    cid = apply(store, service_for_dir(rules_dir), event("identify"))[0].customer_id
    store.close()
    f = tmp_path / "mine.yaml"
    f.write_text(PERSONAL)
    r = CliRunner().invoke(main, ["rules", "add-customer-rule", "--store", uri, "email:ann@example.com", str(f)])
    assert r.exit_code == 0, r.output
    assert f"customer {cid}: added back_in_stock" in r.output
    r = CliRunner().invoke(main, ["rules", "remove-customer-rule", "--store", uri, cid, "back_in_stock"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["rules", "remove-customer-rule", "--store", uri, cid, "back_in_stock"])
    assert r.exit_code == 1 and "has no rule 'back_in_stock'" in r.output


def test_reload_is_atomic_and_a_broken_file_keeps_the_old_rules(store: Store, rules_dir: Path) -> None:
    p = write_rules(rules_dir, "r.yaml", "rules:\n  - name: one\n    when: {event: order}\n    then: [{tag: one}]\n")
    svc = service_for_dir(rules_dir)
    v1 = svc.current.version
    p.write_text("rules:\n  - name: one\n    when: {event: ordr}\n    then: [{tag: one}]\n")
    report = svc.reload()
    assert report["ok"] is False and report["version"] == v1
    assert report["errors"] == [f"{p}:3:19: unknown event type 'ordr'; did you mean 'order'?"]
    assert svc.current.version == v1 and svc.last_errors == report["errors"]
    res = apply(store, svc, event("order", {"order_id": "1", "amount": 1}))[0]
    assert traces(res)[0]["fired"] == ["one"]  # the working rules stay in force
    p.write_text("rules:\n  - name: two\n    when: {event: order}\n    then: [{tag: two}]\n")
    report = svc.reload()
    assert report["ok"] and report["version"] != v1 and svc.last_errors == []
    res = apply(store, svc, event("order", {"order_id": "2", "amount": 1}))[0]
    assert traces(res)[0]["fired"] == ["two"]
    assert traces(res)[0]["rules_version"] == report["version"]


def save(p: Path, text: str) -> None:
    """Write as editors do: a new file renamed over the old one."""
    tmp = p.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(p)


def test_hot_reload_on_file_change(rules_dir: Path) -> None:
    p = write_rules(rules_dir, "r.yaml", "rules:\n  - name: one\n    when: {event: order}\n    then: [{tag: one}]\n")
    svc = RulesService(RulesConfig(directory=rules_dir, poll_seconds=0.05))
    svc.start_watching()
    try:
        save(p, "rules:\n  - name: two\n    when: {event: order}\n    then: [{tag: two}]\n")
        deadline = time.time() + 5
        while "two" not in svc.current.by_name and time.time() < deadline:
            time.sleep(0.02)
        assert "two" in svc.current.by_name
        save(p, "rules: [")  # broken: reported, old rules kept
        deadline = time.time() + 5
        while not svc.last_errors and time.time() < deadline:
            time.sleep(0.02)
        assert svc.last_errors and "two" in svc.current.by_name
    finally:
        svc.stop()


def test_a_failing_action_is_recorded_and_the_event_kept(store: Store, rules_dir: Path) -> None:
    def explode(ctx, params):  # type: ignore[no-untyped-def]
        raise RuntimeError("the CRM is down")

    vocab = Vocabulary.builtin([ActionDef("sync_crm", (Param("system", "str"),), explode, main="system")])
    write_rules(rules_dir, "f.yaml", """\
rules:
  - name: good
    priority: 1
    when: {event: order}
    then: [{tag: good}]
  - name: bad
    when: {event: order}
    then:
      - tag: half_done
      - sync_crm: acme
""")
    svc = RulesService(RulesConfig(directory=rules_dir, watch=False), vocabulary=vocab)
    res = apply(store, svc, event("order", {"order_id": "1", "amount": 3}))[0]
    assert res.status == "applied"
    tr = traces(res)[0]
    assert tr["failures"][0]["rule"] == "bad" and "the CRM is down" in tr["failures"][0]["reason"]
    assert tr["failures"][0]["line"].endswith("f.yaml:10:9")
    with store.read() as f:
        c = f.customer(res.customer_id)
        assert c.hard["orders"] == 1  # the interaction is kept
        assert tags(c) == ["good"]  # the failing rule's own effects are rolled back
        fail = c.rule_state["failures"][0]
        assert (fail["rule"], fail["event_type"]) == ("bad", "order")
        assert f.counter("rule_failures") == 1
    assert svc.stats.failures == 1 and svc.stats.failures_by_rule["bad"] == 1


def test_example_rules_pass_their_tests() -> None:
    r = CliRunner().invoke(main, ["rules", "test", str(REPO / "rules")])
    assert r.exit_code == 0, r.output
    assert "FAIL" not in r.output and r.output.count("PASS") >= 10


def test_rules_test_shows_a_clear_diff(rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", "rules:\n  - name: one\n    when: {event: order}\n    then: [{tag: one}]\n")
    write_rules(rules_dir, "r.test.yaml", """\
tests:
  - name: expects the wrong tag
    steps:
      - {event: order, data: {order_id: "1", amount: 2}}
    expect:
      tags: [two]
""")
    r = CliRunner().invoke(main, ["rules", "test", str(rules_dir)])
    assert r.exit_code == 1
    assert "FAIL" in r.output and "r.test.yaml:2: expects the wrong tag" in r.output
    assert 'expected: ["two"]' in r.output and 'actual:   ["one"]' in r.output


def test_explain_prints_the_trace_and_changes_nothing(tmp_path: Path, rules_dir: Path) -> None:
    write_rules(rules_dir, "r.yaml", ALL_ACTIONS)
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    cid = apply(store, service_for_dir(rules_dir), event("identify"))[0].customer_id
    store.close()
    ev = tmp_path / "ev.json"
    ev.write_text('{"type": "order", "data": {"order_id": "Z", "amount": 12, "items": 2, "currency": "EUR"}}')
    r = CliRunner().invoke(main, ["rules", "explain", "--store", uri, "--dir", str(rules_dir), cid, str(ev)])
    assert r.exit_code == 0, r.output
    assert "FIRED      everything" in r.output and "-> tag: tagged buyer" in r.output
    assert "rules version" in r.output
    store = Store.open(uri)
    with store.read() as f:
        assert f.customer(cid).hard["orders"] == 0 and tags(f.customer(cid)) == []
    store.close()


def test_end_to_end_through_the_ingestor_with_the_example_rules(store: Store) -> None:
    svc = service_for_dir(REPO / "rules")
    assert svc.current.ok
    with store.transaction():
        pass
    t = time.time() - 10 * 86400
    first = apply(store, svc, event("identify", ts=t))[0]
    with store.transaction() as f:
        f.customer(first.customer_id).set_consent("email", "marketing", True, "test")
    results = apply(store, svc, event("page_view", {"url": "/sale"}, ts=t + 60),
                    event("checkout_started", {"cart_value": 50}, ts=t + 120),
                    event("order", {"order_id": "A", "amount": 1200}, ts=t + 86400 * 2))
    assert all(r.status == "applied" for r in results)
    with store.transaction() as f:
        fired = svc.fire_due(f, int((t + 86400 * 5) * 1e6))
    # the order came two days later: the welcome follow-up (3 days) was cancelled by it, the
    # cart reminder (24 hours) was due before it and fires now
    assert [x["timer"]["rule"] for x in fired] == ["cart_abandonment"]
    with store.read() as f:
        c = f.customer(first.customer_id)
        assert {"customers", "vip"} <= set(c.segments)
        assert c.soft["lifecycle_stage"].value == "customer"
        templates = {i["template"] for i in intents(c)}
        assert {"summer_sale", "cart_reminder"} <= templates  # no welcome: consent came after it
        assert "welcome_discount" not in templates
        assert any(i["channel"] == "agent" for i in intents(c))  # big order alert
        assert c.type_counts["cart_abandoned"] == 1


def test_a_failing_builtin_action_takes_back_the_rules_other_effects(store: Store, rules_dir: Path) -> None:
    write_rules(rules_dir, "f.yaml", """\
rules:
  - name: half
    when: {event: custom}
    then:
      - tag: before
      - set_fact: {name: vip, value: true}
      - send_message: {channel: email, template: t, respect_consent: false}
      - emit_event: {type: identify}
      - add_score: {name: clv, by: "{event.amount}"}
""")
    svc = service_for_dir(rules_dir)
    res = apply(store, svc, event("custom", {"name": "x", "amount": "lots"}))[0]
    assert res.status == "applied"
    assert "is not a number" in traces(res)[0]["failures"][0]["reason"]
    with store.read() as f:
        c = f.customer(res.customer_id)
        assert tags(c) == [] and "vip" not in c.soft and intents(c) == []
        assert c.type_counts == {"custom": 1} and len(c.history) == 1
        # the per-day aggregates and latest times too: windowed history conditions read them
        assert [set(b) for b in c.daily.values()] == [{"custom"}] and set(c.last_at) == {"custom"}
        assert c.rule_state["failures"][0]["action"] == "add_score"
        assert not f.root["outbox"] if "outbox" in f.root else True


def test_send_message_valid_for_drops_what_quiet_hours_would_hold_past_it(store: Store, rules_dir: Path) -> None:
    """A message queued at 22:00 is deferred to the end of quiet hours, not dropped; one whose
    ``valid_for`` ends before then is suppressed ``quiet_hours_expired``."""
    from datetime import UTC, datetime

    from shopkeeper import contact, outbox

    write_rules(rules_dir, "q.yaml", """\
rules:
  - name: night_owl
    when: {event: page_view}
    then:
      - send_message: {channel: email, template: flash, valid_for: 2h, respect_consent: false}
      - send_message: {channel: email, template: cart_reminder, valid_for: 3d, respect_consent: false}
""")
    saved = dict(contact._overrides)
    contact.configure(overrides={"quiet_hours": [21, 8], "default_timezone": "UTC"})
    try:
        night = datetime(2026, 6, 1, 22, tzinfo=UTC).timestamp()
        res = apply(store, service_for_dir(rules_dir), event("page_view", {"url": "/"}, ts=night))[0]
    finally:
        contact.configure(overrides=saved)
    with store.read() as f:
        got = {i.template: i for i in outbox.items(f.customer(res.customer_id))}
    assert got["flash"].status == outbox.SUPPRESSED and got["flash"].error.startswith("quiet_hours_expired")
    assert got["cart_reminder"].status == outbox.PENDING
    assert got["cart_reminder"].not_before == int(datetime(2026, 6, 2, 8, tzinfo=UTC).timestamp()) * 1_000_000
    assert got["cart_reminder"].expires_at == int(night + 3 * 86400) * 1_000_000


def test_a_failing_rule_leaves_model_table_scores_in_their_table(store: Store, rules_dir: Path) -> None:
    """The undo snapshot takes the record's own scores: restoring ``Customer.scores`` (the view that
    merges the model score tables in) would copy a fit's rows into the record as its own."""
    from shopkeeper.analysis.models import write_scores

    write_rules(rules_dir, "f.yaml", """\
rules:
  - name: half
    when: {event: custom}
    then:
      - add_score: {name: engagement, by: 1}
      - add_score: {name: clv, by: "{event.amount}"}
""")
    svc = service_for_dir(rules_dir)
    first = apply(store, svc, event("custom", {"name": "x", "amount": 1}, who="table@example.com"))[0]
    with store.transaction() as f:
        write_scores(f, [(first.customer_id, (900.0,))], ("clv.value",), ("test",), 1_800_000_000 * 1_000_000)
    res = apply(store, svc, event("custom", {"name": "x", "amount": "lots"}, who="table@example.com"))[0]
    assert "is not a number" in traces(res)[0]["failures"][0]["reason"]
    with store.read() as f:
        c = f.customer(res.customer_id)
        assert c.scores["clv.value"].value == 900.0  # still read from the table
        assert sorted(c._scores) == ["clv", "engagement"]  # the record's own, as before the failing rule


def test_plain_params_are_passed_as_they_are_and_nested_or_templated_ones_rendered_afresh(
        store: Store, rules_dir: Path) -> None:
    """Params that are scalars without a placeholder are not rendered per run (benchmarks §72);
    a nested value still reaches each run as a fresh copy, so an action that changes what it was
    given cannot change the rule, and a placeholder is still filled per event."""
    seen: list[dict] = []

    def grab(ctx, params):  # type: ignore[no-untyped-def]
        seen.append({k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()})
        params["opts"]["n"] = 99  # an action that edits what it was given
        return "ok"

    vocab = Vocabulary.builtin([ActionDef("grab", (Param("what", "str"), Param("opts", "mapping")), grab)])
    write_rules(rules_dir, "p.yaml", """\
rules:
  - name: p
    when: {event: order}
    then:
      - grab: {what: plain, opts: {n: 1}}
      - grab: {what: "{event.order_id}", opts: {n: 2}}
      - add_score: {name: engagement, by: 1, max: 100}
""")
    svc = RulesService(RulesConfig(directory=rules_dir, watch=False), vocabulary=vocab)
    for i in range(2):
        res = apply(store, svc, event("order", {"order_id": f"o{i}", "amount": 3}))[0]
        assert traces(res)[0]["fired"] == ["p"]
    assert seen == [{"what": "plain", "opts": {"n": 1}}, {"what": "o0", "opts": {"n": 2}},
                    {"what": "plain", "opts": {"n": 1}}, {"what": "o1", "opts": {"n": 2}}]
    rule = svc.current.by_name["p"]
    assert [c.plain for c in rule.actions] == [False, False, True]
    with store.read() as f:
        assert f.customer(res.customer_id).scores["engagement"].value == 2.0


def test_what_program_for_answers_follows_the_programs_compiled(rules_dir: Path) -> None:
    """``program_for`` remembers its answer per event type: a compile or a close starts afresh."""
    write_rules(rules_dir, "r.yaml", "rules:\n  - name: one\n    when: {event: order}\n    then: [{tag: one}]\n")
    svc = RulesService(RulesConfig(directory=rules_dir, watch=False))
    rs = svc.current
    assert rs.program_for("order") is not None and rs.program_for("page_view") is None
    rs.close()
    assert rs.program_for("order") is None
    rs.compile(svc.engine)
    assert rs.program_for("order") is not None


def test_timer_runner_stopping_while_the_store_closes_is_not_an_error(tmp_path: Path, caplog: Any) -> None:
    """A hub stopping with a busy writer: the runner's firing op waits in the writer's queue past
    the runner's join, the store is closed, then the op completes. The runner must end quietly, not
    read the closed store and log 'rule timer runner' with a RelStorage/ZODB traceback (seen at 10M,
    docs/benchmarks.md §99)."""
    import logging
    import threading
    from concurrent.futures import Future

    store = Store.open(f"file://{tmp_path}/Data.fs")
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    svc = service_for_dir(rules_dir)
    called, pending = threading.Event(), Future()

    def submit(op: Any) -> Future:
        called.set()
        return pending

    runner = TimerRunner(store, svc, submit=submit, tick=0.01).start()
    assert called.wait(10)
    runner._stop.set()  # the first half of runner.stop(): the shutdown has begun
    store.close()  # ... and, the join having timed out behind the busy writer, the store closes
    with caplog.at_level(logging.ERROR, logger="shopkeeper"):
        pending.set_result([])  # the writer finally runs the op
        assert runner._thread is not None
        runner._thread.join(10)
    assert not runner._thread.is_alive()
    assert runner.errors == 0 and "rule timer runner" not in caplog.text
