"""Fixtures of the operations tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from shopkeeper.servers import start_zeo, stop_process


@contextlib.contextmanager
def erasure_safe_zeo(directory: Path) -> Iterator[str]:
    """A fresh ZEO server process serving ``directory/Data.fs`` as ``shopkeeper storage serve`` does
    (an ``ErasureSafeFileStorage``); yields its ``zeo://`` URI."""
    proc, uri = start_zeo(directory / "Data.fs")
    try:
        yield uri
    finally:
        stop_process(proc)
