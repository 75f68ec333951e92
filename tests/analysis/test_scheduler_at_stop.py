"""The segment scheduler's batches go through the hub's writer; one refused because the hub is
stopping leaves the definition marked changed, so the next start's scheduler runs it again
(docs/operations.md, "Stopping a hub")."""

from __future__ import annotations

import time

import pytest

from shopkeeper.analysis.segments import SegmentSet, sizes, tick
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.engine.writer import HubStopping, Writer
from shopkeeper.events import validate_event
from shopkeeper.identity import IdentityConfig, Resolver
from shopkeeper.store import Store

NOW = time.time() - 3600


def test_a_run_refused_by_a_stopping_writer_runs_again_on_the_next_start(store: Store) -> None:
    with Ingestor(store) as ing:
        ing.apply([validate_event({"type": "order", "identities": {"email": f"c{i}@example.org"}, "ts": NOW - i,
                                   "idempotency_key": f"o-{i}",
                                   "data": {"order_id": f"o{i}", "amount": 10.0 * i}}) for i in range(20)])
    segs = SegmentSet()
    segs.define("spent_100", "hard.total_spend >= 100")
    w = Writer(store, Resolver(IdentityConfig()))
    w.start()
    w.stop()  # the hub stopped under the scheduler: every batch it submits is refused
    with pytest.raises(HubStopping):
        tick(store, segs, now=int(NOW * 1e6), submit=w.submit_op)
    assert "spent_100" not in sizes(store)
    w = Writer(store, Resolver(IdentityConfig()))  # the next start
    w.start()
    try:
        r = tick(store, segs, now=int(NOW * 1e6), submit=w.submit_op)
    finally:
        w.stop()
    assert r["changed_definitions"] == ["spent_100"] and r["sizes"]["spent_100"] == 10


def test_the_scheduler_thread_ends_quietly_when_the_writer_refuses_for_the_stop(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A hub stopping under the scheduler's run: the writer refuses its batch (``HubStopping``), the
    run is repeated at the next start (above), so the thread ends with an info line — not a logged
    failure with a traceback, then a retry against a writer that will never take it."""
    import logging
    from pathlib import Path

    from shopkeeper.analysis.plugin import SCHEDULER_KEY, shopkeeper_startup
    from shopkeeper.context import plugin_state

    with Ingestor(store) as ing:
        ing.apply([validate_event({"type": "order", "identities": {"email": "c@example.org"}, "ts": NOW,
                                   "idempotency_key": "o-1", "data": {"order_id": "o1", "amount": 10.0}})])

    class Hub:  # what the hook reads of a hub: its store, writer and rules directory
        def __init__(self) -> None:
            self.store = store
            self.writer = Writer(store, Resolver(IdentityConfig()))
            self.config = type("Config", (), {"rules_dir": str(Path(__file__).resolve().parents[2] / "rules")})()

    hub = Hub()
    hub.writer.start()
    hub.writer.stop()  # stopping: every batch the scheduler submits is refused
    monkeypatch.setenv("SHOPKEEPER_SEGMENT_TICK_SECONDS", "0.01")
    with caplog.at_level(logging.INFO, logger="shopkeeper.analysis.plugin"):
        shopkeeper_startup(hub=hub)
        scheduler = plugin_state(hub).setdefault(SCHEDULER_KEY, dict)
        try:
            scheduler["thread"].join(30)  # waits on the thread's end: it retried forever before
            assert not scheduler["thread"].is_alive()
        finally:
            scheduler["stop"].set()
            scheduler["thread"].join(30)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "hub is stopping" in caplog.text
