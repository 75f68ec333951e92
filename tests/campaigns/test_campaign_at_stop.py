"""A campaign batch refused because the hub is stopping is not the run's fault: the run must not
be marked failed (it goes on from its last committed batch after the restart)."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest

from shopkeeper.campaigns import runs
from shopkeeper.campaigns.records import RUNNING
from shopkeeper.engine.writer import HubStopping
from shopkeeper.store import Store


def test_a_batch_refused_by_a_stopping_hub_does_not_fail_the_run(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    submitted: list[Any] = []

    def submit(op: Any, *a: Any, **kw: Any) -> Future:
        submitted.append(op)  # the run's "failed" mark would come through here
        f: Future = Future()
        f.set_result(None)
        return f

    def refused(*a: Any, **kw: Any) -> None:
        raise HubStopping()

    monkeypatch.setattr(runs, "list_runs", lambda f: [SimpleNamespace(id="r-1", trigger="now", status=RUNNING)])
    monkeypatch.setattr(runs, "drive", refused)
    runner = runs.Runner(store, submit)
    with pytest.raises(HubStopping):
        runner.run_once()
    assert submitted == []
