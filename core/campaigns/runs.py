"""Campaign runs: an audience snapshot, then one outbox intent per recipient, through the one writer.

A run (:class:`Run`, in the store-wide ``campaign_runs`` BTree) goes::

    snapshot --audience planned--> running --every recipient written--> done
                                     |  ^
                               pause |  | resume            (any state but done) --cancel--> cancelled
                                     v  |
                                    paused

* **snapshot** — every customer is judged in *one read transaction* (a ZODB snapshot: the
  audience as it was at ``snapshot_at``, whatever commits meanwhile) and the decisions
  (:func:`shopkeeper.campaigns.plan.decide`) are stored in the run's ``plan`` BTree in large
  writer operations. A crash before the snapshot is complete starts it again (no intent has
  been written yet);
* **delivery** — writer operations of ``batch`` recipients each take the next planned
  customers after the run's ``cursor``: a recipient gets an outbox intent whose id is
  ``cp.<run>.<customer>`` (so re-applying a batch after a crash finds it and writes no
  second), holdout and excluded customers are counted, and the cursor moves — all in the
  same transaction. A restarted hub continues from the cursor: 0 double, 0 lost;
* **pause** stops the delivery between two batches (intents written stay queued);
  **cancel** also cancels the run's intents not yet claimed by an adapter.

Every write is a writer operation (``submit``: the hub writer's ``submit_op``); without a hub
(an offline tool on a store no hub holds) each runs in its own transaction
(:func:`shopkeeper.analysis.models.commit_op`). The pace of delivery (``rate``, ``backlog``)
is :mod:`.pacing`'s.

The standing run of an on-segment-entry campaign, which follows the change feed instead of a
snapshot, is :mod:`.entries`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from BTrees.OOBTree import OOBTree

from .. import contact, outbox
from ..analysis.models import commit_op
from ..customer import now_us
from ..engine.refusals import WriterStopped
from ..rules.actions import TemplateValueMissing
from ..store import StoreError
from . import pacing
from .model import Campaign
from .plan import HOLDOUT, Judge, intent_of
from .records import CANCELLED, DONE, PAUSED, RUNNING, SNAPSHOT

# a pickle alias too: runs written before campaigns.records name shopkeeper.campaigns.runs.Run
from .records import Run as Run
from .steps import ROOT as ROOT
from .steps import create_runs as create_runs

log = logging.getLogger("shopkeeper.campaigns")

FINAL = frozenset({CANCELLED, DONE})
#: counts keys besides channels: ``sent:<channel>`` intents written, ``<code>`` excluded or held out
WRITTEN = "intents"


class RunError(ValueError):
    """A run operation the run's state does not allow (pause a finished run...)."""


def runs(folders: Any, create: bool = False) -> OOBTree | None:
    """The campaign runs folder; with ``create``, its absence (a store opened without the
    campaigns plugin's evolve steps) is an error that says so."""
    t = folders.root.get(ROOT)
    if t is None and create:
        raise StoreError(f"the store has no {ROOT!r} folder: it was opened without the campaigns plugin's "
                         "evolve step 'campaign-runs' (open it with steps=shopkeeper.plugins.evolve_steps(pm))")
    return t


def get_run(folders: Any, run_id: str) -> Run:
    t = runs(folders)
    r = t.get(run_id) if t is not None else None
    if r is None:
        raise LookupError(f"no campaign run {run_id!r}")
    return r


def list_runs(folders: Any, campaign: str | None = None) -> list[Run]:
    t = runs(folders)
    return [r for r in (t.values() if t is not None else ()) if campaign is None or r.campaign == campaign]


def intent_id(run_id: str, customer_id: str) -> str:
    return f"cp.{run_id}.{customer_id}"


# -- writer operations ------------------------------------------------------------------


def create_run(campaign: Campaign, *, run_id: str | None = None, by: str = "", trigger: str = "manual",
               now: int | None = None) -> Any:
    """Writer operation: a new run in ``snapshot``; returns its id (an existing ``run_id`` is
    returned unchanged: a schedule that fires twice starts one run)."""

    def op(folders: Any, changes: Any) -> str:
        at = now if now is not None else now_us()
        t = runs(folders, create=True)
        rid = run_id or f"{campaign.name}-{at // 1_000_000}"
        if rid in t:
            return rid
        if not campaign.active_at(at) and trigger == "manual":
            raise RunError(f"campaign {campaign.name!r} is not active now (enabled, start/end)")
        t[rid] = Run(rid, campaign, at, by, trigger)
        return rid

    return op


