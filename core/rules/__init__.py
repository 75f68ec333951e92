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

import importlib
from typing import TYPE_CHECKING, Any

#: name -> the submodule that defines it, imported on first use (PEP 562): the built-in plugin
#: (``shopkeeper.rules.plugin``, whose evolve step every offline command opening a store runs)
#: must not pay for the YAML loader, the checker and the runtime (~0.3 s of CPU per command,
#: issue 15's walk-through)
_LAZY = {
    **dict.fromkeys(("ActionContext", "ActionDef", "Param", "Vocabulary"), "actions"),
    **dict.fromkeys(("CustomerRuleError", "add_customer_rule", "intents", "list_customer_rules", "proposals",
                     "remove_customer_rule", "tags"), "customer_rules"),
    "load_directory": "loader",
    **dict.fromkeys(("Rule", "RuleSet"), "model"),
    **dict.fromkeys(("RulesConfig", "RulesService", "TimerRunner"), "runtime"),
    "Diagnostic": "yamldoc",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = ["ActionContext", "ActionDef", "Param", "Vocabulary", "CustomerRuleError", "add_customer_rule",
           "remove_customer_rule", "list_customer_rules", "proposals", "intents", "tags", "Diagnostic", "Rule",
           "RuleSet", "load_directory", "RulesConfig", "RulesService", "TimerRunner"]
