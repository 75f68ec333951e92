"""``shopkeeper rules test``: run the test files kept beside the rule files.

A test file (``*.test.yaml``) holds ``tests:``, each a customer, a sequence of steps and
what must be true afterwards::

    tests:
      - name: an abandoned checkout gets a reminder after 24 hours
        customer:
          consents: {email: true}          # channel or channel.purpose -> granted
          facts: {preferred_channel: email}
          scores: {clv: 120}
          segments: [newsletter]
          tags: [vip]
        steps:
          - event: checkout_started        # or {event: order, data: {...}, after: 2h}
            data: {cart_value: 80}
          - wait: 25h                      # time passes; due timers fire
        expect:
          fired: [cart_abandonment]
          not_fired: [welcome]
          facts: {churn_risk: high}
          scores: {engagement: 3}
          segments: [cart_abandoners]
          not_segments: [vip]
          tags: [abandoner]
          offers: [free_shipping]
          messages: [{channel: email, template: cart_reminder}]
          alerts: 0
          failures: 0

Each step happens ``after`` (default 1m) the previous one, on a simulated clock; timers due
by then fire first. Every test runs on a fresh in-memory store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..customer import Customer, now_us
from ..events import EventError, validate_event
from ..identity import attach
from ..store import Store
from .customer_rules import add_customer_rule, intents, proposals, tags
from .loader import load_yaml, parse_duration
from .runtime import RulesService


@dataclass
class TestResult:
    file: str
    line: int
    name: str
    ok: bool
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{'PASS' if self.ok else 'FAIL'} {self.file}:{self.line}: {self.name}"
        return head + "".join(f"\n    {p}" for p in self.problems)


def run_test_file(path: Path, service: RulesService) -> list[TestResult]:
    text = path.read_text(encoding="utf-8")
    doc, marks, errs = load_yaml(text, str(path))
    if errs:
        return [TestResult(str(path), e.line, "(file)", False, [str(e)]) for e in errs]
    tests = doc.get("tests") if isinstance(doc, dict) else None
    if not isinstance(tests, list):
        return [TestResult(str(path), 1, "(file)", False, ["a test file holds `tests:`, a list of tests"])]
    out = []
    for i, t in enumerate(tests):
        line = marks.at(("tests", i))[0]
        name = str(t.get("name", f"test {i + 1}")) if isinstance(t, dict) else f"test {i + 1}"
        try:
            problems = run_one(t, service)
        except Exception as exc:  # a broken test is a failing test, with its reason
            problems = [f"error: {type(exc).__name__}: {exc}"]
        out.append(TestResult(str(path), line, name, not problems, problems))
    return out


def _consents(spec: dict[str, Any]) -> list[tuple[str, str, bool]]:
    out = []
    for k, v in (spec or {}).items():
        ch, _, purpose = str(k).partition(".")
        out.append((ch, purpose or "marketing", bool(v)))
    return out


def run_one(t: dict[str, Any], service: RulesService) -> list[str]:
    store = Store.open("memory://rules-test")
    try:
        return _run(t, service, store)
    finally:
        store.close()


def _run(t: dict[str, Any], service: RulesService, store: Store) -> list[str]:
    spec = t.get("customer") or {}
    clock = now_us() - 40 * 86400 * 1_000_000
    email = str(spec.get("email") or "test.customer@example.com")
    with store.transaction() as f:
        c = Customer(f.new_customer_id(), created_at=clock)
        f.add_customer(c)
        attach(f, c, ("email", email.lower()), "test", clock)
        for ch, purpose, granted in _consents(spec.get("consents") or {}):
            c.set_consent(ch, purpose, granted, "test", at=clock)
        for k, v in (spec.get("facts") or {}).items():
            c.set_soft_fact(k, v, "test", at=clock)
        for k, v in (spec.get("scores") or {}).items():
            c.set_score(k, v, "test", at=clock)
        for s in spec.get("segments") or ():
            c.join_segment(s, at=clock)
        for tag in spec.get("tags") or ():
            c.rule_state.setdefault("tags", {})[tag] = {"rule": "test", "version": "", "at": clock}
        if spec.get("traits"):
            c.set_traits(dict(spec["traits"]))
        if spec.get("rules"):
            add_customer_rule(f, c, spec["rules"] if isinstance(spec["rules"], str) else _yaml(spec["rules"]),
                              name="test customer rules", vocabulary=service.vocabulary,
                              event_types=service.event_types)
        cid = c.id
    from ..engine.ingest import Ingestor

    fired: list[str] = []
    failures = 0
    n = 0

    def collect(trace: dict[str, Any] | None) -> None:
        nonlocal failures
        if not trace:
            return
        fired.extend(trace.get("fired", ()))
        failures += len(trace.get("failures", ()))
        for sub in trace.get("emitted", ()):
            collect(sub)

    def fire_until(ts: int) -> None:
        with store.transaction() as f:
            for tr in service.fire_due(f, ts, limit=10_000):
                collect(tr)

    with Ingestor(store, processors=[service.processor], source="rules-test") as ing:
        for j, step in enumerate(t.get("steps") or t.get("events") or ()):
            if not isinstance(step, dict):
                return [f"step {j + 1}: must be a mapping with `event:` or `wait:`"]
            if "wait" in step:
                clock += parse_duration(step["wait"])
                fire_until(clock)
                continue
            clock += parse_duration(step.get("after", "1m"))
            fire_until(clock)
            n += 1
            raw = {"type": step.get("event") or step.get("type"), "data": step.get("data") or {},
                   "channel": step.get("channel"), "identities": {"email": email},
                   "idempotency_key": f"test-{n}", "ts": clock / 1e6, "traits": step.get("traits")}
            try:
                ev = validate_event(raw, service.event_types)
            except EventError as exc:
                return [f"step {j + 1}: bad event: {exc}"]
            res = ing.apply([ev])[0]
            if res.status != "applied":
                return [f"step {j + 1}: event {res.status}: {res.error}"]
            for o in res.outputs:
                if isinstance(o, dict) and o.get("kind") == "rules":
                    collect(o)
    with store.read() as f:
        c = f.customer(cid)
        return compare(t.get("expect") or {}, c, fired, failures, clock)


def _yaml(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v)


def compare(expect: dict[str, Any], c: Customer, fired: list[str], failures: int, clock: int) -> list[str]:
    problems: list[str] = []

    def diff(what: str, want: Any, got: Any) -> None:
        problems.append(f"{what}:\n      expected: {json.dumps(want, default=str)}\n      actual:   "
                        f"{json.dumps(got, default=str)}")

    for r in expect.get("fired") or ():
        if r not in fired:
            diff(f"rule {r!r} should have fired", r, sorted(set(fired)))
    for r in expect.get("not_fired") or ():
        if r in fired:
            diff(f"rule {r!r} should not have fired", f"not {r}", sorted(set(fired)))
    if "fired_count" in expect:
        for r, n in expect["fired_count"].items():
            if fired.count(r) != n:
                diff(f"rule {r!r} fired count", n, fired.count(r))
    for k, v in (expect.get("facts") or {}).items():
        got = c.soft.get(k)
        if v is None and got is None:
            continue
        if got is None or got.value != v:
            diff(f"fact {k}", v, got.value if got else None)
    for k, v in (expect.get("scores") or {}).items():
        got = c.scores.get(k)
        if got is None or abs(got.value - float(v)) > 1e-9:
            diff(f"score {k}", v, got.value if got else None)
    segs = sorted(c.segments)
    for s in expect.get("segments") or ():
        if s not in c.segments:
            diff(f"segment {s!r}", f"member of {s}", segs)
    for s in expect.get("not_segments") or ():
        if s in c.segments:
            diff(f"segment {s!r}", f"not a member of {s}", segs)
    have_tags = tags(c)
    for s in expect.get("tags") or ():
        if s not in have_tags:
            diff(f"tag {s!r}", s, have_tags)
    for s in expect.get("not_tags") or ():
        if s in have_tags:
            diff(f"tag {s!r}", f"no {s}", have_tags)
    props = proposals(c, at=clock)
    offer_ids = [p["id"] for p in props if p["kind"] == "offer"]
    for o in expect.get("offers") or ():
        if o not in offer_ids:
            diff(f"offer {o!r}", o, offer_ids)
    if "no_offers" in expect and expect["no_offers"] and offer_ids:
        diff("offers", [], offer_ids)
    msgs = [i for i in intents(c) if i["channel"] != "agent"]
    alerts = [i for i in intents(c) if i["channel"] == "agent"]
    want_msgs = expect.get("messages")
    if isinstance(want_msgs, int):
        if len(msgs) != want_msgs:
            diff("message count", want_msgs, [(m["channel"], m["template"]) for m in msgs])
    else:
        for m in want_msgs or ():
            if not any(all(i.get(k) == v for k, v in m.items()) for i in msgs):
                diff(f"message {m}", m, [{"channel": i["channel"], "template": i["template"]} for i in msgs])
    if "alerts" in expect and len(alerts) != int(expect["alerts"]):
        diff("alert count", expect["alerts"], [a["payload"]["message"] for a in alerts])
    if "failures" in expect and failures != int(expect["failures"]):
        diff("failure count", expect["failures"], c.rule_state.get("failures"))
    return problems


def run_directory(directory: Path, service: RulesService, test_files: list[Path] | None = None) -> list[TestResult]:
    files = test_files if test_files is not None else service.current.tests
    out: list[TestResult] = []
    for p in files:
        out.extend(run_test_file(p, service))
    return out
