"""Running rules: per event inside the ingest transaction, timers, per-customer rules, reload.

:class:`RulesService` holds the rule set in force (swapped atomically on reload: an event
is evaluated against the set it read at its start, never a half-loaded one) and offers
:attr:`RulesService.processor`, the in-transaction processor of
:data:`shopkeeper.engine.ingest.Processor`. Per event it

1. cancels the customer's pending *absence* timers the event satisfies,
2. builds one flat message with only the fields the rules for this event type use
   (history aggregates are computed here, in Python, from the customer's history BTree),
3. asks the engine which rules match (central program + the customer's own program),
4. runs the matched rules by priority; each rule's actions run under a savepoint, so a
   failing action rolls back that rule's effects only and records (rule, event, reason)
   in ``rule_state['failures']`` and the metrics; the event itself is always kept,
5. puts a trace (rules version, matched rules, effects, failures) on ``EventResult.outputs``.

Rule state kept on the customer (``Customer.rule_state``): ``fired`` (count and last time
per rule, for ``once``/``cooldown``), ``timers`` (pending absence timers), ``proposals``
(offers/messages for Decide), ``tags``, ``provenance`` (which rule and version set each
fact, score, segment), ``failures`` (the last 20) and ``outbox`` (message intents).
The store-level ``rule_timers`` BTree indexes pending timers by due time.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from BTrees.OOBTree import OOBTree

from ..customer import DAILY_KEEP_DAYS, SPEND, US_PER_DAY, Customer, Interaction, now_us
from ..events import DEFAULT_EVENT_TYPES, EventTypes
from ..outbox import BOOKKEEPING_TYPES
from ..rules_engine import Engine, PythonEngine, default_engine
from .actions import BUILTIN_ACTIONS, ActionContext, Vocabulary, render
from .loader import Diagnostic, HistorySpec, Rule, RuleSet, check_sources, load_directory

log = logging.getLogger("shopkeeper.rules")

TIMER_INDEX = "rule_timers"
MAX_FAILURES_KEPT = 20
MAX_EMIT_DEPTH = 3


def default_rules_dir() -> Path:
    return Path(os.environ.get("SHOPKEEPER_RULES_DIR", "rules"))


@dataclass
class RulesConfig:
    directory: Path = field(default_factory=default_rules_dir)
    max_customer_rules: int = int(os.environ.get("SHOPKEEPER_MAX_CUSTOMER_RULES", "5"))
    watch: bool = True
    poll_seconds: float = 1.0
    customer_program_cache: int = 512
    #: at the first load, put the files without errors in force instead of none (``--allow-invalid-rules``)
    allow_invalid: bool = False
    #: channel -> template names the hub config knows (``send_message`` templates are checked against them)
    templates: dict[str, set[str]] | None = None
    #: log load/reload problems (a hub); the CLI prints them itself and sets this False
    log_problems: bool = True


@dataclass
class RuleStats:
    events: int = 0
    matched: int = 0
    actions: int = 0
    failures: int = 0
    timers_scheduled: int = 0
    timers_cancelled: int = 0
    timers_fired: int = 0
    reloads: int = 0
    reload_failures: int = 0
    eval_seconds: float = 0.0
    failures_by_rule: collections.Counter = field(default_factory=collections.Counter)
    #: matches per rule key since the process started (the console's fire counts)
    matched_by_rule: collections.Counter = field(default_factory=collections.Counter)
    #: the last failures of any customer (rule, action, line, event, reason, at, customer), newest last
    recent_failures: collections.deque = field(default_factory=lambda: collections.deque(maxlen=MAX_FAILURES_KEPT))

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in vars(self).items() if k not in ("failures_by_rule", "matched_by_rule",
                                                               "recent_failures")}
        d["failures_by_rule"] = dict(self.failures_by_rule)
        d["matched_by_rule"] = dict(self.matched_by_rule)
        d["recent_failures"] = list(self.recent_failures)
        return d


# -- facts ------------------------------------------------------------------------------


class FactBuilder:
    """Computes message fields for one (customer, event) lazily, each at most once."""

    __slots__ = ("customer", "event", "memo")

    def __init__(self, customer: Customer, event: dict[str, Any]) -> None:
        self.customer = customer
        self.event = event
        self.memo: dict[str, Any] = {}

    def message(self, fields: set[str], numeric: set[str], history: dict[str, HistorySpec]) -> dict[str, Any]:
        out: dict[str, Any] = {"ev": self.event["type"]}
        memo = self.memo
        for f in fields:
            if f in memo:
                v = memo[f]
            else:
                v = memo[f] = self._compute(f, history)
            if v is None:
                continue
            if f in numeric and (isinstance(v, bool) or not isinstance(v, (int, float))):
                continue  # a text where a number is compared: the condition is false in every engine
            if isinstance(v, (str, bool, int, float)):
                out[f] = v
            else:
                out[f] = str(v)
        return out

    def _compute(self, f: str, history: dict[str, HistorySpec]) -> Any:
        c, ev = self.customer, self.event
        if f == "ch":
            return ev["channel"]
        if f == "tp":
            return ev.get("touchpoint")
        if f == "first":
            return c.type_counts.get(ev["type"], 0) == 1
        prefix, _, name = f.partition("__")
        if prefix == "e":
            return ev["data"].get(name)
        if prefix == "c":
            return c.hard.get(name)
        if prefix == "n":
            return c.type_counts.get(name, 0)
        if prefix == "f":
            x = c.soft.get(name)
            return x.value if x is not None else None
        if prefix == "s":
            x = c.scores.get(name)
            return x.value if x is not None else None
        if prefix == "g":
            return name in c.segments
        if prefix == "t":
            return name in (c.rule_state.get("tags") or ())
        if prefix == "a":
            return c.traits.get(name)
        if prefix == "i":
            return bool(c.identities_in(name))
        if prefix == "k":
            ch, _, purpose = name.partition("__")
            return c.may_contact(ch, purpose or "marketing")
        if prefix == "h":
            spec = history.get(f)
            return history_value(c, spec, ev["ts"]) if spec is not None else None
        return None


class RulesProcessor:
    """The rules service as an ingest processor: ``event_types`` says which events can reach a rule.

    Every customer interaction can (a rule may listen to ``'*'``, a customer's own rule to any
    type); outbox bookkeeping (:data:`shopkeeper.outbox.BOOKKEEPING_TYPES`: claims, delivery
    reports) only when a central rule names its type in ``event`` or ``absent`` — ``'*'`` means
    any customer interaction, and customer rules may not name bookkeeping. Read live: a reload
    changes the answer for the next event."""

    __slots__ = ("service",)

    def __init__(self, service: RulesService) -> None:
        self.service = service

    def __call__(self, folders: Any, applied: Any) -> None:
        self.service.process(folders, applied)

    @property
    def event_types(self) -> RulesProcessor:
        return self

    def __contains__(self, event_type: str) -> bool:
        return event_type not in BOOKKEEPING_TYPES or event_type in self.service.current.named_types


def history_value(c: Customer, spec: HistorySpec, at: int) -> float | int:
    since = at - spec.within_us if spec.within_us is not None else None
    if spec.kind == "count" and since is None and not spec.where and len(spec.types) >= 1:
        return sum(c.type_counts.get(t, 0) for t in spec.types)  # all-time counts are kept as facts
    if since is not None and not spec.where:
        got = _from_daily(c, spec, since, at)
        if got is not None:
            return got
    return _from_history(c, spec, since, at + 1)


def _from_history(c: Customer, spec: HistorySpec, since: int | None, until: int) -> float | int:
    total: float = 0
    n = 0
    types = set(spec.types)
    for it in c.interactions(since=since, until=until):
        if it.type not in types:
            continue
        if spec.where and any(it.data.get(k) != v for k, v in spec.where):
            continue
        n += 1
        if spec.kind == "sum":
            v = it.data.get(spec.field or "")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total += v
    return n if spec.kind == "count" else round(total, 6)


def _from_daily(c: Customer, spec: HistorySpec, since: int, at: int) -> float | int | None:
    """A windowed count, or sum of order amounts, from the customer's per-day aggregates for the
    whole days inside ``[since, at]`` plus the history of the two partial days at its edges — the
    same figure as reading the whole window from the history, without loading the spilled
    history buckets of a 90-day window on every order. None when the aggregates cannot say (a
    sum of another field, days older than they keep, a record without them)."""
    daily = c.daily
    if daily is None or not daily:
        return None
    if spec.kind == "sum" and not (spec.types == ("order",) and spec.field == "amount"):
        return None
    first = -(-since // US_PER_DAY)  # the first whole day: starts at or after since
    end = (at + 1) // US_PER_DAY  # whole days end before at + 1
    if end - first < 1 or first < max(daily) - DAILY_KEEP_DAYS:
        return None
    head = _from_history(c, spec, since, first * US_PER_DAY)
    tail = _from_history(c, spec, end * US_PER_DAY, at + 1)
    if spec.kind == "count":
        return head + tail + sum(b.get(t, 0) for d, b in daily.items() if first <= d < end for t in spec.types)
    total = head + tail + sum(b.get(SPEND, 0.0) for d, b in daily.items() if first <= d < end)
    return round(total, 6)


def event_dict(it: Interaction, idempotency_key: str = "") -> dict[str, Any]:
    return {"type": it.type, "channel": it.channel, "ts": it.ts, "touchpoint": it.touchpoint, "key": it.key,
            "data": dict(it.data), "idempotency_key": idempotency_key or it.idempotency_key}


# -- the service -----------------------------------------------------------------------


class RulesService:
    """The rules of one process: central set, per-customer programs, evaluation, timers, reload."""

    def __init__(self, config: RulesConfig | None = None, *, vocabulary: Vocabulary | None = None,
                 event_types: EventTypes | None = None, engine: Engine | None = None,
                 ruleset: RuleSet | None = None) -> None:
        self.config = config or RulesConfig()
        self.vocabulary = vocabulary or Vocabulary.builtin()
        self.event_types = event_types or _event_types_with_rules()
        self.engine = engine or default_engine()
        # A customer's own rules (at most a handful) are matched in Python: compiling a
        # durable_rules ruleset per distinct combination would cost more than it saves
        self.customer_engine: Engine = PythonEngine()
        self._rule_cache: collections.OrderedDict[str, Rule | None] = collections.OrderedDict()
        self.stats = RuleStats()
        self.last_errors: list[str] = []
        self.last_reload: dict[str, Any] = {}
        self._reload_lock = threading.Lock()
        self._retired: list[RuleSet] = []
        self._customer_programs: collections.OrderedDict[str, RuleSet] = collections.OrderedDict()
        self._cp_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._fingerprint: Any = None
        #: why the rules in force are not the whole directory (None = they are); health shows it
        self.degraded: str | None = None
        #: called with each reload report (the hub updates its ``rules`` health component)
        self.on_reload: Any = None
        #: called per event with (customer, event, facts, rule sets) before matching: test coverage
        self.observe: Any = None
        self.current: RuleSet = RuleSet([], "empty")
        if ruleset is not None:
            self.current = ruleset.compile(self.engine)
        else:
            self.reload(initial=True)

    # -- loading ------------------------------------------------------------------------

    def load(self, *, partial: bool = False) -> RuleSet:
        """Read and validate the rules directory; the result is *not* put in force."""
        return load_directory(self.config.directory, self.vocabulary, self.event_types, now_us=now_us(),
                              templates=self.config.templates, partial=partial)

    def reload(self, *, initial: bool = False) -> dict[str, Any]:
        """Validate and compile the directory, then swap it in atomically; on any error keep the old set.

        At the first load (``initial``) with ``allow_invalid``, the files without errors are put
        in force and :attr:`degraded` says which were left out and why."""
        what = "loaded" if initial else "reloaded"
        with self._reload_lock:
            t0 = time.perf_counter()
            self._fingerprint = self._scan()
            try:
                rs = self.load(partial=initial and self.config.allow_invalid)
                if rs.usable:
                    rs.compile(self.engine)
            except Exception as exc:  # never let a reload take working rules down
                log.exception("rules %s: failed", what)
                rs = RuleSet([], "", errors=[Diagnostic(str(self.config.directory), 0, 0, f"load failed: {exc}")])
            self.stats.reloads += 0 if initial else 1
            if not rs.usable:
                self.stats.reload_failures += 0 if initial else 1
                self.last_errors = [str(d) for d in rs.errors]
                if self.config.log_problems:
                    for e in self.last_errors:
                        log.error("rules not %s: %s", what, e)
                report = {"ok": False, "version": self.current.version, "rules": len(self.current.rules),
                          "errors": self.last_errors, "warnings": [str(w) for w in rs.warnings],
                          "seconds": time.perf_counter() - t0}
            else:
                old = self.current
                self.current = rs  # the swap: one reference assignment
                # programs of the set before last are closed now; the previous one may still be in use
                for r in self._retired:
                    r.close()
                self._retired = [old]
                self.last_errors = [str(d) for d in rs.errors]
                self.degraded = (f"rule files left out because of errors: {', '.join(rs.excluded)}: "
                                 + "; ".join(self.last_errors)) if rs.excluded else None
                if self.config.log_problems:
                    for w in rs.warnings:
                        log.warning("rules: %s", w)
                    if self.degraded:
                        log.error("rules: serving without some rules (--allow-invalid-rules): %s", self.degraded)
                report = {"ok": not rs.excluded, "version": rs.version, "rules": len(rs.rules),
                          "errors": self.last_errors, "excluded": list(rs.excluded),
                          "warnings": [str(w) for w in rs.warnings], "seconds": time.perf_counter() - t0}
                if old.version != rs.version and self.config.log_problems:
                    log.info("rules in force: version %s, %d rules", rs.version, len(rs.rules))
            self.last_reload = report
        if self.on_reload is not None:
            try:
                self.on_reload(report)
            except Exception:
                log.exception("rules: on_reload listener")
        return report

    def _scan(self) -> Any:
        d = self.config.directory
        try:
            return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(Path(d).rglob("*.y*ml")))
        except OSError:
            return None

    def start_watching(self) -> None:
        """Poll the rules directory and reload when a file changes (errors keep the old rules)."""
        if self._watcher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.config.poll_seconds):
                fp = self._scan()
                if fp == self._fingerprint:
                    continue
                # debounce: an editor may still be writing; reload once the files stop changing
                while not self._stop.wait(min(0.2, self.config.poll_seconds)):
                    again = self._scan()
                    if again == fp:
                        break
                    fp = again
                self.reload()

        self._watcher = threading.Thread(target=loop, name="shopkeeper-rules-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    # -- per-customer programs ----------------------------------------------------------

    def customer_ruleset(self, customer: Customer) -> RuleSet | None:
        rules = customer.rules
        if not rules:
            return None
        key = hashlib.sha1(repr(sorted((n, r.get("version")) for n, r in rules.items())).encode()).hexdigest()
        with self._cp_lock:
            rs = self._customer_programs.get(key)
            if rs is not None:
                self._customer_programs.move_to_end(key)
                return rs
        rs = compile_customer_rules(rules, self.vocabulary, self.event_types, cache=self._rule_cache)
        rs.compile(self.customer_engine)
        with self._cp_lock:
            self._customer_programs[key] = rs
            while len(self._customer_programs) > self.config.customer_program_cache:
                _, old = self._customer_programs.popitem(last=False)
                self._retired.append(old)  # closed at the next reload, never while in use
        return rs

    # -- evaluation ---------------------------------------------------------------------

    @property
    def processor(self) -> RulesProcessor:
        """The in-transaction processor (``shopkeeper.engine.ingest.Processor``), with the event
        types the rules in force listen to (its ``event_types``)."""
        return RulesProcessor(self)

    def process(self, folders: Any, applied: Any) -> None:
        trace = self.evaluate(folders, applied.customer, applied.interaction, applied.event.idempotency_key,
                              outputs=applied.result.outputs)
        if trace is not None:
            applied.result.outputs.append(trace)

    def evaluate(self, folders: Any, customer: Customer, it: Interaction, idempotency_key: str = "", *,
                 depth: int = 0, ruleset: RuleSet | None = None,
                 outputs: list[Any] | None = None) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        rs = ruleset or self.current  # read once: a reload mid-event does not affect this event
        self.stats.events += 1
        ev = event_dict(it, idempotency_key)
        trace: dict[str, Any] | None = None
        if customer.rule_state.get("timers"):
            cancelled = cancel_timers(folders, customer, ev)
            if cancelled:
                self.stats.timers_cancelled += len(cancelled)
                trace = self._trace(rs, customer, ev)
                trace["timers_cancelled"] = cancelled
        cust_rs = self.customer_ruleset(customer) if customer.rules else None
        matched: list[Rule] = []
        builder: FactBuilder | None = None
        if self.observe is not None:
            builder = FactBuilder(customer, ev)
            self.observe(customer, ev, builder, [x for x in (rs, cust_rs) if x is not None])
        for r_set in (rs, cust_rs):
            if r_set is None:
                continue
            got = r_set.program_for(ev["type"])
            if got is None:
                continue
            prog, (fields, numeric, hist) = got
            if builder is None:
                builder = FactBuilder(customer, ev)
            msg = builder.message(fields, numeric, hist)
            for key in prog.match(msg):
                rule = r_set.by_name.get(key.removeprefix("customer:"))
                if rule is not None:
                    matched.append(rule)
        if matched:
            matched = [r for r in matched if r.valid_at(ev["ts"]) and _may_fire(customer.rule_state, r, ev["ts"])]
            matched.sort(key=lambda r: (-r.priority, r.scope != "customer", r.name))
        if matched:
            if trace is None:
                trace = self._trace(rs, customer, ev)
            for rule in matched:
                self.stats.matched += 1
                self.stats.matched_by_rule[rule.key] += 1
                trace["matched"].append({"rule": rule.key, "version": rule.version})
                if rule.absent is None:
                    _record_fired(customer, rule, ev["ts"])
                else:  # once/cooldown count when the timer's actions run, not when it is armed
                    tid = schedule_timer(folders, customer, rule, ev)
                    self.stats.timers_scheduled += 1
                    trace["timers_scheduled"].append({"rule": rule.key, "timer": tid,
                                                      "due": ev["ts"] + rule.absent[1]})
                    continue
                self.run_actions(folders, customer, rule, ev, trace, depth=depth, outputs=outputs)
        self.stats.eval_seconds += time.perf_counter() - t0
        return trace

    def _trace(self, rs: RuleSet, customer: Customer, ev: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "rules", "rules_version": rs.version, "customer_id": customer.id,
                "event": {"type": ev["type"], "key": ev["key"], "ts": ev["ts"]},
                "matched": [], "fired": [], "effects": [], "failures": [], "timers_scheduled": [],
                "timers_cancelled": []}

    def run_actions(self, folders: Any, customer: Customer, rule: Rule, ev: dict[str, Any],
                    trace: dict[str, Any], *, depth: int = 0, now: int | None = None,
                    outputs: list[Any] | None = None) -> bool:
        """Run ``rule``'s actions; on failure roll back this rule's effects and record why."""
        # Isolation of a failing rule: built-in actions are taken back from a snapshot of the
        # customer's small dicts plus an undo list (cheap); a rule with a plugin action gets a
        # ZODB savepoint (it may write anywhere)
        sp = snap = None
        undo: list[Any] = []
        if all(c.name in BUILTIN_NAMES for c in rule.actions):
            snap = _Snapshot(customer)
        else:
            txn = _current_txn(folders)
            if txn is not None:
                try:
                    sp = txn.savepoint(optimistic=True)
                except Exception:
                    sp = None
        effects: list[dict[str, Any]] = []
        emitted: list[Interaction] = []
        outputs_before = len(outputs) if outputs is not None else 0

        def emit(etype: str, data: dict[str, Any]) -> Any:
            if self.event_types.get(etype) is None:
                raise ValueError(f"unknown event type {etype!r}")
            if depth + 1 > MAX_EMIT_DEPTH:
                raise RuntimeError(f"emit_event nested more than {MAX_EMIT_DEPTH} deep (rules calling each other?)")
            et = self.event_types.get(etype)
            ts = (now or ev["ts"]) + 1
            new = customer.add_interaction(Interaction(ts, ts, etype, et.default_channel if et else "api",
                                                       f"rule:{rule.key}", data, "", (), customer.id))
            emitted.append(new)
            return new.key

        trace["fired"].append(rule.key)
        for i, call in enumerate(rule.actions):
            adef = self.vocabulary.actions.get(call.name)
            ctx = ActionContext(folders, customer, ev, rule, rule.version, now if now is not None else ev["ts"],
                                index=i, emit=emit, outputs=outputs, undo=undo)
            try:
                if adef is None:
                    raise LookupError(f"action {call.name!r} is no longer available (plugin removed?)")
                params = adef.with_defaults(render(call.params, ctx.lookup))
                out = adef.run(ctx, params)
                effects.append({"rule": rule.key, "version": rule.version, "action": call.name,
                                "effect": out if isinstance(out, (str, dict)) else str(out)})
                self.stats.actions += 1
            except Exception as exc:
                if outputs is not None:
                    if snap is not None:
                        _drop_feed_entries(folders, outputs[outputs_before:])
                    del outputs[outputs_before:]  # feed entries of rolled-back effects must not be published
                if snap is not None:
                    for fn in reversed(undo):
                        try:
                            fn()
                        except Exception:
                            log.exception("undo of a failed rule action")
                    for new in emitted:
                        customer.history.pop(new.key, None)
                    snap.restore()
                if sp is not None:
                    try:
                        sp.rollback()
                    except Exception:
                        log.exception("savepoint rollback failed")
                reason = f"{type(exc).__name__}: {exc}"
                failure = {"rule": rule.key, "version": rule.version, "action": call.name,
                           "line": f"{rule.file}:{call.line}:{call.col}", "event": ev["key"],
                           "event_type": ev["type"], "reason": reason, "at": now if now is not None else ev["ts"]}
                record_failure(folders, customer, failure)
                self.stats.failures += 1
                self.stats.failures_by_rule[rule.key] += 1
                self.stats.recent_failures.append({**failure, "customer_id": customer.id})
                log.warning("rule %s failed on %s event %s of customer %s: %s", rule.key, ev["type"], ev["key"],
                            customer.id, reason)
                trace["failures"].append(failure)
                return False
        trace["effects"].extend(effects)
        for new in emitted:
            sub = self.evaluate(folders, customer, new, depth=depth + 1, outputs=outputs)
            if sub is not None:
                trace.setdefault("emitted", []).append(sub)
        return True

    # -- timers -------------------------------------------------------------------------

    def fire_due(self, folders: Any, now: int | None = None, limit: int = 1000,
                 outputs: list[Any] | None = None) -> list[dict[str, Any]]:
        """Fire up to ``limit`` timers due at ``now`` (µs) in the caller's transaction; return traces.

        Change-feed entries the fired actions write (an outbox intent, an emitted event's
        segment changes) are put on ``outputs``, for the caller to publish after its commit."""
        index = folders.root.get(TIMER_INDEX)
        if index is None or not len(index):
            return []
        now = now if now is not None else now_us()
        traces = []
        due = list(itertools.islice(index.keys(max=(now, "\U0010ffff", "\U0010ffff")), limit))
        for key in due:
            due_at, cid, tid = key
            del index[key]
            customer = folders.customer(cid)
            if customer is None:
                continue
            timers = customer.rule_state.get("timers") or {}
            t = timers.pop(tid, None)
            customer._p_changed = True
            if t is None:
                continue
            self.stats.timers_fired += 1
            rs = self.current
            rule = None
            if t["scope"] == "central":
                rule = rs.by_name.get(t["rule"])
            else:
                crs = self.customer_ruleset(customer)
                rule = crs.by_name.get(t["rule"]) if crs is not None else None
            ev = t["event"]
            trace = self._trace(rs, customer, ev)
            trace["timer"] = {"id": tid, "rule": t["rule"], "due": due_at, "fired_at": now,
                              "scheduled_under": t.get("version")}
            if rule is None or not rule.enabled:
                trace["timer"]["dropped"] = "the rule is gone or disabled"
                traces.append(trace)
                continue
            at = max(due_at, ev["ts"])
            if not _may_fire(customer.rule_state, rule, at):
                trace["timer"]["dropped"] = "once/cooldown: the rule acted for this customer meanwhile"
                traces.append(trace)
                continue
            trace["matched"].append({"rule": rule.key, "version": rule.version})
            _record_fired(customer, rule, at)
            self.run_actions(folders, customer, rule, ev, trace, now=at, outputs=outputs)
            traces.append(trace)
        return traces

    def next_due(self, folders: Any) -> int | None:
        index = folders.root.get(TIMER_INDEX)
        if index is None or not len(index):
            return None
        return index.minKey()[0]

    def report(self) -> dict[str, Any]:
        rs = self.current
        return {"version": rs.version, "rules": len(rs.rules), "last_reload": self.last_reload,
                "errors": list(self.last_errors), "stats": self.stats.as_dict(), "engine": self.engine.name}


BUILTIN_NAMES = frozenset(a.name for a in BUILTIN_ACTIONS)


class _Snapshot:
    """The customer's small, plain parts as they were before a rule ran (built-in actions touch only these,
    the outbox and the history; the latter two are taken back through the undo list and ``emitted``)."""

    ATTRS = ("soft", "scores", "segments", "traits", "hard", "type_counts", "rules")

    def __init__(self, c: Customer) -> None:
        self.c = c
        self.attrs = {a: dict(getattr(c, a)) for a in self.ATTRS}
        # actions replace entries of the rule-state dicts, never edit them in place: one level is enough
        self.rule_state = {k: (dict(v) if isinstance(v, dict) else v) for k, v in c.rule_state.items()}

    def restore(self) -> None:
        for a, v in self.attrs.items():
            setattr(self.c, a, v)
        self.c.rule_state = self.rule_state
        self.c._p_changed = True


def _drop_feed_entries(folders: Any, entries: list[Any]) -> None:
    tree = folders.root.get("changes")
    for e in entries:
        cursor = getattr(e, "cursor", None)
        if tree is not None and cursor is not None and tree.pop(cursor, None) is not None:
            if "changes" in folders.counters:
                folders.count("changes", -1)


def _current_txn(folders: Any) -> Any:
    try:
        return folders.conn.transaction_manager.get()
    except Exception:
        return None


def _record_fired(customer: Customer, rule: Rule, ts: int) -> None:
    """Count a rule's run for ``once``/``cooldown`` (when its actions run, timers included)."""
    fired = customer.rule_state.setdefault("fired", {})  # re-read: a rollback replaces it
    n, _last = fired.get(rule.key, (0, 0))
    fired[rule.key] = (n + 1, ts)
    customer._p_changed = True


