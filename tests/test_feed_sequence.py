"""The sequencer of a feed shared by several hubs (``shopkeeper.engine.feed.sequence``): staged
records of every hub move into the one feed in commit order, even a few at a time."""

from __future__ import annotations

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