def _set_status(run_id: str, allowed: set[str], new: str, verb: str) -> Any:
    def op(folders: Any, changes: Any) -> dict[str, Any]:
        r = get_run(folders, run_id)
        if r.status not in allowed:
            raise RunError(f"run {run_id} is {r.status}: it cannot be {verb} (only a run that is "
                           f"{' or '.join(sorted(allowed))})")
        r.status = SNAPSHOT if new == RUNNING and not r.snapshot_done else new
        r.updated_at = now_us()
        if new == CANCELLED:
            r.finished_at = r.updated_at
        return r.as_dict()

    return op


def pause(run_id: str) -> Any:
    return _set_status(run_id, {SNAPSHOT, RUNNING}, PAUSED, "paused")


def resume(run_id: str) -> Any:
    return _set_status(run_id, {PAUSED}, RUNNING, "resumed")


def cancel(run_id: str) -> Any:
    return _set_status(run_id, {SNAPSHOT, RUNNING, PAUSED}, CANCELLED, "cancelled")


def _write_plan(run_id: str, rows: list[tuple[str, tuple[str, str, str, str]]], first: bool, last: bool,
                at: int) -> Any:
    def op(folders: Any, changes: Any) -> None:
        r = get_run(folders, run_id)
        if r.status in FINAL:
            return
        if first:
            r.plan.clear()
            r.snapshot_at = at
        r.plan.update(rows)
        if last:
            r.snapshot_done = True
            if r.status == SNAPSHOT:
                r.status = RUNNING
            r.updated_at = now_us()

    return op


def _deliver_batch(run_id: str, batch: int, budget: dict[str, int] | None = None,
                   used: dict[str, int] | None = None) -> Any:
    """Writer operation: the next ``batch`` planned customers of a running run, stopping before
    the first recipient whose channel ``budget`` (:mod:`.pacing`) is spent; returns (entries
    handled, run status after). ``used`` receives the intents written per channel."""
    spent: dict[str, int] = used if used is not None else {}

    def op(folders: Any, changes: Any) -> tuple[int, str]:
        spent.clear()
        r = get_run(folders, run_id)
        if r.status != RUNNING or not r.snapshot_done:
            return 0, r.status if r.snapshot_done else SNAPSHOT
        campaign = r.campaign_def()
        items = r.plan.items(min=r.cursor, excludemin=r.cursor is not None)
        add: dict[str, int] = {}
        n = 0
        last = r.cursor
        at = now_us()
        limited = False
        for cid, (channel, code, _detail, _deferred) in items:
            if n >= batch:
                break
            if not code and not pacing.allowed(budget, spent, channel):
                limited = True
                break
            n += 1
            last = cid
            if code:
                add[code] = add.get(code, 0) + 1
                continue
            c = folders.customer(cid)
            msg = campaign.message(channel)
            if c is None or msg is None:
                add["gone"] = add.get("gone", 0) + 1
                continue
            try:
                template, payload = intent_of(campaign, msg, c, run_id)
            except TemplateValueMissing:
                add["render_failed"] = add.get("render_failed", 0) + 1
                continue
            outbox.enqueue(folders, c, channel=channel, template=template, purpose=campaign.purpose,
                           payload=payload, source=f"campaign:{campaign.name}", intent_id=intent_id(run_id, cid),
                           at=at, changes=changes)
            add[f"{WRITTEN}:{channel}"] = add.get(f"{WRITTEN}:{channel}", 0) + 1
            spent[channel] = spent.get(channel, 0) + 1
        r.cursor = last
        r.delivered += n
        r.bump(add, at)
        if n < batch and not limited:
            r.status = DONE
            r.finished_at = at
        return n, r.status

    return op


def _cancel_batch(run_id: str, batch: int, after: str | None) -> Any:
    """Writer operation: cancel the pending intents of the next ``batch`` planned customers up to
    the run's cursor; returns (intents cancelled, where to go on or None when finished)."""

    def op(folders: Any, changes: Any) -> tuple[int, str | None]:
        r = get_run(folders, run_id)
        n = seen = 0
        last = after
        more = False
        for cid, (_ch, code, _d, _df) in r.plan.items(min=after, excludemin=after is not None):
            if r.cursor is None or cid > r.cursor:
                break
            if seen >= batch:
                more = True
                break
            seen += 1
            last = cid
            if code:
                continue
            c = folders.customer(cid)
            if c is not None and outbox.cancel(folders, c, intent_id(run_id, cid), f"campaign run {run_id} cancelled"):
                n += 1
        if n:
            r.bump({"cancelled": n}, now_us())
        return n, last if more else None

    return op


