"""Rule state kept on a customer (``Customer.rule_state``): fired counts, failures, and the undo snapshot.

The rules runtime changes a customer's rule state only through these functions, so what it
writes (and how a failing rule's effects are taken back) is in one place.
"""

from __future__ import annotations

from typing import Any

from ..customer import Customer
from .model import Rule

MAX_FAILURES_KEPT = 20


class _Snapshot:
    """The customer's small, plain parts as they were before a rule ran (built-in actions touch only these,
    the outbox and the history; the latter two are taken back through the undo list and ``emitted``,
    the per-day aggregates of emitted interactions with ``Customer.take_back_daily``)."""

    #: ``_scores``, not ``scores``: the view merges the model score tables in (reading them on every
    #: rule run), and restoring it would copy a fit's rows into the record as its own
    ATTRS = ("soft", "_scores", "segments", "traits", "hard", "type_counts", "rules")

    def __init__(self, c: Customer) -> None:
        self.c = c
        self.attrs = {a: dict(getattr(c, a)) for a in self.ATTRS}
        if c.last_at is not None:  # None on records older than it (then nothing reads it)
            self.attrs["last_at"] = dict(c.last_at)
        # actions replace entries of the rule-state dicts, never edit them in place: one level is enough
        self.rule_state = {k: (dict(v) if isinstance(v, dict) else v) for k, v in c.rule_state.items()}

    def restore(self) -> None:
        for a, v in self.attrs.items():
            setattr(self.c, a, v)  # assigning an attribute marks a persistent record changed
        self.c.restore_rule_state(self.rule_state)


def _record_fired(customer: Customer, rule: Rule, ts: int) -> None:
    """Count a rule's run for ``once``/``cooldown`` (when its actions run, timers included)."""
    n, _last = (customer.rule_state.get("fired") or {}).get(rule.key, (0, 0))  # re-read: a rollback replaces it
    customer.put_rule_state("fired", rule.key, (n + 1, ts))


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
    kept = list(customer.rule_state.get("failures") or ())
    customer.set_rule_state("failures", (kept + [failure])[-MAX_FAILURES_KEPT:])
    counters = getattr(folders, "counters", None)
    if counters is not None and "rule_failures" in counters:
        folders.count("rule_failures")

