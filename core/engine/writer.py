"""The hub's single writer thread: group commit for every caller, acknowledgement after commit.

Callers on any thread submit work and wait on a future:

* **event batches** (``submit_events``): the writer takes every batch waiting in its queue
  (up to ``max_group_events`` events), applies them with one :class:`~shopkeeper.engine.ingest.Ingestor`
  call — one transaction, one fsync — and resolves each caller's future with that caller's
  results, only after ``commit()`` returned;
* **operations** (``submit_op``): a function run in its own transaction on the writer's
  connection (Identify, SetConsent, merges, erasure), retried on write conflicts — or, for an
  op nobody waits on (``linger``: Decide's control-group mark), in the next group's transaction;
* **pack** (``submit_pack``): not a transaction, but ordered like one (see below);
* **urgent operations** (``submit_op(urgent=True)``): a tiny op that must not wait behind the
  queue — a lease renewal (:mod:`.leases`): a backlog longer than a lease's remaining term would
  let it lapse and another hub take over a job this hub still runs (benchmarks §44). It runs in a
  transaction of its own as soon as the job in progress has committed, ahead of jobs queued
  before it; so it must touch nothing a queued job depends on.

**Pack and the writer.** A pack commits nothing, yet it must not race the writer: an erasure
acknowledged before a pack was asked for must be covered by it, or the erased person's old
revisions survive it. So a pack request waits in the same queue as everything else; when the
writer reaches it, every job submitted earlier has committed, and the writer fixes the pack
time there — after its last commit (``max(now, time of the last transaction)``, minus ``keep``
days). The storage's pack itself then runs on a maintenance thread beside the writer's later
commits, which every ZODB storage supports (FileStorage copies live records without the commit
lock and takes it only to copy the tail and swap files; ZEO packs in the server; RelStorage
packs with its own locks): a pack of a large store must not stall ingest for minutes. One pack
at a time per process; asking for another while one runs is refused (:class:`PackRunning`).

The writer owns its ZODB connections; no connection is ever used by two threads. Entries
for the change feed are written in the same transaction as the change; after the commit
they are handed to ``on_committed`` (the broker and the ``shopkeeper_committed`` hook).

This module is domain code: it does not import gRPC.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any

import transaction.interfaces
from ZODB.POSException import ConflictError

from ..events import Event
from ..identity import Resolver
from ..store import Folders, Store
from . import feed
from .ingest import EventResult, Ingestor, Processor
from .refusals import STOPPING, DeadlineExpired, HubStopping, PackRunning, WriterStopped

log = logging.getLogger(__name__)


class _Job:
    __slots__ = ("events", "op", "pack", "future", "deadline", "enqueued", "linger")

    def __init__(self, events: Sequence[Event] | None, op: Callable | None, deadline: float | None,
                 pack: Callable[[float], Any] | None = None, linger: float = 0.0) -> None:
        self.events = events
        self.op = op
        self.pack = pack
        self.future: Future = Future()
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.linger = linger


_STOP = object()
#: put in the queue when an urgent op arrives: wakes the writer and ends a group's collection
_WAKE = object()

#: the running writer of each database in this process: the one thread allowed to commit to it
_RUNNING: weakref.WeakKeyDictionary[Any, Writer] = weakref.WeakKeyDictionary()


def running_writer(db: Any) -> Writer | None:
    """The writer committing to ``db`` (a ``ZODB.DB``) in this process, if one runs.

    Lets a guard (:class:`shopkeeper.testing.CommitGuard`) tell a commit by the one
    writer from a commit by any other thread, which would bypass the change feed."""
    return _RUNNING.get(db)


class Changes:
    """Handed to an operation: records change-feed entries in the operation's transaction."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self.entries: list[feed.Change] = []

    def add(self, kind: str, customer_id: str, **kw: Any) -> feed.Change:
        e = feed.append(self.folders, kind, customer_id, **kw)
        self.entries.append(e)
        return e

    def publish(self, outputs: Sequence[Any]) -> None:
        """Publish the change-feed entries among ``outputs`` after the commit: what
        processors and rule actions put on an ``outputs`` list (entries already written
        with :func:`feed.append`); anything else on the list (traces) is ignored."""
        self.entries.extend(o for o in outputs if isinstance(o, feed.Change))


