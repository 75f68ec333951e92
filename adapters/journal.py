"""The delivery journal: the Message-IDs a far end accepted, on disk before an intent is marked sent.

Its own module because it is the one part of delivery that owns a file and a thread-shared lock
(the shared fsync); :mod:`shopkeeper.adapters.delivery` re-exports it, the name every channel
adapter imports.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any


class DeliveryJournal:
    """Message-IDs the far end accepted, durable (fsync'd) before the intent is marked sent.

    After a crash between "accepted" and "marked sent" the intent is found ``sending``; its
    Message-ID in the journal proves delivery, so it is only marked sent, not sent again.
    Each Message-ID is written as soon as it is known (:meth:`write`: a process kill no longer loses
    it) and made durable by :meth:`sync` before its intent is marked sent; concurrent syncs share one
    ``fsync``, so the journal costs one fsync per burst, not per message.
    ``path=None`` keeps it in memory only (tests; a restart then relies on the hub alone).
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = str(path) if path else None
        self.ids: set[str] = set()
        self._fh: Any = None
        self._cond = threading.Condition()
        self._seq = self._synced = 0
        self._flushing = False
        self.fsyncs = 0
        if self.path:
            p = Path(self.path)
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.exists():
                self.ids.update(line.strip() for line in p.read_text().splitlines() if line.strip())
            self._fh = open(p, "a")  # noqa: SIM115 - held open for the adapter's life

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.ids

    def add(self, message_id: str) -> None:
        """Record ``message_id`` and return once it is on disk (:meth:`write`, then :meth:`sync`)."""
        self.write(message_id)
        self.sync()

    def write(self, message_id: str) -> None:
        """Record ``message_id`` and hand it to the operating system now (a ``write``, no ``fsync``):
        it survives a kill of this process from here on, not yet a power loss — call :meth:`sync`
        before anything relies on it (an intent is marked sent only after). A sender that delivers
        several messages in a row writes each after the far end accepted it and syncs once for all
        (docs/benchmarks.md §86: one ``fsync`` per SMTP worker batch, not one per ~2 messages)."""
        with self._cond:
            self.ids.add(message_id)
            if self._fh is None:
                return
            self._fh.write(message_id + "\n")
            self._fh.flush()
            self._seq += 1

    def sync(self) -> None:
        """Return once everything :meth:`write` wrote before this call is on disk. Concurrent callers
        share one ``fsync``: the first syncs for every caller waiting, later ones wait for it."""
        with self._cond:
            if self._fh is None:
                return
            mine = self._seq
            while self._synced < mine:
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing = True
                upto = self._seq
                fd = self._fh.fileno()
                self._cond.release()
                try:
                    os.fsync(fd)
                    self.fsyncs += 1
                finally:
                    self._cond.acquire()
                    self._flushing = False
                    self._synced = max(self._synced, upto)
                    self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


__all__ = ["DeliveryJournal"]
