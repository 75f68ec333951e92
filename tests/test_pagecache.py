"""benchmarks/pagecache.py: how much of a store file is cached, reading it in, dropping it (the 1M
FileStorage p99 was the disk's when Data.fs was partly cached: docs/benchmarks.md §99)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import pagecache  # noqa: E402


def test_a_file_read_in_is_resident_and_an_evicted_one_is_not(tmp_path: Path) -> None:
    f = tmp_path / "Data.fs"
    f.write_bytes(os.urandom(4 * 2 ** 20))
    pagecache.evict(str(f))
    cold = pagecache.resident_fraction(str(f))
    assert cold is not None and cold < 0.5
    assert pagecache.read_in(str(f)) >= 0
    assert pagecache.resident_fraction(str(f)) == 1.0


def test_disk_reads_of_a_process_are_counted_or_none() -> None:
    got = pagecache.disk_read_bytes(os.getpid())
    assert got is None or got >= 0
    assert pagecache.disk_read_bytes(2 ** 22 + 12345) is None  # no such process
