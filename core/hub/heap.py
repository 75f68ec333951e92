"""Give glibc's free-but-kept heap back to the system in a serving hub (issue 17: RSS ≤ 2 GB at 10M).

A hub's large allocations — pickles loaded from the store, RelStorage's local cache values, the
tables of the connection caches' dicts — come from glibc's ``malloc``, and each of the hub's threads
(8 readers, the writer, gRPC's workers) may be given an arena of its own. What they free stays in
those arenas, resident, unless it sits at the very top of the main heap: at 10M customers with the
writer busy, glibc's free-but-kept bytes grew 61 → 137 MB in six minutes while every ZODB cache and
Python's own heap stayed level — the whole of the RSS that still rose (docs/benchmarks.md §99).
``malloc_trim(0)`` hands every wholly free page of every arena back (``madvise``), whatever its place.

:class:`HeapTrimmer` calls it every ``every`` seconds on a thread of its own when more than
``threshold`` bytes are free in the arenas (``mallinfo2``): a walk of the arenas, a few ms, in C
(ctypes releases the GIL). Off glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from .collector import Periodic

log = logging.getLogger("shopkeeper.hub")

#: free-but-kept bytes in glibc's arenas above which a check trims them
TRIM_THRESHOLD = 32 * 2 ** 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


@functools.cache
def _libc() -> Any:
    """glibc, its two calls typed — once per process (each check used to load it again)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc, or one before 2.33 (no mallinfo2)
        return None


def mallinfo() -> _MallInfo2 | None:
    """glibc's ``mallinfo2()``: the allocator's own counts (None off glibc, or before 2.33). Also what
    ``benchmarks/memcensus.py`` reports."""
    libc = _libc()
    return None if libc is None else libc.mallinfo2()


def free_kept() -> int | None:
    """Bytes free in glibc's arenas but still held by the process (None off glibc)."""
    m = mallinfo()
    return None if m is None else int(m.fordblks)


def trim() -> bool:
    """``malloc_trim(0)``: True if glibc gave memory back."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


class HeapTrimmer(Periodic):
    """Every ``every`` seconds, :func:`trim` when more than ``threshold`` bytes are free but kept."""

    thread_name = "shopkeeper-heap"

    def __init__(self, every: float = 30.0, threshold: int = TRIM_THRESHOLD,
                 measure: Callable[[], int | None] = free_kept, release: Callable[[], bool] = trim) -> None:
        self.every, self.threshold = every, threshold
        self._measure, self._release = measure, release
        #: trims run so far, and the bytes free-but-kept before each (the last one's)
        self.runs = 0
        self.last_free = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Trim if more than ``threshold`` bytes are free but kept; True if it trimmed."""
        kept = self._measure()
        if kept is None or kept <= self.threshold:
            return False
        self._release()
        self.runs += 1
        self.last_free = kept
        log.debug("heap trimmed: %.0f MB were free but kept", kept / 2 ** 20)
        return True

    def start(self) -> HeapTrimmer:
        if _libc() is None:
            return self
        super().start()
        return self
