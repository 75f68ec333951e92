"""``shopkeeper.store.keepers``: the walk over every customer that the audience-index and
order-table steps make in one transaction keeps memory bounded and says how far it is."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shopkeeper.customer import Customer
from shopkeeper.store import EvolveStep, Store, StoreOptions
from shopkeeper.store.keepers import each_customer

N = 600


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(f"file://{tmp_path}/Data.fs", StoreOptions(cache_size=100, cache_size_bytes=0))
    with s.transaction() as f:
        for i in range(N):
            f.add_customer(Customer(f"c{i:04d}"))
    yield s
    s.close()


def _walk(store: Store, **kw) -> int:
    """Non-ghost objects in the connection's cache after walking every customer in one transaction."""
    db = store.db
    conn = db.open()
    try:
        root = conn.root()
        assert sum(1 for _cid, c in each_customer(root, "test", **kw) if c.status) == N  # loads each
        return conn._cache.cache_non_ghost_count
    finally:
        conn.transaction_manager.abort()
        conn.close()


def test_the_walk_trims_the_cache_as_it_goes(store: Store) -> None:
    """Trimmed every 50 customers, the cache stays near its size (100); never trimmed (every > N) it
    holds every customer loaded — what a 1M store's first open did (5 GB)."""
    untrimmed = _walk(store, every=N + 1)
    trimmed = _walk(store, every=50)
    assert untrimmed >= N
    assert trimmed < 200


def test_a_long_walk_logs_its_progress(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="shopkeeper.store"):
        _walk(store, every=200, say_after=0.0)
    lines = [r.getMessage() for r in caplog.records]
    assert f"evolve step test: 200 of {N} customers" in lines[0]
    assert lines[-1].startswith(f"evolve step test: {N} customers done")


def test_the_walk_empties_what_it_read_at_the_default_cache_size(tmp_path: Path) -> None:
    """At the default cache size (50,000 objects) a trim to size frees nothing on a small walk, and on a
    100k store it kept ~25,000 loaded customers (1.5 GB): the walk drops everything it only read."""
    s = Store.open(f"file://{tmp_path}/Data.fs")
    try:
        with s.transaction() as f:
            for i in range(N):
                f.add_customer(Customer(f"c{i:04d}"))
        assert _walk(s, every=50) < 100
    finally:
        s.close()


def _loaded_customers(conn) -> int:
    return sum(1 for o in conn._cache.lru_items() if isinstance(o[1], Customer))


def _walk_step(name: str) -> EvolveStep:
    def run(root) -> None:
        for _cid, c in each_customer(root, name, every=N + 1):  # never trimmed on the way
            assert c.status
    return EvolveStep(name, run)


def test_an_evolve_leaves_no_customer_loaded_in_the_pooled_connection(tmp_path: Path) -> None:
    """The connection an evolve ran on goes back to the pool, and the hub's next ``db.open`` takes it:
    its cache must not keep the customers the walk loaded (the hub's 1.5 GB at open)."""
    uri = f"file://{tmp_path}/Data.fs"
    s = Store.open(uri)
    with s.transaction() as f:
        for i in range(N):
            f.add_customer(Customer(f"c{i:04d}"))
    s.add_steps([_walk_step("walk-added")])
    conn = s.db.open()
    try:
        assert _loaded_customers(conn) == 0
    finally:
        conn.close()
    s.close()
    s = Store.open(uri, steps=[_walk_step("walk-on-open")])
    conn = s.db.open()
    try:
        assert _loaded_customers(conn) == 0
    finally:
        conn.close()
        s.close()
