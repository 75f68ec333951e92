"""Shared fixtures: stores on every backend the product supports, including a real ZEO server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopkeeper.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def store() -> Iterator[Store]:
    """A fast in-memory store (MappingStorage)."""
    s = Store.open("memory://")
    yield s
    s.close()


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[Store]:
    """A real, fsync'ing FileStorage in a temp dir."""
    s = Store.open(f"file://{tmp_path}/Data.fs")
    yield s
    s.close()


@pytest.fixture
def zeo_server(tmp_path: Path) -> Iterator[str]:
    """A real ZEO server process on a free loopback port; yields its zeo:// URI."""
    port = free_port()
    data = tmp_path / "zeo" / "Data.fs"
    data.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ZEO.runzeo", "-a", f"127.0.0.1:{port}", "-f", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"ZEO server exited: {proc.stderr.read().decode() if proc.stderr else ''}") from None
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("ZEO server did not start within 30 s") from None
            time.sleep(0.05)
    yield f"zeo://127.0.0.1:{port}?timeout=20"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(autouse=True)
def _one_writer(shopkeeper_commit_guard: object) -> None:
    """Every test: no thread but a running hub's writer may commit to that hub's store
    (``shopkeeper.testing.CommitGuard``), so a commit path that bypasses the writer fails
    whichever test exercises it."""
