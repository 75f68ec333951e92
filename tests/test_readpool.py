"""The hub's read pool: bounded, warm (connections stay open), and every read current."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from BTrees.OOBTree import OOBTree

from shopkeeper.customer import Customer
from shopkeeper.readpool import ReadPool, ReadPoolClosed, cut, root_separators
from shopkeeper.store import Store
from shopkeeper.testing import wait_for


@pytest.fixture
def fstore(tmp_path: Path):
    s = Store.open(f"file://{tmp_path}/Data.fs")
    yield s
    s.close()


def test_a_pooled_connection_sees_commits_made_since_its_last_read(fstore: Store) -> None:
    pool = ReadPool(fstore, 1)
    with pool.read() as f:
        assert f.customer("c1") is None
        conn = f.conn
    with fstore.transaction() as f:
        f.add_customer(Customer("c1"))
    with pool.read() as f:
        assert f.conn is conn  # the same, warm connection ...
        assert f.customer("c1") is not None  # ... and it sees the new commit
    with fstore.transaction() as f:
        f.customer("c1").set_traits({"name": "Ada"})
    with pool.read() as f:
        assert f.customer("c1").traits == {"name": "Ada"}
    pool.close()


def test_changes_made_in_a_read_are_thrown_away_also_when_it_raises(fstore: Store) -> None:
    with fstore.transaction() as f:
        f.add_customer(Customer("c1"))
    pool = ReadPool(fstore, 1)
    with pytest.raises(KeyError), pool.read() as f:
        f.customer("c1").set_traits({"name": "changed"})
        raise KeyError("the request failed")
    with pool.read() as f:
        assert f.customer("c1").traits == {}
    with fstore.read() as f:
        assert f.customer("c1").traits == {}
    pool.close()


def test_at_most_size_reads_at_once_the_next_waits_for_a_connection(fstore: Store) -> None:
    pool = ReadPool(fstore, 2)
    release = threading.Event()
    inside = threading.Semaphore(0)
    entered: list[int] = []

    def reader(n: int) -> None:
        with pool.read():
            entered.append(n)
            inside.release()
            release.wait(10)

    first = [threading.Thread(target=reader, args=(n,)) for n in (1, 2)]
    for t in first:
        t.start()
    for _ in first:
        assert inside.acquire(timeout=10)
    third = threading.Thread(target=reader, args=(3,))
    third.start()
    wait_for(lambda: len(pool._cond._waiters) == 1, what="the third reader waiting for a connection")  # type: ignore[attr-defined]
    assert sorted(entered) == [1, 2]
    release.set()
    for t in [*first, third]:
        t.join(10)
    assert sorted(entered) == [1, 2, 3]
    assert pool._made == 2  # no third connection was opened
    assert sum(info["opened"] is not None for info in fstore.db.connectionDebugInfo()) == 2
    pool.close()
    assert [info["opened"] for info in fstore.db.connectionDebugInfo() if info["opened"] is not None] == []


def test_folders_follow_a_root_folder_added_while_the_pool_is_open(fstore: Store) -> None:
    pool = ReadPool(fstore, 1)
    with pool.read() as f:
        before = f.merges
    conn, tm = fstore.connect()
    tm.begin()
    conn.root()["merges"] = OOBTree({"m1": 1})
    tm.commit()
    conn.close()
    with pool.read() as f:
        assert f.merges is not before and dict(f.merges) == {"m1": 1}
    pool.close()


def test_a_closed_pool_refuses_new_reads(fstore: Store) -> None:
    pool = ReadPool(fstore, 1)
    with pool.read():
        pass
    pool.close()
    with pytest.raises(ReadPoolClosed), pool.read():
        pass


def _fill(store: Store, n: int) -> list[str]:
    ids = [f"c{i:04d}" for i in range(n)]
    with store.transaction() as f:
        for cid in ids:
            c = Customer(cid)
            c.set_traits({"name": cid * 20})
            f.add_customer(c)
    return ids


def _read_all(pool: ReadPool, ids: list[str], threads: int) -> list:
    """Every customer read once, ``threads`` reads at a time (so that every connection is used)."""
    conns: set = set()
    todo = list(ids)
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                if not todo:
                    return
                batch = [todo.pop() for _ in range(min(20, len(todo)))]
            with pool.read() as f:
                for cid in batch:
                    assert f.customer(cid).traits["name"].startswith(cid)
                with lock:
                    conns.add(f.conn)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return list(conns)


def test_each_connection_keeps_at_most_cache_objects_loaded_between_reads(fstore: Store) -> None:
    """The hub's ``limits.read_cache_objects``: the read caches together stay under size × the bound,
    however many customers were read (the store's own cache_size, 50,000 by default, kept them all)."""
    ids = _fill(fstore, 600)
    pool = ReadPool(fstore, 2, cache_objects=40)
    conns = _read_all(pool, ids, threads=2)
    assert conns
    for conn in conns:
        assert conn._cache.cache_size == 40
        assert conn._cache.cache_non_ghost_count <= 40
    with pool.read() as f:  # still correct, only colder
        assert f.customer(ids[0]).traits["name"].startswith(ids[0])
    pool.close()
    # back in the database's pool, a connection has the store's bound again (a writer may take it)
    assert all(conn._cache.cache_size == fstore.db.getCacheSize() for conn in conns)


def test_without_a_bound_the_pool_keeps_the_stores_cache_size(fstore: Store) -> None:
    ids = _fill(fstore, 600)
    pool = ReadPool(fstore, 1)
    (conn,) = _read_all(pool, ids, threads=1)
    assert conn._cache.cache_non_ghost_count >= 600  # every customer read stays loaded
    pool.close()


def test_the_hub_config_takes_both_cache_bounds(tmp_path: Path) -> None:
    from shopkeeper.hub.config import ConfigError, HubConfig

    p = tmp_path / "hub.yaml"
    p.write_text("allow_anonymous: true\nlimits:\n  read_cache_objects: 5000\n  cache_objects: 20000\n")
    cfg = HubConfig.load(p)
    assert (cfg.limits.read_cache_objects, cfg.limits.cache_objects) == (5000, 20000)
    p.write_text("allow_anonymous: true\nlimits:\n  read_cache_object: 5000\n")
    with pytest.raises(ConfigError, match="limits.read_cache_object: unknown limit"):
        HubConfig.load(p)


def _open_all(pool: ReadPool) -> list:
    """Open every connection of the pool (reads held at once), then return them to it, with their
    caches emptied (one of them may be the connection that stored the customers)."""
    held = [pool.read() for _ in range(pool.size)]
    conns = [cm.__enter__().conn for cm in held]
    for cm in reversed(held):
        cm.__exit__(None, None, None)
    for conn in conns:
        conn.cacheMinimize()
    return conns


def test_a_read_about_a_customer_goes_to_its_own_connection_not_the_warmest(fstore: Store) -> None:
    """Affinity (limits.read_affinity): without it the last returned connection served the next read,
    whoever it was about, so under load each connection cached its own copy of every hot customer."""
    ids = _fill(fstore, 40)
    pool = ReadPool(fstore, 4)
    conns = _open_all(pool)
    a = ids[0]
    b = next(cid for cid in ids if pool.home(cid) != pool.home(a))
    with pool.read(a) as f:
        assert f.conn is conns[pool.home(a)]
        oid = f.customer(a)._p_oid
    with pool.read(b) as f:  # now the warmest connection is b's
        assert f.conn is conns[pool.home(b)]
    with pool.read(a) as f:
        assert f.conn is conns[pool.home(a)]
        f.customer(a).traits  # noqa: B018 - loads it (again, only if it had been evicted)
    # each customer read by key is in one connection's cache: the caches hold different customers
    for cid in ids:
        with pool.read(cid) as f:
            assert f.customer(cid).traits["name"].startswith(cid)
    for cid in ids:
        with pool.read(cid) as f:
            oid = f.customer(cid)._p_oid
        holders = [k for k, c in enumerate(conns) if getattr(c._cache.get(oid), "_p_changed", None) is not None]
        assert holders == [pool.home(cid)]
    pool.close()


def test_a_read_whose_connection_is_busy_takes_another_idle_one_without_waiting(fstore: Store) -> None:
    ids = _fill(fstore, 4)
    pool = ReadPool(fstore, 2)
    _open_all(pool)
    got: list = []

    def second() -> None:
        with pool.read(ids[0]) as f:
            got.append((f.conn, f.customer(ids[0]).traits["name"]))

    with pool.read(ids[0]) as f:
        t = threading.Thread(target=second)
        t.start()
        t.join(10)
        assert not t.is_alive(), "a read waited for its own connection while another one was idle"
        assert got and got[0][0] is not f.conn and got[0][1].startswith(ids[0])
    pool.close()


def test_without_affinity_the_warmest_connection_serves_every_read(fstore: Store) -> None:
    ids = _fill(fstore, 40)
    pool = ReadPool(fstore, 4, affinity=False)
    _open_all(pool)
    with pool.read(ids[0]) as f:
        first = f.conn
    assert all(_conn_of(pool, cid) is first for cid in ids)
    pool.close()


def _conn_of(pool: ReadPool, key: str):
    with pool.read(key) as f:
        return f.conn


def test_the_hub_config_turns_affinity_off(tmp_path: Path) -> None:
    from shopkeeper.hub.config import HubConfig

    p = tmp_path / "hub.yaml"
    assert HubConfig().limits.read_affinity is True
    p.write_text("allow_anonymous: true\nlimits:\n  read_affinity: false\n")
    assert HubConfig.load(p).limits.read_affinity is False


def test_affinity_cuts_each_tree_by_range_so_a_connection_walks_only_its_share(fstore: Store) -> None:
    """Keys go to connections by range of the tree they are looked up in, cut at its root's
    separators: hashed keys made every connection load (and pin, with ~125 ghosts each) every
    interior node of the 10M store's trees (docs/benchmarks.md §91)."""
    ids = _fill(fstore, 900)
    with fstore.transaction() as f:
        for cid in ids:
            f.identities[("email", f"{cid}@example.com")] = cid
    pool = ReadPool(fstore, 4)
    conns = _open_all(pool)  # the first read took the ranges
    by_id = [pool.home(cid) for cid in ids]  # ids in key order
    by_email = [pool.home(("email", f"{cid}@example.com")) for cid in ids]
    for homes in (by_id, by_email):
        assert homes == sorted(homes), "a connection's keys are one range of the tree"
        shares = [homes.count(k) for k in range(4)]
        assert min(shares) >= 900 // 8, shares  # four shares of about as many entries
    for cid in ids[::50]:
        with pool.read(("email", f"{cid}@example.com")) as f:
            assert f.conn is conns[pool.home(("email", f"{cid}@example.com"))]
            assert f.customer_by_identity("email", f"{cid}@example.com").id == cid
    assert pool.home(("email", 3)) in range(4)  # a key the tree cannot compare still has a home
    pool.close()


def test_a_small_tree_gives_no_ranges(fstore: Store) -> None:
    _fill(fstore, 20)
    with fstore.read() as f:
        assert root_separators(f.customers) == [] and root_separators(f.identities) == []
    assert cut([1, 2], 4) == [] and cut([1, 2, 3], 4) == [1, 2, 3] and cut(list(range(7)), 4) == [1, 3, 5]


def test_each_identity_namespace_is_cut_in_shares_of_its_own(fstore: Store) -> None:
    """The 10M store's identity tree holds e-mails and another namespace: cut as one range, the
    e-mails fell to half of the connections and the others cached nothing (§91)."""
    ids = _fill(fstore, 900)
    with fstore.transaction() as f:
        for cid in ids:
            f.identities[("email", f"{cid}@example.com")] = cid
            f.identities[("phone", f"+44{cid}")] = cid
    pool = ReadPool(fstore, 4)
    _open_all(pool)
    for ns, value in (("email", "{}@example.com"), ("phone", "+44{}")):
        homes = [pool.home((ns, value.format(cid))) for cid in ids]
        assert homes == sorted(homes)
        assert min(homes.count(k) for k in range(4)) >= 900 // 8, ns
    pool.close()
