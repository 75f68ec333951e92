"""Central business rules and rules carried by customers (see ``docs/rules.md``).

* :mod:`.loader` — the YAML language, the checker (``file:line:col`` diagnostics), compiling;
* :mod:`.actions` — the action vocabulary (:class:`ActionDef`, :class:`Param`; plugins add
  actions with ``shopkeeper_rule_actions``) and safe templates;
* :mod:`.runtime` — :class:`RulesService`: evaluation inside the event's transaction,
  absence timers, hot reload; :class:`TimerRunner`;
* :mod:`.customer_rules` — :func:`add_customer_rule`, :func:`remove_customer_rule`, and
  readers for what rules left on a customer (proposals, intents, tags);
* :mod:`.plugin` — the built-in plugin; :mod:`.cli` — ``shopkeeper rules``.

Matching is done by :mod:`shopkeeper.rules.matching` (durable_rules behind our interface).
"""

from __future__ import annotations

from .actions import ActionContext, ActionDef, Param, Vocabulary
from .customer_rules import (
    CustomerRuleError,
    add_customer_rule,
    intents,
    list_customer_rules,
    proposals,
    remove_customer_rule,
    tags,
)
from .loader import load_directory
from .model import Rule, RuleSet
from .runtime import RulesConfig, RulesService, TimerRunner
from .yamldoc import Diagnostic

__all__ = ["ActionContext", "ActionDef", "Param", "Vocabulary", "CustomerRuleError", "add_customer_rule",
           "remove_customer_rule", "list_customer_rules", "proposals", "intents", "tags", "Diagnostic", "Rule",
           "RuleSet", "load_directory", "RulesConfig", "RulesService", "TimerRunner"]
