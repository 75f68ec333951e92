"""Smaller writer groups for a while after a conflict that names no customer (hubs sharing a store).

A ``ConflictError`` aborts the writer's whole transaction, so whatever the conflict was, every
event of the group is applied again. When the conflict names a customer of the group,
:meth:`.ingest.Ingestor._apply_split` re-applies the others once and retries that customer alone.
The conflicts two hubs routed by customer meet name none: another hub split a bucket of a shared
index both write (``OrderFacts``, ``OrderRows``, segment ``Members``, the identities), which
rewrites the parent node this group's writes marked read-current (RelStorage reports it as a lock
refusal without an object, or as a read conflict on the node). On a store of up to a few hundred
thousand customers those trees have one interior node, so *every* split by the other hub
conflicts with the group this hub has in flight, however few keys the two share — and costs it
the whole group: up to ``max_group_events`` (5,000) events applied again for one bucket split
(docs/benchmarks.md §57, §64).

**Off by default** (``SHOPKEEPER_CONFLICT_CHUNK=0``): measured in the lead's quiet run
(docs/benchmarks.md §71), two routed hubs on PostgreSQL made 1.49x and 1.65x one hub with full
groups and 0.94x and 1.13x with chunks of 500 — on that workload a commit more per 500 events
cost more than the groups the conflicts threw away. Set the variable (e.g. 500) where conflicts
naming no customer are frequent and groups are large.

The number of such conflicts follows the other hub's splits, not this hub's group size; what a
conflict costs is the group. So after one, this hub (when asked to) commits its groups in chunks of
:attr:`Narrowing.chunk` events, until :attr:`Narrowing.hold` seconds pass without another: the
next conflict then throws away at most a chunk. A store that never meets one (a single hub, a
large store whose splits touch nodes the other hub did not read) keeps its full groups, whose
fewer commits are cheaper. The hold is long (5 minutes): a hub that met one shares a busy store
with another writer, and a commit more per 500 events costs far less than one group thrown away
(a group's fixed commit work is a few PostgreSQL round trips; a conflict costs ~350 µs per event
of the group). Chunks commit in order, each durably before the next starts (as the
halves of a split group always did), so a customer's events still apply in order, exactly once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


class Narrowing:
    """When the writer's groups are cut into chunks, and how large those are."""

    def __init__(self, chunk: int | None = None, hold: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: events per chunk; ``SHOPKEEPER_CONFLICT_CHUNK`` sets it for a process; 0, the default, never
        #: narrows: in the lead's quiet run two routed hubs on PostgreSQL made 1.49-1.65x one hub with
        #: full groups and 0.94-1.13x with chunks of 500 (docs/benchmarks.md §71)
        self.chunk = chunk if chunk is not None else int(os.environ.get("SHOPKEEPER_CONFLICT_CHUNK", "0"))
        self.hold = hold
        self.clock = clock
        self._until = float("-inf")
        #: conflicts naming no customer seen so far (each one restarts the hold)
        self.conflicts = 0

    def conflicted(self) -> None:
        """A conflict that names no customer: chunks from now until ``hold`` seconds pass without one."""
        self.conflicts += 1
        self._until = self.clock() + self.hold

    def limit(self) -> int | None:
        """The most events one transaction may take now (None: the group as the writer made it)."""
        return self.chunk if self.chunk > 0 and self.clock() < self._until else None

    def split(self, indexes: list[int]) -> list[list[int]] | None:
        """``indexes`` in consecutive chunks, or None when they may commit as one."""
        cap = self.limit()
        if cap is None or len(indexes) <= cap:
            return None
        return [indexes[i:i + cap] for i in range(0, len(indexes), cap)]
