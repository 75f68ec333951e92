"""A serving hub gives glibc's free-but-kept heap back (hub/heap.py; issue 17's 10M RSS, docs/benchmarks.md §99:
the part of the RSS that still rose once every cache was full)."""

from __future__ import annotations

import pytest

from shopkeeper.hub import heap


def test_the_trimmer_trims_only_above_its_threshold() -> None:
    kept = [10]
    trims: list[int] = []
    t = heap.HeapTrimmer(threshold=100, measure=lambda: kept[0], release=lambda: trims.append(kept[0]) or True)
    assert not t.check() and trims == []
    kept[0] = 101
    assert t.check() and trims == [101] and (t.runs, t.last_free) == (1, 101)
    t2 = heap.HeapTrimmer(threshold=100, measure=lambda: None, release=lambda: trims.append(-1) or True)
    assert not t2.check() and trims == [101]  # off glibc: nothing measured, nothing done


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


@pytest.mark.skipif(heap.free_kept() is None, reason="not glibc >= 2.33")
def test_free_but_kept_memory_goes_back_to_the_system() -> None:
    # many mid-sized blocks (above pymalloc's 512 B: glibc's), freed all but every 64th, so that the
    # arena cannot shrink from its top: only malloc_trim gives the free pages inside it back (glibc
    # still counts them free in its arenas: the RSS says they went)
    blocks = [bytearray(4000) for _ in range(40_000)]
    keep = blocks[::64]
    del blocks
    kept = heap.free_kept()
    assert kept is not None and kept > 64 * 2 ** 20
    before = _rss_mb()
    assert heap.HeapTrimmer(threshold=32 * 2 ** 20).check()
    assert _rss_mb() < before - 64, (before, _rss_mb())
    assert keep  # alive until here


def test_a_serving_process_runs_one_trimmer() -> None:
    import gc
    import sys

    from shopkeeper.hub import collector

    before, switch = gc.get_threshold(), sys.getswitchinterval()
    try:
        collector.tune_process()
        first = collector._trimmer
        collector.tune_process()
        assert first is not None and collector._trimmer is first
        assert first._thread is not None and first._thread.is_alive()
    finally:
        collector.untune_gc(before)
        sys.setswitchinterval(switch)
    assert collector._trimmer is None and not first._thread.is_alive()
