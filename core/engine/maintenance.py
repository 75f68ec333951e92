"""Scheduled store maintenance: pack every so often, through the writer.

Why here and not a cron job: a pack asked for through the one writer is ordered after every
change submitted before it (:meth:`shopkeeper.engine.writer.Writer.submit_pack`), so an erasure
the hub acknowledged is always covered by the next scheduled pack, and nothing but the hub
touches a store the hub holds. ``keep`` days of history survive a pack; erased personal data
leaves the storage only with ``keep: 0`` (or ``keep`` days later).

With several hubs over one shared storage each would schedule its own pack; the storages refuse
a second concurrent pack ("Already packing"), which is logged and skipped here. Running it
exactly once across hubs is a lease's job (issue 17, the scale-out part).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

log = logging.getLogger("shopkeeper.engine.maintenance")


class PackScheduler:
    """A thread that asks for a pack every ``every_seconds`` and waits for it to finish."""

    def __init__(self, pack: Callable[[float], Future], every_seconds: float, keep_days: float) -> None:
        self._pack = pack
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
        while not self._stop.wait(self.every_seconds):
            try:
                self._pack(self.keep_days).result()
            except Exception as exc:  # a failed pack is logged; the next one is tried on schedule
                if self._stop.is_set():
                    return
                log.warning("scheduled pack did not run: %s", exc)


__all__ = ["PackScheduler"]
