"""bench_email runs its hub as ``shopkeeper serve`` runs it (``tune_process``: the serving collector
settings and a 1 ms GIL switch interval), as bench_sms and bench_hub do; ``--untuned`` keeps
CPython's defaults for the A/B (docs/benchmarks.md §88)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopkeeper.hub.collector import GC_GEN0_THRESHOLD, GIL_SWITCH_SECONDS

ROOT = Path(__file__).resolve().parent.parent
_PATH = ROOT / "benchmarks" / "bench_email.py"


def _run(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(_PATH), "--messages", "30", "--modes", "in-process", *args],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "[in-process] sent 30 (SMTP server received 30)" in proc.stdout, proc.stdout
    assert not list(tmp_path.glob("bench-email-*")), "the temporary directory was left behind"
    return proc.stdout


@pytest.mark.e2e
def test_the_bench_hub_is_tuned_as_shopkeeper_serve_and_untuned_on_request(tmp_path: Path) -> None:
    tuned = _run(tmp_path)
    assert (f"the hub process: collector threshold {GC_GEN0_THRESHOLD}, GIL switch interval "
            f"{GIL_SWITCH_SECONDS * 1000:g} ms (as shopkeeper serve)") in tuned, tuned
    untuned = _run(tmp_path, "--untuned")
    assert "GIL switch interval 5 ms (CPython's defaults)" in untuned, untuned
    assert "collector threshold 700," in untuned, untuned
