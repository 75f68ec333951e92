"""Stable keys for rows that carry none: an import must count a re-imported file once, so what a
file does not say (an idempotency key, an order id) is derived from the row's own content,
the same every time (see :class:`~.mapping.RowMapper` for how repeats of an identical row are
numbered)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: ``json.dumps(…, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)``
#: with the encoder built once instead of per row (the same text: keys of earlier imports hold)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


def derived_key(content: Any) -> str:
    """``import:<sha256>`` of canonical JSON: the same row always gets the same key."""
    text = _CANONICAL(content)
    return "import:" + hashlib.sha256(text.encode()).hexdigest()


def derived_order_id(key: str, *, derived: bool) -> str:
    """A stable order id from the row's key (``import-<20 hex>[-n]``)."""
    if derived:
        digest, _, repeat = key[len("import:"):].partition("#")
        return f"import-{digest[:20]}" + (f"-{repeat}" if repeat else "")
    return "import-" + hashlib.sha256(key.encode()).hexdigest()[:20]
