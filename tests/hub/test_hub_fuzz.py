"""Fuzzing every RPC of a real ``shopkeeper serve`` (issue 12).

Requests come from :mod:`shopkeeper.fuzz` (strategies built from the proto descriptors):
valid-shaped, hostile-valued and raw bytes. Asserted: no UNKNOWN or INTERNAL, health SERVING
throughout, no ERROR in the hub's log, SIGTERM then exits within grace + 5 s, and every
customer in the store loads afterwards. Seeded and derandomized: a failure reproduces, and
hypothesis shrinks it to the smallest call that shows it. ``SHOPKEEPER_FUZZ_EXAMPLES`` scales
the run (each example is ``CALLS_PER_EXAMPLE`` calls); ``benchmarks/fuzz_hub.py`` runs 50,000.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from shopkeeper.fuzz import CRASH_CODES, calls, send
from shopkeeper.hub.config import SCOPES, hash_key

from .test_hub_lifecycle import wait_healthy

pytestmark = pytest.mark.e2e

KEY = "sk_fuzz_test"
GRACE = 3
CALLS_PER_EXAMPLE = 20
EXAMPLES = int(os.environ.get("SHOPKEEPER_FUZZ_EXAMPLES", "110"))  # x 20 = 2,200 calls per CI run


def start_serve(tmp_path: Path, port: int) -> subprocess.Popen:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"api_keys:\n  - name: fuzz\n    key_sha256: {hash_key(KEY)}\n"
                   f"    scopes: [{', '.join(SCOPES)}]\n")
    return subprocess.Popen(
        [sys.executable, "-c", "from shopkeeper.cli import main; main()", "serve", "--store",
         f"file://{tmp_path}/Data.fs", "--listen", f"127.0.0.1:{port}", "--config", str(cfg),
         "--grace", str(GRACE), "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "hub.log", "ab"),  # noqa: SIM115
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from .conftest import free_port

    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    proc = start_serve(tmp, port)
    try:
        ch = wait_healthy(port, proc, timeout=60)
        yield {"proc": proc, "channel": ch, "tmp": tmp, "codes": Counter(), "crashes": []}
        ch.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serving(channel: grpc.Channel) -> bool:
    r = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return r.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
@seed(20261201)
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, print_blob=True,
          suppress_health_check=list(HealthCheck))
@given(batch=st.lists(calls(), min_size=CALLS_PER_EXAMPLE, max_size=CALLS_PER_EXAMPLE))
def test_fuzz_every_rpc(hub_process: dict[str, Any], batch: list) -> None:
    ch = hub_process["channel"]
    md = (("x-api-key", KEY),)
    for rpc, payloads in batch:
        code = send(ch, md, rpc, payloads)
        hub_process["codes"][code] += 1
        assert code not in CRASH_CODES, f"{rpc.path} answered {code} to {payloads!r}"
    assert _serving(ch), "health is not SERVING"


@pytest.mark.slow
def test_after_fuzzing_the_hub_stops_cleanly_and_every_customer_loads(hub_process: dict[str, Any]) -> None:
    """Runs after test_fuzz_every_rpc (same module, same hub process)."""
    codes = hub_process["codes"]
    assert sum(codes.values()) >= CALLS_PER_EXAMPLE * min(EXAMPLES, 100), codes
    proc, tmp = hub_process["proc"], hub_process["tmp"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(GRACE + 5) == 0
    errors = [json.loads(line) for line in (tmp / "hub.log").read_text().splitlines()
              if line.startswith("{") and json.loads(line)["level"] in ("error", "critical")]
    assert errors == []
    from shopkeeper.store import Store

    with Store.open(f"file://{tmp}/Data.fs") as store, store.read() as f:
        n = 0
        for c in f.customers.values():
            c._p_activate()
            assert c.id
            n += 1
        assert n > 0  # the valid events among the fuzz were stored
