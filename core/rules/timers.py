"""Absence timers: ``when: absent`` rules wait for an event that may not come.

A pending timer lives on the customer (``rule_state['timers']``) and in the store-level
``rule_timers`` BTree keyed by (due, customer, timer id); :class:`TimerRunner` decides when
timers are due and has the writer fire them (:func:`fire_due`, which ``RulesService.fire_due``
calls in the writer's transaction).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
from typing import TYPE_CHECKING, Any

from BTrees.OOBTree import OOBTree
from ZODB.POSException import ConflictError

from ..customer import Customer, now_us
from ..engine.refusals import WriterStopped
from .model import Rule
from .state import _may_fire, _record_fired

if TYPE_CHECKING:
    from .runtime import RulesService

log = logging.getLogger("shopkeeper.rules")

TIMER_INDEX = "rule_timers"


def timer_index(folders: Any) -> OOBTree:
    return folders.root[TIMER_INDEX]  # generation 5


def schedule_timer(folders: Any, customer: Customer, rule: Rule, ev: dict[str, Any]) -> str:
    assert rule.absent is not None
    types, within = rule.absent
    due = ev["ts"] + within
    tid = hashlib.sha1(f"{rule.key}|{ev['key']}|{ev.get('idempotency_key')}".encode()).hexdigest()[:12]
    customer.put_rule_state("timers", tid, {"rule": rule.name, "scope": rule.scope, "version": rule.version,
                                            "due": due, "start": ev["ts"], "cancel_on": list(types), "event": ev})
    timer_index(folders)[(due, customer.id, tid)] = rule.key
    return tid


def cancel_timers(folders: Any, customer: Customer, ev: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for tid, t in list((customer.rule_state.get("timers") or {}).items()):
        if ev["type"] in t["cancel_on"] and t["start"] <= ev["ts"] < t["due"]:
            customer.pop_rule_state("timers", tid)
            idx = folders.root.get(TIMER_INDEX)
            if idx is not None:
                idx.pop((t["due"], customer.id, tid), None)
            out.append({"rule": t["rule"], "timer": tid, "by": ev["type"]})
    return out


class TimerRunner:
    """Fires due timers in the background: at most ``tick`` seconds late, and at once after a restart.

    In a hub, ``submit`` is the engine writer's ``submit_op``: this thread only decides
    *when* timers are due; firing them is an operation applied in the writer's transaction,
    so what the fired rules change (an outbox intent, a tag, an emitted event) is committed
    by the one writer and published on the change feed and to ``shopkeeper_committed`` like
    any event. Without ``submit`` (an offline tool on a store no hub holds) each run goes through
    the engine's offline writer: its own transaction, and nothing is published.
    """

    def __init__(self, store: Any, service: RulesService, *, tick: float = 0.2, batch: int = 500,
                 on_fired: Any = None, submit: Any = None, may_run: Any = None) -> None:
        self.store = store
        self.service = service
        self.tick = tick
        self.batch = batch
        self.on_fired = on_fired
        self.submit = submit
        self.may_run = may_run  # () -> bool: this hub holds the timers' lease (several hubs, one store)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = 0
        self.errors = 0

    def start(self) -> TimerRunner:
        self._thread = threading.Thread(target=self._run, name="shopkeeper-rule-timers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_once(self, now: int | None = None) -> int:
        from ..engine.offline import OfflineWriter

        def fire(folders: Any, changes: Any) -> list[dict[str, Any]]:
            outputs: list[Any] | None = [] if changes is not None else None  # offline: nothing to publish
            traces = self.service.fire_due(folders, now, self.batch, outputs=outputs)
            if changes is not None:
                changes.publish(outputs or [])
            return traces

        submit = self.submit or OfflineWriter(self.store, note="shopkeeper: rule timers").submit_op
        try:
            traces = submit(fire).result()  # the writer (or the offline writer) retries conflicts itself
        except ConflictError:
            traces = []  # offline, still conflicting after the retries: the next tick tries again
        if traces:
            self.fired += len(traces)
            if self.on_fired is not None:
                self.on_fired(traces)
        return len(traces)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.may_run is not None and not self.may_run():
                    self._stop.wait(self.tick)  # another hub fires them
                    continue
                n = self.run_once()
                if self._stop.is_set():
                    break  # the hub is stopping: its store may be closing under this thread
                if n >= self.batch:
                    continue  # more are due: keep going
                with self.store.read() as f:
                    nxt = self.service.next_due(f)
            except WriterStopped:
                break  # the hub is stopping: the firing never committed, so its timers stay due for the next start
            except Exception:
                if self._stop.is_set():
                    break  # a read racing the hub's shutdown (the store closed), not a fault
                self.errors += 1
                log.exception("rule timer runner")
                nxt = None
            wait = self.tick
            if nxt is not None:
                wait = min(self.tick, max(0.0, (nxt - now_us()) / 1e6))
            self._stop.wait(wait)


def fire_due(service: RulesService, folders: Any, now: int | None = None, limit: int = 1000,
             outputs: list[Any] | None = None) -> list[dict[str, Any]]:
    """Fire up to ``limit`` timers due at ``now`` (µs) in the caller's transaction; return traces.

    Change-feed entries the fired actions write (an outbox intent, an emitted event's
    segment changes) are put on ``outputs``, for the caller to publish after its commit."""
    index = folders.root.get(TIMER_INDEX)
    if not index:  # a BTree's truth reads its first bucket; len() walked them all, every tick
        return []
    now = now if now is not None else now_us()
    traces = []
    due = list(itertools.islice(index.keys(max=(now, "\U0010ffff", "\U0010ffff")), limit))
    for key in due:
        due_at, cid, tid = key
        del index[key]
        customer = folders.customer(cid)
        if customer is None:
            continue
        t = customer.pop_rule_state("timers", tid)
        if t is None:
            continue
        service.stats.timers_fired += 1
        rs = service.current
        rule = None
        if t["scope"] == "central":
            rule = rs.by_name.get(t["rule"])
        else:
            crs = service.customer_ruleset(customer)
            rule = crs.by_name.get(t["rule"]) if crs is not None else None
        ev = t["event"]
        trace = service._trace(rs, customer, ev)
        trace["timer"] = {"id": tid, "rule": t["rule"], "due": due_at, "fired_at": now,
                          "scheduled_under": t.get("version")}
        if rule is None or not rule.enabled:
            trace["timer"]["dropped"] = "the rule is gone or disabled"
            traces.append(trace)
            continue
        at = max(due_at, ev["ts"])
        if not _may_fire(customer.rule_state, rule, at):
            trace["timer"]["dropped"] = "once/cooldown: the rule acted for this customer meanwhile"
            traces.append(trace)
            continue
        trace["matched"].append({"rule": rule.key, "version": rule.version})
        _record_fired(customer, rule, at)
        service.run_actions(folders, customer, rule, ev, trace, now=at, outputs=outputs)
        traces.append(trace)
    return traces


def next_due(folders: Any) -> int | None:
    """When the earliest pending timer is due (µs), or None: read from the index's first bucket."""
    index = folders.root.get(TIMER_INDEX)
    if not index:  # a BTree's truth reads its first bucket; len() walked them all, every tick
        return None
    return index.minKey()[0]
