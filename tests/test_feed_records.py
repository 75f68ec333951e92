"""The change feed's write shape: a group commit's entries cost O(1) records, not one bucket per
~30 entries (benchmarks §44), and stores written one entry per key read on unchanged."""

from __future__ import annotations

from pathlib import Path

from ZODB.utils import get_pickle_metadata

from shopkeeper.engine import feed
from shopkeeper.engine.feed import Change
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
    feed_records = [r for r in last if get_pickle_metadata(r.data)[0] in ("BTrees.LOBTree", "persistent.list",
                                                                          "shopkeeper.engine.records")]
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


def test_a_transactions_entries_are_pickled_without_a_persistent_id_call_each(tmp_path: Path,
                                                                              persistent_id_calls: list[int]) -> None:
    """ZODB's pickler calls its Python ``persistent_id`` hook for every object it pickles: a list of
    entries cost ~10 calls per entry (the tuple and each field), 12 of a group commit's 29 per event
    with the processors on (benchmarks §72). The chunk is pickled in one piece: a constant number."""
    store = Store.open(f"file://{tmp_path}/Data.fs")
    calls = persistent_id_calls
    for n in (10, 400):
        calls.clear()
        with store.transaction() as f:
            for i in range(n):
                feed.append(f, "interaction", f"c{i}", event_type="page_view", channel="web", interaction_key=i,
                            segments=("a", "b"))
        if n == 10:
            few = len(calls)
    assert few > 0 and len(calls) - few < 40, (few, len(calls))  # 390 more entries: no call per entry
    with store.read() as f:
        got = feed.read(f, 0, 1000)
        assert len(got) == 410 and got[-1].customer_id == "c399" and got[-1].segments == ("a", "b")
    store.close()


def test_chunks_written_as_persistent_lists_read_on_beside_new_ones(tmp_path: Path) -> None:
    """Stores written before the chunk class keep their ``PersistentList`` chunks: every reader, the
    latest cursor, the drop and the trim take both kinds."""
    from persistent.list import PersistentList

    store = Store.open(f"file://{tmp_path}/Data.fs")
    with store.transaction() as f:
        tree = feed.changes_tree(f)
        tree[100] = PersistentList([(100, "identify", "old1", "", "", 100, 0, (), ""),
                                    (101, "identify", "old2", "", "", 101, 0, (), "")])
        f.count("changes", 2)
    with store.read() as f:
        assert feed.latest_cursor(f) == 101
    with store.transaction() as f:
        new = [feed.append(f, "identify", "n1"), feed.append(f, "identify", "n2")]
    with store.read() as f:
        assert [c.customer_id for c in feed.read(f, 0)] == ["old1", "old2", "n1", "n2"]
        assert [c.customer_id for c in feed.read(f, 100)] == ["old2", "n1", "n2"]
        assert feed.latest_cursor(f) == new[1].cursor
    with store.transaction() as f:
        assert feed.drop(f, [new[0], Change(101, "identify", "old2")]) == 2
    with store.read() as f:
        assert [c.customer_id for c in feed.read(f, 0)] == ["old1", "n2"] and f.counter("changes") == 2
    with store.transaction() as f:
        assert feed.trim(f, older_than_us=200, max_entries=None) == 1
    store.close()
    store = Store.open(f"file://{tmp_path}/Data.fs")  # the new chunk as loaded from the storage
    with store.read() as f:
        assert [c.customer_id for c in feed.read(f, 0)] == ["n2"] and f.counter("changes") == 1
    store.close()


def test_lone_commits_join_the_newest_chunk_instead_of_adding_a_key_each(tmp_path: Path) -> None:
    """One event per transaction (issue 10's "fsync each" target): each commit adding a key re-pickled
    the tree's last bucket, up to ~120 persistent references (benchmarks §78). Lone commits join the
    newest chunk until it holds ``TAIL_ENTRIES``; every entry still reads back, in order, from any
    cursor, and each commit still publishes its own entries."""
    store = Store.open(f"file://{tmp_path}/Data.fs")
    published: list[Change] = []
    w = Writer(store, Resolver(IdentityConfig()), on_committed=published.extend)
    w.start()
    n = 2 * feed.TAIL_ENTRIES + 3
    try:
        for ev in _events(0, n):
            assert [r.status for r in w.submit_events([ev]).result(60)] == ["applied"]
    finally:
        w.stop()
    commits = [list(t) for t in store.db.storage.iterator()][-n:]
    tree_records = [get_pickle_metadata(r.data) for t in commits for r in t
                    if get_pickle_metadata(r.data)[0] == "BTrees.LOBTree"]
    assert len(tree_records) <= 3 * 2, tree_records  # a new chunk's key: 3 times in n commits, not n
    with store.read() as f:
        got = feed.read(f, 0, 10_000)
        assert got == published and len(got) == n == f.counter("changes")
        assert [c.cursor for c in got] == sorted({c.cursor for c in got})
        assert feed.latest_cursor(f) == got[-1].cursor
        assert feed.read(f, got[5].cursor, 3) == got[6:9]  # resuming inside a chunk of several commits
        assert len(feed.changes_tree(f)) == 3
    store.close()


def test_trim_takes_only_the_due_entries_of_a_chunk_of_several_commits(tmp_path: Path) -> None:
    """Lone commits share a chunk: trimming to ``max_entries`` or by age must not take the newer
    commits' entries with the older ones (the chunk keeps the rest under its new first cursor)."""
    store = Store.open(f"file://{tmp_path}/Data.fs")
    for i in range(5):
        with store.transaction() as f:
            feed.append(f, "identify", f"c{i}")
    with store.read() as f:
        got = feed.read(f, 0)
        assert len(feed.changes_tree(f)) == 1 and len(got) == 5
    with store.transaction() as f:
        assert feed.trim(f, older_than_us=None, max_entries=2) == 3
    with store.transaction() as f:
        assert feed.trim(f, older_than_us=got[4].cursor, max_entries=None) == 1
        feed.append(f, "identify", "c5")
    with store.read() as f:
        assert [c.customer_id for c in feed.read(f, 0)] == ["c4", "c5"] and f.counter("changes") == 2
        assert feed.oldest_cursor(f) == got[4].cursor and feed.read(f, got[4].cursor)[0].customer_id == "c5"
    store.close()
