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
    """The writer is busy with one job and has another queued; the keeper's renewal is due. The
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
        clock[0] += 7 * S
        renewal = mine.renew()  # the keeper's round (its thread does this every ttl/4)
        assert renewal is not None
        wait_for(lambda: writer.queue_depth >= 2, what="the renewal submitted")
        busy.set()
        wait_for(lambda: expires(writer, "timers") > first_term, what="the renewal committed while the backlog waits")
        assert renewal.result(10) == {"timers": clock[0] + 10 * S}
        clock[0] = first_term + 1  # the first term is over: another hub must still find the lease held
        assert mine.held("timers")
        with writer.store.read() as f:  # what another hub's writer would find (aborted: nothing written)
            assert leases_mod.acquire(f, "timers", "other-hub", 10) < 0
    finally:
        busy.set()
        backlog.set()
        mine.release_all()


def test_an_urgent_op_is_refused_once_the_writer_stops(writer: Writer) -> None:
    """Nothing waits forever on a stopped writer, urgent or not."""
    writer.stop()
    with pytest.raises(WriterStopped):
        writer.submit_op(lambda f, ch: None, urgent=True).result(10)


def test_the_keeper_renews_every_lease_held_without_anybody_asking(
        writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease was renewed only when a job asked ``held()`` with half its term left: a job that asks
    rarely (the pack scheduler while its pack runs) renewed late, and a short stall of the writer
    then let the lease pass (tests/ops/test_pack_writer.py at load ~16). The keeper renews every
    lease held, in one transaction, every ttl/4 — here 0.1 s of the keeper's own (wall) clock —
    whether or not anybody asks."""
    clock = [1_800_000_000 * S]
    monkeypatch.setattr(leases_mod, "now_us", lambda: clock[0])
    mine = Leases(writer.submit_op, ttl_s=0.4)
    try:
        assert mine.held("pack") and mine.held("rule-timers")
        taken = clock[0]
        assert expires(writer, "pack") == expires(writer, "rule-timers") == taken + 400_000
        clock[0] += 300_000  # the lease clock moves; nobody calls held()
        wait_for(lambda: expires(writer, "pack") == expires(writer, "rule-timers") == taken + 700_000,
                 what="both leases renewed by the keeper")
        assert mine.renewals >= 1
    finally:
        mine.release_all()


def test_held_answers_from_memory_while_the_writer_is_stalled(
        writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more than ttl/4 of the committed term left, ``held()`` does not wait for the writer:
    it used to submit a renewal with half the term left and wait for its commit, so a job asking
    whether it may run stalled with the writer."""
    clock = [1_800_000_000 * S]
    monkeypatch.setattr(leases_mod, "now_us", lambda: clock[0])
    mine = Leases(writer.submit_op, ttl_s=10)
    assert mine.held("pack")
    stalled = hold(writer)
    try:
        wait_for(lambda: writer.queue_depth == 0, what="the writer stalled in a job")
        clock[0] += 6 * S  # 4 s of the term left: more than ttl/4
        answers: list[bool] = []
        threading.Thread(target=lambda: answers.append(mine.held("pack")), daemon=True).start()
        wait_for(lambda: answers, what="held() answered with the writer stalled")
        assert answers == [True] and not stalled.is_set()
    finally:
        stalled.set()
        mine.release_all()


def test_past_its_term_a_stalled_holder_does_not_claim_the_lease_and_takes_it_back_after(
        writer: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the committed term, with the writer stalled, ``held()`` says False at once (another hub
    may have the lease now) instead of waiting; the renewal it submitted commits when the writer
    moves on, and the lease is held again if nobody took it meanwhile."""
    clock = [1_800_000_000 * S]
    monkeypatch.setattr(leases_mod, "now_us", lambda: clock[0])
    mine = Leases(writer.submit_op, ttl_s=10)
    assert mine.held("pack")
    stalled = hold(writer)
    try:
        wait_for(lambda: writer.queue_depth == 0, what="the writer stalled in a job")
        clock[0] += 11 * S
        answers: list[bool] = []
        threading.Thread(target=lambda: answers.append(mine.held("pack")), daemon=True).start()
        wait_for(lambda: answers, what="held() answered past the term")
        assert answers == [False]
        stalled.set()
        wait_for(lambda: expires(writer, "pack") == clock[0] + 10 * S, what="the submitted renewal committed")
        assert mine.held("pack")
    finally:
        stalled.set()
        mine.release_all()


def test_a_claim_is_fenced_by_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pack period's claim commits only while the claiming hub holds the ``pack`` lease, and the
    storage refuses it if another hub took the lease after the claim's transaction read it."""
    from ZODB.POSException import ConflictError

    from shopkeeper.engine.maintenance import claim_scheduled_pack

    clock = [1_800_000_000 * S]
    monkeypatch.setattr(leases_mod, "now_us", lambda: clock[0])
    with Store.open("memory://", steps=[EvolveStep("leases", create_leases)]) as store:
        with store.transaction() as f:
            assert leases_mod.acquire(f, "pack", "hub-a", 10) > 0
        with store.transaction() as f:  # not the holder: nothing claimed
            assert claim_scheduled_pack(f, 3600, lease=("pack", "hub-b")) is False
            assert "scheduled_pack_at" not in f.meta
        conn, tm = store.connect()  # hub-a's claim, read before hub-b takes the lapsed lease
        tm.begin()
        from shopkeeper.store import Folders

        assert claim_scheduled_pack(Folders(conn), 3600, lease=("pack", "hub-a")) is True
        clock[0] += 11 * S
        with store.transaction() as f:
            assert leases_mod.acquire(f, "pack", "hub-b", 10) > 0
        with pytest.raises(ConflictError):
            tm.commit()
        tm.abort()
        conn.close()
        with store.transaction() as f:
            assert claim_scheduled_pack(f, 3600, lease=("pack", "hub-a")) is False
            assert claim_scheduled_pack(f, 3600, lease=("pack", "hub-b")) is True


def test_held_does_not_deadlock_when_the_writer_commits_before_submit_returns() -> None:
    """An idle writer may commit an urgent op before ``submit_op`` has returned: the future is then
    done, and adding its callback runs the callback at once, on the caller's thread. Adding it while
    holding the leases' lock (which the callback takes too) hung ``held()`` for good."""
    from concurrent.futures import Future

    with Store.open("memory://", steps=[EvolveStep("leases", create_leases)]) as store:
        def submit_op(op, urgent=False):  # commits at once, like a writer that won the race
            fut: Future = Future()
            with store.transaction() as f:
                fut.set_result(op(f, None))
            return fut

        mine = Leases(submit_op, ttl_s=10)
        answers: list[bool] = []
        threading.Thread(target=lambda: answers.append(mine.held("pack")), daemon=True).start()
        wait_for(lambda: answers, what="held() answered")
        assert answers == [True]
        mine.release_all()
