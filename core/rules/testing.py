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
from ..plugins import builtin_evolve_steps
from ..store import Store
from .customer_rules import add_customer_rule, intents, proposals, tags
from .runtime import RulesService
from .yamldoc import load_yaml, parse_duration


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


def run_test_file(path: Path, service: RulesService, coverage: Coverage | None = None) -> list[TestResult]:
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
            problems = run_one(t, service, coverage)
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


def run_one(t: dict[str, Any], service: RulesService, coverage: Coverage | None = None) -> list[str]:
    store = Store.open("memory://rules-test", steps=builtin_evolve_steps())
    service.observe = coverage.observe if coverage is not None else None
    try:
        problems, fired = _run(t, service, store)
        if coverage is not None:
            coverage.fired |= set(fired)
        return problems
    finally:
        service.observe = None
        store.close()


def _run(t: dict[str, Any], service: RulesService, store: Store) -> tuple[list[str], list[str]]:
    spec = t.get("customer") or {}
    clock = now_us() - 40 * 86400 * 1_000_000
    email = str(spec.get("email") or "test.customer@example.com")
    from ..engine.offline import OfflineWriter

    writer = OfflineWriter(store, note="shopkeeper rules test")

    def make_customer(f: Any, _changes: Any) -> tuple[str, list[str]]:
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
            c.put_rule_state("tags", tag, {"rule": "test", "version": "", "at": clock})
        if spec.get("traits"):
            c.set_traits(dict(spec["traits"]))
        own: list[str] = []
        if spec.get("rules"):
            own = add_customer_rule(f, c, spec["rules"] if isinstance(spec["rules"], str) else _yaml(spec["rules"]),
                                    name="test customer rules", vocabulary=service.vocabulary,
                                    event_types=service.event_types)
        return c.id, own

    cid, own = writer.apply(make_customer)
    known = Known.of(service, {f"customer:{n}" for n in own} | set(own), set(spec.get("segments") or ()))
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
        for tr in writer.apply(lambda f, _changes: service.fire_due(f, ts, limit=10_000)):
            collect(tr)

    with Ingestor(store, processors=[service.processor], source="rules-test") as ing:
        for j, step in enumerate(t.get("steps") or t.get("events") or ()):
            if not isinstance(step, dict):
                return [f"step {j + 1}: must be a mapping with `event:` or `wait:`"], fired
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
                return [f"step {j + 1}: bad event: {exc}"], fired
            res = ing.apply([ev])[0]
            if res.status != "applied":
                return [f"step {j + 1}: event {res.status}: {res.error}"], fired
            for o in res.outputs:
                if isinstance(o, dict) and o.get("kind") == "rules":
                    collect(o)
    with store.read() as f:
        c = f.customer(cid)
        problems = compare(t.get("expect") or {}, c, fired, failures, clock, known)
        expect = t.get("expect") or {}
        if failures and isinstance(expect, dict) and "failures" not in expect:
            reasons = [f"{x['rule']}: {x['reason']}" for x in (c.rule_state.get("failures") or [])][-failures:]
            problems.append(f"{failures} rule action(s) failed (write `failures: {failures}` if the test expects "
                            f"it): {'; '.join(reasons)}")
        return problems, fired


def _yaml(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v)


#: what ``expect:`` may say; anything else is a mistake in the test, reported as one
EXPECT_KEYS = {"fired", "not_fired", "fired_count", "facts", "scores", "segments", "not_segments", "tags",
               "not_tags", "offers", "no_offers", "messages", "alerts", "failures"}


@dataclass
class Known:
    """Names a test may mention: a misspelt rule in ``not_fired`` would otherwise pass forever."""

    rules: set[str] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)
    templates: set[str] = field(default_factory=set)
    segments: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, service: RulesService, extra_rules: set[str] = frozenset(),  # type: ignore[assignment]
           extra_segments: set[str] = frozenset()) -> Known:  # type: ignore[assignment]
        rs = service.current
        k = cls(set(rs.by_name) | set(extra_rules), set(rs.catalogue or ()) | rs.declared_offers,
                set().union(*(service.config.templates or {}).values()) if service.config.templates else set(),
                set(rs.segments) | set(extra_segments) | defined_segments(service.config.directory))
        for r in rs.rules:
            for a in r.actions:
                if a.name == "propose_offer" and isinstance(a.params.get("id"), str):
                    k.offers.add(a.params["id"])
                if a.name == "send_message" and isinstance(a.params.get("template"), str):
                    k.templates.add(a.params["template"])
                if a.name in ("join_segment", "leave_segment") and isinstance(a.params.get("name"), str):
                    k.segments.add(a.params["name"])
        return k


