"""How the rules run in this process: :class:`RulesConfig` (directory, limits, reload) and :class:`RuleStats`."""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .state import MAX_FAILURES_KEPT

#: hours of per-hour rule match counts kept in memory (a week)
HOURS_KEPT = 168


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

    #: matches per wall-clock hour (µs-free: hours since 1970) -> Counter(rule key -> n), the newest
    #: :data:`HOURS_KEPT` hours: one dict increment per match, drawn as the console's fire chart
    matched_by_hour: collections.OrderedDict = field(default_factory=collections.OrderedDict)

    def count_match(self, key: str, now: float | None = None) -> None:
        """One match of rule ``key``: in the totals and in its hour's bucket."""
        self.matched_by_rule[key] += 1
        hour = int((time.time() if now is None else now) // 3600)
        bucket = self.matched_by_hour.get(hour)
        if bucket is None:
            bucket = self.matched_by_hour[hour] = collections.Counter()
            while len(self.matched_by_hour) > HOURS_KEPT:
                self.matched_by_hour.popitem(last=False)
        bucket[key] += 1

    def fires_by_hour(self, hours: int = 48, now: float | None = None) -> dict[str, Any]:
        """The last ``hours`` hours (oldest first, as µs of each hour's start) and each rule's
        matches in them: ``{"hours": [...], "rules": {key: [n, ...]}}``."""
        last = int((time.time() if now is None else now) // 3600)
        span = list(range(last - hours + 1, last + 1))
        rules: dict[str, list[int]] = {}
        for i, h in enumerate(span):
            for key, n in (self.matched_by_hour.get(h) or {}).items():
                rules.setdefault(key, [0] * len(span))[i] = n
        return {"hours": [h * 3600 * 1_000_000 for h in span], "rules": rules}

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in vars(self).items() if k not in ("failures_by_rule", "matched_by_rule",
                                                               "recent_failures", "matched_by_hour")}
        d["failures_by_rule"] = dict(self.failures_by_rule)
        d["matched_by_rule"] = dict(self.matched_by_rule)
        d["recent_failures"] = list(self.recent_failures)
        return d
