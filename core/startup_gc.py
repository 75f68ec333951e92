"""The garbage collector while a ``shopkeeper`` program starts and imports its libraries.

Why: importing modules makes long-lived objects (functions, classes, module dicts, numpy's and
scipy's tables) and next to no garbage, yet CPython's collector counts every allocation: the
imports of one CDNOW ``models fit`` ran ~50 middle- and 3 full collections, each walking
everything imported so far, ~0.15 s of its ~1.2 s of CPU; ``report scores`` ~0.1 s; and the
start-up of ``import`` left the full collection due, so the import then walked its 440,000 objects
once more (~0.3 s) (docs/benchmarks.md, the CDNOW section of the tenth session). So the program
run from a shell pauses the collector until the command is found, then moves what is alive out of
its sight (``gc.freeze()``, as a serving hub does once started: ``shopkeeper.hub.server.tune_gc``)
and turns it back on; a large import later in the command (scipy's) is done with the collector
paused too. Only the program itself: a process that imports ``shopkeeper.cli`` to call it (tests,
click's runner) keeps its collector as it is — freezing a test process's objects would keep its
cyclic garbage for good.

Standard library only: ``shopkeeper.cli`` calls it before importing anything else of ours.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: set when the ``shopkeeper`` program (run from a shell) paused the collector for its start-up
_program = False
#: objects :func:`settle_batch` may keep frozen before it hands them back to the collector
SETTLED_MAX = 2_000_000
#: the objects :func:`settle_batch`'s freezes added since its first freeze after it last handed
#: everything back (None: no first freeze yet); counted from the young generations as they are frozen,
#: because ``gc.get_freeze_count()`` walks every frozen object (~20 ms per call per million objects
#: frozen, and a CDNOW import had ~1.5 million: 0.085 s of its CPU in four calls)
_settled: int | None = None


def pause_for_startup() -> None:
    """The program starts: no collection until :func:`resume_after_startup` (only imports run)."""
    global _program
    _program = True
    gc.disable()


def resume_after_startup() -> None:
    """The command is found: freeze what the start-up made and collect again from here. Nothing
    unless :func:`pause_for_startup` ran (an in-process caller's collector is left alone)."""
    if _program and not gc.isenabled():
        gc.freeze()
        gc.enable()


def settle_batch() -> None:
    """After a long-running command committed a batch (``shopkeeper import``): in the program, freeze
    what is alive, so the collector's middle and full passes walk only what the next batch makes.

    Why: an import keeps the batch's customers alive in the connection's cache across thousands of
    young collections, so they reach the middle generation, and each middle pass walked everything
    promoted since the last one: 6 passes, ~0.3 s of CDNOW's import CPU (docs/benchmarks.md).
    Cyclic garbage frozen with them (~900 objects a CDNOW batch: the transaction's) is not collected
    while frozen, so past :data:`SETTLED_MAX` frozen objects everything goes back to the collector
    (its next full pass frees that garbage) and freezing starts afresh: memory stays bounded however
    many batches a file has (the bound counts what batches froze beyond the first freeze, so a
    process that holds more than that anyway does not hand back every other batch; counted as each
    batch is frozen, not with ``gc.get_freeze_count()``, which walks every frozen object). Nothing unless
    :func:`pause_for_startup` ran (an in-process caller's collector, a test's or a hub's, is left
    alone)."""
    global _settled
    if not (_program and gc.isenabled()):
        return
    if _settled is None:
        gc.freeze()
        _settled = 0  # what is alive now (start-up included) is the base
        return
    if _settled > SETTLED_MAX:
        gc.unfreeze()
        _settled = None
        return
    # what this freeze adds: the objects the collector tracks in its three generations (a list of
    # them, O(this batch); the list itself is one more, young, object: counted, not frozen)
    _settled += sum(len(gc.get_objects(generation)) for generation in range(3))
    gc.freeze()


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Around a large import inside a command (scipy's): the collector paused, and, in the
    program, what the import made frozen after it. Restores the collector's state as found."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if _program:
                gc.freeze()
            gc.enable()
