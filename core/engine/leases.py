"""Leases in the store: which hub process runs a job that must run once across hubs.

Several hub processes over one store (ZEO, RelStorage) each run a timer runner, a segment
scheduler and a feed sequencer; each of these must run in one hub at a time. A lease is a
small persistent record ``name -> (holder, expires µs)`` in the root ``leases`` folder,
acquired and renewed *through the writer* like every other change: two hubs taking the same
free lease at once both write its record, the storage refuses the second commit
(``ConflictError``), the writer retries it and the retry sees the lease held. A holder renews
well before expiry; a hub that died loses its leases when they expire, and another takes over.

**A busy writer does not let a lease lapse.** A renewal is an *urgent* writer op
(``Writer.submit_op(urgent=True)``): it commits as soon as the job in progress has, ahead of the
queue — through the FIFO queue a backlog longer than the lease's remaining term let it lapse while
its holder still ran the job (the hypothesis of benchmarks §35, confirmed by
``tests/test_leases.py`` and fixed, §44). A lease is renewed once **half** its term is left (5 s of
the default 10 s), so only a single writer transaction longer than that can still make it lapse:
a group is capped at ``max_group_events`` (5,000 events, ~3 s at §42's ~0.6 ms per event), and an
operation that may run longer must be cut into batches, as segment runs and imports are.

**Leases are not on the change feed.** A lease record is coordination between hub processes, not
data: nothing a ``Watch`` subscriber or ``shopkeeper_committed`` plugin reads changes when it is
taken or renewed, and publishing every renewal (each lease every 5 s, per hub) would only add
noise and feed records. The jobs a lease guards publish what they change.

A lease is an efficiency and a guard, not the only thing keeping a timer from firing twice:
firing deletes the timer from the store's index in the firing transaction, so a holder that
paused past its expiry and fires late conflicts with the new holder instead of firing again.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from BTrees.OOBTree import OOBTree

from ..customer import now_us
from ..store import Folders

# a pickle alias too: leases written before engine.records name shopkeeper.engine.leases.Lease
from .records import Lease as Lease

FOLDER = "leases"


def create_leases(root: Any) -> None:
    """The named evolve step ``leases`` (contributed by :mod:`.steps`)."""
    if FOLDER not in root:
        root[FOLDER] = OOBTree()


def acquire(folders: Folders, name: str, holder: str, ttl_s: float) -> int:
    """Take or renew lease ``name`` for ``holder`` in the current transaction; return its new
    expiry (µs), or minus the expiry of another holder's lease that is still valid (nothing
    written then). Writes only when taking or renewing."""
    leases = folders.root[FOLDER]  # the named step "leases" (the engine runs it before its writer starts)
    now = now_us()
    lease = leases.get(name)
    if lease is not None and lease.holder != holder and lease.expires > now:
        return -lease.expires
    expires = now + int(ttl_s * 1_000_000)
    if lease is None:
        leases[name] = Lease(holder, expires)
    else:
        lease.holder, lease.expires = holder, expires
    return expires


def release(folders: Folders, name: str, holder: str) -> None:
    leases = folders.root.get(FOLDER)
    lease = leases.get(name) if leases is not None else None
    if lease is not None and lease.holder == holder:
        lease.expires = 0


class Leases:
    """This process's view of its leases: :meth:`held` answers from memory while the lease has
    more than half its time left, and renews it through the writer (an urgent op) otherwise.
    ``submit_op`` is a writer's ``submit_op`` (it must take ``urgent=``)."""

    def __init__(self, submit_op: Any, ttl_s: float = 10.0, holder: str | None = None) -> None:
        self.submit_op = submit_op
        self.ttl_s = ttl_s
        self.holder = holder or f"hub-{uuid.uuid4().hex[:12]}"
        self._until: dict[str, int] = {}
        self._lock = threading.Lock()

    def held(self, name: str) -> bool:
        """True if this process holds lease ``name`` now (taking or renewing it if needed)."""
        margin = int(self.ttl_s * 1_000_000 / 2)
        now = now_us()
        with self._lock:
            until = self._until.get(name, 0)
            if until - margin > now:
                return True
            if until < 0 and min(-until, now + margin) > now:  # another hub's: ask again when it may lapse
                return False
        got = self.submit_op(lambda f, ch: acquire(f, name, self.holder, self.ttl_s), urgent=True).result()
        with self._lock:
            self._until[name] = got if got > 0 else -min(-got, now_us() + margin)
        return got > 0

    def release_all(self, timeout: float = 5.0) -> None:
        """Give up every lease held (at shut-down), so another hub takes over at once."""
        with self._lock:
            names = [n for n, until in self._until.items() if until > now_us()]
            self._until.clear()
        for name in names:
            try:
                self.submit_op(lambda f, ch, n=name: release(f, n, self.holder), urgent=True).result(timeout)
            except Exception:  # the writer is stopping: the lease expires by itself
                break


def holds(hub: Any, name: str) -> Any:
    """For a plugin's background job: a ``() -> bool`` telling whether the hub (or engine) given to
    its hooks holds lease ``name`` now; always true for a context without leases (an offline tool)."""
    leases = getattr(getattr(hub, "engine", hub), "leases", None)
    if leases is None:
        return lambda: True
    return lambda: leases.held(name)


__all__ = ["Lease", "Leases", "acquire", "release", "holds"]
