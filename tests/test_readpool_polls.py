"""The read pool polls for changes only when something may have changed (docs/benchmarks.md §107):
a connection keeps its snapshot between reads while this process commits nothing, for ever on a
storage only this process writes, and at most ``poll_interval`` seconds on a shared one."""

from __future__ import annotations

from pathlib import Path

import pytest
import transaction
from ZODB.Connection import Connection

from shopkeeper import readpool
from shopkeeper.customer import Customer
from shopkeeper.readpool import ReadPool
from shopkeeper.store import Store


@pytest.fixture
def fstore(tmp_path: Path):
    s = Store.open(f"file://{tmp_path}/Data.fs")
    with s.transaction() as f:
        f.add_customer(Customer("c1"))
    yield s
    s.close()


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> list[Connection]:
    """Each connection's ``newTransaction`` (its poll for other transactions' changes), in order."""
    seen: list[Connection] = []
    new = Connection.newTransaction

    def counting(self: Connection, txn: object, sync: bool = True) -> None:
        seen.append(self)
        new(self, txn, sync)

    monkeypatch.setattr(Connection, "newTransaction", counting)
    return seen


def _set_traits_elsewhere(store: Store, name: str) -> None:
    """Commit through a connection the store did not make (``db.open``), as another process would."""
    tm = transaction.TransactionManager(explicit=True)
    conn = store.db.open(transaction_manager=tm)
    try:
        tm.begin()
        conn.root()["customers"]["c1"].set_traits({"name": name})
        tm.commit()
    finally:
        conn.close()


def test_a_read_reuses_its_snapshot_until_any_commit_of_this_process(fstore: Store, polls: list) -> None:
    pool = ReadPool(fstore, 1)
    for _ in range(3):
        with pool.read() as f:
            assert f.customer("c1").traits == {}
    assert len(polls) == 1  # one poll for three reads: nothing was committed in between
    with fstore.transaction() as f:
        f.customer("c1").set_traits({"name": "Ada"})
    with pool.read() as f:
        assert f.customer("c1").traits == {"name": "Ada"}
    # FileStorage's last transaction moves whatever connection committed: exact without a bound
    _set_traits_elsewhere(fstore, "Bea")
    with pool.read() as f:
        assert f.customer("c1").traits == {"name": "Bea"}
    pool.close()


def test_a_read_that_changed_an_object_throws_the_change_away(fstore: Store) -> None:
    pool = ReadPool(fstore, 1)
    with pool.read() as f:
        f.customer("c1").set_traits({"name": "changed"})  # a bug in a read; no exception
    with pool.read() as f:
        assert f.customer("c1").traits == {}
    pool.close()


def test_on_a_shared_storage_reads_poll_every_time_unless_given_an_interval(fstore: Store, polls: list) -> None:
    fstore.single_process = False  # as on PostgreSQL or ZEO
    pool = ReadPool(fstore, 1)
    for _ in range(3):
        with pool.read():
            pass
    assert len(polls) == 3
    pool.close()


def test_on_a_shared_storage_another_process_commit_is_seen_within_the_interval(
        fstore: Store, polls: list, monkeypatch: pytest.MonkeyPatch) -> None:
    fstore.single_process = False
    now = [1000.0]
    monkeypatch.setattr(readpool.time, "monotonic", lambda: now[0])
    pool = ReadPool(fstore, 1, poll_interval=60.0)
    with pool.read() as f:
        assert f.customer("c1").traits == {}
        conn = f.conn
    _set_traits_elsewhere(fstore, "Bea")  # not this store's connections: "another process"
    now[0] += 30
    with pool.read() as f:
        assert f.customer("c1").traits == {}  # within the bound, the snapshot is kept
    now[0] += 31
    with pool.read() as f:
        assert f.customer("c1").traits == {"name": "Bea"}  # past it, polled
    with fstore.transaction() as f:  # this process's own commit: seen at once, whatever the bound
        f.customer("c1").set_traits({"name": "Cy"})
    with pool.read() as f:
        assert f.customer("c1").traits == {"name": "Cy"}
    assert polls.count(conn) == 3  # the first read, past the bound, after this process's commit
    pool.close()


def test_an_idle_connections_snapshot_is_ended_once_older_than_the_interval(
        fstore: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fstore.single_process = False
    now = [1000.0]
    monkeypatch.setattr(readpool.time, "monotonic", lambda: now[0])
    pool = ReadPool(fstore, 1, poll_interval=3600.0)  # the expiry thread waits an hour: called by hand
    with pool.read() as f:
        conn = f.conn
    slot = pool._slots[0]
    assert slot is not None and slot.began is not None  # kept open for the next read
    assert pool.expire() == 0
    now[0] += 3600
    assert pool.expire() == 1
    assert slot.began is None and conn.transaction_manager._txn is None  # aborted: the storage released
    with pool.read() as f:
        assert f.conn is conn  # still pooled, warm
    pool.close()


def test_the_hub_config_takes_the_poll_interval(tmp_path: Path) -> None:
    from shopkeeper.hub.config import HubConfig

    p = tmp_path / "hub.yaml"
    assert HubConfig().limits.read_poll_interval == 0.0
    p.write_text("allow_anonymous: true\nlimits:\n  read_poll_interval: 0.5\n")
    assert HubConfig.load(p).limits.read_poll_interval == 0.5
