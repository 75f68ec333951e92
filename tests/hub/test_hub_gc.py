"""The collector's settings of a serving hub process (``shopkeeper serve`` calls ``tune_process``)."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from shopkeeper.hub.collector import GC_GEN1_THRESHOLD, GC_GEN2_NEVER, FullCollections, untune_gc
from shopkeeper.hub.server import GC_GEN0_THRESHOLD, GIL_SWITCH_SECONDS, tune_gc, tune_process


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def tuned():
    before = gc.get_threshold()
    try:
        yield tune_gc()
    finally:
        untune_gc(before)


def test_tune_gc_freezes_what_lives_at_start_and_still_collects_cycles_made_later(tuned) -> None:
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, GC_GEN1_THRESHOLD, GC_GEN2_NEVER)
    assert gc.get_freeze_count() > 1000  # the modules and everything else alive at start
    assert not any(o is tune_gc for o in gc.get_objects())  # out of the collector's sight
    ref = weakref.ref(_Node())
    assert ref() is not None
    gc.collect()
    assert ref() is None


def test_a_serving_hub_runs_no_full_collection_of_its_own_however_many_objects_survive(tuned) -> None:
    """A hub's caches churn: every cold read promotes ~100 objects towards the oldest generation,
    and CPython's count rule then walked the whole heap every few seconds (245 ms at 1M customers,
    docs/benchmarks.md §82). Under the hub's settings the young and middle generations are
    collected as objects survive, the oldest never on a count."""
    seen = {0: 0, 1: 0, 2: 0}

    def count(phase: str, info: dict) -> None:
        if phase == "stop":
            seen[info["generation"]] += 1

    gc.callbacks.append(count)
    try:
        kept = [[] for _ in range(1_500_000)]  # surviving containers: 150 young, 30 middle collections' worth
    finally:
        gc.callbacks.remove(count)
    assert len(kept) == 1_500_000
    assert seen[2] == 0
    assert seen[0] > 100 and seen[1] > 20


def test_full_collections_run_only_when_the_heap_has_grown_and_not_too_often() -> None:
    now, heap = [0.0], [1_000]
    full = FullCollections(min_interval=600.0, growth=0.25, clock=lambda: now[0], heap=lambda: heap[0])
    heap[0] = 2_000
    assert not full.check()  # grown, but too soon after the start
    now[0] = 601.0
    heap[0] = 1_200
    assert not full.check()  # time enough, grown by less than a quarter
    heap[0] = 1_300
    node = _Node()
    ref = weakref.ref(node)
    gc.collect(1)  # alive: promoted to the oldest generation, where only a full collection looks
    del node
    assert ref() is not None
    assert full.check() and full.runs == 1
    assert ref() is None and full.collected > 0
    now[0] = 900.0
    heap[0] = 5_000
    assert not full.check()  # grown again, but the last one ran 299 s ago
    now[0] = 1_202.0
    assert full.check() and full.runs == 2


def test_a_serving_hub_lets_a_busy_writer_hand_the_gil_over_within_a_millisecond() -> None:
    """``shopkeeper serve`` (and bench_hub's hub) run ``tune_process``: the collector's settings
    and a 1 ms GIL switch interval, so a read waits at most ~1 ms per hand-off while the writer
    applies a group (docs/benchmarks.md §43), not CPython's default 5 ms."""
    before_interval, before_threshold = sys.getswitchinterval(), gc.get_threshold()
    try:
        assert before_interval > GIL_SWITCH_SECONDS  # the default this changes (5 ms)
        tune_process()
        assert sys.getswitchinterval() == GIL_SWITCH_SECONDS == 0.001
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    finally:
        untune_gc(before_threshold)
        sys.setswitchinterval(before_interval)
