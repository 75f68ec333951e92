"""Leases in the store: which hub process runs a job that must run once across hubs.

Several hub processes over one store (ZEO, RelStorage) each run a timer runner, a segment
scheduler, a pack scheduler and a feed sequencer; each of these must run in one hub at a time. A
lease is a small persistent record ``name -> (holder, expires µs)`` in the root ``leases`` folder,
taken and renewed *through the writer* like every other change: two hubs taking the same free
lease at once both write its record, the storage refuses the second commit (``ConflictError``),
the writer retries it and the retry sees the lease held. A hub that died loses its leases when
they expire, and another takes over.

**A lease is kept by a keeper, not by its users.** Until the eleventh session a lease was renewed
only when a job asked :meth:`Leases.held` and found less than half its term left, and the asking
job waited for the renewal's commit: a job that asks every ``ttl/4`` (the pack scheduler while its
pack runs) renewed with 2.5–5 s of the 10 s left, so a writer stalled for 2.5 s — one slow commit
at load 16 on 2 cores — let the lease pass to another hub while this hub's pack still ran
(``tests/ops/test_pack_writer.py``, seen at load ~16). Now each process runs one keeper thread
that renews **every lease it holds every** ``ttl/4``, all of them in one transaction, whether or not
a job asks; a lease lapses only if the writer commits nothing for ``3/4`` of the term (7.5 s of 10)
— a stalled *process*, which is what a lease is meant to detect. :meth:`~Leases.held` answers from
memory while the last committed term has more than ``ttl/4`` left and never waits for a renewal
then; it submits one (and waits, at most until the term ends) only when the term is nearly over,
i.e. when the keeper's renewals are not committing.

**A renewal does not wait behind the writer's queue.** It is an *urgent* writer op
(``Writer.submit_op(urgent=True)``): it commits as soon as the job in progress has, ahead of the
queue (benchmarks §35, §44). A group is capped at ``max_group_events`` (5,000 events), and an
operation that may run longer must be cut into batches, as segment runs and imports are.

**A lease that passed anyway is fenced where it matters.** :func:`fence` reads the lease in the
job's own writer transaction and asks the storage to check at commit that nobody changed it
(``Connection.readCurrent``): a hub whose lease lapsed and was taken cannot commit the job's
claim (the pack period's, :mod:`.maintenance`). Firing a timer deletes it from the store's index
in the firing transaction, so a late holder conflicts instead of firing twice. A pack itself
commits nothing; two at once are refused by the storage (RelStorage's pack lock, ZEO's and
FileStorage's "Already packing").

**Leases are not on the change feed.** A lease record is coordination between hub processes, not
data: nothing a ``Watch`` subscriber or ``shopkeeper_committed`` plugin reads changes when it is
taken or renewed, and publishing every renewal would only add noise and feed records.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from BTrees.OOBTree import OOBTree

from ..customer import now_us
from ..store import Folders

# a pickle alias too: leases written before engine.records name shopkeeper.engine.leases.Lease
from .records import Lease as Lease

log = logging.getLogger(__name__)

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


def fence(folders: Folders, name: str, holder: str) -> bool:
    """In a writer transaction that does a lease's job: True if ``holder`` holds lease ``name`` in
    this transaction's snapshot, and the storage will refuse the commit (a ``ConflictError``, so
    the writer retries and this answers again) if another hub changes the lease before it."""
    leases = folders.root.get(FOLDER)
    lease = leases.get(name) if leases is not None else None
    if lease is None or lease.holder != holder or lease.expires <= now_us():
        return False
    jar = getattr(lease, "_p_jar", None)
    if jar is not None and lease._p_oid is not None:
        jar.readCurrent(lease)
    return True


class Leases:
    """This process's leases: :meth:`held` answers from memory, a keeper thread renews every lease
    held every ``ttl/4`` through the writer (one urgent op for all of them). ``submit_op`` is a
    writer's ``submit_op`` (it must take ``urgent=``)."""

    def __init__(self, submit_op: Any, ttl_s: float = 10.0, holder: str | None = None) -> None:
        self.submit_op = submit_op
        self.ttl_s = ttl_s
        self.holder = holder or f"hub-{uuid.uuid4().hex[:12]}"
        #: lease -> its committed expiry (µs) while this process holds it; minus another holder's
        self._until: dict[str, int] = {}
        #: another hub's lease -> when (``time.monotonic``) to ask the store again
        self._ask_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._renewing: Future | None = None
        self._taking: dict[str, Future] = {}
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        #: renewals committed by the keeper, and leases found taken by another hub after holding them
        self.renewals = 0
        self.lost: list[str] = []

    @property
    def renew_every(self) -> float:
        return self.ttl_s / 4

    def held(self, name: str) -> bool:
        """True if this process holds lease ``name`` now (taking it if it is free)."""
        guard = int(self.renew_every * 1_000_000)
        now = now_us()
        with self._lock:
            until = self._until.get(name, 0)
            if until - guard > now:
                return True
            if until < 0 and time.monotonic() < self._ask_at.get(name, 0.0):
                return False  # another hub's: ask again later (the keeper does not ask for us)
        with self._lock:  # one acquisition in flight per lease: a stalled writer does not pile them up
            fut = self._taking.get(name)
            submitted = fut is None or fut.done()
            if submitted:
                fut = self._taking[name] = self.submit_op(
                    lambda f, ch: {name: acquire(f, name, self.holder, self.ttl_s)}, urgent=True)
        if submitted:  # outside the lock: a future already done runs the callback (which locks) at once
            fut.add_done_callback(self._done)
        # held before: wait no longer than the term we know of (past it, another hub may hold it);
        # never held, or another hub's: wait for the answer
        wait = max(0.0, (until - now) / 1_000_000) if until > 0 else None
        try:
            got = fut.result(wait)
        except FutureTimeout:
            return False
        self._record(got)  # also done by the callback, maybe after this thread has woken
        if got[name] > 0:
            self._start_keeper()
        return got[name] > 0

    def _record(self, got: dict[str, int]) -> dict[str, int]:
        """Note what an acquisition or renewal committed (on the writer's thread or the caller's)."""
        with self._lock:
            for name, value in got.items():
                if value < 0:
                    if self._until.get(name, 0) > 0:
                        self.lost.append(name)
                        log.warning("lease %r was taken by another hub", name)
                    self._ask_at[name] = time.monotonic() + min(self.renew_every,
                                                                max(0.0, (-value - now_us()) / 1_000_000))
                self._until[name] = value
        return got

    def _done(self, fut: Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        self._record(fut.result())

    def _start_keeper(self) -> None:
        with self._lock:
            if self._keeper is not None or self._stop.is_set():
                return
            self._keeper = threading.Thread(target=self._keep, name="shopkeeper-leases", daemon=True)
        self._keeper.start()

    def renew(self) -> Future | None:
        """Submit one urgent op renewing every lease held (none in flight already); the keeper's round."""
        with self._lock:
            names = [n for n, until in self._until.items() if until > 0]
            if not names or (self._renewing is not None and not self._renewing.done()):
                return None

            def op(f: Folders, ch: Any) -> dict[str, int]:
                return {n: acquire(f, n, self.holder, self.ttl_s) for n in names}

            self._renewing = fut = self.submit_op(op, urgent=True)
        fut.add_done_callback(self._counted)
        return fut

    def _counted(self, fut: Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self.renewals += 1
            self._record(fut.result())

    def _keep(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.renew()
            except Exception:  # the writer is stopping; the leases expire by themselves
                log.debug("lease renewal not submitted", exc_info=True)

    def release_all(self, timeout: float = 5.0) -> None:
        """Give up every lease held (at shut-down), so another hub takes over at once."""
        self._stop.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout)
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


__all__ = ["Lease", "Leases", "acquire", "release", "fence", "holds"]
