"""Why a rule did — or did not — act for one customer and one event.

:func:`explain_event` judges **every** central rule and every rule the customer carries
against one event (a real one from the history or a hypothetical one) and says, per rule,
what happened: it fired (and what its actions did), or it does not listen to that event
type, is disabled or outside its validity window, or which condition failed first and the
value it saw, or that ``once``/``cooldown`` held it back, or that it armed an absence timer.
Conditions are judged with the same facts the engine sees (:class:`~.runtime.FactBuilder`)
and the reference semantics of :func:`shopkeeper.rules.matching.evaluate`; the dry run of the
real evaluation (:meth:`~.runtime.RulesService.evaluate`, in a transaction the caller throws
away) supplies the effects, so "fired" means what the engine decided, not a second opinion.

:func:`condition_outcomes` is shared with ``rules test --coverage``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..conditions import All, evaluate
from ..conditions.analysis import field_list
from ..conditions.analysis import subject_of as _subject_of
from ..customer import Customer, Interaction
from .model import Rule, RuleSet
from .runtime import FactBuilder, RulesService, event_dict

MISSING = "(missing)"


def _seen(cond: Any, msg: dict[str, Any]) -> Any:
    """The value(s) a condition looked at: one value, or subject -> value for any/all."""
    fields = field_list(cond)
    if len(fields) == 1:
        return msg.get(fields[0], MISSING)
    return {_subject_of(f): msg.get(f, MISSING) for f in fields}


def condition_outcomes(rule: Rule, builder: FactBuilder) -> list[tuple[int, bool, Any]]:
    """(index, held, value seen) for each top-level condition of ``rule``, in order."""
    msg = builder.message(rule.fields, rule.numeric_fields, rule.history)
    items = rule.condition.items if isinstance(rule.condition, All) else (rule.condition,)
    return [(i, evaluate(c, msg), _seen(c, msg)) for i, c in enumerate(items)]


def _when(us: int) -> str:
    return _dt.datetime.fromtimestamp(us / 1e6, _dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _label(rule: Rule, i: int) -> tuple[str, int]:
    return rule.condition_labels[i] if i < len(rule.condition_labels) else (f"condition {i + 1}", rule.line)


def judge(rule: Rule, customer: Customer, ev: dict[str, Any], builder: FactBuilder) -> dict[str, Any]:
    """The outcome of one rule for one event, before its actions: why it would not act, or that it would."""
    out: dict[str, Any] = {"rule": rule.key, "scope": rule.scope, "file": rule.file, "line": rule.line,
                           "priority": rule.priority}
    if not rule.enabled:
        return {**out, "outcome": "disabled", "why": "enabled: false"}
    if "*" not in rule.events and ev["type"] not in rule.events:
        return {**out, "outcome": "other_event", "why": f"listens to {', '.join(rule.events)}, not {ev['type']}"}
    if not rule.valid_at(ev["ts"]):
        window = (f"from {_when(rule.valid_from)}" if rule.valid_from else "") + (
            f" until {_when(rule.valid_until)}" if rule.valid_until else "")
        return {**out, "outcome": "not_valid", "why": f"valid {window.strip()}; the event is at {_when(ev['ts'])}"}
    for i, held, seen in condition_outcomes(rule, builder):
        if not held:
            text, line = _label(rule, i)
            return {**out, "outcome": "condition_failed", "condition": {"index": i + 1, "text": text, "line": line,
                                                                         "seen": seen},
                    "why": f"condition {i + 1} ({text}, line {line}) does not hold: saw {_show(seen)}"}
    got = (customer.rule_state.get("fired") or {}).get(rule.key)
    if got is not None:
        n, last = got
        if last == ev["ts"]:
            return {**out, "outcome": "fired_recorded", "why": "fired for this event (recorded on the customer)"}
        if rule.once and n > 0:
            return {**out, "outcome": "once", "why": f"once: already acted at {_when(last)}"}
        if rule.cooldown_us and ev["ts"] - last < rule.cooldown_us:
            return {**out, "outcome": "cooldown",
                    "why": f"cooldown: acted at {_when(last)}, not again before {_when(last + rule.cooldown_us)}"}
    if rule.absent is not None:
        types, within = rule.absent
        return {**out, "outcome": "timer", "why": f"conditions hold: arms a timer; acts at {_when(ev['ts'] + within)} "
                f"unless {' or '.join(types)} arrives first"}
    return {**out, "outcome": "fires", "why": "all conditions hold"}


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_show(x)}" for k, x in v.items())
    return v if v == MISSING else repr(v)


def explain_event(service: RulesService, folders: Any, customer: Customer, it: Interaction,
                  idempotency_key: str = "", *, hypothetical: bool = True) -> dict[str, Any]:
    """Every rule's outcome for ``it``; runs the real evaluation too, so call it in a
    transaction that is thrown away (``store.read()``): effects are computed, never kept."""
    rs: RuleSet = service.current
    cust_rs = service.customer_ruleset(customer) if customer.rules else None
    ev = event_dict(it, idempotency_key)
    builder = FactBuilder(customer, ev)
    rules = list(rs.rules) + (list(cust_rs.rules) if cust_rs is not None else [])
    judged = [judge(r, customer, ev, builder) for r in rules]
    pending = [{"rule": t["rule"], "scope": t.get("scope", "central"), "due": _when(t["due"]),
                "cancelled_by": t.get("cancel_on", [])}
               for t in (customer.rule_state.get("timers") or {}).values()]
    trace = service.evaluate(folders, customer, it, idempotency_key) or {}
    effects: dict[str, list[str]] = {}
    for e in trace.get("effects", ()):
        effects.setdefault(e["rule"], []).append(f"{e['action']}: {e['effect']}")
    failures = {f["rule"]: f for f in trace.get("failures", ())}
    matched = {m["rule"] for m in trace.get("matched", ())}
    for j in judged:
        key = j["rule"]
        if key in failures:
            f = failures[key]
            j.update(outcome="failed", why=f"conditions hold but action {f['action']} ({f['line']}) failed: "
                     f"{f['reason']}; its effects were taken back")
        elif j["outcome"] == "fires":
            if key in matched:
                j.update(outcome="fired", effects=effects.get(key, []))
            else:  # the engine and the reference semantics disagree: say so rather than guess
                j.update(outcome="not_matched", why="conditions hold in Python but the engine did not match it")
    return {"customer_id": customer.id, "event": {"type": ev["type"], "key": ev["key"], "at": _when(ev["ts"]),
                                                   "data": ev["data"]},
            "hypothetical": hypothetical, "rules_version": rs.version, "rules": judged, "timers_pending": pending,
            "timers_cancelled": trace.get("timers_cancelled", []), "emitted": trace.get("emitted", [])}


class ExplainError(ValueError):
    """The event to explain is not valid or not found; the message says which and why."""


def explain_customer(service: RulesService, folders: Any, customer: Customer, *,
                     event: dict[str, Any] | None = None, event_key: str | None = None) -> dict[str, Any]:
    """Explain a hypothetical ``event`` (a JSON-like dict as a touch point would send it) or the
    real interaction ``event_key`` (its history key or idempotency key) of ``customer``.

    Call it inside a transaction that is thrown away: a hypothetical event is appended to the
    history there so history conditions count it, as they would when it really arrives."""
    from ..customer import now_us
    from ..events import EventError, validate_event

    if (event is None) == (event_key is None):
        raise ExplainError("give either an event or the key of one of the customer's interactions")
    if event_key is not None:
        it = _find_interaction(customer, event_key)
        return explain_event(service, folders, customer, it, it.idempotency_key, hypothetical=False)
    raw = dict(event)
    raw.setdefault("identities", [list(p) for p in customer.identity_pairs()[:1]] or {"customer": customer.id})
    raw.setdefault("idempotency_key", f"explain-{now_us()}")
    try:
        ev = validate_event(raw, service.event_types)
    except EventError as exc:
        raise ExplainError(f"the event is not valid: {exc}") from exc
    it = customer.add_interaction(Interaction(ev.ts, ev.ts, ev.type, ev.channel, ev.touchpoint, ev.data,
                                              ev.idempotency_key, (), customer.id))
    return explain_event(service, folders, customer, it, ev.idempotency_key, hypothetical=True)


def _find_interaction(customer: Customer, key: str) -> Interaction:
    if key.isdigit():
        got = customer.history.get(int(key))
        if got is not None:
            return got
    for it in customer.interactions(newest_first=True):
        if it.idempotency_key == key:
            return it
    raise ExplainError(f"customer {customer.id} has no interaction with key or idempotency key {key!r} "
                       "(`shopkeeper show` lists recent ones)")


_HEAD = {"fired": "FIRED", "fired_recorded": "FIRED", "timer": "TIMER", "failed": "FAILED",
         "condition_failed": "NOT FIRED", "once": "HELD", "cooldown": "HELD", "not_valid": "NOT VALID",
         "disabled": "DISABLED", "not_matched": "NOT MATCHED", "other_event": "-"}


def render_text(x: dict[str, Any], *, show_all: bool = False) -> str:
    """The explanation for people: one line per rule, fired first; rules for other event types
    are summed up in one line unless ``show_all``."""
    ev = x["event"]
    how = " (hypothetical)" if x["hypothetical"] else " (recorded; judged on the customer as it is now)"
    lines = [f"customer {x['customer_id']}  event {ev['type']} at {ev['at']}{how}  rules version {x['rules_version']}"]
    order = ["fired", "fired_recorded", "failed", "timer", "condition_failed", "once", "cooldown", "not_valid",
             "not_matched", "disabled"]
    rules = sorted((r for r in x["rules"] if r["outcome"] != "other_event" or show_all),
                   key=lambda r: (order.index(r["outcome"]) if r["outcome"] in order else 99, -r["priority"]))
    width = max((len(r["rule"]) for r in rules), default=10)
    for r in rules:
        lines.append(f"  {_HEAD.get(r['outcome'], r['outcome']):<10} {r['rule']:<{width}}  "
                     f"{r['file']}:{r['line']}  {r.get('why', '')}".rstrip())
        for e in r.get("effects", ()):
            lines.append(f"  {'':<10} {'':<{width}}    -> {e}")
    others = [r["rule"] for r in x["rules"] if r["outcome"] == "other_event"]
    if others and not show_all:
        lines.append(f"  {len(others)} rule(s) listen to other event types: {', '.join(others)}")
    for t in x["timers_cancelled"]:
        lines.append(f"  this event cancels timer {t['timer']} of {t['rule']}")
    for t in x["timers_pending"]:
        lines.append(f"  pending timer of {t['rule']}: acts at {t['due']} unless {' or '.join(t['cancelled_by'])}")
    return "\n".join(lines)


__all__ = ["ExplainError", "explain_customer", "explain_event", "judge", "condition_outcomes", "render_text"]
