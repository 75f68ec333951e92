"""Stable keys for rows that carry none: an import must count a re-imported file once, so what a
file does not say (an idempotency key, an order id) is derived from the row's own content,
the same every time (see :class:`~.mapping.RowMapper` for how repeats of an identical row are
numbered)."""

from __future__ import annotations

import hashlib
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

#: ``json.dumps(…, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)``, the
#: same text (keys of earlier imports hold). ``JSONEncoder.encode`` builds its C encoder again on
#: every call, a third of a CDNOW row's key; this one is built once. No circular-reference markers:
#: a row comes from parsed text (JSON or CSV cells), which cannot hold a cycle.
_C_CANONICAL = (c_make_encoder(None, str, encode_basestring, None, ":", ",", True, False, True)
                if c_make_encoder is not None else None)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


def canonical_json(content: Any) -> str:
    """The canonical JSON text of a row's content (what :func:`derived_key` hashes)."""
    if _C_CANONICAL is None or isinstance(content, str):  # a bare string: the C encoder wants a container
        return _CANONICAL(content)
    return "".join(_C_CANONICAL(content, 0))


def derived_key(content: Any) -> str:
    """``import:<sha256>`` of canonical JSON: the same row always gets the same key."""
    return "import:" + hashlib.sha256(canonical_json(content).encode()).hexdigest()


def derived_order_id(key: str, *, derived: bool) -> str:
    """A stable order id from the row's key (``import-<20 hex>[-n]``)."""
    if derived:
        digest, _, repeat = key[len("import:"):].partition("#")
        return f"import-{digest[:20]}" + (f"-{repeat}" if repeat else "")
    return "import-" + hashlib.sha256(key.encode()).hexdigest()[:20]
