"""Stable keys for rows that carry none: an import must count a re-imported file once, so what a
file does not say (an idempotency key, an order id) is derived from the row's own content,
the same every time (see :class:`~.mapping.RowMapper` for how repeats of an identical row are
numbered)."""

from __future__ import annotations

import hashlib
import json
import math
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


def _scalar(value: Any) -> str | None:
    """A data value's canonical JSON when it is text or a finite number (as the encoder writes it:
    ``repr`` of an int or float), else None."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int or kind is float and math.isfinite(value):
        return repr(value)
    return None


def canonical_interaction(type_: Any, channel: Any, ts: Any, identities: Any, data: Any) -> str | None:
    """:func:`canonical_json` of an interaction row's key content — ``type``, ``channel``, ``ts``,
    ``identities``, ``data``, with an empty touchpoint, no traits, customer or origin (every row of a
    purchase file) — written from a template, or None when a value is not of the plain kinds the
    template writes (the caller then uses :func:`canonical_json`). The same text by construction
    (``tests/test_import_keys.py`` compares them on generated rows): the encoder visited a dict of
    nine keys, a list of pairs and the data for each row, ~a sixth of shaping a CDNOW row."""
    if not (type(type_) is str and type(channel) is str and type(ts) is int and type(data) is dict):
        return None
    ids = []
    for pair in identities:
        if len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            return None
        ids.append(f"[{encode_basestring(pair[0])},{encode_basestring(pair[1])}]")
    cells = []
    for name in sorted(data):
        if type(name) is not str:
            return None
        text = _scalar(data[name])
        if text is None:
            return None
        cells.append(f"{encode_basestring(name)}:{text}")
    return (f'{{"channel":{encode_basestring(channel)},"customer":null,"data":{{{",".join(cells)}}},'
            f'"identities":[{",".join(ids)}],"origin":"","touchpoint":"","traits":{{}},"ts":{ts!r},'
            f'"type":{encode_basestring(type_)}}}')


def key_of_text(text: str) -> str:
    """``import:<sha256>`` of a canonical JSON text (:func:`derived_key` of the content it encodes)."""
    return "import:" + hashlib.sha256(text.encode()).hexdigest()


def derived_key(content: Any) -> str:
    """``import:<sha256>`` of canonical JSON: the same row always gets the same key."""
    return "import:" + hashlib.sha256(canonical_json(content).encode()).hexdigest()


def derived_order_id(key: str, *, derived: bool) -> str:
    """A stable order id from the row's key (``import-<20 hex>[-n]``)."""
    if derived:
        digest, _, repeat = key[len("import:"):].partition("#")
        return f"import-{digest[:20]}" + (f"-{repeat}" if repeat else "")
    return "import-" + hashlib.sha256(key.encode()).hexdigest()[:20]
