"""Scheduled store maintenance: pack every so often, through the writer.

Why here and not a cron job: a pack asked for through the one writer is ordered after every
change submitted before it (:meth:`shopkeeper.engine.writer.Writer.submit_pack`), so an erasure
the hub acknowledged is always covered by the next scheduled pack, and nothing but the hub
touches a store the hub holds. ``keep`` days of history survive a pack; erased personal data
leaves the storage only with ``keep: 0`` (or ``keep`` days later).

Several hubs over one shared storage: each runs a scheduler, but only the hub holding the
``pack`` **lease** (:mod:`.leases`, kept by the process's lease keeper through the writer like the
timer and segment-scheduler leases, whether or not a pack runs) packs, so a pack that outlasts the
period is never joined by a second hub's pack of the same storage. The lease says *who*; the
period's *claim* says *when*: before packing, the holder writes ``meta['scheduled_pack_at']``
through its writer (:func:`claim_scheduled_pack`) if the last claim is at least ``every`` old, so a
hub that takes the lease over from a dead one keeps the period instead of packing at once. The
claim is **fenced** by the lease (:func:`.leases.fence`): a hub whose writer stalled past its lease
while another took it cannot claim, even if it still believes it holds the lease. Each scheduler
checks every ``min(every, 60 s)``.

**Packs are not on the change feed.** A pack commits no transaction: it drops revisions no longer
current, so everything a reader (or a ``Watch`` subscriber mirroring the store) sees is the same
before and after; ``Admin.Pack`` answers when it is done and ``Engine.last_pack`` says what it
freed. The period's claim is a writer commit but, like a lease, coordination between hubs rather
than data, so it publishes nothing either (docs/api.md, "Change-feed kinds").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..customer import now_us
from .leases import fence

log = logging.getLogger("shopkeeper.engine.maintenance")


CLAIM_KEY = "scheduled_pack_at"


def claim_scheduled_pack(folders: Any, every_seconds: float, lease: tuple[str, str] | None = None) -> bool:
    """In a writer transaction: claim this period's scheduled pack for this hub (True), or see that
    another hub (or this one) claimed it less than ``every_seconds`` ago (False, nothing written).
    ``lease`` ``(name, holder)``: claim only while ``holder`` holds that lease, fenced
    (:func:`.leases.fence`): a hub whose lease passed to another while it stalled claims nothing."""
    if lease is not None and not fence(folders, *lease):
        return False
    now = now_us()
    last = folders.meta.get(CLAIM_KEY, 0)
    if now - last < every_seconds * 1_000_000:
        return False
    folders.meta[CLAIM_KEY] = now
    return True


#: the lease whose holder runs the scheduled pack (docs/scaleout.md, "Jobs that run once")
LEASE = "pack"


class PackScheduler:
    """A thread that, while this hub holds the pack lease (``may_run() -> bool``, which renews it
    through the writer), claims each period's pack (``claim() -> bool``, through the writer) and,
    when it won the claim, asks for the pack and waits for it, renewing the lease meanwhile."""

    def __init__(self, pack: Callable[[float], Future], every_seconds: float, keep_days: float,
                 claim: Callable[[], bool] | None = None, may_run: Callable[[], bool] | None = None,
                 renew_every: float = 2.0) -> None:
        self._pack = pack
        self._claim = claim or (lambda: True)
        self._may_run = may_run or (lambda: True)
        self._renew_every = renew_every
        self.every_seconds = every_seconds
        self.keep_days = keep_days
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shopkeeper-pack-schedule", daemon=True)

    def start(self) -> PackScheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(min(self.every_seconds, 60.0)):
            try:
                if not self._may_run() or not self._claim():
                    continue
                self._wait_renewing(self._pack(self.keep_days))
            except Exception as exc:  # a failed pack is logged; the next one is tried on schedule
                if self._stop.is_set():
                    return
                log.warning("scheduled pack did not run: %s", exc)

    def _wait_renewing(self, done: Future) -> None:
        """Wait for the pack, renewing the lease: a long pack keeps other hubs from packing too."""
        while True:
            try:
                done.result(timeout=self._renew_every)
                return
            except FutureTimeout:
                if not self._may_run():  # our writer stalled past the lease: say so, the pack goes on
                    log.warning("the pack lease passed to another hub while this hub's pack runs")


__all__ = ["LEASE", "PackScheduler", "claim_scheduled_pack"]
