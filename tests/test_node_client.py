"""The Node.js client (clients/node) and the official Segment Node SDK: ``node --test`` against
real hubs it starts itself, run from pytest so that the README's test command covers them and a
Node failure fails the suite. ``scripts/install-test-deps.sh`` installs the Node dependencies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

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


TSC_FLAGS = ("--noEmit", "--strict", "--pretty", "false", "--target", "es2020", "--module", "commonjs",
             "--moduleResolution", "node", "--lib", "es2020")


@pytest.mark.e2e
def test_typescript_types_compile_the_usage_and_refuse_a_wrong_type(tmp_path: Path) -> None:
    """index.d.ts under ``tsc --strict`` (clients/node's devDependency): the usage file a TypeScript
    user would write compiles, and a file with wrong types beside it fails on exactly those lines.
    One tsc run for both (tsc's start-up is most of its cost)."""
    tsc = NODE_DIR / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.fail(f"{tsc} is missing: run sh scripts/install-test-deps.sh (npm ci)")
    bad = tmp_path / "bad.ts"
    bad.write_text(f"import {{ Client }} from {json.dumps(str(NODE_DIR / 'index'))};\n"
                   "async function main(hub: Client): Promise<void> {\n"
                   "  const n: string = (await hub.getCustomer('c-1')).hardFacts.orders;\n"
                   "  await hub.record({ type: 'order', data: { amount: 5 } });\n"
                   "  await hub.decide({ customer: 'c-1', limit: '3' });\n"
                   "  console.log(n);\n"
                   "}\n"
                   "void main;\n")
    got = subprocess.run([str(tsc), *TSC_FLAGS, str(NODE_DIR / "test" / "types" / "usage.ts"), str(bad)],
                         capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    errors = [line for line in got.stdout.splitlines() if ": error TS" in line]
    assert got.returncode != 0 and errors, got.stdout + got.stderr
    assert all(line.split("(")[0].endswith("/bad.ts") for line in errors), errors  # the usage file is clean
    assert {line.split("(")[1].split(",")[0] for line in errors} == {"3", "4", "5"}, errors
    assert "Type 'number' is not assignable to type 'string'" in got.stdout
    assert "'identities' is missing" in got.stdout
