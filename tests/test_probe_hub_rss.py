"""probe_hub_rss on a store URI served as is (issue 17's 10M RSS method): a second run with the same
seed finds every event already stored, so its writer only deduplicates — the eleventh session's 10M
figure was taken so (300,000 duplicates, 0 applied) without a word. The probe now says so, ``--seed``
makes the writer write again, and the cache bounds it ran with are passed to the hub and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a hub process and its load, three times

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _probe(store: Path, out: Path, *extra: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "probe_hub_rss.py"), "--uri", f"file://{store}", "--customers", "40",
         "--events", "300", "--read-rate", "5", "--every", "1", "--json", str(out), *extra],
        capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_a_rerun_with_the_same_seed_is_named_and_another_seed_writes(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from bench_store_1m import build_store

    store = tmp_path / "Data.fs"
    build_store(str(store), 40, 2, txn=40, log=lambda m: None)

    first, out1 = _probe(store, tmp_path / "1.json")
    assert first["ingest"]["applied"] > 0 and "warning" not in out1

    again, out2 = _probe(store, tmp_path / "2.json")
    assert again["ingest"]["applied"] == 0 and again["ingest"]["duplicates"] > 0
    assert "all duplicates" in out2 and "--seed" in out2

    other, out3 = _probe(store, tmp_path / "3.json", "--seed", "7", "--read-cache-objects", "500",
                         "--cache-objects", "2000", "--census")
    assert other["ingest"]["applied"] > 0 and "warning" not in out3
    assert (other["seed"], other["read_cache_objects"], other["cache_objects"]) == (7, 500, 2000)
    # --census: what the hub's memory is made of at each line (memcensus: §99 named the 10M growth with it)
    memory = other["samples"][-1]["memory"]
    roles = [c[0] for c in memory["zodb"]["connections"]]
    assert "read" in roles and "other" in roles
    assert memory["zodb"]["all"] >= memory["zodb"]["loaded"] > 0
    assert memory["python"]["gc_objects"] > 0 and memory["python"]["by_type"]
    assert "zodb:" in out3 and "by type:" in out3