class Writer:
    def __init__(self, store: Store, resolver: Resolver, processors: Sequence[Processor] = (), *,
                 max_group_events: int = 5000,
                 on_committed: Callable[[list[feed.Change]], None] | None = None,
                 on_stats: Callable[[str, int], None] | None = None,
                 trim: Callable[[Folders], int] | None = None, trim_every_seconds: float = 60.0) -> None:
        self.store = store
        self.max_group_events = max_group_events
        #: a group of lingering jobs (see ``submit_events``) stops waiting at this many events
        self.linger_events = 500
        self.on_committed = on_committed
        #: ``on_stats(name, n)`` after each commit: ``wait_us`` per job, ``commit_us``, ``commit`` (events), and
        #: ``applied``/``duplicate``/``rejected``/``conflicts`` when not 0 (a zero is not reported: the hub's
        #: metrics did nothing with one). The queue's depth is not pushed: read :attr:`queue_depth` when wanted
        #: (the hub's gauge reads it at scrape time; pushing it cost every submit and every job a call).
        self.on_stats = on_stats
        self._trim = trim
        self._trim_every = trim_every_seconds
        self._last_trim = time.monotonic()
        self.ingestor = Ingestor(store, resolver, [feed.interaction_processor, *processors], source="hub")
        #: C-implemented (``SimpleQueue``): ``queue.Queue``'s Python-level locking cost a lone event ~30
        #: calls on the writer's thread and the caller's (docs/benchmarks.md §96)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: _Job | None = None
        self._urgent: collections.deque[_Job] = collections.deque()
        self._stopping = False
        self.events_committed = 0
        self.conflicts = 0
        self._thread = threading.Thread(target=self._run, name="shopkeeper-writer", daemon=True)
        self._op_conn = None
        self._op_tm = None
        self._packing: threading.Thread | None = None
        self._pack_started = 0.0

    # -- callers ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self._q.qsize()

    def submit_events(self, events: Sequence[Event], deadline: float | None = None, linger: float = 0.0) -> Future:
        """Future of one :class:`EventResult` per event (indexes as in ``events``).

        ``linger`` (seconds): for writes nobody waits on (``Decide``'s offer records). When the
        writer reaches such a job and everything queued lingers too, it waits up to ``linger``
        after the job was submitted, or until ``linger_events`` events are queued, for more to
        share the transaction: one commit instead of one per job whenever the writer keeps up.
        Any other job arriving ends the wait at once, and the order of jobs is kept: a caller's
        event submitted after a lingering record still commits after it."""
        return self._submit(_Job(list(events), None, deadline, linger=linger))

    def submit_op(self, op: Callable[[Folders, Changes], Any], deadline: float | None = None,
                  linger: float = 0.0, urgent: bool = False) -> Future:
        """Future of ``op(folders, changes)``'s return value, resolved after its commit.

        Without ``linger`` the op runs in a transaction of its own. With it (seconds, as for
        :meth:`submit_events`) the op is a write nobody waits on — ``Decide``'s control-group
        mark — and lingers for company like an offer record: it joins the writer's next group of
        events (and other lingering ops) and runs in that group's transaction, before its events,
        so one commit and one fsync serve them all. Such an op must be small and must check
        before it changes anything: if it raises, its future fails but what it changed before
        raising commits with the group (no savepoint per op). Its change-feed entries are
        published after the group's commit, as an op's are.

        ``urgent``: run the op in its own transaction as soon as the job in progress has
        committed, ahead of the queue (see the module docstring); for lease renewals."""
        if urgent:
            return self._submit(_Job(None, op, deadline), urgent=True)
        return self._submit(_Job(None, op, deadline, linger=linger))

    def submit_pack(self, pack: Callable[[float], Any], keep_days: float = 0.0) -> Future:
        """Future of ``pack(t)``'s return value, resolved when the pack finished.

        ``t`` is fixed on the writer's thread once every job submitted before this one has
        committed: ``max(now, time of the last transaction) - keep_days``. ``pack`` then runs on
        a maintenance thread while the writer goes on committing (see the module docstring).
        The future fails with :class:`PackRunning` if a pack is still running."""
        return self._submit(_Job(None, None, None, pack=lambda t: pack(t - keep_days * 86400)))

    @property
    def packing(self) -> bool:
        return self._packing is not None and self._packing.is_alive()

    def _submit(self, job: _Job, urgent: bool = False) -> Future:
        if self._stopping:
            job.future.set_exception(HubStopping())
            return job.future
        if urgent:
            self._urgent.append(job)
            self._q.put(_WAKE)
        else:
            self._q.put(job)
        return job.future

    def shed(self) -> int:
        """Fail every job queued but not started with :class:`HubStopping`, at once; return how many.

        The job in progress (and a job the writer already took for its next group) still commits
        and is answered; urgent ops (lease renewals) stay, and so do writes nobody waits on
        (``linger``: Decide's offer records and control marks), which no sender would resend.
        Jobs submitted afterwards are taken as usual: the stop's own work (shutdown hooks'
        flushes, lease releases) runs after this, on a queue now short. What fails was never
        applied, so its sender's retry (same idempotency keys) applies it exactly once; the
        writer's internal jobs are durable or re-derived (a rule timer stays in its index until
        its firing commits, the segment scheduler records a definition as evaluated only after
        its last batch, a lost sent mark is found from the delivery journal): docs/operations.md,
        "Stopping a hub"."""
        refused = 0
        kept = []
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                break
            if job is _STOP or job is _WAKE or job.linger:
                kept.append(job)  # the writer's wake-up (an urgent op), its stop, writes nobody waits on
            elif _refuse(job):
                refused += 1
        for job in kept:
            self._q.put(job)
        if refused:
            log.warning("hub stopping: %d queued writer jobs refused (their senders retry)", refused)
        return refused

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop in about one commit: the job in progress commits, every job queued but not started
        fails with :class:`HubStopping` (see :meth:`shed`), then the connections close.

        Not a drain: a busy writer's backlog took a stopping hub over 20 s to commit, past what
        an operator's Ctrl-C or systemd's SIGTERM expects."""
        if self._stopping:
            return
        self._stopping = True
        self.shed()
        self._q.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._close()
        if self._packing is not None:  # the store closes next: let the pack finish first
            self._packing.join(timeout)

    # -- the writer thread --------------------------------------------------------------

    @property
    def thread(self) -> threading.Thread:
        """The writer's thread: the only one that commits to the store while it runs."""
        return self._thread

    def _run(self) -> None:
        self._op_conn, self._op_tm = self.store.connect()
        _RUNNING[self.store.db] = self
        self.store.held_by(self.submit_op, self._thread)  # Store.add_steps on the running store: through this writer
        try:
            while True:
                while self._urgent:
                    self._run_op(self._urgent.popleft())
                job = self._pending or self._q.get()
                self._pending = None
                if job is _WAKE:
                    continue
                if job is _STOP:
                    break
                if self._stopping and not job.linger:  # stop() shed the queue; this one raced it
                    _refuse(job)
                    continue
                if job.op is not None and not job.linger:
                    self._run_op(job)
                elif job.pack is not None:
                    self._start_pack(job)
                else:
                    self._run_events(job)
                if self._trim is not None and not self._stopping \
                        and time.monotonic() - self._last_trim > self._trim_every:
                    self._last_trim = time.monotonic()
                    self._run_op(_Job(None, lambda f, ch: self._trim(f), None))
        except BaseException:  # pragma: no cover - a bug; make it loud
            log.exception("writer thread died")
            raise
        finally:
            self._close()

    def _close(self) -> None:
        if _RUNNING.get(self.store.db) is self:
            del _RUNNING[self.store.db]
            self.store.held_by(None)
        left = [self._pending] if self._pending is not None else []
        self._pending = None
        while True:  # nothing may wait forever on a writer that is gone
            try:
                left.append(self._urgent.popleft() if self._urgent else self._q.get_nowait())
            except queue.Empty:
                break
        for job in left:
            if job is not _STOP and job is not _WAKE:
                _refuse(job)
        self.ingestor.close()
        if self._op_conn is not None:
            with contextlib.suppress(transaction.interfaces.NoTransaction):
                self._op_tm.abort()  # explicit mode: there may be no live transaction
            self._op_conn.close()
            self._op_conn = None

    def _expired(self, job: _Job) -> bool:
        if job.deadline is not None and time.monotonic() > job.deadline:
            job.future.set_exception(DeadlineExpired("deadline passed before the request reached the writer"))
            return True
        return not job.future.set_running_or_notify_cancel()

    def _run_events(self, first: _Job) -> None:
        group = [first]
        n = len(first.events or ())
        until = first.enqueued + first.linger if first.linger else 0.0  # 0: nobody lingers, do not wait
        while n < self.max_group_events:
            try:
                left = until - time.monotonic() if n < self.linger_events else 0.0
                job = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if job is _WAKE:  # an urgent op waits: commit what is collected, then run it
                break
            if job is not _STOP and job.linger:
                until = min(until, job.enqueued + job.linger) if until else 0.0
            else:
                until = 0.0  # a job someone waits for (or the stop): no more waiting
            if job is _STOP or (job.events is None and not (job.op is not None and job.linger)):
                self._pending = job
                break
            group.append(job)
            n += len(job.events) if job.events is not None else 1
        group = [j for j in group if not self._expired(j)]
        ops = [j for j in group if j.events is None]  # lingering ops: they run in this transaction
        group = [j for j in group if j.events is not None]
        if not group and not ops:
            return
        events: list[Event] = []
        for j in group:
            events.extend(j.events)
        done_ops: dict[_Job, tuple[Any, BaseException | None, list[feed.Change]]] = {}

        def run_ops(folders: Folders) -> None:  # again on every attempt: a conflict aborted the last
            done_ops.clear()
            for j in ops:
                changes = Changes(folders)
                try:
                    done_ops[j] = (j.op(folders, changes), None, changes.entries)
                except ConflictError:
                    raise
                except Exception as exc:
                    done_ops[j] = (None, exc, [])

        started = time.monotonic()
        stat = self.on_stats
        if stat is not None:
            for j in group + ops:
                stat("wait_us", int((started - j.enqueued) * 1e6))
        try:
            conflicts0 = self.ingestor.stats.conflicts
            results = self.ingestor.apply(events, before=run_ops if ops else None)
            conflicts = self.ingestor.stats.conflicts - conflicts0
            if stat is not None:
                stat("commit_us", int((time.monotonic() - started) * 1e6))
                if conflicts:
                    stat("conflicts", conflicts)
            self.conflicts += conflicts
        except BaseException as exc:
            log.exception("group commit of %d events and %d ops failed", len(events), len(ops))
            for j in group + ops:
                j.future.set_exception(exc)
            return
        entries: list[feed.Change] = []
        for j in ops:
            value, failed, mine_entries = done_ops[j]
            entries.extend(mine_entries)
            if failed is not None:
                j.future.set_exception(failed)
            else:
                j.future.set_result(value)
        applied = dups = rejected = 0
        for r in results:
            if r.status == "applied":
                applied += 1
                entries.extend(o for o in r.outputs if isinstance(o, feed.Change))
            elif r.status == "duplicate":
                dups += 1
            else:
                rejected += 1
        self.events_committed += applied
        if stat is not None:
            if applied:
                stat("applied", applied)
            if dups:
                stat("duplicate", dups)
            if rejected:
                stat("rejected", rejected)
            stat("commit", len(events))
        start = 0
        for j in group:
            k = len(j.events)
            mine = results[start:start + k]
            for r in mine:
                r.index -= start
            start += k
            j.future.set_result(mine)
        self._committed(entries)

    def _run_op(self, job: _Job) -> None:
        if self._expired(job):
            return
        tm, conn = self._op_tm, self._op_conn
        attempt = 0
        started = time.monotonic()
        stat = self.on_stats
        if stat is not None:
            stat("wait_us", int((started - job.enqueued) * 1e6))
        while True:
            tm.begin()
            try:
                changes = Changes(Folders(conn))
                value = job.op(changes.folders, changes)
                tm.commit()
            except ConflictError as exc:
                tm.abort()
                attempt += 1
                self.conflicts += 1
                if stat is not None:
                    stat("conflicts", 1)
                if attempt > 8:
                    job.future.set_exception(exc)
                    return
                time.sleep(0.001 * attempt)
                continue
            except BaseException as exc:
                tm.abort()
                job.future.set_exception(exc)
                return
            break
        if stat is not None:
            stat("commit_us", int((time.monotonic() - started) * 1e6))
        job.future.set_result(value)
        self._committed(changes.entries)

    def _start_pack(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        if self.packing:
            since = time.strftime("%H:%M:%S", time.gmtime(self._pack_started))
            job.future.set_exception(PackRunning(f"a pack is already running (since {since} UTC); "
                                                 "try again when it has finished"))
            return
        t = time.time()
        last = self.store.db.lastTransaction()
        if last and last != b"\0" * 8:
            from persistent.TimeStamp import TimeStamp

            t = max(t, TimeStamp(last).timeTime() + 1e-3)  # after the last commit, even if the clock lags

        def run() -> None:
            try:
                job.future.set_result(job.pack(t))  # type: ignore[misc]
            except BaseException as exc:
                log.exception("pack failed")
                job.future.set_exception(exc)

        self._pack_started = time.time()
        self._packing = threading.Thread(target=run, name="shopkeeper-pack", daemon=True)
        self._packing.start()

    def _committed(self, entries: list[feed.Change]) -> None:
        if entries and self.on_committed is not None:
            try:
                self.on_committed(entries)
            except Exception:
                log.exception("after-commit handler failed (the commit stands)")


def _refuse(job: _Job) -> bool:
    """Fail ``job`` with :class:`HubStopping` unless its caller already gave up on it (cancelled)."""
    if job.future.done():
        return False
    try:
        job.future.set_exception(HubStopping())
    except InvalidStateError:  # cancelled (or answered) between the check and now
        return False
    return True


__all__ = ["Writer", "Changes", "DeadlineExpired", "WriterStopped", "HubStopping", "STOPPING", "PackRunning",
           "EventResult", "running_writer"]