def defined_segments(rules_dir: Path) -> set[str]:
    """Names of the segments defined in ``<rules dir>/segments`` (read as plain YAML)."""
    import yaml

    out: set[str] = set()
    d = Path(rules_dir) / "segments"
    for p in sorted(d.glob("*.y*ml")) if d.is_dir() else ():
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for s in (doc.get("segments") or []) if isinstance(doc, dict) else []:
            if isinstance(s, dict) and isinstance(s.get("name"), str):
                out.add(s["name"])
    return out


def _includes(want: Any) -> tuple[Any, bool]:
    """``{includes: x}`` -> (x, True); anything else -> (it, False): exact unless said otherwise."""
    if isinstance(want, dict) and set(want) == {"includes"}:
        return want["includes"], True
    return want, False


def compare(expect: dict[str, Any], c: Customer, fired: list[str], failures: int, clock: int,
            known: Known | None = None) -> list[str]:
    """What differs between ``expect`` and what happened; [] when the test passes.

    Lists are exact (the whole list, in any order) unless written ``{includes: [...]}``; a
    number where a list is allowed is a count; ``[]`` means none; every rule, offer, template
    and segment named must exist."""
    problems: list[str] = []

    def diff(what: str, want: Any, got: Any) -> None:
        problems.append(f"{what}:\n      expected: {json.dumps(want, default=str)}\n      actual:   "
                        f"{json.dumps(got, default=str)}")

    if not isinstance(expect, dict):
        return ["`expect` must be a mapping such as {fired: [rule], offers: 0}"]
    for k in expect:
        if k not in EXPECT_KEYS:
            from .yamldoc import did_you_mean

            problems.append(f"unknown expectation {k!r}{did_you_mean(str(k), EXPECT_KEYS)} "
                            f"(known: {', '.join(sorted(EXPECT_KEYS))})")

    def check_names(kind: str, names: Any, pool: set[str] | None) -> None:
        if pool is None:
            return
        from .yamldoc import did_you_mean

        for n in names:
            if isinstance(n, str) and n not in pool:
                problems.append(f"unknown {kind} {n!r}{did_you_mean(n, pool)}: the test can never see it")

    kn = known
    fired_set = sorted(set(fired))

    def listish(key: str, got: list[Any], label: str, kind: str | None = None,
                pool: set[str] | None = None) -> None:
        if key not in expect:
            return
        want, inc = _includes(expect[key])
        if want is None:
            want = []
        if isinstance(want, bool) or not isinstance(want, (int, list)):
            problems.append(f"`{key}` takes a list, {{includes: [...]}} or a count, not {want!r}")
            return
        if isinstance(want, int):
            if inc:
                problems.append(f"`{key}: {{includes: ...}}` takes a list")
            elif len(got) != want:
                diff(f"{label} count", want, got)
            return
        if kind is not None:
            check_names(kind, want, pool)
        if inc:
            missing = [w for w in want if w not in got]
            if missing:
                diff(f"{label} (includes)", want, got)
        elif sorted(map(str, want)) != sorted(map(str, got)):
            diff(label, want, got)

    # rules
    listish("fired", fired_set, "rules fired", "rule", kn.rules if kn else None)
    not_fired = expect.get("not_fired") or []
    check_names("rule", not_fired, kn.rules if kn else None)
    for r in not_fired:
        if r in fired:
            diff(f"rule {r!r} should not have fired", f"not {r}", fired_set)
    counts = expect.get("fired_count") or {}
    if not isinstance(counts, dict):
        problems.append("`fired_count` takes rule: count pairs")
        counts = {}
    check_names("rule", list(counts), kn.rules if kn else None)
    for r, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int):
            problems.append(f"fired_count {r}: {n!r} is not a count")
        elif fired.count(r) != n:
            diff(f"rule {r!r} fired count", n, fired.count(r))
    # facts and scores: the keys named, exactly (null = absent)
    for k, v in (expect.get("facts") or {}).items():
        got = c.soft.get(k)
        if v is None and got is None:
            continue
        if got is None or got.value != v or isinstance(v, bool) != isinstance(got.value, bool):
            diff(f"fact {k}", v, got.value if got else None)
    for k, v in (expect.get("scores") or {}).items():
        got = c.scores.get(k)
        if v is None and got is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) and v is not None:
            problems.append(f"score {k}: {v!r} is not a number")
        elif got is None or v is None or abs(got.value - float(v)) > 1e-9:
            diff(f"score {k}", v, got.value if got else None)
    # segments and tags
    segs = sorted(c.segments)
    listish("segments", segs, "segments", "segment", kn.segments if kn else None)
    for s in expect.get("not_segments") or ():
        check_names("segment", [s], kn.segments if kn else None)
        if s in c.segments:
            diff(f"segment {s!r}", f"not a member of {s}", segs)
    have_tags = tags(c)
    listish("tags", have_tags, "tags")
    for s in expect.get("not_tags") or ():
        if s in have_tags:
            diff(f"tag {s!r}", f"no {s}", have_tags)
    # offers
    props = proposals(c, at=clock)
    offer_ids = sorted(p["id"] for p in props if p["kind"] == "offer")
    listish("offers", offer_ids, "offers", "offer", kn.offers if kn else None)
    if expect.get("no_offers") and offer_ids:
        diff("offers", [], offer_ids)
    # messages and alerts
    msgs = [i for i in intents(c) if i["channel"] != "agent"]
    alerts = [i for i in intents(c) if i["channel"] == "agent"]
    shown = [{"channel": i["channel"], "template": i["template"]} for i in msgs]
    if "messages" in expect:
        want, inc = _includes(expect["messages"])
        if want is None:
            want = []
        if isinstance(want, bool) or not isinstance(want, (int, list)):
            problems.append(f"`messages` takes a list, {{includes: [...]}} or a count, not {want!r}")
        elif isinstance(want, int):
            if len(msgs) != want:
                diff("message count", want, shown)
        else:
            check_names("template", [m.get("template") for m in want if isinstance(m, dict)],
                        kn.templates if kn else None)
            left = list(msgs)
            unmatched = []
            for m in want:
                if not isinstance(m, dict):
                    problems.append(f"a message is {{channel: ..., template: ...}}, not {m!r}")
                    continue
                hit = next((i for i in left if all(i.get(k) == v for k, v in m.items())), None)
                if hit is None:
                    unmatched.append(m)
                else:
                    left.remove(hit)
            if unmatched or (left and not inc):
                diff("messages" + (" (includes)" if inc else ""), want, shown)
    if "alerts" in expect:
        n = expect["alerts"]
        if isinstance(n, bool) or not isinstance(n, int):
            problems.append(f"`alerts` is a count, not {n!r}")
        elif len(alerts) != n:
            diff("alert count", n, [a["payload"]["message"] for a in alerts])
    if "failures" in expect:
        n = expect["failures"]
        if isinstance(n, bool) or not isinstance(n, int):
            problems.append(f"`failures` is a count, not {n!r}")
        elif failures != n:
            diff("failure count", n, c.rule_state.get("failures"))
    return problems


