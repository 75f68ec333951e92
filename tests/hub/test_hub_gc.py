"""The collector's settings of a serving hub process (``shopkeeper serve`` calls ``tune_gc``)."""

from __future__ import annotations

import gc
import weakref

from shopkeeper.hub.server import GC_GEN0_THRESHOLD, tune_gc


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
