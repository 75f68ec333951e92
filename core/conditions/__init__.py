"""The one condition compiler: two front ends, one intermediate form, one analysis, two back ends.

Shopkeeper has two ways to write a condition — a rule's YAML (``- customer.orders: {at_least: 2}``)
and the expression language of segments, offers and campaigns (``customer.orders >= 2``) — and
they used to be two compilers with two dependency analyses, two type checks and two evaluators,
which could (and did) drift apart. Now:

=====================================  ===============================================================
front ends                             :mod:`shopkeeper.rules.condition_checker` (YAML, with line
                                       numbers) and :mod:`shopkeeper.analysis.conditions` (expressions,
                                       with columns) parse their syntax and lower their semantics
the intermediate form                  :mod:`shopkeeper.conditions.tree`: ``Cmp``/``All``/``AnyOf``/
                                       ``Not``/``Truth`` over values named by field key (the one
                                       spelling of :mod:`shopkeeper.paths`)
analysis (once, on the tree)           :mod:`shopkeeper.conditions.analysis`: fields read, event types
                                       that can change it, time-based or not; the type check's rules
                                       and wording
back ends                              durable_rules (:mod:`shopkeeper.rules.matching`, the central
                                       rules, per event) and Python (:mod:`shopkeeper.conditions.python`:
                                       segments, offers, campaign audiences, explain, and the rules
                                       durable_rules cannot judge)
=====================================  ===============================================================

The central rules keep being evaluated by durable_rules; the Python back end gives the same
answer on the same message (``tests/test_condition_compiler.py`` checks both on a corpus).
"""

from __future__ import annotations

from .analysis import Deps, dependencies, field_list, fields, judge, kind_of, numeric_fields, subject_of, type_problem
from .python import compile_message, evaluate
from .tree import All, AnyOf, Arith, Call, Cmp, Condition, Const, Field, Neg, Not, Truth, is_flat

__all__ = ["All", "AnyOf", "Arith", "Call", "Cmp", "Condition", "Const", "Deps", "Field", "Neg", "Not", "Truth",
           "compile_message", "dependencies", "evaluate", "field_list", "fields", "is_flat", "judge", "kind_of",
           "numeric_fields", "subject_of", "type_problem"]
