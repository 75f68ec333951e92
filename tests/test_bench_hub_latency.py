"""bench_hub's latency phases on a store given as a URI (``--latency-uri``, the way the 10M run on
PostgreSQL is measured): the store is used as is, so no in-process comparison is computed — the run
must still end with its figures (it crashed on the missing comparison, the lead's 1M run of 07:28)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a hub, a no-op server and a load process

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_latency_phases_on_a_store_uri_end_with_their_figures(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from bench_store_1m import build_store

    store = tmp_path / "Data.fs"
    build_store(str(store), 40, 2, txn=40, log=lambda m: None)
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_hub.py"), "--skip-ingest", "--latency-uri", f"file://{store}",
         "--latency-customers", "40", "--rate", "20", "--seconds", "1", "--warmup", "0.5", "--procs", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    lat = json.loads(out.read_text())["latency"]
    assert "inprocess" not in lat
    got = lat["GetCustomer"]
    assert got["ok"] == got["sent"] > 0 and not got["errors"]
    assert "cpu_ratio_to_inprocess" not in got
    assert "hub gc" in proc.stdout
    # the FileStorage file is read in before the phases (a cold Data.fs made the 1M p99 a disk figure, §99)
    assert lat["store_file_read_in_s"] is not None and lat["store_file_resident_at_start"] == 1.0
    assert "in the page cache, read in" in proc.stdout


def test_latency_phases_on_a_private_postgresql_copy_of_the_store(tmp_path: Path) -> None:
    """``--latency-pg``: the file store's current records copied into a private PostgreSQL, served,
    measured, and the cluster stopped and removed at the end."""
    from shopkeeper.servers import pg_bindir

    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed")
    sys.path.insert(0, str(BENCH))
    from bench_store_1m import build_store, run_hub_steps

    store = tmp_path / "Data.fs"
    build_store(str(store), 40, 2, txn=40, log=lambda m: None)
    run_hub_steps(str(store))  # as bench_store_1m leaves its stores: a hub on PostgreSQL does not evolve them
    out, scratch = tmp_path / "out.json", tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_hub.py"), "--skip-ingest", "--latency-store", str(store), "--latency-pg",
         "--latency-customers", "40", "--rate", "20", "--seconds", "1", "--warmup", "0.5", "--procs", "1",
         "--tmp-dir", str(scratch), "--json", str(out)],
        capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "into PostgreSQL" in proc.stdout
    got = json.loads(out.read_text())["latency"]["GetCustomer"]
    assert got["ok"] == got["sent"] > 0 and not got["errors"]
    assert not list(scratch.iterdir())  # the cluster and the copy are gone
