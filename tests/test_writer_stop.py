"""Stopping a busy writer: the job in progress commits, the queued ones are refused at once with a
retryable error, and a resend with the same idempotency keys applies each exactly once.

Before this, ``Writer.stop`` committed the whole backlog first: a busy hub took over 20 s to stop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shopkeeper.engine.writer import STOPPING, HubStopping, Writer, WriterStopped
from shopkeeper.events import validate_event
from shopkeeper.identity import IdentityConfig, Resolver
from shopkeeper.store import Store
from shopkeeper.testing import wait_for

T0 = 1_750_000_000
N = 40


def ev(i: int) -> object:
    return validate_event({"type": "page_view", "identities": {"email": f"p{i}@example.org"}, "ts": T0 + i,
                           "idempotency_key": f"stop-{i}", "data": {"url": f"/p{i}"}})


def started(store: Store) -> Writer:
    w = Writer(store, Resolver(IdentityConfig()))
    w.start()
    return w


def busy(w: Writer) -> tuple[threading.Event, threading.Event, object]:
    """An op in progress on the writer until ``gate`` is set; it writes a marker, so its commit shows."""
    gate, running = threading.Event(), threading.Event()

    def op(folders, changes):  # noqa: ANN001, ANN202 - the writer's op signature
        running.set()
        gate.wait(30)
        folders.root["stop-test-marker"] = "committed"
        return "done"

    fut = w.submit_op(op)
    running.wait(10)
    return gate, running, fut


def test_stop_commits_the_job_in_progress_refuses_the_queue_and_a_resend_applies_each_once(tmp_path: Path) -> None:
    path = f"file://{tmp_path / 'hub.fs'}"
    store = Store.open(path)
    w = started(store)
    gate, _running, in_progress = busy(w)
    queued = [w.submit_events([ev(i)]) for i in range(N)]
    stopper = threading.Thread(target=w.stop, name="test-stopper")
    stopper.start()
    # refused while the job in progress still runs: stop() does not wait for the backlog
    wait_for(lambda: all(f.done() for f in queued), what="every queued job answered")
    assert not in_progress.done()
    for f in queued:
        exc = f.exception()
        assert isinstance(exc, HubStopping) and isinstance(exc, WriterStopped) and str(exc) == STOPPING
    gate.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert in_progress.result(0) == "done"
    assert isinstance(w.submit_events([ev(0)]).exception(0), HubStopping)  # and nothing new is taken
    store.close()

    store = Store.open(path)  # the restart: the client resends every key
    try:
        with store.read() as f:
            assert f.root["stop-test-marker"] == "committed"  # the job in progress committed
            assert len(f.customers) == 0  # none of the refused ones did
        w = started(store)
        try:
            first = [r.status for i in range(N) for r in w.submit_events([ev(i)]).result(30)]
            again = [r.status for i in range(N) for r in w.submit_events([ev(i)]).result(30)]
        finally:
            w.stop()
        assert first.count("applied") == N and again.count("duplicate") == N
        with store.read() as f:
            assert len(f.customers) == N
    finally:
        store.close()


def test_shed_refuses_the_queue_but_keeps_taking_the_stops_own_work() -> None:
    """The hub sheds first (its calls answer UNAVAILABLE at once), then its shutdown hooks flush
    through the same writer: those must still commit."""
    store = Store.open("memory://")
    w = started(store)
    try:
        gate, _running, in_progress = busy(w)
        queued = [w.submit_events([ev(i)]) for i in range(3)]
        lingering = w.submit_events([ev(99)], linger=3600)  # Decide's offer record: nobody would resend it
        assert w.shed() == 3
        assert all(isinstance(f.exception(0), HubStopping) for f in queued)
        flush = w.submit_op(lambda f, changes: "flushed")
        gate.set()
        assert in_progress.result(10) == "done" and flush.result(10) == "flushed"
        assert [r.status for r in lingering.result(10)] == ["applied"]
    finally:
        w.stop()
        store.close()


def test_a_lingering_write_queued_at_stop_still_commits() -> None:
    store = Store.open("memory://")
    w = started(store)
    gate, _running, _in_progress = busy(w)
    lingering = w.submit_events([ev(1), ev(2)], linger=3600)
    stopper = threading.Thread(target=w.stop, name="test-stopper")
    stopper.start()
    gate.set()
    stopper.join(30)
    try:
        assert [r.status for r in lingering.result(0)] == ["applied", "applied"]
    finally:
        store.close()


@pytest.mark.parametrize("cancel", [True, False])
def test_a_cancelled_queued_job_is_skipped_not_an_error(cancel: bool) -> None:
    store = Store.open("memory://")
    w = started(store)
    gate, _running, _in_progress = busy(w)
    fut = w.submit_events([ev(1)])
    if cancel:
        assert fut.cancel()
    assert w.shed() == (0 if cancel else 1)
    gate.set()
    w.stop()
    store.close()
    assert fut.cancelled() if cancel else isinstance(fut.exception(0), HubStopping)
