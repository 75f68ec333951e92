"""``Customer.recent(n)`` from the recent window and the spilled tree's newest keys (``History.newest``):
the same answer as the newest-first walk for every shape of history, without loading every bucket of
the spilled tree (GetCustomer's view on a 10M PostgreSQL store, docs/benchmarks.md §87)."""

from __future__ import annotations

from itertools import islice

import pytest
import transaction
from BTrees.LOBTree import LOBTree

from shopkeeper.customer import HISTORY_CHUNK, Customer, Interaction
from shopkeeper.store import Store

T = 1_790_000_000_000_000


def _it(i: int, step: int = 3_600_000_000) -> Interaction:  # an hour apart unless told
    return Interaction(0, T + i * step, "page_view", "web", data={"url": f"/{i}"},
                       idempotency_key=f"k{i}", identities=(("email", "x@example.com"),))


def _customer(n: int, step: int = 3_600_000_000) -> Customer:
    c = Customer("c1", created_at=T)
    for i in range(n):
        c.add_interaction(_it(i, step))
    return c


def _walk(c: Customer, n: int) -> list[Interaction]:
    """The answer of the newest-first walk (what ``recent`` returned before the window's shortcut)."""
    return list(islice(c.interactions(newest_first=True), n))


@pytest.mark.parametrize("size", [0, 3, HISTORY_CHUNK, HISTORY_CHUNK + 1, 200])
@pytest.mark.parametrize("n", [0, 1, 5, 10, HISTORY_CHUNK, HISTORY_CHUNK + 1, 50])
def test_recent_is_the_newest_first_walk(size: int, n: int) -> None:
    c = _customer(size)
    assert c.recent(n) == _walk(c, n)
    assert len(c.recent(n)) == min(n, size)
    assert c.recent(-1) == []


def test_a_spilled_key_newer_than_the_window_is_not_skipped() -> None:
    """A merge hands over a tree whose keys may be newer than the window's: they come first."""
    c = _customer(40)
    tree = c._tree
    newer = _it(10_000)
    tree[newer.ts] = tree[tree.minKey()]  # any packed value, under a key newer than every window key
    c._tree = tree
    got = c.recent(10)
    assert got == _walk(c, 10)
    assert got[0] == c.history[newer.ts]  # the planted spilled value comes first


@pytest.mark.parametrize("step", [3_600_000_000, 1_000_000], ids=["an hour apart", "a second apart"])
def test_recent_reads_the_window_not_the_spilled_buckets(tmp_path, step: int) -> None:
    """A long history (3,000 interactions, tens of spilled buckets): the newest 10 load the tree's newest
    buckets, where the walk loaded every bucket — and so did walking back a day at a time when one day
    holds them all (a second apart, as after a burst of events)."""
    store = Store.open(f"file://{tmp_path / 'Data.fs'}")
    conn, tm = store.connect()
    tm.begin()
    c = _customer(3000, step)
    assert isinstance(c._tree, LOBTree)
    conn.root()["c"] = c
    tm.commit()
    expected = [(it.ts, it.type, it.data) for it in c.recent(10)]
    conn.close()

    reader = store.db.open(transaction_manager=transaction.TransactionManager())
    try:
        reader.cacheMinimize()  # the pool may hand back the writing connection: nothing loaded, as in a cold hub
        c2 = reader.root()["c"]
        c2._p_activate()
        before = reader._cache.ringlen()
        got = [(it.ts, it.type, it.data) for it in c2.recent(10)]
        loaded = reader._cache.ringlen() - before
        assert got == expected
        assert loaded <= 3, f"recent(10) loaded {loaded} objects"
    finally:
        reader.close()
        store.close()
