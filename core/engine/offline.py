"""The offline writer: the one way to change a store that no hub holds.

In a hub every change goes through the one :class:`~.writer.Writer` (``submit_op``), which
commits it and publishes it on the change feed. Offline tools — a CLI command on a store file
no hub has open, the rule and campaign test runners, library users' scripts — have no writer
thread and nothing to publish to, but they apply the very same operations
``op(folders, changes)``. :class:`OfflineWriter` gives them the writer's interface
(``submit_op`` returning a finished :class:`~concurrent.futures.Future`), so a caller holds one
``submit`` and never opens a transaction of its own: the only ``store.transaction`` callers of
the product are in this package (``tests/test_offline_writer.py`` fails a new one elsewhere).

Offline, an operation runs in a transaction of its own, conflicts are retried (another
offline tool on a ZEO or PostgreSQL store), ``changes`` is None (nothing is published), and
the connection's cache is emptied afterwards so a long batch job stays small. It refuses a
store whose hub writer runs in this process: that store has one writer already.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ZODB.POSException import ConflictError

from ..store import Folders, Store
from .writer import running_writer

#: an offline operation: ``op(folders, None)``; the same signature as ``Writer.submit_op``'s
Op = Callable[[Folders, Any], Any]


class HubHoldsStore(RuntimeError):
    """An offline write was asked of a store a running writer in this process holds."""


class OfflineWriter:
    """``submit_op`` for a store no hub holds: each operation in its own transaction."""

    def __init__(self, store: Store, *, note: str = "shopkeeper: offline", retries: int = 8,
                 minimize: bool = False) -> None:
        self.store = store
        self.note = note
        self.retries = retries
        self.minimize = minimize

    def apply(self, op: Op, note: str | None = None) -> Any:
        """Run ``op(folders, None)`` and commit; return its value, raise what it raised."""
        if running_writer(self.store.db) is not None:
            raise HubHoldsStore(f"{self.store.uri}: a hub's writer holds this store in this process; "
                                "submit the operation to it (writer.submit_op) instead of writing offline")
        for attempt in range(self.retries + 1):
            try:
                with self.store.transaction(note=note or self.note) as f:
                    out = op(f, None)
                    conn = f.conn
            except ConflictError:
                if attempt == self.retries:
                    raise
                time.sleep(0.005 * (attempt + 1))
                continue
            if self.minimize:
                conn.cacheMinimize()
            return out
        raise AssertionError("unreachable")

    def submit_op(self, op: Op, deadline: float | None = None) -> Future:
        """:meth:`apply` with the writer's interface: a finished future (``deadline`` is moot: it runs now)."""
        fut: Future = Future()
        try:
            fut.set_result(self.apply(op))
        except BaseException as exc:  # handed to the caller through the future, as the writer does
            fut.set_exception(exc)
        return fut


def apply(store: Store, op: Op, *, note: str, submit: Callable[[Op], Future] | None = None,
          minimize: bool = False) -> Any:
    """Run writer operation ``op``: through ``submit`` (a hub writer's ``submit_op``) when given,
    else offline in a transaction of its own. The one call for code that serves both."""
    if submit is not None:
        return submit(op).result()
    return OfflineWriter(store, note=note, minimize=minimize).apply(op)
