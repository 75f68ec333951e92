"""The apply loop's own work per event, counted: function calls (Python and C, as ``sys.setprofile``
sees them) while a warm batch of plain events is applied, outside the commit — deterministic for a
given code, whatever the machine runs (docs/benchmarks.md §84). And what the cheaper paths must keep:
a customer's kept attributes read on every instance, the record's changes registered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from shopkeeper.customer import Customer
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.packedrecord import named
from shopkeeper.store import Store

T0 = 1_750_000_000


def _raw(i: int, customers: int) -> dict[str, Any]:
    n, order = i % customers, i % 7 == 0
    return {"type": "order" if order else "page_view", "ts": T0 + i,
            "identities": {"email": f"u{n}@example.org", "cookie": f"ck-{n}"}, "idempotency_key": f"key-{i}",
            "data": {"amount": 5.0, "order_id": f"o{i}"} if order else {"url": f"/p{i}"}}


def _calls_outside_commit(ing: Ingestor, batch: list[Any]) -> tuple[int, int]:
    """(every call, Python calls) made by ``ing.apply(batch)`` outside its ``commit``."""
    counts = [0, 0]

    def tick(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            counts[0] += 1
            counts[1] += 1
        elif event == "c_call":
            counts[0] += 1

    tm = ing.tm
    commit = tm.commit

    def quiet_commit() -> None:  # the commit's pickling and storing are ZODB's: not counted here
        sys.setprofile(None)
        try:
            commit()
        finally:
            sys.setprofile(tick)

    tm.commit = quiet_commit  # type: ignore[method-assign]
    sys.setprofile(tick)
    try:
        results = ing.apply(batch)
    finally:
        sys.setprofile(None)
        tm.commit = commit  # type: ignore[method-assign]
    assert {r.status for r in results} == {"applied"}
    return counts[0], counts[1]


def test_a_warm_plain_event_costs_the_apply_loop_few_calls(tmp_path: Path) -> None:
    """Events of known customers (email + cookie, each customer seen before, their records cached):
    validation done, the loop resolves, probes exactly-once, records, counts and keeps the key.
    Before §84 this took 63.0 calls per event (31.1 of them Python), after 44.5 (15.8): the bounds
    sit between."""
    customers, warm, measured = 40, 400, 400
    evs = [validate_event(_raw(i, customers)) for i in range(warm + measured)]
    with Store.open(str(tmp_path / "s.fs")) as store, Ingestor(store) as ing:
        for lo in range(0, warm, 100):
            ing.apply(evs[lo:lo + 100])
        calls = python = 0
        for lo in range(warm, warm + measured, 100):
            c, p = _calls_outside_commit(ing, evs[lo:lo + 100])
            calls, python = calls + c, python + p
    per_event, python_per_event = calls / measured, python / measured
    assert per_event < 52, per_event
    assert python_per_event < 22, python_per_event
    with Store.open(str(tmp_path / "s.fs")) as store, store.read() as f:
        assert f.counter("interactions") == warm + measured


def test_a_customers_kept_attributes_read_on_every_instance() -> None:
    """``outbox`` and ``_tree`` are left out of the record when None, and no class default stands
    behind them any more (kept attributes are descriptors with no ``__get__``): a record written
    without them, a new customer and a copy through plain pickle all read them as None."""
    import pickle

    fresh = Customer("c1", created_at=T0)
    assert fresh.outbox is None and fresh._tree is None
    state = fresh.__getstate__()
    assert "outbox" not in named(state) and "_tree" not in named(state)  # left out
    back = Customer.__new__(Customer)
    back.__setstate__(state)
    assert back.outbox is None and back._tree is None and len(back.history) == 0
    copy = pickle.loads(pickle.dumps(fresh))
    assert copy.outbox is None and copy._tree is None


def test_setting_a_kept_attribute_registers_the_change(tmp_path: Path) -> None:
    """Setting a kept attribute whole stores it and registers the record as changed (Persistent's
    own setattr runs first, the descriptor stores): it is written back."""
    with Store.open(str(tmp_path / "s.fs")) as store:
        with store.transaction() as f:
            f.add_customer(Customer("c1", created_at=T0))
        with store.transaction() as f:
            c = f.customers["c1"]
            assert not c._p_changed
            c.segments = {"vip": T0}
            assert c._p_changed
        with store.read() as f:
            assert f.customers["c1"].segments == {"vip": T0}


def test_walking_the_interactions_builds_one_history_view(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``Customer.interactions`` (the order table's and conditions' reads of a buyer's orders) reads
    every key through one ``History`` view, not a view per interaction (the property builds one per
    access): 101 views for 100 interactions before §84."""
    from shopkeeper import history
    from shopkeeper.values import Interaction

    c = Customer("c1", created_at=T0)
    for i in range(100):
        c.add_interaction(Interaction(0, T0 * 1_000_000 + i, "order" if i % 2 else "page_view", "web"))
    made = []
    real = history.History.__init__

    def counting(self: Any, customer: Customer) -> None:
        made.append(1)
        real(self, customer)

    monkeypatch.setattr(history.History, "__init__", counting)
    assert len(list(c.interactions(type="order"))) == 50
    assert len(c.recent(5)) == 5
    assert len(made) <= 3, len(made)
