"""`shopkeeper serve` as a real process: kill -9 mid-stream loses no acknowledged event; SIGTERM stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

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



class _KillAfterAcks:
    """A stream's requests that kill -9 the hub at batch ``at``, once ``enough`` events were
    acknowledged (waited on, at most 10 s): some batches acknowledged, more still in flight."""

    def __init__(self, proc: subprocess.Popen, at: int, enough: int) -> None:
        self.acked: list[str] = []
        self._proc, self._at, self._enough = proc, at, enough
        self._reached = threading.Event()

    def requests(self, batches: list[Any]) -> Iterator[Any]:
        for i, b in enumerate(batches):
            if i == self._at:
                self._reached.wait(10)
                os.kill(self._proc.pid, signal.SIGKILL)
            yield b

    def record(self, keys: Iterable[str]) -> None:
        """The keys of an acknowledgement (on the stream's reading thread)."""
        self.acked.extend(keys)
        if len(self.acked) >= self._enough:
            self._reached.set()

@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    port = free_port()
    proc = serve(tmp_path, port)
    md = (("x-api-key", KEY),)
    all_batches = batches(80, 50)
    killer = _KillAfterAcks(proc, at=20, enough=500)
    acked = killer.acked
    try:
        ch = wait_healthy(port, proc)
        stub = interactions_pb2_grpc.InteractionsStub(ch)
        with pytest.raises(grpc.RpcError):
            for ack in stub.StreamInteractions(killer.requests(all_batches), metadata=md):
                assert ack.rejected == 0
                killer.record(f"ev-{ack.batch_id}-{i}" for i in range(len(ack.statuses)))
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

        # SIGTERM: stops, commits, closes the storage cleanly (exit code 0, index written)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert (tmp_path / "Data.fs.index").exists()
        ch.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _counts_and_truth(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """The store's counters, and the same numbers counted from what the store holds."""
    from shopkeeper.engine import feed
    from shopkeeper.store import Store

    with Store.open(f"file://{path}") as store, store.read() as f:
        counted = {n: f.counter(n) for n in ("customers", "interactions", "changes")}
        truth = {"customers": len(f.customers), "interactions": sum(len(c.history) for c in f.customers.values()),
                 "changes": sum(1 for _ in feed.entries_after(f, 0))}
    return counted, truth


@pytest.mark.slow
def test_kill_9_amid_lone_events_leaves_every_counter_exact(tmp_path: Path) -> None:
    """Events sent one per batch, so most commits put their counts in the change feed's chunk instead of
    the counters' record (generation 15): after kill -9 the counters still equal what the store holds,
    and the replay of every event counts each once."""
    port = free_port()
    proc = serve(tmp_path, port)
    md = (("x-api-key", KEY),)
    all_batches = batches(600, 1) + batches(3, 40)[1:]  # lone events, then two groups
    all_batches = [interactions_pb2.EventBatch(batch_id=f"{i}", events=b.events) for i, b in enumerate(all_batches)]
    killer = _KillAfterAcks(proc, at=300, enough=150)
    acked = killer.acked
    try:
        ch = wait_healthy(port, proc)
        stub = interactions_pb2_grpc.InteractionsStub(ch)
        with pytest.raises(grpc.RpcError):
            for ack in stub.StreamInteractions(killer.requests(all_batches), metadata=md):
                killer.record(f"{ack.batch_id}-{i}" for i in range(len(ack.statuses)))
        proc.wait(10)
        ch.close()
        assert len(acked) >= 100, "too few lone events acknowledged before the kill"
        counted, truth = _counts_and_truth(tmp_path / "Data.fs")
        assert counted == truth and truth["interactions"] >= len(acked)

        proc = serve(tmp_path, port)
        ch = wait_healthy(port, proc)
        applied = dups = 0
        for ack in interactions_pb2_grpc.InteractionsStub(ch).StreamInteractions(iter(all_batches), metadata=md):
            applied += ack.applied
            dups += ack.duplicates
        n = sum(len(b.events) for b in all_batches)
        assert applied + dups == n and dups == truth["interactions"]
        stats = admin_pb2_grpc.AdminStub(ch).GetStats(admin_pb2.GetStatsRequest(), metadata=md)
        assert (stats.interactions, stats.duplicates, stats.customers) == (n, dups, 97)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        ch.close()
        counted, truth = _counts_and_truth(tmp_path / "Data.fs")
        assert counted == truth and truth["interactions"] == n
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