def _may_fire(st: dict[str, Any], rule: Rule, ts: int) -> bool:
    if not (rule.once or rule.cooldown_us):
        return True
    got = (st.get("fired") or {}).get(rule.key)
    if got is None:
        return True
    n, last = got
    if rule.once and n > 0:
        return False
    return not (rule.cooldown_us and ts - last < rule.cooldown_us)


def record_failure(folders: Any, customer: Customer, failure: dict[str, Any]) -> None:
    st = customer.rule_state
    st["failures"] = (list(st.get("failures") or ()) + [failure])[-MAX_FAILURES_KEPT:]
    customer._p_changed = True
    counters = getattr(folders, "counters", None)
    if counters is not None and "rule_failures" in counters:
        folders.count("rule_failures")


def timer_index(folders: Any) -> OOBTree:
    idx = folders.root.get(TIMER_INDEX)
    if idx is None:  # a store not yet evolved to the rules generation
        idx = folders.root[TIMER_INDEX] = OOBTree()
    return idx


def schedule_timer(folders: Any, customer: Customer, rule: Rule, ev: dict[str, Any]) -> str:
    assert rule.absent is not None
    types, within = rule.absent
    due = ev["ts"] + within
    tid = hashlib.sha1(f"{rule.key}|{ev['key']}|{ev.get('idempotency_key')}".encode()).hexdigest()[:12]
    timers = customer.rule_state.setdefault("timers", {})
    timers[tid] = {"rule": rule.name, "scope": rule.scope, "version": rule.version, "due": due,
                   "start": ev["ts"], "cancel_on": list(types), "event": ev}
    customer._p_changed = True
    timer_index(folders)[(due, customer.id, tid)] = rule.key
    return tid


