"""The old import path of :mod:`shopkeeper.rules.matching` (the durable_rules matching engine
moved into the ``rules`` package, issue 19). This name is the same module object, so code and
tests that import or patch ``shopkeeper.rules_engine`` keep working."""

import sys

from .rules import matching

sys.modules[__name__] = matching
