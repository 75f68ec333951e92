"""bench_store_1m's ``--steps-first`` (docs/capacity.md §10): the 10M store is built with the hub's
evolve steps run on the empty store, so the keepers fill the audience index and the order table
while customers are created, instead of a walk over every customer afterwards. The figures measured
on such a store stand for a hub's store only if it is the store the walk would have left."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_store_1m.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(_PATH.parent))  # by its own name: the build's generator process imports it
    return importlib.import_module("bench_store_1m")


def _kept(path: Path) -> dict[str, object]:
    """Every entry of the kept indexes and the counters, and the root's folders and steps."""
    from shopkeeper.store import Store
    from shopkeeper.store.folders import counter_value

    store = Store.open(f"file://{path}")
    conn, _tm = store.connect()
    try:
        root = conn.root()
        out: dict[str, object] = {"folders": sorted(root.keys()), "steps": sorted(root["meta"]["steps"])}
        audience, orders = root["audience"], root["orders"]
        for name, folder in [*((f"audience/{k}", v) for k, v in audience.items()),
                             *((f"orders/{k}", v) for k, v in orders.items())]:
            out[name] = dict(folder.items()) if hasattr(folder, "items") else folder
        counters = root["counters"]  # a Counters record since generation 9, Length objects before
        out["counters"] = {k: counter_value(counters, k) for k, _v in counters.items()}
        return out
    finally:
        conn.close()
        store.close()


def test_steps_first_builds_the_store_the_steps_walk_leaves(bench, tmp_path):
    walked, first = tmp_path / "walked" / "Data.fs", tmp_path / "first" / "Data.fs"
    for p in (walked, first):
        p.parent.mkdir()
    quiet = lambda *a, **k: None  # noqa: E731
    bench.build_store(str(walked), 300, 4, txn=100, seed=3, log=quiet)
    bench.run_hub_steps(str(walked))
    bench.build_store(str(first), 300, 4, txn=100, seed=3, log=quiet, steps_first=True)
    a, b = _kept(walked), _kept(first)
    assert a["steps"] and a["steps"] == b["steps"]
    assert sum(len(v) for k, v in a.items() if k.startswith(("audience/", "orders/")) and isinstance(v, dict)) > 300
    assert a == b


def test_store_uri_takes_a_uri_or_a_file(bench):
    assert bench.store_uri("/data/Data.fs") == "file:///data/Data.fs"
    assert bench.store_uri("postgresql://u@h/db") == "postgresql://u@h/db"
