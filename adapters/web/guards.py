"""Cheap checks that run before an event is parsed: crawlers, rate limits, body size and nesting.

Shared by the HTTP adapters (the web collector and the Segment-spec endpoint): a request body is
read with its size bounded, un-gzipped with the inflated size bounded, and its nesting depth
measured on the raw bytes **before** ``json.loads`` sees it, so no input can make the parser
recurse or allocate without bound; every refusal is a :class:`BadRequest` (4xx), never a 5xx.
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
from itertools import accumulate
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

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\x00\x00")


async def record_committed(batcher: Any, events: list[dict[str, Any]], timeout: float, resend_with: str) -> list[Any]:
    """Every event through ``batcher`` (an :class:`~shopkeeper.adapters.base.EventBatcher`), answered
    only after its commit; a hub that does not commit within ``timeout`` or refuses is a 503 telling
    the sender to retry with the same ids (``resend_with`` names them: "messageIds", "event ids")."""
    from shopkeeper.adapters.base import HubError

    try:
        return await asyncio.wait_for(asyncio.gather(*(batcher.record(e) for e in events)), timeout)
    except TimeoutError:
        raise BadRequest("hub", f"the hub did not commit in time; retry with the same {resend_with}", 503,
                         {"Retry-After": "1"}) from None
    except HubError as exc:
        raise BadRequest("hub", f"the hub refused the request: {exc}", 503, {"Retry-After": "1"}) from None


def json_depth(raw: bytes) -> int:
    """How deeply the JSON text ``raw`` nests arrays and objects, without parsing it.

    Strings are dropped first (brackets inside them do not count); what remains is the
    brackets, usually a handful per event, so this costs a few regex passes over the body.
    """
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw))
    if not brackets:
        return 0
    return max(accumulate(1 if b else -1 for b in brackets.translate(_DEPTH_STEP)))


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
    depth = json_depth(raw)
    if depth > max_depth:
        raise BadRequest("body", f"nested {depth} levels deep, at most {max_depth}")
    try:
        return json.loads(raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _NumberRefused as exc:
        raise BadRequest("body", str(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body", f"not valid JSON: {exc}") from None


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
