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
