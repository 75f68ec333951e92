"""Stopping a hub whose writer is busy: calls waiting on the writer end UNAVAILABLE at once ("hub is
stopping; retry against another hub or after restart"), never UNKNOWN/INTERNAL; the job in progress
commits; resent with the same idempotency keys after the restart, each event is applied exactly once.

Before this the writer committed its whole backlog on the way out (over 20 s on a busy hub)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from shopkeeper._proto.v1 import common_pb2, interactions_pb2
from shopkeeper.engine.writer import STOPPING
from shopkeeper.store import Store
from shopkeeper.testing import wait_for

from .conftest import event, record, start_hub

N = 8


@pytest.mark.e2e
def test_stop_with_calls_queued_answers_unavailable_and_a_resend_after_restart_applies_each_once(
        tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    r = start_hub(Store.open(uri))
    r.hub._own_store = True
    c = r.client("admin")
    gate, running = threading.Event(), threading.Event()

    def op(folders: Any, changes: Any) -> str:
        running.set()
        gate.wait(60)
        folders.root["stop-marker"] = "committed"
        return "done"

    in_progress = r.hub.writer.submit_op(op)
    assert running.wait(10)
    submitted: list[int] = []  # the calls' jobs, counted as they reach the writer (its own jobs may queue too)
    submit = r.hub.writer.submit_events
    r.hub.writer.submit_events = lambda *a, **kw: submitted.append(1) or submit(*a, **kw)
    more = threading.Event()  # keeps the stream open after its first batch

    def batches() -> Any:
        yield interactions_pb2.EventBatch(batch_id="b0", events=[event(email="s@x.com", key="st-0")])
        more.wait(60)

    stopper = threading.Thread(target=r.hub.stop, kwargs={"grace": 60}, name="test-stopper")
    try:
        with ThreadPoolExecutor(N + 1) as pool:
            calls = [pool.submit(record, c, event(email=f"u{i}@x.com", key=f"un-{i}"), timeout=120) for i in range(N)]
            stream = pool.submit(lambda: list(c.interactions.StreamInteractions(batches(), metadata=c.md,
                                                                                timeout=120)))
            wait_for(lambda: len(submitted) == N + 1, timeout=60, what="every call queued behind the job in progress")
            stopper.start()
            # answered while the job in progress still runs: the stop does not wait for the backlog
            errors = [f.exception(timeout=30) for f in calls + [stream]]
            assert not in_progress.done()
            gate.set()
            more.set()
    finally:
        gate.set()
        more.set()
        stopper.join(60)
    for e in errors:
        assert isinstance(e, grpc.RpcError), e
        assert e.code() == grpc.StatusCode.UNAVAILABLE and STOPPING in e.details(), (e.code(), e.details())
    assert in_progress.result(0) == "done"

    r = start_hub(Store.open(uri))  # the restart; the client resends every key
    r.hub._own_store = True
    try:
        c = r.client("admin")
        keys = [(f"u{i}@x.com", f"un-{i}") for i in range(N)] + [("s@x.com", "st-0")]
        first = [record(c, event(email=m, key=k)).outcome for m, k in keys]
        again = [record(c, event(email=m, key=k)).outcome for m, k in keys]
        assert first == [common_pb2.EventStatus.APPLIED] * (N + 1)
        assert again == [common_pb2.EventStatus.DUPLICATE] * (N + 1)
        with r.hub.read() as f:
            assert f.root["stop-marker"] == "committed"
    finally:
        for ch in r.channels:
            ch.close()
        r.hub.stop(grace=0.5)