# -- driving a run ----------------------------------------------------------------------


def snapshot(store: Any, submit: Any, run_id: str, *, chunk: int = 10_000,
             policy: contact.ContactPolicy | None = None, stop: threading.Event | None = None) -> int:
    """Judge every customer in one read snapshot and store the decisions of the audience.
    A set ``stop`` (the hub shutting down) ends it before anything is written (returns -1): the
    next start takes the snapshot again."""
    with store.read() as f:
        r = get_run(f, run_id)
        if r.snapshot_done or r.status in FINAL:
            return len(r.plan)
        campaign = r.campaign_def()
    at = now_us()
    rows: list[tuple[str, tuple[str, str, str, str]]] = []
    with store.read() as f:
        judge = Judge(f, campaign, at, policy, stop)
        for d in judge:
            rows.append((d.customer_id, (d.channel, d.code, d.detail[:200], d.deferred)))
        if judge.stopped:
            return -1
    if not rows:
        commit_op(store, submit, _write_plan(run_id, [], True, True, at), "shopkeeper: campaign snapshot")
        return 0
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        commit_op(store, submit, _write_plan(run_id, part, i == 0, i + chunk >= len(rows), at),
                  "shopkeeper: campaign snapshot")
    return len(rows)


def deliver(store: Any, submit: Any, run_id: str, *, batch: int = 2000, stop: threading.Event | None = None,
            progress: Any = None, clock: Any = time.monotonic, sleep: Any = None, pacers: dict | None = None,
            turn: float | None = None) -> str:
    """Write the run's intents batch by batch until it is done, paused or cancelled (or ``stop``),
    within the campaign's ``rate`` and ``backlog`` (:mod:`.pacing`): ``sleep(seconds)`` waits
    (default: on ``stop``); ``clock`` and ``sleep`` are injectable (tests). ``turn``: return
    (``running``) once the run has waited that long, so one paced run does not hold the others
    up; ``pacers`` keeps each run's token buckets from one turn to the next."""
    stop = stop or threading.Event()
    wait = sleep or stop.wait
    with store.read() as f:
        campaign = get_run(f, run_id).campaign_def()
    pacers = pacers if pacers is not None else {}
    pacer, used, waited = pacers.setdefault(run_id, pacing.Pacer(campaign.rate, clock)), {}, 0.0

    def hold(seconds: float) -> None:
        nonlocal waited
        if turn is not None:
            seconds = max(0.0, min(seconds, turn - waited))  # a long wait ends the turn instead
        waited += seconds
        wait(seconds)

    while True:
        if stop.is_set() or (turn is not None and waited >= turn):
            with store.read() as f:
                return get_run(f, run_id).status
        size, budget = batch, pacer.budget()
        if campaign.backlog:
            with store.read() as f:
                running, room = get_run(f, run_id).status == RUNNING, pacing.room(f, campaign, run_id)
            if running and room <= 0:
                hold(0.2)  # back-pressure: the adapters are behind
                continue
            size = max(1, min(batch, room))
        if budget is not None and max(budget.values()) < 1:
            hold(pacer.wait_seconds())
            continue
        n, status = commit_op(store, submit, _deliver_batch(run_id, size, budget, used), "shopkeeper: campaign intents")
        pacer.spend(used)
        if n == 0 and status == RUNNING:  # the next recipient's channel has no budget left
            hold(pacer.wait_seconds())
        if progress is not None:
            progress(n, status)
        if status != RUNNING:
            return status


def cancel_intents(store: Any, submit: Any, run_id: str, batch: int = 2000) -> int:
    """After :func:`cancel`: cancel the run's intents that no adapter has claimed yet."""
    total = 0
    after: str | None = None
    while True:
        n, after = commit_op(store, submit, _cancel_batch(run_id, batch, after), "shopkeeper: campaign cancelled")
        total += n
        if after is None:
            return total


def drive(store: Any, submit: Any, run_id: str, *, batch: int = 2000, stop: threading.Event | None = None,
          policy: contact.ContactPolicy | None = None, pacers: dict | None = None, turn: float | None = None) -> str:
    """Snapshot (if not complete) and deliver: what the scheduler runs, and ``campaign start`` offline."""
    with store.read() as f:
        status = get_run(f, run_id).status
    if status == SNAPSHOT and snapshot(store, submit, run_id, policy=policy, stop=stop) < 0:
        return SNAPSHOT
    return deliver(store, submit, run_id, batch=batch, stop=stop, pacers=pacers, turn=turn)


