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
    Concurrent :meth:`add` calls share one ``fsync`` (the first caller writes and syncs what
    every waiting caller appended), so the journal costs one fsync per burst, not per message.
    ``path=None`` keeps it in memory only (tests; a restart then relies on the hub alone).
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = str(path) if path else None
        self.ids: set[str] = set()
        self._fh: Any = None
        self._cond = threading.Condition()
        self._buf: list[str] = []
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
        """Record ``message_id`` and return once it is on disk."""
        with self._cond:
            self.ids.add(message_id)
            if self._fh is None:
                return
            self._buf.append(message_id + "\n")
            self._seq += 1
            mine = self._seq
            while self._synced < mine:
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing = True
                lines, self._buf, upto = self._buf, [], self._seq
                self._cond.release()
                try:
                    self._fh.write("".join(lines))
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
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
