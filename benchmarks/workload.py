"""The deterministic reference workload of WORKLOAD.md, shared by every benchmark.

``iter_events(n)`` yields raw event dicts exactly as a touch point would send them (what
:func:`shopkeeper.events.validate_event` accepts), the same sequence for the same seed on
every machine and Python version:

* customers ``0 .. n_customers-1``, each known by ``customer_email(i)``; which customer an
  event belongs to is drawn Zipf-like (exponent ``s = 1.1``) over a seeded permutation, so
  the hottest customer gets ~13% of all events at 100k customers;
* mix by count: 70% ``page_view`` (web, also carries the customer's stable cookie),
  10% ``email_open``, 5% ``email_click``, 5% ``order`` (amount 5.00–499.99, items 1–5),
  2% ``call``, 8% ``Decide`` reads — yielded as ``{"kind": "decide", "identities": …}``
  only when ``with_decide=True``; otherwise they are skipped (the random stream is the
  same either way, so the writes are identical with and without reads);
* every event carries a 128-bit random hex idempotency key from the seeded RNG and a
  timestamp in seconds (1 ms apart, starting at the beginning of the previous UTC day, or at
  the fixed 2023 instant with ``SHOPKEEPER_BENCH_T0=legacy``: see ``_t0``);
* with probability ``redeliver`` after each write, a recent write is sent again unchanged
  (same idempotency key), as an at-least-once sender would; the store must count it once.

``n_events`` counts what is yielded (writes, redeliveries and, if asked, decide reads).
Pure Python (no numpy): the Zipf CDF is precomputed once per (n_customers, s) and sampled
with ``bisect``; generation costs a few µs per event.

Run it to print a sample and the mix: ``python benchmarks/workload.py 100000``.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

ZIPF_S = 1.1
LEGACY_T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z: fixed, in the past, so parse_ts accepts it


def _t0() -> float:
    """The workload's start: "live" (the default) unless ``SHOPKEEPER_BENCH_T0`` says otherwise.

    Live, the workload starts at the beginning of the previous UTC day, so the events are "now"
    to a hub judging segments at the wall clock, as a live hub's are. ``SHOPKEEPER_BENCH_T0=legacy``
    selects the fixed 2023 start every figure up to docs/benchmarks.md §71 was measured with (the
    default until the ninth session): with it every customer's first page view of a run looks three
    years after their last and joins ``lapsed_visitors`` — churn a live hub never has, which inflates
    the processors' share of the CPU (§67, §71). A number is taken as the start itself. Stores built
    for one start are cached under names that carry it (``t0_tag``)."""
    v = os.environ.get("SHOPKEEPER_BENCH_T0", "").strip().lower()
    if v in ("", "live"):
        return float((int(time.time()) // 86400 - 1) * 86400)
    if v in ("legacy", "2023"):
        return LEGACY_T0
    return float(v)


T0 = _t0()


def t0_tag() -> str:
    """A suffix for cached stores built for ``T0``: empty for the legacy start (the old names)."""
    return "" if T0 == LEGACY_T0 else f"_t0-{int(T0)}"


TICK = 0.001  # simulated seconds between events

#: (kind, cumulative probability) — the WORKLOAD.md mix
MIX: tuple[tuple[str, float], ...] = (
    ("page_view", 0.70),
    ("email_open", 0.80),
    ("email_click", 0.85),
    ("order", 0.90),
    ("call", 0.92),
    ("decide", 1.00),
)
_MIX_KINDS = tuple(k for k, _ in MIX)
_MIX_CUM = tuple(p for _, p in MIX)

_REFERRERS = ("", "https://www.google.com/", "https://www.bing.com/", "https://news.example.org/",
              "https://shop.example.com/")
_ORDER_CHANNELS = ("web", "app", "store")
_REDELIVER_WINDOW = 256  # redeliveries pick among this many most recent writes


def customer_email(i: int) -> str:
    """The email identity of customer ``i`` (already in normalised form)."""
    return f"c{i:07d}@example.com"


def customer_cookie(i: int) -> str:
    """The stable web cookie of customer ``i`` (sent with web page views); sorts like ``i``
    so that a bulk build appends to the identity index instead of scattering over it."""
    return f"ck{i:07d}{(i * 2654435761) & 0xFFFFFFFF:08x}"


def make_event(kind: str, cust: int, seq: int, ts: float, rng: random.Random) -> dict[str, Any]:
    """One raw write event of ``kind`` for customer ``cust`` (no idempotency key yet)."""
    randrange = rng.randrange
    email = customer_email(cust)
    if kind == "page_view":
        return {"type": "page_view", "channel": "web", "ts": ts,
                "identities": {"email": email, "cookie": customer_cookie(cust)},
                "data": {"url": f"https://shop.example.com/p/{randrange(5000)}",
                         "referrer": _REFERRERS[randrange(len(_REFERRERS))],
                         "session": f"s{cust:x}-{seq // 1800:x}"}}
    if kind == "email_open":
        return {"type": "email_open", "channel": "email", "ts": ts, "identities": {"email": email},
                "data": {"campaign": f"cmp{randrange(40):02d}", "message_id": f"m{seq:x}"}}
    if kind == "email_click":
        return {"type": "email_click", "channel": "email", "ts": ts, "identities": {"email": email},
                "data": {"campaign": f"cmp{randrange(40):02d}", "message_id": f"m{seq:x}",
                         "link": f"https://shop.example.com/promo/{randrange(200)}"}}
    if kind == "order":
        return {"type": "order", "channel": _ORDER_CHANNELS[randrange(3)], "ts": ts,
                "identities": {"email": email},
                "data": {"order_id": f"o{seq:x}", "amount": randrange(500, 50000) / 100,
                         "items": randrange(1, 6), "currency": "EUR"}}
    if kind == "call":
        return {"type": "call", "channel": "phone", "ts": ts, "identities": {"email": email},
                "data": {"duration": randrange(20, 1800), "agent": f"agent{randrange(40):02d}",
                         "direction": "inbound" if rng.random() < 0.8 else "outbound"}}
    raise ValueError(f"not a write kind: {kind!r}")


def draw_kind(rng: random.Random, writes_only: bool = False) -> str:
    """A kind drawn from the WORKLOAD.md mix (``writes_only``: renormalised without decide)."""
    if writes_only:
        return _MIX_KINDS[bisect_right(_MIX_CUM, rng.random() * _MIX_CUM[-2])]
    return _MIX_KINDS[bisect_right(_MIX_CUM, rng.random())]


@lru_cache(maxsize=8)
def zipf_cdf(n: int, s: float = ZIPF_S) -> tuple[float, ...]:
    """Cumulative Zipf weights over ranks 1..n, normalised so the last is 1.0."""
    acc = list(itertools.accumulate(1.0 / (k ** s) for k in range(1, n + 1)))
    total = acc[-1]
    return tuple(a / total for a in acc)


@lru_cache(maxsize=8)
def _permutation(n: int, seed: int) -> tuple[int, ...]:
    perm = list(range(n))
    random.Random(f"shopkeeper-perm-{seed}").shuffle(perm)
    return tuple(perm)


def hottest_customer(n_customers: int = 100_000, seed: int = 42) -> int:
    """The customer drawn at Zipf rank 1 (gets ~13% of events at 100k customers)."""
    return _permutation(n_customers, seed)[0]


def iter_events(
    n_events: int,
    n_customers: int = 100_000,
    seed: int = 42,
    redeliver: float = 0.002,
    with_decide: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield ``n_events`` raw events (see module docstring); deterministic for ``seed``."""
    rng = random.Random(seed)
    rand = rng.random
    randrange = rng.randrange
    bits = rng.getrandbits
    cdf = zipf_cdf(n_customers, ZIPF_S)
    perm = _permutation(n_customers, seed)
    last_rank = n_customers - 1
    recent: list[dict[str, Any]] = []
    n_recent = 0
    produced = 0
    seq = 0
    while produced < n_events:
        seq += 1
        rank = bisect_right(cdf, rand())
        cust = perm[rank if rank <= last_rank else last_rank]
        kind = _MIX_KINDS[bisect_right(_MIX_CUM, rand())]
        if kind == "decide":
            if with_decide:
                produced += 1
                yield {"kind": "decide", "identities": {"email": customer_email(cust)}}
            continue
        ts = round(T0 + seq * TICK, 3)
        key = f"{bits(128):032x}"
        ev = make_event(kind, cust, seq, ts, rng)
        ev["idempotency_key"] = key
        produced += 1
        yield ev
        if n_recent < _REDELIVER_WINDOW:
            recent.append(ev)
            n_recent += 1
        else:
            recent[seq % _REDELIVER_WINDOW] = ev
        if redeliver and rand() < redeliver and produced < n_events:
            again = recent[randrange(n_recent)]
            produced += 1
            yield {**again, "identities": dict(again["identities"]), "data": dict(again["data"])}


def _summary(n: int) -> None:
    kinds: Counter[str] = Counter()
    people: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for ev in iter_events(n, with_decide=True):
        kinds[ev.get("type", "decide")] += 1
        people[ev["identities"]["email"]] += 1
        if "idempotency_key" in ev:
            keys[ev["idempotency_key"]] += 1
    print({k: round(v / n, 4) for k, v in kinds.most_common()})
    email, hits = people.most_common(1)[0]
    print(f"hottest {email}: {hits / n:.3%}; redelivered: {sum(v - 1 for v in keys.values())}")
    print(next(iter_events(1)))


if __name__ == "__main__":
    _summary(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
