"""bench_web reports CPU per acknowledged event by thread and process, checks that every acknowledged
event is on disk, and leaves no temporary store behind (docs/benchmarks.md §92)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def test_a_short_run_reports_cpu_by_thread_and_removes_its_store(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "web.json"
    env = {**os.environ, "TMPDIR": str(scratch)}  # PYTHONPATH kept: the bench imports the shopkeeper under test
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_web.py"), "--seconds", "1",
                          "--connections", "2", "--batch", "5", "--visitors", "10", "--json", str(out)],
                         env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    got = json.loads(out.read_text())
    assert got["committed_ok"] is True
    cpu = got["cpu_us_per_event"]
    assert cpu["writer"] > 0 and cpu["http"] > 0 and cpu["loadgen"] > 0
    assert abs(cpu["total"] - cpu["hub"] - cpu["loadgen"]) < 1e-6
    assert "CPU per event   total" in run.stdout and "every acknowledged event committed: yes" in run.stdout
    assert got["handovers"] >= 1
    assert not list(scratch.glob("bench-web-*")), "the temporary store was left behind"
