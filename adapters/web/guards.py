"""Cheap checks that run before an event is parsed: crawlers and rate limits."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

#: Obvious crawlers and link-preview fetchers, by user-agent substring (case-insensitive).
#: Headless browsers are *not* listed: real visitors' privacy tools and our own browser tests
#: use them; add ``headlesschrome`` to ``bot_user_agents`` if your traffic needs it.
BOT_PATTERNS = (
    "bot", "crawler", "spider", "crawling", "slurp", "archiver", "facebookexternalhit", "embedly",
    "bingpreview", "mediapartners-google", "adsbot", "lighthouse", "pingdom", "uptimerobot",
    "python-requests", "python-urllib", "go-http-client", "curl/", "wget/", "scrapy", "httpclient",
    "headless-shell", "phantomjs",
)


class BotFilter:
    def __init__(self, extra: Iterable[str] = ()) -> None:
        words = [re.escape(w.lower()) for w in (*BOT_PATTERNS, *extra) if w]
        self._re = re.compile("|".join(words))

    def is_bot(self, user_agent: str | None) -> bool:
        """True for a missing user agent or one naming a crawler."""
        if not user_agent:
            return True
        return self._re.search(user_agent.lower()) is not None


class RateLimiter:
    """Token buckets by key (visitor id, client IP), bounded in memory (least recently used go).

    ``take(key, n)`` spends ``n`` tokens and says whether there were enough; a bucket refills
    at ``rate`` tokens per second up to ``burst``. Thread-safe, O(1) per call.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 200_000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, n: int = 1) -> bool:
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                b = [self.burst, now]
                self._buckets[key] = b
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
                b[1] = now
            if b[0] >= n:
                b[0] -= n
                return True
            return False

    def retry_after(self, key: str, n: int = 1) -> float:
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                return 0.0
            return max(0.0, (n - b[0]) / self.rate)