def status(store: Any, run_id: str) -> dict[str, Any]:
    with store.read() as f:
        return get_run(f, run_id).as_dict()


class Runner:
    """The hub's campaign thread: drives runs that are ``snapshot``/``running`` (after a restart
    too) and starts scheduled ones. It decides; the writer commits (``submit``)."""

    def __init__(self, store: Any, submit: Any, *, campaigns: Any = None, tick: float = 0.5,
                 batch: int = 2000, turn: float = 1.0) -> None:
        self.store = store
        self.submit = submit
        self.campaigns = campaigns  # () -> dict name -> Campaign (the files in force)
        self.tick = tick
        self.batch = batch
        self.turn = turn  # seconds a paced run may wait before the next live run gets its turn
        self.pacers: dict[str, Any] = {}  # run id -> its rate buckets, kept between turns
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shopkeeper-campaigns", daemon=True)

    def start(self) -> Runner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self, now: int | None = None) -> list[str]:
        """Start due scheduled runs, then drive every live run a step; returns the run ids driven."""
        now = now if now is not None else now_us()
        if self.campaigns is not None:
            with self.store.read() as f:
                t = runs(f)
                known = set(t.keys()) if t is not None else set()
            for c in self.campaigns().values():
                if c.schedule.kind == "segment_entry" and c.active_at(now) and f"{c.name}-entry" not in known:
                    commit_op(self.store, self.submit, standing_run(c, now), "shopkeeper: campaign on entry")
                rid = due_run_id(c, now)
                if rid is not None and rid not in known:
                    commit_op(self.store, self.submit, create_run(c, run_id=rid, trigger=c.schedule.kind, by="schedule",
                                                                  now=now), "shopkeeper: campaign scheduled")
        with self.store.read() as f:
            live = [(r.id, r.trigger) for r in list_runs(f) if r.status in (SNAPSHOT, RUNNING)]
        for gone in set(self.pacers) - {rid for rid, _t in live}:
            del self.pacers[gone]
        for rid, trigger in live:
            if self.stop_event.is_set():
                break
            try:
                if trigger == "segment_entry":
                    follow_entries(self.store, self.submit, rid, pacers=self.pacers)
                else:
                    drive(self.store, self.submit, rid, batch=self.batch, stop=self.stop_event, pacers=self.pacers,
                          turn=self.turn)
            except WriterStopped:
                raise  # the hub is stopping: the run is not at fault; it goes on from its last batch after restart
            except Exception as exc:  # one broken run must not stop the others
                log.exception("campaign run %s failed", rid)
                commit_op(self.store, self.submit, _fail(rid, str(exc)), "shopkeeper: campaign failed")
        return [rid for rid, _t in live]

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.run_once()
            except WriterStopped:
                break  # the hub is stopping (its writer refused the batch): nothing to report
            except Exception:
                if self.stop_event.is_set():
                    break
                log.exception("campaign runner")
            self.wake.wait(self.tick)
            self.wake.clear()


def _fail(run_id: str, error: str) -> Any:
    def op(folders: Any, changes: Any) -> None:
        r = get_run(folders, run_id)
        r.status = PAUSED
        r.error = error[:500]

    return op


def due_run_id(c: Campaign, now: int) -> str | None:
    """The id of the scheduled run that is due now (stable, so it is created once), or None."""
    if not c.active_at(now):
        return None
    s = c.schedule
    if s.kind == "once" and s.at is not None and now >= s.at:
        return f"{c.name}-at-{s.at // 1_000_000}"
    if s.kind == "recurring" and s.every_us:
        base = c.start or 0
        return f"{c.name}-every-{(now - base) // s.every_us}"
    return None


# the standing run of an on-segment-entry campaign (imported last: it builds on the run above)
from .entries import follow_entries, standing_run  # noqa: E402

__all__ = ["Run", "Runner", "RunError", "create_run", "standing_run",
           "pause", "resume", "cancel", "cancel_intents", "snapshot",
           "deliver", "drive", "follow_entries", "status", "get_run", "list_runs", "intent_id", "due_run_id", "HOLDOUT",
           "SNAPSHOT", "RUNNING", "PAUSED", "CANCELLED", "DONE"]
