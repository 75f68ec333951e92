"""``probe_processors`` without ``--dir`` works in a temp directory of its own (a seed store and a work
copy: ~110 MB at 20k customers) and removes it when it ends — it left one behind per run before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_processors.py"


@pytest.mark.e2e
def test_the_probe_removes_its_temp_dir(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    got = subprocess.run([sys.executable, str(PROBE), "--customers", "200", "--events", "100", "--batch", "50",
                          "--variants", "bare", "--repeat", "1"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    assert "200 customers, 100 events" in got.stdout
    assert list(tmp_path.iterdir()) == []
