"""Latency-bounded groups: writes nobody waits on (Decide's offer records) may wait in the
writer's queue for company, so that many become one transaction — without changing the order
in which jobs commit, and without delaying anybody who waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shopkeeper.engine import feed
from shopkeeper.engine.writer import Writer
from shopkeeper.events import validate_event
from shopkeeper.identity import IdentityConfig, Resolver
from shopkeeper.store import Store
from shopkeeper.testing import wait_for

T0 = 1_750_000_000


def ev(i: int, email: str) -> object:
    return validate_event({"type": "page_view", "identities": {"email": email}, "ts": T0 + i,
                           "idempotency_key": f"key-{i}", "data": {"url": f"/p{i}"}})


@pytest.fixture
def writer() -> Iterator[tuple[Writer, list[int]]]:
    store = Store.open("memory://")
    commits: list[int] = []
    w = Writer(store, Resolver(IdentityConfig()),
               on_stats=lambda name, n: commits.append(n) if name == "commit" else None)
    w.start()
    yield w, commits
    w.stop()
    store.close()


def hold(w: Writer) -> threading.Event:
    """Keep the writer busy until the event is set, so that what follows queues up behind."""
    gate = threading.Event()
    w.submit_op(lambda f, changes: gate.wait(30))
    return gate


def test_lingering_jobs_share_one_transaction_and_each_caller_gets_its_own_results(writer) -> None:
    w, commits = writer
    w.linger_events = 4  # the fourth event ends the wait, not the clock
    a = w.submit_events([ev(1, "a@example.org")], linger=60)
    wait_for(lambda: w.queue_depth == 0, what="the writer took the first job")  # and waits for company
    b = w.submit_events([ev(2, "b@example.org"), ev(3, "a@example.org")], linger=60)
    c = w.submit_events([ev(4, "c@example.org")], linger=60)
    ra, rb, rc = a.result(10), b.result(10), c.result(10)
    assert commits == [4]  # one transaction for the four events of three callers
    assert [(r.index, r.status) for r in ra] == [(0, "applied")]
    assert [(r.index, r.status) for r in rb] == [(0, "applied"), (1, "applied")]
    assert [(r.index, r.status) for r in rc] == [(0, "applied")]
    assert rb[1].customer_id == ra[0].customer_id  # b's second event went to a's person


def test_a_lone_lingering_job_commits_after_its_linger(writer) -> None:
    w, commits = writer
    assert [r.status for r in w.submit_events([ev(1, "a@example.org")], linger=0.01).result(10)] == ["applied"]
    assert commits == [1]


def test_a_job_somebody_waits_for_ends_the_wait_and_commits_after_the_lingering_ones(writer) -> None:
    w, commits = writer
    lingering = w.submit_events([ev(1, "a@example.org")], linger=3600)
    seen = w.submit_op(lambda f, changes: len(f.customers)).result(10)  # an hour's linger would time out
    assert seen == 1 and lingering.done()
    late = w.submit_events([ev(2, "b@example.org")], linger=3600)
    now = w.submit_events([ev(3, "c@example.org")])
    assert [r.status for r in now.result(10)] == ["applied"] and late.done()
    assert commits == [1, 2]  # the waiting caller's event joined the lingering one, after it


def test_order_is_kept_when_lingering_and_waiting_jobs_queue_up_behind_a_busy_writer(writer) -> None:
    w, commits = writer
    gate = hold(w)
    first = w.submit_events([ev(1, "a@example.org")], linger=3600)
    op = w.submit_op(lambda f, changes: len(f.customers))
    gate.set()
    assert op.result(10) == 1 and first.done()


def test_stop_commits_what_lingers(writer) -> None:
    w, commits = writer
    gate = hold(w)
    lingering = w.submit_events([ev(1, "a@example.org"), ev(2, "b@example.org")], linger=3600)
    gate.set()
    w.stop()
    assert [r.status for r in lingering.result(10)] == ["applied", "applied"]
    with w.store.read() as f:
        assert len(f.customers) == 2


def transactions(store: Store) -> int:
    return len(list(store.db.storage.iterator()))


def test_a_lingering_op_commits_in_the_transaction_of_the_events_after_it(writer) -> None:
    """Decide's control-group mark (benchmarks §39): no transaction and fsync of its own."""
    w, commits = writer
    gate = hold(w)
    before = transactions(w.store)  # (the hold's op changes nothing: no transaction in the storage)
    mark = w.submit_op(lambda f, changes: changes.add("consent", "c-1") and len(f.customers), linger=3600)
    now = w.submit_events([ev(1, "a@example.org")])  # somebody waits: the group goes at once
    gate.set()
    assert [r.status for r in now.result(10)] == ["applied"]
    assert mark.result(10) == 0  # it ran in the group's transaction, before the group's events
    assert transactions(w.store) == before + 1  # one for the mark and the event
    assert commits == [1]


def test_a_lone_lingering_op_commits_after_its_linger_and_its_feed_entries_are_published() -> None:
    store = Store.open("memory://")
    published: list[list] = []
    w = Writer(store, Resolver(IdentityConfig()), on_committed=published.append)
    w.start()
    try:
        assert w.submit_op(lambda f, changes: changes.add("consent", "c-1") and "ok", linger=0.01).result(10) == "ok"
        assert [[(e.kind, e.customer_id) for e in batch] for batch in published] == [[("consent", "c-1")]]
        with store.read() as f:  # committed before its future resolved
            assert [(e.kind, e.customer_id) for e in feed.read(f, 0, 10)] == [("consent", "c-1")]
    finally:
        w.stop()
        store.close()


def test_a_failing_lingering_op_fails_alone_and_the_events_it_lingered_with_commit(writer) -> None:
    w, commits = writer
    gate = hold(w)

    def bad(f, changes):
        raise ValueError("no such customer")

    mark = w.submit_op(bad, linger=3600)
    now = w.submit_events([ev(1, "a@example.org")])
    gate.set()
    assert [r.status for r in now.result(10)] == ["applied"]
    with pytest.raises(ValueError, match="no such customer"):
        mark.result(10)
    with w.store.read() as f:
        assert len(f.customers) == 1
