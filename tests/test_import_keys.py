"""Derived keys must never change between versions: a file imported before must count once when
imported again. The key is the sha256 of ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False, default=str)`` of the row; the importer builds that encoder once."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shopkeeper.importer.keys import canonical_interaction, canonical_json, derived_key, key_of_text


@pytest.mark.parametrize("content", [
    {"type": "order", "ts": 852076800000000, "identities": [("crm_id", "00001")], "data": {"amount": 11.77, "items": 1},
     "touchpoint": "", "traits": {}, "customer": None, "origin": ""},
    {"b": 1, "a": [1.5, float("nan"), float("inf"), 1e300, -0.0, True, None, "é\u2028\"x\\", "\U0001f600"],
     "z": {"y": datetime(2020, 1, 1, tzinfo=UTC), "x": 2 ** 70, "w": (1, 2)}},
    [1, {"b": 2, "a": 1}], "text", 5, {},
])
def test_a_derived_key_is_the_sha256_of_the_documented_json(content: Any) -> None:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    assert derived_key(content) == "import:" + hashlib.sha256(text.encode()).hexdigest()


def test_a_known_row_keeps_its_key() -> None:
    """Pinned: the key a CDNOW row got in earlier versions (so a re-import finds it)."""
    row = {"type": "order", "channel": "store", "ts": 852076800000000, "identities": [("crm_id", "00001")],
           "data": {"amount": 11.77, "items": 1}, "touchpoint": "", "traits": {}, "customer": None, "origin": ""}
    text = ('{"channel":"store","customer":null,"data":{"amount":11.77,"items":1},"identities":[["crm_id","00001"]],'
            '"origin":"","touchpoint":"","traits":{},"ts":852076800000000,"type":"order"}')
    assert derived_key(row) == "import:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.e2e
def test_a_rows_derived_key_does_not_depend_on_the_process_hash_seed() -> None:
    """A CSV row with several identity columns keeps them in column order, so its derived key is
    the same in every process: a re-import of the file counts each row once. They were taken in
    the order of a set of namespace names, which follows ``PYTHONHASHSEED`` (random per process)."""
    import os
    import subprocess
    import sys

    probe = ("from shopkeeper.importer.mapping import RowMapper, MapOptions\n"
             "ev = RowMapper(MapOptions()).prepare({'type': 'page_view', 'ts': '1700000000',\n"
             "    'email': 'a@example.com', 'phone': '+4915112345678', 'cookie': 'c1', 'data.url': '/x'},\n"
             "    from_csv=True)\n"
             "print(ev.identities, ev.idempotency_key)\n")
    seen = set()
    for seed in ("1", "4"):  # two seeds that ordered the three names differently
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
        seen.add(done.stdout.strip())
    assert len(seen) == 1, seen
    assert seen.pop().startswith("[('email', 'a@example.com'), ('phone', '+4915112345678'), ('cookie', 'c1')]")


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)  # quotes, controls, \u2028, astral
_VALUE = st.one_of(_TEXT, st.integers(min_value=-2 ** 80, max_value=2 ** 80), st.floats(), st.booleans(), st.none(),
                   st.lists(st.integers(), max_size=2), st.dictionaries(_TEXT, st.integers(), max_size=2))


@settings(max_examples=400, deadline=None)
@example("order", "store", 1, [("crm_id", "1")], {"amount": float("nan")})  # the encoder's NaN, not repr's nan
@example("order", "store", 1, [("crm_id", "1")], {"amount": float("-inf")})
@example("order", "store", 1, [["crm_id", "1"]], {"vip": True, "note": None, "n": 2 ** 70, "x": -0.0})
@example("order", "store", True, [("crm_id", "1")], {})  # a bool is no time
@example(None, "store", 1, [("crm_id", "1"), ("email", "a\u2028\"b")], {"é": "\x00"})
@given(type_=st.one_of(_TEXT, st.none()), channel=_TEXT,
       ts=st.one_of(st.integers(min_value=-2 ** 64, max_value=2 ** 64), st.floats(), st.booleans()),
       identities=st.lists(st.one_of(st.tuples(_TEXT, _TEXT), st.lists(_TEXT, min_size=1, max_size=3),
                                     st.tuples(_TEXT, st.integers())), max_size=3),
       data=st.dictionaries(_TEXT, _VALUE, max_size=4))
def test_the_interaction_template_writes_the_encoders_text_or_declines(type_, channel, ts, identities, data) -> None:  # type: ignore[no-untyped-def]
    """The template an interaction row's key is written from (``canonical_interaction``) gives exactly
    the encoder's text for the same content, or None (the encoder then writes it): keys of files
    imported before hold."""
    content = {"type": type_, "channel": channel, "ts": ts, "identities": identities, "data": data,
               "touchpoint": "", "traits": {}, "customer": None, "origin": ""}
    text = canonical_interaction(type_, channel, ts, identities, data)
    if text is not None:
        assert text == canonical_json(content)
        assert key_of_text(text) == derived_key(content)
    plain = all(type(v) in (str, int) or type(v) is float and math.isfinite(v) for v in data.values())
    if type(type_) is str and type(ts) is int and plain and all(
            len(p) == 2 and all(type(x) is str for x in p) for p in identities):
        assert text is not None  # the plain rows take the template


def test_a_cdnow_row_takes_the_template() -> None:
    text = canonical_interaction("order", "store", 852076800000000, [("crm_id", "00001")],
                                 {"amount": 11.77, "items": 1})
    assert text == ('{"channel":"store","customer":null,"data":{"amount":11.77,"items":1},'
                    '"identities":[["crm_id","00001"]],"origin":"","touchpoint":"","traits":{},"ts":852076800000000,'
                    '"type":"order"}')