def cancel_timers(folders: Any, customer: Customer, ev: dict[str, Any]) -> list[dict[str, Any]]:
    timers = customer.rule_state.get("timers") or {}
    out = []
    for tid, t in list(timers.items()):
        if ev["type"] in t["cancel_on"] and t["start"] <= ev["ts"] < t["due"]:
            del timers[tid]
            idx = folders.root.get(TIMER_INDEX)
            if idx is not None:
                idx.pop((t["due"], customer.id, tid), None)
            out.append({"rule": t["rule"], "timer": tid, "by": ev["type"]})
    if out:
        customer._p_changed = True
    return out


def compile_customer_rules(rules: dict[str, Any], vocab: Vocabulary, event_types: EventTypes, *,
                           cache: collections.OrderedDict[str, Rule | None] | None = None) -> RuleSet:
    """Re-check a customer's stored rules (validated when added) and build their rule set.
    ``cache`` keeps checked rules by content hash (many customers share rule texts)."""
    from .loader import Checker, Marks

    out = []
    for name, entry in sorted(rules.items()):
        src = entry.get("rule") if isinstance(entry, dict) else None
        if not isinstance(src, dict):
            continue
        version = entry.get("version") or ""
        r = cache.get(version) if cache is not None and version else None
        if r is None:
            chk = Checker(vocab, event_types)
            r = chk.check_rule(src, Marks(f"customer-rule:{name}"), (), "customer")
            if r is None:
                log.warning("customer rule %s no longer checks: %s", name, "; ".join(map(str, chk.diags)))
                continue
            r.version = version
            if cache is not None and version:
                cache[version] = r
                while len(cache) > 4096:
                    cache.popitem(last=False)
        out.append(r)
    out.sort(key=lambda r: (-r.priority, r.name))
    return RuleSet(out, "customer")


