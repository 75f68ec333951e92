"""A hub's start-up leaves nothing loaded on the writer's connection for operations: the outbox's
start-up walk (``outbox.expire``, every intent not yet final and its customer) kept ~440k objects
there for the hub's life at 10M customers (docs/benchmarks.md §99)."""

from __future__ import annotations

import pytest
from BTrees.OOBTree import OOBTree

from shopkeeper.customer import Customer
from shopkeeper.hub.server import Hub
from shopkeeper.store import Store

from .conftest import free_port, make_config


@pytest.mark.e2e  # a hub (its gRPC server) starts
def test_the_start_up_walk_does_not_stay_in_the_writers_cache() -> None:
    store = Store.open("memory://")
    with store.transaction() as f:
        for i in range(60):
            f.add_customer(Customer(f"c{i:03d}"))
        f.root["outbox"] = OOBTree({("email", f"i{i:03d}"): f"c{i:03d}" for i in range(60)})
    hub = Hub(make_config(free_port()), store=store, load_entrypoints=False).start()
    try:
        conn = hub.engine.writer._op_conn
        loaded = [type(o).__name__ for _oid, o in conn._cache.lru_items()]
        assert "Customer" not in loaded, loaded
        assert conn._cache.cache_non_ghost_count < 10
    finally:
        hub.stop(grace=0.5)
        store.close()
