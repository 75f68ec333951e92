"""Propensities learned online from outcomes: Beta-Bernoulli per offer × segment.

Every outcome that comes back as an interaction is counted in ``analysis['outcomes']``
(conflict-free ``Length`` counters) under ``(offer, segment, outcome)`` and under
``(offer, '_all', outcome)``:

* ``offer_shown`` → ``shown``; ``offer_accepted`` → ``accepted``; ``offer_declined`` → ``declined``
  (a shown offer with neither answer counts as ignored: a failure);
* ``email_open`` → ``shown`` and ``email_click`` → ``accepted`` under the offer id ``email:<campaign>``.

The probability that an offer is accepted when shown is Beta-distributed: for everyone,
``Beta(1 + accepted, 1 + trials − accepted)``; for one segment the prior is that global
posterior's mean with a strength of :data:`PRIOR_STRENGTH` pseudo-trials (partial pooling, so a
small segment starts from what everyone did instead of from 50%). The posterior mean is a
calibrated probability; ``Decide`` samples from the posterior (Thompson sampling) to explore.
"""

from __future__ import annotations

import random
import time
from typing import Any

from .state import bump, count

ALL = "_all"
NONE = "_none"
PRIOR_STRENGTH = 10.0
OUTCOME_OF_EVENT = {"offer_shown": "shown", "offer_accepted": "accepted", "offer_declined": "declined",
                    "email_open": "shown", "email_click": "accepted"}


def record(outcomes: Any, offer: str, segment: str, outcome: str, n: int = 1) -> None:
    bump(outcomes, (offer, ALL, outcome), n)
    if segment != ALL:
        bump(outcomes, (offer, segment, outcome), n)


def counts(outcomes: Any, offer: str, segment: str = ALL) -> tuple[int, int, int]:
    """(trials, accepted, declined) for offer × segment."""
    shown = count(outcomes, (offer, segment, "shown"))
    acc = count(outcomes, (offer, segment, "accepted"))
    dec = count(outcomes, (offer, segment, "declined"))
    return max(shown, acc + dec), acc, dec


def posterior(outcomes: Any, offer: str, segment: str = ALL) -> tuple[float, float]:
    """Beta(α, β) of P(accept | shown) for offer × segment, partially pooled towards everyone."""
    n, k, _ = counts(outcomes, offer, ALL)
    a, b = 1.0 + k, 1.0 + n - k
    if segment in (ALL, NONE):
        return a, b
    mean = a / (a + b)
    ns, ks, _ = counts(outcomes, offer, segment)
    return PRIOR_STRENGTH * mean + ks, PRIOR_STRENGTH * (1 - mean) + ns - ks


class PosteriorCache:
    """Posteriors read through a short-lived in-process cache: ``Decide`` reads hundreds per call,
    outcomes change them slowly; ``ttl`` seconds of staleness is the price of a fast ``Decide``."""

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._data: dict[tuple[str, str], tuple[float, float]] = {}
        self._at = 0.0

    def get(self, outcomes: Any, offer: str, segment: str) -> tuple[float, float]:
        t = time.monotonic()
        if t - self._at > self.ttl:
            self._data.clear()
            self._at = t
        key = (offer, segment)
        v = self._data.get(key)
        if v is None:
            v = self._data[key] = posterior(outcomes, offer, segment) if outcomes is not None else (1.0, 1.0)
        return v


def thompson(a: float, b: float, rng: random.Random | None = None) -> float:
    return (rng or random).betavariate(a, b)


def table(outcomes: Any) -> list[dict[str, Any]]:
    """Every offer × segment with counts and posterior mean, for reports."""
    keys = sorted({(o, s) for (o, s, _k) in outcomes.keys()}) if outcomes is not None else []
    rows = []
    for o, s in keys:
        n, k, d = counts(outcomes, o, s)
        a, b = posterior(outcomes, o, s)
        rows.append({"offer": o, "segment": s, "shown": n, "accepted": k, "declined": d,
                     "p_accept": a / (a + b), "alpha": a, "beta": b})
    return rows
