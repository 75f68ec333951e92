"""What the kept indexes (the audience index, the order table) share: a before-commit hook on every
transaction of a connection, and a walk over every customer that an evolve step can afford at 1M.

Why here: a named evolve step's ``keep(conn, tm)`` installs the hook that keeps its index current on
every write (``shopkeeper.store.generations.EvolveStep``); each index wrote the same transaction
synchroniser, and each step walked every customer in one transaction with nothing freed and nothing
said — on a 1M-customer store, 5 GB of cache and minutes of silence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import transaction
from ZODB.Connection import Connection

from ..kept import KEPT_MARKS

log = logging.getLogger("shopkeeper.store")


class _BeforeCommit:
    """Transaction synchroniser adding ``hook(conn)`` as a before-commit hook to each transaction."""

    __slots__ = ("conn", "hook", "__weakref__")

    def __init__(self, conn: Connection, hook: Callable[[Connection], None]) -> None:
        self.conn = conn
        self.hook = hook

    def newTransaction(self, txn: Any) -> None:  # noqa: N802 - the transaction package's interface
        getattr(self.conn, KEPT_MARKS).clear()
        txn.addBeforeCommitHook(self.hook, (self.conn,))

    def beforeCompletion(self, txn: Any) -> None:  # noqa: N802
        pass

    def afterCompletion(self, txn: Any) -> None:  # noqa: N802
        getattr(self.conn, KEPT_MARKS).clear()  # committed or aborted: the marks were this transaction's


def install_before_commit(conn: Connection, tm: transaction.TransactionManager,
                          hook: Callable[[Connection], None], name: str) -> None:
    """Run ``hook(conn)`` before every commit of ``tm``, with the customers the transaction marked
    changed for the keepers in ``conn``'s ``KEPT_MARKS`` (cleared when each transaction ends). The
    manager holds synchronisers weakly, so the synchroniser is also kept on the manager under
    ``name`` and lives as long as it does."""
    if getattr(conn, KEPT_MARKS, None) is None:  # customers marked by ``shopkeeper.kept``
        setattr(conn, KEPT_MARKS, {})
    s = _BeforeCommit(conn, hook)
    setattr(tm, name, s)
    tm.registerSynch(s)


def each_customer(root: Any, step: str, *, every: int = 2_000, say_after: float = 10.0) -> Iterator[tuple[str, Any]]:
    """``(id, customer)`` of every customer, for an evolve step that reads them all in one
    transaction: every ``every`` customers the connection's cache is emptied of what the step only
    read (``cacheMinimize``: they become ghosts again; what it changed stays), so memory stays
    bounded, and, once the walk has taken ``say_after`` seconds, progress is logged, so an operator
    opening a large store sees what it is doing.

    Why minimize, not ``cacheGC``: a trim only brings the cache down to its size, 50,000 objects by
    default, and a loaded customer (its recent interactions unpickled) takes ~26 KB of heap against
    the ~4 KB the cache estimates: a 100k store's open grew the hub to 1.5 GB and left it there
    (docs/benchmarks.md §55)."""
    customers = root["customers"]
    jar = getattr(root, "_p_jar", None)
    total = len(customers)
    start = last = time.monotonic()
    n = 0
    for n, (cid, c) in enumerate(customers.items(), 1):
        yield cid, c
        if n % every == 0:
            if jar is not None:
                jar.cacheMinimize()
            now = time.monotonic()
            if now - last >= say_after:
                last = now
                log.info("evolve step %s: %d of %d customers (%.0f s)", step, n, total, now - start)
    if time.monotonic() - start >= say_after:
        log.info("evolve step %s: %d customers done (%.0f s)", step, n, time.monotonic() - start)
