"""The collector's settings of a serving hub process (``shopkeeper serve`` calls ``tune_gc``)."""

from __future__ import annotations

import gc
import sys
import weakref

from shopkeeper.hub.server import GC_GEN0_THRESHOLD, GIL_SWITCH_SECONDS, tune_gc, tune_process


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_tune_gc_freezes_what_lives_at_start_and_still_collects_cycles_made_later() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 1000  # the modules and everything else alive at start
        assert not any(o is tune_gc for o in gc.get_objects())  # out of the collector's sight
        ref = weakref.ref(_Node())
        assert ref() is not None
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


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
        gc.unfreeze()
        gc.set_threshold(*before_threshold)
        sys.setswitchinterval(before_interval)
