"""Cheap checks that run before an event is parsed: crawlers, rate limits, body size and nesting.

Shared by the HTTP adapters (the web collector and the Segment-spec endpoint): a request body is
read with its size bounded, un-gzipped with the inflated size bounded, parsed, and its nesting depth
bounded; every refusal is a :class:`BadRequest` (4xx), never a 5xx. ``json.loads`` cannot recurse
without bound (its C scanner stops at the interpreter's recursion limit with ``RecursionError``,
answered 400) nor allocate more than the bounded body; the depth is measured on the parsed value,
which costs a tenth of scanning the raw bytes for strings and brackets first.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request


class BadRequest(Exception):
    """A request refused with ``status`` (4xx unless the hub itself failed): ``field`` and ``reason``."""

    def __init__(self, field: str, reason: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status
        self.headers = headers or {}


#: Deep enough for any event (a body, its list, an event, its data, and data's own six levels),
#: far below where a recursive parser would get into trouble.
MAX_JSON_DEPTH = 16



async def record_committed(batcher: Any, events: list[dict[str, Any]], timeout: float, resend_with: str) -> list[Any]:
    """Every event through ``batcher`` (an :class:`~shopkeeper.adapters.base.EventBatcher`), answered
    only after its commit; a hub that does not commit within ``timeout`` or refuses is a 503 telling
    the sender to retry with the same ids (``resend_with`` names them: "messageIds", "event ids")."""
    from shopkeeper.adapters.base import HubError

    try:
        return await asyncio.wait_for(batcher.record_many(events), timeout)
    except TimeoutError:
        raise BadRequest("hub", f"the hub did not commit in time; retry with the same {resend_with}", 503,
                         {"Retry-After": "1"}) from None
    except HubError as exc:  # a stopping hub's HubUnavailable included: resent with the same ids, applied once
        raise BadRequest("hub", f"the hub refused the request: {exc}", 503,
                         {"Retry-After": str(getattr(exc, "retry_after", 1))}) from None


def json_depth(value: Any, limit: int) -> int:
    """How deeply a parsed JSON value nests arrays and objects (0 for a scalar, 1 for a flat
    object or list); stops counting once past ``limit``. Iterative: no recursion of its own."""
    deepest = 0
    stack = [(value, 1)] if type(value) is dict or type(value) is list else []
    pop, push = stack.pop, stack.append
    while stack:
        v, d = pop()
        if d > deepest:
            deepest = d
            if d > limit:
                return d
        for x in (v.values() if type(v) is dict else v):
            if type(x) is dict or type(x) is list:
                push((x, d + 1))
    return deepest


async def read_json(request: Request, max_bytes: int, max_depth: int, setting: str = "max_body_bytes") -> Any:
    """The request's JSON body: at most ``max_bytes`` (also after un-gzipping ``Content-Encoding:
    gzip``) and nested at most ``max_depth`` deep, or :class:`BadRequest` saying which bound."""
    too_big = BadRequest("body", f"larger than {max_bytes} bytes ({setting})", 413)
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    if not size:
        raise BadRequest("body", "empty: send a JSON object")
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflate.decompress(raw, max_bytes + 1)
        except zlib.error as exc:
            raise BadRequest("body", f"Content-Encoding is gzip but the body is not: {exc}") from None
        if len(raw) > max_bytes or inflate.unconsumed_tail:
            raise BadRequest("body", f"larger than {max_bytes} bytes once un-gzipped ({setting})", 413)
    elif encoding not in ("identity", ""):
        raise BadRequest("body", f"Content-Encoding {encoding!r} is not supported (gzip or none)", 415)
    try:
        value = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _NumberRefused as exc:
        raise BadRequest("body", str(exc)) from None
    except RecursionError:
        raise BadRequest("body", f"nested far more than {max_depth} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body", f"not valid JSON: {exc}") from None
    depth = json_depth(value, max_depth)
    if depth > max_depth:
        raise BadRequest("body", f"nested more than {max_depth} levels deep (at most {max_depth})")
    return value


#: Digits of a JSON integer: more is no count, id or timestamp anyone sends (and Python would
#: carry it exactly until some float() conversion overflows).
MAX_JSON_INT_DIGITS = 40


class _NumberRefused(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text) > MAX_JSON_INT_DIGITS:
        raise _NumberRefused(f"an integer of {len(text)} digits; at most {MAX_JSON_INT_DIGITS}")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberRefused(f"the number {text[:40]} is out of range")
    return value


def _parse_constant(text: str) -> float:
    raise _NumberRefused(f"{text} is not a JSON number")

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
