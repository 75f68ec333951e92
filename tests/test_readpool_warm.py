"""The read pool's connections load their shares of the index's interior nodes up front
(``ReadPool.warm_index``, docs/benchmarks.md §107), so a new hub's cold reads load only buckets and records."""

from __future__ import annotations

from pathlib import Path

import pytest
from ZODB.Connection import Connection

from shopkeeper.readpool import ReadPool
from shopkeeper.store import Store

N = 12_000  # enough keys for a root over interior nodes over buckets in both trees


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory):
    path = Path(tmp_path_factory.mktemp("warm")) / "Data.fs"
    s = Store.open(f"file://{path}")
    with s.transaction() as f:
        for i in range(N):  # plain ids as index values: only the trees' shapes matter here
            f.identities[("email", f"c{i * 7919 % N:06d}@x.io")] = f"{i:016x}"
            f.customers[f"{i * 7919 % N:016x}"] = i
    yield s
    s.close()


def _interior_loads(pool: ReadPool, store: Store, monkeypatch: pytest.MonkeyPatch) -> int:
    """BTree interior nodes loaded while reading every 37th customer by identity, then by id."""
    loads: list[str] = []
    setstate = Connection.setstate
    monkeypatch.setattr(Connection, "setstate", lambda self, obj: (setstate(self, obj), loads.append(
        type(obj).__name__))[0])
    for i in range(0, N, 37):
        key = ("email", f"c{i:06d}@x.io")
        with pool.read(key) as f:
            cid = f.identities[key]
        with pool.read(cid) as f:
            assert f.customers[cid] is not None
    monkeypatch.undo()
    return loads.count("OOBTree")


def test_a_warmed_pool_loads_no_interior_node_on_a_cold_read(big: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    big.db.cacheMinimize()  # every connection's cache emptied, those back in the database's pool too
    cold = ReadPool(big, 2, cache_objects=10_000)
    assert _interior_loads(cold, big, monkeypatch) > 0  # without warming, reads load them one by one
    cold.close()

    big.db.cacheMinimize()
    pool = ReadPool(big, 2, cache_objects=10_000)
    warmed = pool.warm_index()
    assert warmed > 4  # each connection its share of two trees' interior nodes
    assert _interior_loads(pool, big, monkeypatch) == 0
    pool.close()


def test_a_small_store_has_nothing_to_warm_and_opens_one_connection(tmp_path: Path) -> None:
    s = Store.open(f"file://{tmp_path}/Data.fs")
    pool = ReadPool(s, 4)
    assert pool.warm_index() == 0
    assert sum(slot is not None for slot in pool._slots) == 1
    pool.close()
    s.close()


def test_the_hub_config_turns_warming_off(tmp_path: Path) -> None:
    from shopkeeper.hub.config import HubConfig

    p = tmp_path / "hub.yaml"
    assert HubConfig().limits.read_warm_index is True
    p.write_text("allow_anonymous: true\nlimits:\n  read_warm_index: false\n")
    assert HubConfig.load(p).limits.read_warm_index is False
