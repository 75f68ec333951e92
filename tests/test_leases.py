"""Leases and a busy writer: a renewal goes through the one writer, but not behind its queue.

§35's hypothesis: leases were renewed through the writer's FIFO queue, so a writer with a backlog
longer than the lease's remaining time let the lease lapse, and another hub could take over a job
(timers, the feed sequencer, the pack) this hub was still running. The clock here is the test's
(the leases module's ``now_us``), so nothing depends on how fast the machine is."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shopkeeper.engine import leases as leases_mod
from shopkeeper.engine.leases import Leases, create_leases
from shopkeeper.engine.writer import Writer, WriterStopped
from shopkeeper.identity import IdentityConfig, Resolver
from shopkeeper.store import EvolveStep, Store
from shopkeeper.testing import wait_for

S = 1_000_000  # µs


@pytest.fixture
def writer() -> Iterator[Writer]:
    store = Store.open("memory://", steps=[EvolveStep("leases", create_leases)])
    w = Writer(store, Resolver(IdentityConfig()))
    w.start()
    yield w
    w.stop()
    store.close()


def hold(w: Writer) -> threading.Event:
    """A writer job that keeps the writer busy until the returned event is set."""
    gate = threading.Event()
    w.submit_op(lambda f, changes: gate.wait(30))
    return gate


def expires(w: Writer, name: str) -> int:
    with w.store.read() as f:
        lease = f.root["leases"].get(name)
        return lease.expires if lease is not None else 0


def test_a_renewal_does_not_wait_behind_the_writers_queue(writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer is busy with one job and has another queued; the lease is due for renewal. The
    renewal must commit as soon as the job in progress ends — not after the queued one — so the
    lease is still this hub's when its first term would have ended."""
    clock = [1_800_000_000 * S]
    monkeypatch.setattr(leases_mod, "now_us", lambda: clock[0])
    mine = Leases(writer.submit_op, ttl_s=10)
    assert mine.held("timers")
    first_term = expires(writer, "timers")
    assert first_term == clock[0] + 10 * S
    busy = hold(writer)
    wait_for(lambda: writer.queue_depth == 0, what="the writer busy with the first job")
    backlog = hold(writer)  # queued behind it: a backlog longer than the lease has left
    try:
        clock[0] += 7 * S  # three seconds left: held() renews now
        answers: list[bool] = []
        asking = threading.Thread(target=lambda: answers.append(mine.held("timers")))
        asking.start()
        wait_for(lambda: writer.queue_depth >= 2, what="the renewal submitted")
        busy.set()
        wait_for(lambda: expires(writer, "timers") > first_term, what="the renewal committed while the backlog waits")
        asking.join(10)
        assert answers == [True]
        clock[0] = first_term + 1  # the first term is over: another hub must still find the lease held
        assert expires(writer, "timers") > clock[0]
        with writer.store.read() as f:  # what another hub's writer would find (aborted: nothing written)
            assert leases_mod.acquire(f, "timers", "other-hub", 10) < 0
    finally:
        busy.set()
        backlog.set()


def test_an_urgent_op_is_refused_once_the_writer_stops(writer: Writer) -> None:
    """Nothing waits forever on a stopped writer, urgent or not."""
    writer.stop()
    with pytest.raises(WriterStopped):
        writer.submit_op(lambda f, ch: None, urgent=True).result(10)


def test_a_lease_is_renewed_when_half_its_term_is_left(writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the term is the margin: a writer job up to half the ttl long cannot make it lapse."""
    clock = [1_800_000_000 * S]
    monkeypatch.setattr(leases_mod, "now_us", lambda: clock[0])
    mine = Leases(writer.submit_op, ttl_s=10)
    assert mine.held("pack")
    clock[0] += 4 * S
    assert mine.held("pack") and expires(writer, "pack") == clock[0] - 4 * S + 10 * S  # not renewed yet
    clock[0] += 1 * S + 1
    assert mine.held("pack") and expires(writer, "pack") == clock[0] + 10 * S  # renewed
