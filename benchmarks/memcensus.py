"""What a serving hub's memory is made of, for ``probe_hub_rss`` (issue 17's "RSS ≤ 2 GB at 10M",
docs/benchmarks.md §95: 2,241 MB at 570 s and rising with every cache bounded).

RSS counts more than the ZODB caches' loaded objects: the ghosts each loaded BTree node pins, RelStorage's
local cache (``cache-local-mb``) and its MVCC object index, Python's heap, and glibc's free-but-kept
arenas (each thread that calls ``malloc`` may get an arena of its own, and what they free is rarely
given back). :func:`census` names each part, so that a run says which one grows:

* ``zodb``: per connection of the database (readers and writer), loaded objects, all objects
  (ghosts included) and ZODB's own byte estimate;
* ``relstorage``: the local cache's bytes and entries, and the polled object index's entries;
* ``malloc``: glibc's ``mallinfo2`` — bytes in use and bytes free but kept by the allocator;
* ``python``: blocks allocated by Python's allocator, and the collector's objects by type (top ``top``);
* ``tracemalloc``: when the hub runs with ``SHOPKEEPER_BENCH_TRACEMALLOC=N`` (frames), the lines
  that hold the most memory now, and their growth since the previous census.

It is a probe: ``gc.get_objects()`` over a 10M hub's heap takes seconds and holds the GIL.
"""

from __future__ import annotations

import collections
import gc
import os
import sys
import tracemalloc
from typing import Any


def malloc_info() -> dict[str, int] | None:
    """glibc's view of the heap in MB: ``in_use`` (handed out), ``free_kept`` (free in its arenas, still
    resident if touched), ``mmapped`` (large blocks); None off glibc."""
    from shopkeeper.hub.heap import mallinfo  # the hub's own binding of mallinfo2

    m = mallinfo()
    if m is None:
        return None
    mb = 2 ** 20
    return {"in_use_mb": round(m.uordblks / mb), "free_kept_mb": round(m.fordblks / mb),
            "mmapped_mb": round(m.hblkhd / mb), "arena_mb": round(m.arena / mb)}


def zodb_caches(db: Any, readers: set[int]) -> list[list[Any]]:
    """Per open connection: [role, loaded objects, all objects, ZODB's estimated MB, the classes most
    loaded]; role ``read`` for the read pool's connections (ids in ``readers``), ``idle`` for those closed
    in the database's pool (their caches kept until reopened), else ``other`` (the writer's)."""
    out: list[list[Any]] = []
    idle = {id(c) for _t, c in db.pool.available}  # closed, in the database's pool

    def one(conn: Any) -> None:
        c = conn._cache
        kinds = collections.Counter(type(o).__name__ for _oid, o in c.lru_items())
        role = "read" if id(conn) in readers else "idle" if id(conn) in idle else "other"
        out.append([role, c.cache_non_ghost_count, len(c),
                    round(c.total_estimated_size / 2 ** 20), kinds.most_common(3)])

    db._connectionMap(one)
    return out


def relstorage_info(db: Any) -> dict[str, Any] | None:
    cache = getattr(db.storage, "_cache", None)
    local = getattr(cache, "local_client", None)
    if local is None:
        return None
    polling = getattr(cache, "polling_state", None)
    index = getattr(polling, "object_index", None)
    return {"local_mb": round(local.size / 1e6), "local_entries": len(local),
            "object_index_entries": len(index) if index is not None and hasattr(index, "__len__") else None}


_last_trace: Any = None


def census(hub: Any, top: int = 12) -> dict[str, Any]:
    """The parts of the hub's memory (see the module's docstring)."""
    global _last_trace
    db = hub.store.db
    pool = getattr(hub, "_reads", None)
    readers = {id(slot.conn) for slot in getattr(pool, "_slots", ()) if slot is not None}
    caches = zodb_caches(db, readers)
    by_type = collections.Counter(type(o).__name__ for o in gc.get_objects())
    out: dict[str, Any] = {
        "zodb": {"connections": caches, "loaded": sum(c[1] for c in caches), "all": sum(c[2] for c in caches)},
        "relstorage": relstorage_info(db), "malloc": malloc_info(),
        "python": {"allocated_blocks": sys.getallocatedblocks(), "gc_objects": sum(by_type.values()),
                   "by_type": by_type.most_common(top)},
    }
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
        stats = snap.statistics("lineno")
        del snap  # at 1M, millions of traces: keep only the per-line sums (the last census kept the snapshot: +4 GB)
        out["tracemalloc"] = {"traced_mb": round(tracemalloc.get_traced_memory()[0] / 2 ** 20),
                              "top": [[str(s.traceback), round(s.size / 2 ** 20, 1), s.count] for s in stats[:top]]}
        now = {str(s.traceback): (s.size, s.count) for s in stats}
        if _last_trace is not None:
            diff = [(line, size - _last_trace.get(line, (0, 0))[0], count - _last_trace.get(line, (0, 0))[1])
                    for line, (size, count) in now.items()]
            diff.sort(key=lambda d: -abs(d[1]))
            out["tracemalloc"]["grew"] = [[line, round(size / 2 ** 20, 1), count] for line, size, count in diff[:top]]
        _last_trace = now
    return out


def start_tracing() -> None:
    """``SHOPKEEPER_BENCH_TRACEMALLOC=N``: trace allocations with N frames from now on (slow: a probe)."""
    frames = int(os.environ.get("SHOPKEEPER_BENCH_TRACEMALLOC") or 0)
    if frames:
        tracemalloc.start(frames)
