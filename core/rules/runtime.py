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

The parts live by job: :mod:`.config` (``RulesConfig``, ``RuleStats``), :mod:`.facts` (the flat
message), :mod:`.state` (rule state on the customer), :mod:`.timers` (absence timers and
``TimerRunner``), :mod:`.customer_rules` (compiling a customer's own rules); this module
re-exports their names (``__all__``) so existing imports keep working.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..customer import Customer, Interaction, now_us
from ..events import DEFAULT_EVENT_TYPES, EventTypes
from ..outbox import BOOKKEEPING_TYPES
from .actions import BUILTIN_ACTIONS, ActionContext, Vocabulary, render
from .config import RulesConfig, RuleStats, default_rules_dir
from .customer_rules import check_customer_rule_sources, compile_customer_rules
from .facts import FactBuilder, _from_history, event_dict, history_value, plan_for
from .loader import check_sources, load_directory
from .matching import Engine, PythonEngine, default_engine
from .model import Rule, RuleSet
from .state import MAX_FAILURES_KEPT, _may_fire, _record_fired, _Snapshot, record_failure
from .timers import TIMER_INDEX, TimerRunner, cancel_timers, fire_due, next_due, schedule_timer, timer_index
from .yamldoc import Diagnostic

log = logging.getLogger("shopkeeper.rules")

MAX_EMIT_DEPTH = 3


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

    def reload(self, *, initial: bool = False, by: dict[str, str] | None = None) -> dict[str, Any]:
        """Validate and compile the directory, then swap it in atomically; on any error keep the old set.

        At the first load (``initial``) with ``allow_invalid``, the files without errors are put
        in force and :attr:`degraded` says which were left out and why. ``by`` (``who``, ``from``)
        and the rules added, removed and changed go into the report, which ``on_reload`` records
        (``shopkeeper.rules.audit``)."""
        from .audit import diff
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
                          "previous_version": self.current.version,
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
                          "previous_version": old.version, "changes": diff(old, rs),
                          "errors": self.last_errors, "excluded": list(rs.excluded),
                          "warnings": [str(w) for w in rs.warnings], "seconds": time.perf_counter() - t0}
                if old.version != rs.version and self.config.log_problems:
                    log.info("rules in force: version %s, %d rules", rs.version, len(rs.rules))
            report["by"] = dict(by or {"who": "hub start" if initial else "unknown"})
            report["initial"] = initial
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
                self.reload(by={"who": "file watcher", "from": str(self.config.directory)})

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
        central = rs.program_for(it.type)
        timers = customer.rule_state.get("timers")
        if not (customer.rules or timers or self.observe is not None):
            # only the central program can act: none for this type, or the gate (judged on the
            # interaction's values) rules out all its rules — nothing is built (§67)
            if central is None or plan_for(rs, it.type, central[0], central[1][0]).closed(
                    it.type, it.channel, it.touchpoint, it.data, central[1][1]):
                self.stats.eval_seconds += time.perf_counter() - t0
                return None
        ev = event_dict(it, idempotency_key)
        trace: dict[str, Any] | None = None
        if timers:
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
            got = central if r_set is rs else r_set.program_for(ev["type"])
            if got is None:
                continue
            prog, (fields, numeric, hist) = got
            if builder is None:
                builder = FactBuilder(customer, ev)
            msg = builder.message_for(r_set, ev["type"], prog, fields, numeric, hist)
            if msg is None:
                continue  # the event's own fields rule out every rule of the program
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
                self.stats.count_match(rule.key)
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
                params = adef.with_defaults(call.params if call.plain else render(call.params, ctx.lookup))
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
                        customer.take_back_daily(new)
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
        """Fire up to ``limit`` timers due at ``now`` (µs) in the caller's transaction; return traces
        (:func:`shopkeeper.rules.timers.fire_due`)."""
        return fire_due(self, folders, now, limit, outputs)

    def next_due(self, folders: Any) -> int | None:
        """When the earliest pending timer is due (µs), or None (:func:`shopkeeper.rules.timers.next_due`)."""
        return next_due(folders)

    def report(self) -> dict[str, Any]:
        rs = self.current
        return {"version": rs.version, "rules": len(rs.rules), "last_reload": self.last_reload,
                "errors": list(self.last_errors), "stats": self.stats.as_dict(), "engine": self.engine.name}


BUILTIN_NAMES = frozenset(a.name for a in BUILTIN_ACTIONS)


def _drop_feed_entries(folders: Any, entries: list[Any]) -> None:
    from ..engine import feed

    if folders.root.get("changes") is not None:
        feed.drop(folders, entries)


def _current_txn(folders: Any) -> Any:
    try:
        return folders.conn.transaction_manager.get()
    except Exception:
        return None

def _event_types_with_rules() -> EventTypes:
    from .plugin import RULE_EVENT_TYPES

    et = EventTypes(tuple(DEFAULT_EVENT_TYPES._types.values()))
    for t in RULE_EVENT_TYPES:
        et.register(t)
    return et


def run_events(service: RulesService, store: Any, events: Sequence[Any]) -> list[Any]:
    """Apply validated events through an Ingestor with this service's processor (tests, tools)."""
    from ..engine.ingest import Ingestor

    with Ingestor(store, processors=[service.processor]) as ing:
        return ing.apply(list(events))


#: the names this module has always offered; their code now lives in the modules named above
__all__ = ["RulesService", "RulesProcessor", "RulesConfig", "RuleStats", "default_rules_dir", "FactBuilder",
           "event_dict", "history_value", "_from_history", "TIMER_INDEX", "TimerRunner", "timer_index",
           "schedule_timer", "cancel_timers", "record_failure", "MAX_FAILURES_KEPT", "MAX_EMIT_DEPTH",
           "compile_customer_rules", "check_customer_rule_sources", "check_sources", "run_events",
           "_event_types_with_rules", "BUILTIN_NAMES"]