class Coverage:
    """Which rules fired and which conditions were seen true and false across a test run
    (``shopkeeper rules test --coverage``; OPA's ``--coverage`` is the model): a rule no test
    fires, or a condition no test sees fail, is behaviour nobody has checked."""

    def __init__(self) -> None:
        self.fired: set[str] = set()
        self.evaluated: set[str] = set()
        self.conditions: dict[tuple[str, int], set[bool]] = {}

    def observe(self, customer: Customer, ev: dict[str, Any], builder: Any, rule_sets: list[Any]) -> None:
        from .explain import condition_outcomes

        for r_set in rule_sets:
            for r in r_set.rules_for(ev["type"]):
                if not r.enabled or not r.valid_at(ev["ts"]):
                    continue
                self.evaluated.add(r.key)
                for i, held, _seen in condition_outcomes(r, builder):
                    self.conditions.setdefault((r.key, i), set()).add(held)

    def report(self, rules: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"rules": len(rules), "fired": 0, "not_fired": [], "conditions": 0,
                               "never_true": [], "never_false": []}
        for r in rules:
            where = f"{r.file}:{r.line}"
            if r.key in self.fired:
                out["fired"] += 1
            else:
                out["not_fired"].append({"rule": r.key, "at": where,
                                         "why": "fired in no test" if r.key in self.evaluated
                                         else "no test sent it an event it listens to"})
            for i, (text, line) in enumerate(r.condition_labels):
                out["conditions"] += 1
                seen = self.conditions.get((r.key, i), set())
                if True not in seen:
                    out["never_true"].append({"rule": r.key, "at": f"{r.file}:{line}", "condition": text})
                if False not in seen:
                    out["never_false"].append({"rule": r.key, "at": f"{r.file}:{line}", "condition": text})
        return out


def render_coverage(rep: dict[str, Any]) -> str:
    n_cond = rep["conditions"]
    both = n_cond - len({(x["rule"], x["condition"]) for x in rep["never_true"] + rep["never_false"]})
    lines = [f"coverage: {rep['fired']}/{rep['rules']} rules fired in some test; "
             f"{both}/{n_cond} conditions seen both holding and failing"]
    for x in rep["not_fired"]:
        lines.append(f"  {x['at']}: rule {x['rule']} never fired ({x['why']})")
    for x in rep["never_true"]:
        lines.append(f"  {x['at']}: {x['rule']}: condition `{x['condition']}` never held")
    for x in rep["never_false"]:
        lines.append(f"  {x['at']}: {x['rule']}: condition `{x['condition']}` never failed (no test shows it matters)")
    return "\n".join(lines)


def run_directory(directory: Path, service: RulesService, test_files: list[Path] | None = None) -> list[TestResult]:
    files = test_files if test_files is not None else service.current.tests
    out: list[TestResult] = []
    for p in files:
        out.extend(run_test_file(p, service))
    return out
