"""Rate limits and back-pressure of a campaign run: how many intents the runner may write now.

Why in the runner: an adapter sends what the outbox hands it, as fast as its server allows; a
campaign's ``rate`` (``50/s`` for the whole campaign, or per channel: ``{email: 200/s, sms:
50/s}``) bounds how fast its intents *become available*, so it bounds their sending too, for
every adapter, in-process or remote, without any of them knowing campaigns. A token bucket per
limit (capacity: one second of the rate, at least 1) gives each writer operation a **budget**
per channel; the operation stops before the first recipient whose channel has none left, and
the cursor it commits is where the next one goes on — so a crash or a pause loses no place.

``backlog`` is back-pressure: the runner writes no further batch while that many of the run's
intents are written and not final (neither sent, failed, suppressed nor cancelled: the outbox's
index of open intents says), so a slow or stopped adapter holds the campaign back instead of
a million intents piling up. Both wait on the runner's ``stop`` event (a shutdown ends the wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import outbox
from .model import Campaign

ALL = "*"


class Pacer:
    """Token buckets for a campaign's ``rate`` limits; ``clock`` is injectable (tests)."""

    def __init__(self, rate: dict[str, float], clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = dict(rate)
        self.clock = clock
        self.capacity = {k: max(1.0, r) for k, r in self.rate.items()}
        self.tokens = dict(self.capacity)
        self.at = clock()

    def _refill(self) -> None:
        now = self.clock()
        dt, self.at = max(0.0, now - self.at), now
        for k, r in self.rate.items():
            self.tokens[k] = min(self.capacity[k], self.tokens[k] + dt * r)

    def budget(self) -> dict[str, int] | None:
        """Whole messages each limit allows now (None: no limits)."""
        if not self.rate:
            return None
        self._refill()
        return {k: int(v + 1e-9) for k, v in self.tokens.items()}  # 0.999999… after a refill is 1

    def wait_seconds(self) -> float:
        """How long until every limit has at least one message again."""
        self._refill()
        return max(max(((1.0 - v) / self.rate[k] for k, v in self.tokens.items() if v < 1.0), default=0.0), 1e-3)

    def spend(self, used: dict[str, int]) -> None:
        total = sum(used.values())
        for k in self.tokens:
            self.tokens[k] -= total if k == ALL else used.get(k, 0)


def allowed(budget: dict[str, int] | None, used: dict[str, int], channel: str) -> bool:
    """Whether one more intent on ``channel`` fits the budget, given what this batch ``used``."""
    if budget is None:
        return True
    if ALL in budget and sum(used.values()) >= budget[ALL]:
        return False
    return channel not in budget or used.get(channel, 0) < budget[channel]


def open_intents(folders: Any, campaign: Campaign, run_id: str) -> int:
    """The run's intents written and not final (the outbox's index of open intents)."""
    idx = outbox.index(folders)
    if idx is None:
        return 0
    prefix = f"cp.{run_id}."
    return sum(len(idx.keys(min=(ch, prefix), max=(ch, prefix + "\U0010ffff"))) for ch in campaign.channels)


def room(folders: Any, campaign: Campaign, run_id: str) -> int:
    """How many more intents the run's ``backlog`` allows now (<= 0: wait)."""
    return campaign.backlog - open_intents(folders, campaign, run_id)


__all__ = ["ALL", "Pacer", "allowed", "open_intents", "room"]
