"""The Node.js client (clients/node) and the official Segment Node SDK: ``node --test`` against
real hubs it starts itself, run from pytest so that the README's test command covers them and a
Node failure fails the suite. ``scripts/install-test-deps.sh`` installs the Node dependencies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "clients" / "node"


def run_node_tests(*files: str, cwd: Path = NODE_DIR) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run sh scripts/install-test-deps.sh")
    env = {**os.environ, "SHOPKEEPER_BIN": str(Path(sys.executable).with_name("shopkeeper"))}
    return subprocess.run([node, "--test", "--test-concurrency=1", *files], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_node_client_and_segment_node_sdk_pass_against_a_real_hub() -> None:
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"{NODE_DIR}/node_modules is missing: run sh scripts/install-test-deps.sh (npm ci)")
    got = run_node_tests()
    assert got.returncode == 0, got.stdout[-8000:] + got.stderr[-4000:]
    assert "# fail 0" in got.stdout and "# pass 0" not in got.stdout, got.stdout[-2000:]


def test_a_failing_node_test_fails_the_wrapper(tmp_path: Path) -> None:
    (tmp_path / "t.test.js").write_text("require('node:test')('no', () => { throw new Error('boom'); });\n")
    got = run_node_tests("t.test.js", cwd=tmp_path)
    assert got.returncode != 0 and "# fail 1" in got.stdout
