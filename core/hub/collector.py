"""The garbage collector of a process serving a hub: young collections small, full ones rare.

Why: a serving hub's heap is mostly its connection caches — every customer, bucket and ghost a
read or the writer loaded — and CPython's collector stops every thread while it walks a
generation. With its count rules a full collection ran whenever a quarter more objects had been
promoted than lived in the oldest generation; in a hub whose caches churn (each cold read loads
~4 records and ~100 tracked objects: bucket ghosts, unpickled tuples, the record's dicts) that
was every few seconds at 500 reads/s, and each walked every cached object: 245 ms at 1M customers
(docs/benchmarks.md §82), the whole of GetCustomer's p99. The middle generation, collected every
10 young collections of 10,000 allocations, walked up to 100,000 objects at a time: 25-45 ms.

So a serving hub (:func:`tune_gc`):

* freezes what is alive once it has started (``gc.freeze()``: modules, descriptors, plugins,
  rules): no collection walks it again;
* collects the young generation every :data:`GC_GEN0_THRESHOLD` allocations and the middle one
  every :data:`GC_GEN1_THRESHOLD` young collections, so no young or middle pass walks more than
  ~``GC_GEN0_THRESHOLD × GC_GEN1_THRESHOLD`` objects (a few ms). Each surviving object is still
  walked twice on its way to the oldest generation whatever the thresholds, so the collector's
  total CPU barely moves (§82);
* never runs a full collection on CPython's count rule. Cyclic garbage that outlives two young
  collections is rare in a hub (a full collection after 10,000 GetCustomers found 0-24 objects,
  §82); :class:`FullCollections` runs one now and then, when the heap has grown since the last,
  so what little there is cannot pile up.

Not for a process that embeds a hub among other work: its objects would be frozen, and its own
cyclic garbage collected only by :class:`FullCollections`.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .heap import HeapTrimmer

log = logging.getLogger("shopkeeper.hub")

#: allocations between young-generation collections in a serving hub (CPython's default: 700)
GC_GEN0_THRESHOLD = 1_000
#: young collections between middle-generation collections (CPython's default: 10)
GC_GEN1_THRESHOLD = 5
#: the oldest generation's count threshold: never reached, so only :class:`FullCollections` runs one
GC_GEN2_NEVER = 1_000_000_000

#: the GIL's switch interval in a serving hub (CPython's default: 5 ms), see :func:`tune_process`
GIL_SWITCH_SECONDS = 0.001


class Periodic:
    """A daemon thread calling :meth:`check` every ``every`` seconds until :meth:`stop`: the shape of
    the hub process's background tuners (:class:`FullCollections`, :class:`.heap.HeapTrimmer`).
    A subclass sets ``every``, ``_stop`` (an Event), ``_thread`` (None) and :attr:`thread_name`."""

    thread_name = "shopkeeper-periodic"
    every: float
    _stop: threading.Event
    _thread: threading.Thread | None

    def check(self) -> bool:
        raise NotImplementedError

    def start(self) -> Periodic:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class FullCollections(Periodic):
    """A full collection when the heap has grown by ``growth`` since the last one (or since the
    start), at most once every ``min_interval`` seconds, checked every ``every`` seconds on a
    thread of its own.

    The heap is measured by ``sys.getallocatedblocks()`` (the interpreter's live small
    allocations: cheap, and unlike RSS it falls when objects are freed). While the caches fill,
    the heap grows and a full collection runs every ``min_interval``; once they are full it stays
    level and none runs unless garbage piles up. Each one stops the process for as long as a
    walk of its heap takes (~0.3-0.4 s at 1M customers, bounded by the caches, not the store)."""

    thread_name = "shopkeeper-gc"

    def __init__(self, every: float = 30.0, min_interval: float = 600.0, growth: float = 0.25,
                 clock: Callable[[], float] = time.monotonic,
                 heap: Callable[[], int] = sys.getallocatedblocks) -> None:
        self.every, self.min_interval, self.growth = every, min_interval, growth
        self._clock, self._heap = clock, heap
        self._base, self._last = heap(), clock()
        #: full collections run so far, and the garbage they found
        self.runs = self.collected = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Run a full collection if it is due; True if one ran."""
        now = self._clock()
        if now - self._last < self.min_interval or self._heap() <= self._base * (1 + self.growth):
            return False
        t0 = time.perf_counter()
        found = gc.collect()
        self.runs += 1
        self.collected += found
        self._base, self._last = self._heap(), self._clock()
        log.debug("full collection: %d unreachable objects, %.0f ms", found, (time.perf_counter() - t0) * 1e3)
        return True


_full: FullCollections | None = None
_trimmer: HeapTrimmer | None = None


def tune_gc() -> FullCollections:
    """The collector's settings for a process that serves a hub (``shopkeeper serve``); call once
    the hub has started. Returns the running :class:`FullCollections` (one per process)."""
    global _full
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, GC_GEN1_THRESHOLD, GC_GEN2_NEVER)
    if _full is None:
        _full = FullCollections().start()
    return _full


def untune_gc(before: tuple[int, int, int]) -> None:
    """Undo :func:`tune_gc` (tests): the thresholds back, nothing frozen, no full-collection thread."""
    global _full, _trimmer
    if _full is not None:
        _full.stop()
        _full = None
    if _trimmer is not None:
        _trimmer.stop()
        _trimmer = None
    gc.unfreeze()
    gc.set_threshold(*before)


def tune_process() -> FullCollections:
    """A serving hub process's settings: :func:`tune_gc`, and a 1 ms GIL switch interval.

    Why the switch interval: the writer thread applies a group of records (Decide's lingering
    ``offer_shown`` records, events) as one long stretch of Python, holding the GIL. A read
    thread that wants it meanwhile waits a whole switch interval before CPython makes the writer
    let go, and a gRPC call needs it several times (the server's poller hands the call to a
    worker thread, the servicer runs, the response is sent): with the default 5 ms, each of those
    hand-offs can add up to 5 ms to a Decide that arrives during a group commit. That is the
    tail recording adds to Decide (§42: p99 16.3 ms with recording against 7.9 ms without) and
    nothing of the work itself. At 1 ms the writer is interrupted at most a thousand times a
    second; each switch costs microseconds (docs/benchmarks.md §43, where the A/B is)."""
    full = tune_gc()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    global _trimmer
    if _trimmer is None:  # glibc's free-but-kept arenas back to the system (hub/heap.py, §99)
        from .heap import HeapTrimmer

        _trimmer = HeapTrimmer().start()
    return full
