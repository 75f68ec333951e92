"""The built-in analysis plugin: registered through the ``shopkeeper`` entry point like any other.

* ``shopkeeper_processors`` — :class:`AnalysisProcessor`, run inside the transaction of every
  applied event: learns from outcomes, re-scores a customer on each order, updates segment
  membership incrementally (entries/exits are reported in the event's ``outputs``);
* ``shopkeeper_decide`` — next best action from the offer catalogue (:mod:`.offers`);
* ``shopkeeper_startup``/``shopkeeper_shutdown`` — the segment scheduler thread (changed
  definitions and time-based segments, every ``SHOPKEEPER_SEGMENT_TICK_SECONDS``, default 3600),
  whose batches the hub's writer commits and publishes; and the hot reload of segment and offer
  files (polled every ``SHOPKEEPER_ANALYSIS_POLL_SECONDS``, default 1);
* ``shopkeeper_register_commands`` — ``models``, ``segments``, ``offers``, ``report``.

Definitions are read from ``<rules dir>/segments`` and ``<rules dir>/offers``; the rules dir is the
hub config's ``rules_dir`` if it has one, else ``$SHOPKEEPER_RULES_DIR``, else ``./rules``. They,
the scheduler and the reload watcher are per hub (:func:`state_for`, in the hub's
``plugin_state``): two hubs in one process keep their own.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..plugins import hookimpl

log = logging.getLogger(__name__)

#: key of the scheduler's thread and stop event in a hub's ``plugin_state`` (shopkeeper.context)
SCHEDULER_KEY = "shopkeeper.analysis.scheduler"

#: names that moved to :mod:`.processor` (imported on first use: see its docstring)
_MOVED = frozenset({"AnalysisState", "AnalysisProcessor", "state_for", "STATE_KEY", "_reads_itself"})


def __getattr__(name: str) -> Any:
    """The old names of :mod:`.processor`'s contents, imported when first read (PEP 562)."""
    if name in _MOVED:
        from . import processor

        return getattr(processor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def shopkeeper_evolve_steps() -> list[Any]:
    """The analysis folders and score tables (``shopkeeper.analysis.state.EVOLVE_STEPS``)."""
    from .state import EVOLVE_STEPS

    return list(EVOLVE_STEPS)


@hookimpl
def shopkeeper_processors(hub: Any) -> list[Any]:
    from .processor import AnalysisProcessor, state_for

    state = state_for(hub)
    state.reload()
    return [AnalysisProcessor(state)]


@hookimpl
def shopkeeper_decide(hub: Any, customer: Any, touchpoint: str, placement: str,
                      context: dict[str, Any]) -> list[dict] | None:
    from . import offers
    from .processor import state_for

    cat = state_for(hub).catalogue
    if not cat.offers:
        return None
    actions, why = offers.decide_explained(cat, customer, touchpoint, placement, context)
    if not actions and why.code:  # nothing to offer: tell the hub why (a marker, never returned)
        return [{"kind": "none", "id": "", "score": 0.0, "reason_code": why.code, "reason": why.detail}]
    return actions


@hookimpl
def shopkeeper_startup(hub: Any) -> None:
    interval = float(os.environ.get("SHOPKEEPER_SEGMENT_TICK_SECONDS", "3600"))
    store = getattr(hub, "store", None)
    writer = getattr(hub, "writer", None)
    if store is None or writer is None or interval <= 0:
        return  # not a hub (a tool calling the hook), or switched off
    from ..context import plugin_state
    from ..engine.refusals import WriterStopped
    from .processor import state_for
    from .segments import tick

    stop = threading.Event()
    state = state_for(hub)
    scheduler = plugin_state(hub).setdefault(SCHEDULER_KEY, dict)
    from ..engine.leases import holds

    may_run = holds(hub, "segment-scheduler")  # several hubs over one store: one runs it (docs/scaleout.md)

    def run() -> None:
        # the first run waits a little: a hub that starts and stops at once (tests, restarts) does no batch work
        if stop.wait(min(interval, 60.0)):
            return
        while True:
            try:
                if state.segments.defs and may_run():
                    # this thread decides when; the hub's one writer commits and publishes each batch
                    report = tick(store, state.segments, submit=writer.submit_op, stop=stop)
                    log.info("segment scheduler: %s", report)
            except WriterStopped:  # the hub is stopping: the run is repeated at its next start
                log.info("segment scheduler: the hub is stopping; this run is repeated at the next start")
                return
            except Exception:
                log.exception("segment scheduler run failed; will retry")
            if stop.wait(interval):
                return

    t = threading.Thread(target=run, name="shopkeeper-segments", daemon=True)
    scheduler.update(stop=stop, thread=t)
    t.start()

    poll = float(os.environ.get("SHOPKEEPER_ANALYSIS_POLL_SECONDS", "1.0"))

    def watch() -> None:
        """Hot reload of segment and offer files; a changed segment definition is re-evaluated for
        everyone at once (through the writer), not at the scheduler's next hourly run."""
        while not stop.wait(poll):
            try:
                if state.reload_if_changed() and state.segments.defs and may_run():
                    report = tick(store, state.segments, submit=writer.submit_op, stop=stop)
                    log.info("segments after reload: %s", report)
            except Exception:
                log.exception("segment/offer reload failed; will retry")

    if poll > 0:
        w = threading.Thread(target=watch, name="shopkeeper-analysis-watch", daemon=True)
        scheduler["watcher"] = w
        w.start()


@hookimpl
def shopkeeper_shutdown(hub: Any) -> None:
    from ..context import plugin_state

    scheduler = plugin_state(hub).pop(SCHEDULER_KEY) or {}
    stop = scheduler.pop("stop", None)
    if stop is not None:
        stop.set()
        scheduler.pop("thread").join(5)
        w = scheduler.pop("watcher", None)
        if w is not None:
            w.join(5)


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import register

    register(cli)
