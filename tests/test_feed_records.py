"""The change feed's write shape: a group commit's entries cost O(1) records, not one bucket per
~30 entries (benchmarks §44), and stores written one entry per key read on unchanged."""

from __future__ import annotations

from pathlib import Path

from ZODB.utils import get_pickle_metadata

from shopkeeper.engine import feed
from shopkeeper.engine.writer import Writer
from shopkeeper.events import validate_event
from shopkeeper.identity import IdentityConfig, Resolver
from shopkeeper.store import Store


def _events(start: int, n: int) -> list:
    return [validate_event({"type": "page_view", "identities": {"email": f"c{i % 300}@example.org"},
                            "ts": 1_750_000_000 + i, "idempotency_key": f"k{i}", "data": {"url": "/"}})
            for i in range(start, start + n)]


def test_a_group_of_500_events_writes_its_feed_entries_in_a_few_records(tmp_path: Path) -> None:
    store = Store.open(f"file://{tmp_path}/Data.fs")
    w = Writer(store, Resolver(IdentityConfig()))
    w.start()
    try:
        for g in range(6):  # enough groups for the old layout's buckets to split again and again
            assert {r.status for r in w.submit_events(_events(g * 500, 500)).result(60)} == {"applied"}
    finally:
        w.stop()
    last = [list(t) for t in store.db.storage.iterator()][-1]
    feed_records = [r for r in last if get_pickle_metadata(r.data)[0] in ("BTrees.LOBTree", "persistent.list")]
    assert len(feed_records) <= 3, [get_pickle_metadata(r.data) for r in feed_records]
    with store.read() as f:
        got = feed.read(f, 0, 10_000)
        assert len(got) == 3000 == f.counter("changes")
        assert [c.cursor for c in got] == sorted({c.cursor for c in got})
        assert feed.latest_cursor(f) == got[-1].cursor
        middle = got[1234].cursor  # resuming inside a transaction's entries
        assert feed.read(f, middle, 5) == got[1235:1240]
    store.close()


def test_entries_stored_one_per_key_read_on_with_new_ones_and_trim_by_age(tmp_path: Path) -> None:
    """A store from before §44 holds one tuple per key; new transactions add lists; readers,
    the latest cursor, the next cursor and the trim take both."""
    store = Store.open(f"file://{tmp_path}/Data.fs")
    with store.transaction() as f:
        tree = feed.changes_tree(f)
        for cursor in (100, 200, 300):
            tree[cursor] = ("interaction", f"old{cursor}", "page_view", "web", cursor, 0, (), "")
        f.count("changes", 3)
    with store.read() as f:
        assert feed.latest_cursor(f) == 300
    with store.transaction() as f:
        new = [feed.append(f, "identify", "n1"), feed.append(f, "identify", "n2")]
    assert new[0].cursor > 300
    with store.read() as f:
        assert [c.customer_id for c in feed.read(f, 0)] == ["old100", "old200", "old300", "n1", "n2"]
        assert [c.customer_id for c in feed.read(f, 200)] == ["old300", "n1", "n2"]
        assert [c.customer_id for c in feed.read(f, new[0].cursor)] == ["n2"]
        assert feed.latest_cursor(f) == new[1].cursor
    with store.transaction() as f:
        assert feed.trim(f, older_than_us=250, max_entries=None) == 2
        assert feed.trim(f, older_than_us=None, max_entries=2) == 1  # the old300 entry, not half a list
        assert feed.drop(f, [new[0]]) == 1
    with store.read() as f:
        assert [c.customer_id for c in feed.read(f, 0)] == ["n2"] and f.counter("changes") == 1
    store.close()


def test_entries_appended_after_a_savepoint_are_committed_too(tmp_path: Path) -> None:
    """A savepoint (a rule with a plugin action takes one) stores the transaction's list of entries;
    what is appended after it must still reach the commit (the list must be marked changed again)."""
    store = Store.open(f"file://{tmp_path}/Data.fs")
    with store.transaction() as f:
        feed.append(f, "identify", "before")
        f.conn.transaction_manager.get().savepoint(optimistic=True)
        feed.append(f, "identify", "after")
    store.close()
    store = Store.open(f"file://{tmp_path}/Data.fs")
    with store.read() as f:
        assert [c.customer_id for c in feed.read(f, 0)] == ["before", "after"]
        assert f.counter("changes") == 2
    store.close()