def _event_types_with_rules() -> EventTypes:
    from .plugin import RULE_EVENT_TYPES

    et = EventTypes(tuple(DEFAULT_EVENT_TYPES._types.values()))
    for t in RULE_EVENT_TYPES:
        et.register(t)
    return et


class TimerRunner:
    """Fires due timers in the background: at most ``tick`` seconds late, and at once after a restart.

    In a hub, ``submit`` is the engine writer's ``submit_op``: this thread only decides
    *when* timers are due; firing them is an operation applied in the writer's transaction,
    so what the fired rules change (an outbox intent, a tag, an emitted event) is committed
    by the one writer and published on the change feed and to ``shopkeeper_committed`` like
    any event. Without ``submit`` (an offline tool on a store no hub holds) each run commits
    in its own transaction and nothing is published.
    """

    def __init__(self, store: Any, service: RulesService, *, tick: float = 0.2, batch: int = 500,
                 on_fired: Any = None, submit: Any = None, may_run: Any = None) -> None:
        self.store = store
        self.service = service
        self.tick = tick
        self.batch = batch
        self.on_fired = on_fired
        self.submit = submit
        self.may_run = may_run  # () -> bool: this hub holds the timers' lease (several hubs, one store)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = 0
        self.errors = 0

    def start(self) -> TimerRunner:
        self._thread = threading.Thread(target=self._run, name="shopkeeper-rule-timers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_once(self, now: int | None = None) -> int:
        if self.submit is not None:
            def fire(folders: Any, changes: Any) -> list[dict[str, Any]]:
                outputs: list[Any] = []
                traces = self.service.fire_due(folders, now, self.batch, outputs=outputs)
                changes.publish(outputs)
                return traces

            traces = self.submit(fire).result()  # the writer retries conflicts itself
        else:
            traces = self._fire_in_own_transaction(now)
        if traces:
            self.fired += len(traces)
            if self.on_fired is not None:
                self.on_fired(traces)
        return len(traces)

    def _fire_in_own_transaction(self, now: int | None) -> list[dict[str, Any]]:
        from ZODB.POSException import ConflictError

        for attempt in range(8):
            try:
                with self.store.transaction(note="shopkeeper: rule timers") as f:
                    return self.service.fire_due(f, now, self.batch)
            except ConflictError:
                time.sleep(0.005 * (attempt + 1))
        return []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.may_run is not None and not self.may_run():
                    self._stop.wait(self.tick)  # another hub fires them
                    continue
                n = self.run_once()
                if n >= self.batch:
                    continue  # more are due: keep going
                with self.store.read() as f:
                    nxt = self.service.next_due(f)
            except Exception:
                self.errors += 1
                log.exception("rule timer runner")
                nxt = None
            wait = self.tick
            if nxt is not None:
                wait = min(self.tick, max(0.0, (nxt - now_us()) / 1e6))
            self._stop.wait(wait)


def run_events(service: RulesService, store: Any, events: Sequence[Any]) -> list[Any]:
    """Apply validated events through an Ingestor with this service's processor (tests, tools)."""
    from ..engine.ingest import Ingestor

    with Ingestor(store, processors=[service.processor]) as ing:
        return ing.apply(list(events))


def check_customer_rule_sources(text: str, name: str, vocab: Vocabulary, event_types: EventTypes) -> RuleSet:
    return check_sources([(name, text)], vocab, event_types, now_us=now_us(), scope="customer")
