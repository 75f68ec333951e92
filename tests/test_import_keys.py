"""Derived keys must never change between versions: a file imported before must count once when
imported again. The key is the sha256 of ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False, default=str)`` of the row; the importer builds that encoder once."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shopkeeper.importer.keys import derived_key


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
