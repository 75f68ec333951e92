"""One door for offline writes: the engine's OfflineWriter is the only way product code opens a
transaction of its own (shopkeeper.engine.offline); in a hub, the writer is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shopkeeper.customer import Customer
from shopkeeper.engine import Engine
from shopkeeper.engine.offline import HubHoldsStore, OfflineWriter
from shopkeeper.plugins import get_plugin_manager
from shopkeeper.store import Store

ROOT = Path(__file__).resolve().parents[1]


def _transaction_calls() -> list[str]:
    """``<anything>.transaction(...)`` calls in shipped code outside the engine (and the store,
    which defines it)."""
    out = []
    for base in (ROOT / "core", ROOT / "adapters"):
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] in (("core", "engine"), ("core", "store")) or "_proto" in rel.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "transaction"):
                    out.append(f"{rel}:{node.lineno}")
    return out


def test_only_the_engine_opens_transactions() -> None:
    """A ``store.transaction`` elsewhere is a second way in: offline, use
    ``shopkeeper.engine.offline.OfflineWriter`` (or ``apply``); in a hub, ``writer.submit_op``."""
    assert _transaction_calls() == []


def test_the_offline_writer_commits_an_operation_and_returns_its_value(store: Store) -> None:
    writer = OfflineWriter(store)
    assert writer.apply(lambda f, changes: (changes, f.add_customer(Customer("a")).id)) == (None, "a")
    with store.read() as f:
        assert "a" in f.customers and f.counter("customers") == 1


def test_a_failing_operation_changes_nothing_and_its_error_reaches_the_caller(store: Store) -> None:
    def op(f, _changes):  # type: ignore[no-untyped-def]
        f.add_customer(Customer("b"))
        raise ValueError("refused")

    fut = OfflineWriter(store).submit_op(op)
    with pytest.raises(ValueError, match="refused"):
        fut.result()
    with store.read() as f:
        assert "b" not in f.customers


def test_the_offline_writer_refuses_a_store_a_hub_writer_holds() -> None:
    with Store.open("memory://") as store:
        engine = Engine(store, get_plugin_manager(load_entrypoints=False)).start()
        try:
            with pytest.raises(HubHoldsStore, match="submit the operation to it"):
                OfflineWriter(store).apply(lambda f, _changes: f.add_customer(Customer("c")))
        finally:
            engine.stop()
        OfflineWriter(store).apply(lambda f, _changes: f.add_customer(Customer("c")))  # no hub any more
