"""`shopkeeper serve` as a real process: kill -9 mid-stream loses no acknowledged event; SIGTERM drains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopkeeper._proto.v1 import admin_pb2, admin_pb2_grpc, interactions_pb2, interactions_pb2_grpc
from shopkeeper.hub.config import hash_key
from shopkeeper.testing import wait_for

from .conftest import event, free_port

pytestmark = pytest.mark.e2e

KEY = "sk_lifecycle_test"


def serve(tmp_path: Path, port: int) -> subprocess.Popen:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"api_keys:\n  - name: loader\n    key_sha256: {hash_key(KEY)}\n"
                   "    scopes: [interactions:write, admin, profiles:read]\n")
    return subprocess.Popen(
        [sys.executable, "-c", "from shopkeeper.cli import main; main()", "serve", "--store", f"file://{tmp_path}/Data.fs",
         "--listen", f"127.0.0.1:{port}", "--config", str(cfg), "--grace", "5"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "hub.log", "ab"),  # noqa: SIM115
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90) -> grpc.Channel:
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with {proc.returncode} before it was healthy")
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        return r.status == health_pb2.HealthCheckResponse.SERVING

    wait_for(serving, timeout, 0.1, "the hub to report SERVING", retry_on=(grpc.RpcError,))
    return ch


def batches(n_batches: int, size: int) -> list[interactions_pb2.EventBatch]:
    return [interactions_pb2.EventBatch(batch_id=str(b), events=[
        event(email=f"u{(b * size + i) % 97}@example.com", key=f"ev-{b}-{i}") for i in range(size)])
        for b in range(n_batches)]


@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    port = free_port()
    proc = serve(tmp_path, port)
    md = (("x-api-key", KEY),)
    all_batches = batches(80, 50)
    acked: list[str] = []
    try:
        ch = wait_healthy(port, proc)
        stub = interactions_pb2_grpc.InteractionsStub(ch)
        killed = threading.Event()

        def slow_requests():
            for i, b in enumerate(all_batches):
                if i >= 20 and not killed.is_set():
                    t_end = time.monotonic() + 10
                    while len(acked) < 500 and time.monotonic() < t_end:
                        time.sleep(0.005)  # some batches acknowledged, more still in flight
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.set()
                yield b

        with pytest.raises(grpc.RpcError):
            for ack in stub.StreamInteractions(slow_requests(), metadata=md):
                assert ack.rejected == 0
                acked.extend(f"ev-{ack.batch_id}-{i}" for i in range(len(ack.statuses)))
        proc.wait(10)
        ch.close()
        assert acked, "nothing was acknowledged before the kill"

        proc = serve(tmp_path, port)
        ch = wait_healthy(port, proc)
        # every acknowledged event survived the crash: resending all of it applies only the rest, once
        stub = interactions_pb2_grpc.InteractionsStub(ch)
        dups = applied = 0
        dup_keys: set[str] = set()
        for ack in stub.StreamInteractions(iter(all_batches), metadata=md):
            dups += ack.duplicates
            applied += ack.applied
            b = int(ack.batch_id)
            dup_keys |= {f"ev-{b}-{s.index}" for s in ack.statuses if s.outcome == s.DUPLICATE}
        assert set(acked) <= dup_keys
        assert dups + applied == 80 * 50
        stats = admin_pb2_grpc.AdminStub(ch).GetStats(admin_pb2.GetStatsRequest(), metadata=md)
        assert stats.interactions == 80 * 50  # every event counted exactly once

        # SIGTERM: drains, commits, closes the storage cleanly (exit code 0, index written)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert (tmp_path / "Data.fs.index").exists()
        ch.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
