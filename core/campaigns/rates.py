"""Rates as campaign files write them (``50/s``, ``600/min``, ``10000/h``): parsed in one place."""

from __future__ import annotations

from typing import Any

_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(value: Any) -> float:
    """``50/s``, ``600/min``, ``10000/h`` (or a bare number: per second) -> messages per second;
    ``ValueError`` saying what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a rate (50/s, 600/min, 10000/h)")
    if isinstance(value, (int, float)):
        n, per = float(value), 1.0
    else:
        num, sep, unit = str(value).strip().partition("/")
        try:
            n = float(num)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate (50/s, 600/min, 10000/h)") from None
        per = _PER.get(unit.strip().lower()) if sep else 1.0
        if per is None:
            raise ValueError(f"{value!r}: per {unit.strip()!r}? write /s, /min or /h")
    if not n > 0:
        raise ValueError(f"{value!r}: a rate must be more than 0")
    return n / per


__all__ = ["parse_rate"]
