"""Domain functions for rules carried by one customer, and for reading what rules left behind.

They change the customer in the caller's transaction. In a hub process that transaction
must be the one writer's — submit them as an operation, so the change commits between
event groups and nothing else commits behind the writer's back::

    from shopkeeper.rules import add_customer_rule, remove_customer_rule

    names = hub.writer.submit_op(
        lambda f, changes: add_customer_rule(f, "c0ffee", yaml_text, added_by="account-manager:ann")).result()

The CLI (``shopkeeper rules add-customer-rule`` / ``remove-customer-rule``) is an offline
tool on a store no hub holds: it applies the same operation through the engine's offline
writer, the one way to write to such a store::

    from shopkeeper.engine.offline import OfflineWriter

    OfflineWriter(store).apply(lambda f, _: remove_customer_rule(f, "c0ffee", "tell_me_when_back_in_stock"))

A customer rule is written exactly like a central rule (one rule, a list, or ``rules:``),
validated the same way (a :class:`CustomerRuleError` carries the ``file:line:col`` messages),
evaluated together with the central rules for that customer's events, and capped in number
(``max_rules``, default 5, ``$SHOPKEEPER_MAX_CUSTOMER_RULES``). Stored in ``Customer.rules``:
name -> ``{"rule": mapping, "version": hash, "added_at": µs, "added_by": text}``.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from ..customer import Customer, now_us
from ..events import EventTypes
from ..outbox import BOOKKEEPING_TYPES
from .actions import Vocabulary
from .loader import check_sources
from .model import Rule, RuleSet, rule_hash

log = logging.getLogger("shopkeeper.rules")


class CustomerRuleError(ValueError):
    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message + ("\n" + "\n".join(errors) if errors else ""))
        self.errors = errors or []


def _customer(folders: Any, customer: Customer | str) -> Customer:
    if isinstance(customer, Customer):
        return customer
    c = folders.customer(customer)
    if c is None:
        raise CustomerRuleError(f"no customer with id {customer!r}")
    return c


def add_customer_rule(folders: Any, customer: Customer | str, source: str, *, name: str = "customer-rule.yaml",
                      added_by: str = "api", max_rules: int | None = None, vocabulary: Vocabulary | None = None,
                      event_types: EventTypes | None = None, replace: bool = True) -> list[str]:
    """Validate ``source`` (YAML text) and attach its rules to the customer; return their names.

    Raises :class:`CustomerRuleError` when the text is invalid or the cap would be exceeded;
    nothing is changed then. A rule with the name of an existing one replaces it (``replace``).
    """
    from .config import RulesConfig
    from .runtime import _event_types_with_rules

    c = _customer(folders, customer)
    cap = max_rules if max_rules is not None else RulesConfig().max_customer_rules
    rs = check_customer_rule_sources(source, name, vocabulary or Vocabulary.builtin(),
                                     event_types or _event_types_with_rules())
    if rs.errors:
        raise CustomerRuleError(f"{name}: not added, the rule has errors:", [str(d) for d in rs.errors])
    if not rs.rules:
        raise CustomerRuleError(f"{name}: no rule found")
    for r in rs.rules:  # bookkeeping reaches the rules only when a central rule names it (RulesProcessor)
        named = (set(r.events) | set(r.absent[0] if r.absent else ())) & BOOKKEEPING_TYPES
        if named:
            raise CustomerRuleError(f"{name}: rule {r.name!r} listens to outbox bookkeeping "
                                    f"({', '.join(sorted(named))}): only a central rule may")
    new = {r.name for r in rs.rules}
    clash = new & set(c.rules)
    if clash and not replace:
        raise CustomerRuleError(f"customer {c.id} already has rule(s) {sorted(clash)}")
    total = len(set(c.rules) | new)
    if total > cap:
        raise CustomerRuleError(f"customer {c.id} would have {total} rules; at most {cap} per customer "
                                f"(has {len(c.rules)}: {', '.join(sorted(c.rules)) or 'none'})")
    at = now_us()
    for r in rs.rules:
        c.set_own_rule(r.name, {"rule": r.source, "version": rule_hash(r.source), "added_at": at,
                                "added_by": added_by})
    return [r.name for r in rs.rules]


def remove_customer_rule(folders: Any, customer: Customer | str, name: str) -> bool:
    """Remove one of the customer's rules (and its pending timers); False if it had none by that name."""
    c = _customer(folders, customer)
    if not c.drop_own_rule(name):
        return False
    from .timers import TIMER_INDEX

    idx = folders.root.get(TIMER_INDEX)
    for tid, t in list((c.rule_state.get("timers") or {}).items()):
        if t.get("scope") == "customer" and t.get("rule") == name:
            c.pop_rule_state("timers", tid)
            if idx is not None:
                idx.pop((t["due"], c.id, tid), None)
    return True


def list_customer_rules(customer: Customer) -> list[dict[str, Any]]:
    return [{"name": n, **{k: v for k, v in e.items()}} for n, e in sorted(customer.rules.items())]


def proposals(customer: Customer, *, placement: str | None = None, at: int | None = None) -> list[dict[str, Any]]:
    """Offers and messages rules proposed for ``customer``, unexpired, in the shape of ``shopkeeper_decide``."""
    at = at if at is not None else now_us()
    out = []
    for p in (customer.rule_state.get("proposals") or {}).values():
        if p.get("expires") is not None and p["expires"] <= at:
            continue
        if p.get("placement") and placement and p["placement"] != placement:
            continue
        out.append({"kind": p["kind"], "id": p["id"], "score": float(p.get("score", 1.0)),
                    "reason": f"{p.get('reason', '')} [rule {p['rule']} @ {p['version']}]".strip(),
                    "payload": {**(p.get("payload") or {}), "rule": p["rule"], "rules_version": p["version"]}})
    out.sort(key=lambda a: -a["score"])
    return out


def intents(customer: Customer, status: str | None = "pending") -> list[dict[str, Any]]:
    """Message intents in the customer's outbox (channel ``agent`` = alerts)."""
    from .. import outbox as _outbox

    return [it.as_dict() for it in _outbox.items(customer, status)]


def pending_timers(customer: Customer) -> list[dict[str, Any]]:
    """The customer's pending absence timers, soonest first: id, rule, scope, due (µs), what cancels them."""
    out = [{"id": tid, "rule": t["rule"], "scope": t.get("scope", "central"), "due": t["due"],
            "cancelled_by": list(t.get("cancel_on") or ()), "event_type": (t.get("event") or {}).get("type", "")}
           for tid, t in (customer.rule_state.get("timers") or {}).items()]
    out.sort(key=lambda t: t["due"])
    return out


def tags(customer: Customer) -> list[str]:
    return sorted(customer.rule_state.get("tags") or ())


def compile_customer_rules(rules: dict[str, Any], vocab: Vocabulary, event_types: EventTypes, *,
                           cache: collections.OrderedDict[str, Rule | None] | None = None) -> RuleSet:
    """Re-check a customer's stored rules (validated when added) and build their rule set.
    ``cache`` keeps checked rules by content hash (many customers share rule texts)."""
    from .checker import Checker
    from .yamldoc import Marks

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


def check_customer_rule_sources(text: str, name: str, vocab: Vocabulary, event_types: EventTypes) -> RuleSet:
    return check_sources([(name, text)], vocab, event_types, now_us=now_us(), scope="customer")
