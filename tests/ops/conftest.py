"""Fixtures of the operations tests: a ZEO server whose FileStorage keeps no erased data after a pack."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from shopkeeper.testing import free_port


@contextlib.contextmanager
def erasure_safe_zeo(directory: Path) -> Iterator[str]:
    """A ZEO server process serving ``directory/Data.fs`` as an :class:`ErasureSafeFileStorage`
    (``shopkeeper.ops.zeoserver``: runzeo's ``<filestorage>`` keeps ``Data.fs.old`` and the commit
    buffer after a pack)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shopkeeper.ops.zeoserver", str(directory / "Data.fs"),
                             f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"ZEO server exited: {proc.stderr.read().decode()}") from None  # type: ignore[union-attr]
                if time.monotonic() > deadline:
                    raise RuntimeError("ZEO server did not start within 30 s") from None
                time.sleep(0.05)
        yield f"zeo://127.0.0.1:{port}?timeout=20"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
