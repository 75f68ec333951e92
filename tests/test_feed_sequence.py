"""The sequencer of a feed shared by several hubs (``shopkeeper.engine.feed.sequence``): staged
records of every hub move into the one feed in commit order, even a few at a time."""

from __future__ import annotations

import pytest

from shopkeeper.engine import feed
from shopkeeper.store import Store


def _commit_staged(store: Store, hub: str, customer: str) -> None:
    with store.transaction() as f:
        feed._stage(f, hub, "interaction", customer, "page_view", "web", None, 1, (), "")


def test_staged_records_of_several_hubs_are_sequenced_in_commit_order_a_few_at_a_time(store: Store) -> None:
    for hub, customer in [("a", "c0"), ("a", "c1"), ("a", "c2"), ("b", "c3"), ("a", "c4"), ("b", "c5")]:
        _commit_staged(store, hub, customer)
    out: list = []
    while True:
        with store.transaction() as f:
            got = feed.sequence(f, limit=2)
        if not got:
            break
        out.extend(got)
    assert [c.customer_id for c in out] == ["c0", "c1", "c2", "c3", "c4", "c5"]
    with store.read() as f:
        stored = feed.read(f, 0)
        assert [c.customer_id for c in stored] == ["c0", "c1", "c2", "c3", "c4", "c5"]
        assert [c.cursor for c in stored] == sorted(c.cursor for c in stored)
        assert not feed.pending(f)
    with store.transaction() as f:  # each hub trims what was sequenced, keeping its newest record
        assert feed.trim_staging(f, "a") == 3 and feed.trim_staging(f, "b") == 1
    _commit_staged(store, "a", "c6")  # numbering goes on after the trim: nothing is skipped
    with store.transaction() as f:
        assert [c.customer_id for c in feed.sequence(f)] == ["c6"]


def _sequence_all(store: Store) -> list[str]:
    with store.transaction() as f:
        return [c.customer_id for c in feed.sequence(f)]


def test_a_stopped_or_dead_hubs_staging_is_reclaimed_once_sequenced_and_its_lease_lapsed(store: Store) -> None:
    from shopkeeper.engine import leases

    _commit_staged(store, "a", "c0")
    _commit_staged(store, "b", "c1")
    with store.transaction() as f:
        for hub in ("a", "b"):
            leases.acquire(f, feed.hub_lease(hub), hub, ttl_s=600)
        leases.release(f, feed.hub_lease("b"), "b")  # b stopped; a runs
    with store.transaction() as f:
        assert feed.reclaim_staging(f) == []  # b's entry is not sequenced yet: it would be lost
    assert _sequence_all(store) == ["c0", "c1"]
    with store.transaction() as f:
        assert feed.reclaim_staging(f) == ["b"]
    with store.read() as f:
        for folder in (feed.STAGING, feed.POSITIONS, feed.HEADS):
            assert "b" not in f.root[folder] and "a" in f.root[folder]
        assert feed.hub_lease("b") not in f.root[leases.FOLDER]
    with store.transaction() as f:  # a dies: its lease lapses
        f.root[leases.FOLDER][feed.hub_lease("a")].expires = 1
    with store.transaction() as f:
        assert feed.reclaim_staging(f) == ["a"]
    with store.read() as f:
        assert not f.root[feed.STAGING] and not f.root[feed.POSITIONS] and not f.root[feed.HEADS]
        assert [c.customer_id for c in feed.read(f, 0)] == ["c0", "c1"]  # the feed keeps every entry


def test_a_hub_whose_lease_lapsed_lately_is_not_reclaimed(store: Store) -> None:
    """A lapsed lease is what a busy hub shows too (its renewal waits behind a long group): the
    reclaim waits LAPSED_GRACE_US, so a live hub's next staging does not hit the fence."""
    from shopkeeper.customer import now_us
    from shopkeeper.engine import leases

    _commit_staged(store, "b", "c0")
    assert _sequence_all(store) == ["c0"]
    with store.transaction() as f:
        leases.acquire(f, feed.hub_lease("b"), "b", ttl_s=600)
        f.root[leases.FOLDER][feed.hub_lease("b")].expires = now_us() - 2_000_000  # lapsed 2 s ago
    with store.transaction() as f:
        assert feed.reclaim_staging(f) == []
    with store.transaction() as f:
        assert feed.reclaim_staging(f, now=now_us() + feed.LAPSED_GRACE_US) == ["b"]


def test_a_hub_staging_while_its_staging_is_reclaimed_conflicts_and_loses_nothing(store: Store) -> None:
    """The fence: a hub thought gone may still stage (paused past its lease). Whichever of its
    staging and the reclaim commits second gets a ConflictError; the writer's retry then loses
    nothing — after a reclaim the hub starts a new tree; after a staging nothing is reclaimed."""
    from ZODB.POSException import ConflictError

    from shopkeeper.store import Folders

    _commit_staged(store, "b", "c0")
    assert _sequence_all(store) == ["c0"]

    # the reclaim commits first; the staging begun before it conflicts, and its retry is sequenced
    conn, tm = store.connect()
    tm.begin()
    feed._stage(Folders(conn), "b", "interaction", "c1", "page_view", "web", None, 1, (), "")
    with store.transaction() as f:
        assert feed.reclaim_staging(f) == ["b"]
    with pytest.raises(ConflictError):
        tm.commit()
    tm.abort()
    conn.close()
    _commit_staged(store, "b", "c1")  # the writer's retry
    assert _sequence_all(store) == ["c1"]

    # the staging commits first; the reclaim, whose snapshot is older, conflicts and its retry keeps it
    conn, tm = store.connect()
    tm.begin()
    old = Folders(conn)
    old.root[feed.HEADS]["b"]._p_activate()  # the reclaim's snapshot: c1 sequenced, nothing staged since
    _commit_staged(store, "b", "c2")
    assert feed.reclaim_staging(old) == ["b"]  # it cannot see c2
    with pytest.raises(ConflictError):
        tm.commit()
    tm.abort()
    conn.close()
    with store.transaction() as f:  # the retry sees c2 waiting
        assert feed.reclaim_staging(f) == []
    assert _sequence_all(store) == ["c2"]
