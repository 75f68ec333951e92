"""Scheduled store maintenance: pack every so often, through the writer.

Why here and not a cron job: a pack asked for through the one writer is ordered after every
change submitted before it (:meth:`shopkeeper.engine.writer.Writer.submit_pack`), so an erasure
the hub acknowledged is always covered by the next scheduled pack, and nothing but the hub
touches a store the hub holds. ``keep`` days of history survive a pack; erased personal data
leaves the storage only with ``keep: 0`` (or ``keep`` days later).

Several hubs over one shared storage: each runs a scheduler, but a scheduled pack runs once per
period across them. Before packing, a hub *claims* the period through its writer
(:func:`claim_scheduled_pack`): it writes ``meta['scheduled_pack_at']`` if the last claim is at
least ``every`` old. Two hubs claiming at once write the same key, the storage refuses the second
commit (ConflictError), its writer retries and the retry sees the fresh claim. Each scheduler
checks every ``min(every, 60 s)``, so the period is kept within a minute whichever hub claims it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..customer import now_us

log = logging.getLogger("shopkeeper.engine.maintenance")


CLAIM_KEY = "scheduled_pack_at"


def claim_scheduled_pack(folders: Any, every_seconds: float) -> bool:
    """In a writer transaction: claim this period's scheduled pack for this hub (True), or see that
    another hub (or this one) claimed it less than ``every_seconds`` ago (False, nothing written)."""
    now = now_us()
    last = folders.meta.get(CLAIM_KEY, 0)
    if now - last < every_seconds * 1_000_000:
        return False
    folders.meta[CLAIM_KEY] = now
    return True


class PackScheduler:
    """A thread that claims each period's pack (``claim() -> bool``, through the writer) and,
    when it won the claim, asks for the pack and waits for it to finish."""

    def __init__(self, pack: Callable[[float], Future], every_seconds: float, keep_days: float,
                 claim: Callable[[], bool] | None = None) -> None:
        self._pack = pack
        self._claim = claim or (lambda: True)
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
                if not self._claim():
                    continue
                self._pack(self.keep_days).result()
            except Exception as exc:  # a failed pack is logged; the next one is tried on schedule
                if self._stop.is_set():
                    return
                log.warning("scheduled pack did not run: %s", exc)


__all__ = ["PackScheduler", "claim_scheduled_pack"]
