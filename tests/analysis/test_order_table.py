"""The order table (``shopkeeper.ordertable``): every active buyer's orders beside the customers,
kept by the store's before-commit hook through every write path — live events, an import of
history, a merge and its undo, an erasure — and built for an existing store by the named step
``order-table``; ``models fit`` reads it instead of the records and gets the same rows."""

from __future__ import annotations

from pathlib import Path

from shopkeeper import ordertable
from shopkeeper.analysis.models import read_orders
from shopkeeper.customer import Interaction
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import Event
from shopkeeper.identity_merge import merge, unmerge
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.privacy import forget
from shopkeeper.store import Store

DAY = 86_400_000_000
T0 = 1_700_000_000 * 1_000_000


def _order(email: str, day: int, amount: float, key: str) -> Event:
    return Event("order", "web", T0 + day * DAY, [("email", email)], key, {"order_id": key, "amount": amount})


def _table(store: Store) -> dict[str, tuple[list[int], list[float]]]:
    with store.read() as f:
        return {cid: (list(ts), list(am)) for cid, ts, am in ordertable.iter_rows(f.root)}


def _from_records(store: Store) -> dict[str, tuple[list[int], list[float]]]:
    with store.read() as f:
        out = {}
        for cid, c in f.customers.items():
            ts, am = ordertable.orders_of(c)
            if ts:
                out[cid] = (ts, am)
        return out


def _ids(store: Store) -> dict[str, str]:
    with store.read() as f:
        return {email: f.identities[("email", email)] for (ns, email) in f.identities.keys() if ns == "email"}


def test_the_table_follows_events_merges_and_erasure(store: Store) -> None:
    with Ingestor(store) as ing:
        ing.apply([_order("a@x.org", 0, 10.0, "o1"), _order("a@x.org", 3, 5.5, "o2"),
                   _order("b@x.org", 1, 7.0, "o3"), Event("page_view", "web", T0, [("email", "c@x.org")], "p1", {})])
        ing.apply([_order("a@x.org", 9, 1.25, "o4")])
    ids = _ids(store)
    a, b = ids["a@x.org"], ids["b@x.org"]
    table = _table(store)
    assert table == _from_records(store)
    assert table[a] == ([T0, T0 + 3 * DAY, T0 + 9 * DAY], [10.0, 5.5, 1.25])
    assert set(table) == {a, b}  # the page viewer bought nothing: no row

    with store.transaction() as f:
        rec = merge(f, f.customers[a], f.customers[b], reason="test", source="test")
    table = _table(store)
    assert set(table) == {a} and len(table[a][0]) == 4 and table == _from_records(store)

    with store.transaction() as f:
        unmerge(f, rec.id)
    assert _table(store) == _from_records(store) and set(_table(store)) == {a, b}

    with store.transaction() as f:
        forget(f, f.customers[b])
    assert set(_table(store)) == {a}


def test_a_fit_reads_the_same_rows_from_the_table_as_from_the_records(store: Store) -> None:
    with Ingestor(store) as ing:
        ing.apply([_order(f"u{i}@x.org", d, 1.0 + i + d, f"k{i}-{d}") for i in range(20) for d in range(i % 4 + 1)])
    as_of = T0 + 2 * DAY
    with_table = read_orders(store, as_of)
    with store.transaction() as f:
        del f.root[ordertable.ROOT]
    from_records = read_orders(store, as_of)
    assert with_table == from_records and with_table.later and with_table.calibration


def test_an_existing_store_gains_the_table_through_its_named_step(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    s = Store.open(uri, steps=builtin_evolve_steps())
    with Ingestor(s) as ing:
        ing.apply([_order("a@x.org", 0, 3.0, "o1"), _order("b@x.org", 2, 4.0, "o2")])
    want = _table(s)
    with s.transaction() as f:  # a store written before the table existed
        del f.root[ordertable.ROOT]
        del f.root["meta"]["steps"]["order-table"]
    s.close()
    assert "order-table" in {step.name for step in builtin_evolve_steps()}  # the analysis plugin's step
    s = Store.open(uri, steps=builtin_evolve_steps())
    try:
        assert _table(s) == want and len(want) == 2
    finally:
        s.close()


def test_a_new_order_is_appended_to_the_row_and_every_other_change_reads_the_history(store: Store, monkeypatch) -> None:
    """An order applied to a buyer whose orders were only added to is appended to the row (the
    history is not read again: a hot buyer's order re-read all of it, benchmarks §72); an order
    that is not the newest, several at one instant, a merge, an unmerge and a rule-like rollback
    of the facts read the history — and the table always equals what the records say."""
    import random

    reads: list[str] = []
    real = ordertable.orders_of
    monkeypatch.setattr(ordertable, "orders_of", lambda c: reads.append(c.id) or real(c))
    rng = random.Random(7)
    with Ingestor(store) as ing:
        ing.apply([_order("a@x.org", 0, 10.0, "o1"), _order("b@x.org", 5, 2.0, "b1")])
        a = _ids(store)["a@x.org"]
        reads.clear()
        ing.apply([_order("a@x.org", 2, 3.0, "o2")])
        ing.apply([_order("a@x.org", 4, 4.0, "o3"), _order("a@x.org", 6, 1.5, "o4")])  # two in one commit
        assert reads == [] and _table(store)[a] == ([T0, T0 + 2 * DAY, T0 + 4 * DAY, T0 + 6 * DAY],
                                                    [10.0, 3.0, 4.0, 1.5])
        ing.apply([_order("a@x.org", 1, 7.0, "late")])  # older than the row's newest: read again
        assert reads == [a] and _table(store) == _from_records(store)
        for i in range(60):  # same-instant orders, late ones, new ones, in groups
            day = rng.choice([6, 6, 7, rng.randrange(9), 8 + i // 10])
            ing.apply([_order(rng.choice(["a@x.org", "b@x.org"]), day, round(rng.uniform(1, 50), 2), f"r{i}-{j}")
                       for j in range(rng.randrange(1, 4))])
            assert _table(store) == _from_records(store), i
    ids = _ids(store)
    with store.transaction() as f:
        rec = merge(f, f.customers[ids["a@x.org"]], f.customers[ids["b@x.org"]], reason="test", source="test")
    assert _table(store) == _from_records(store)
    with store.transaction() as f:
        unmerge(f, rec.id)
    assert _table(store) == _from_records(store)
    with Ingestor(store) as ing:  # a merge whose undo shares a commit with an order of the same instant
        ing.apply([_order("x@x.org", 0, 10.0, "x1"), _order("y@x.org", 2, 2.0, "y1")])
    ids = _ids(store)
    with store.transaction() as f:
        rec = merge(f, f.customers[ids["x@x.org"]], f.customers[ids["y@x.org"]], reason="test", source="test")
    with store.transaction() as f:
        unmerge(f, rec.id)  # the row still holds y's order at day 2 until the commit
        x = f.customers[ids["x@x.org"]]
        x.add_interaction(Interaction(T0 + 2 * DAY, T0 + 2 * DAY, "order", "web", "", {"amount": 77.0}, "x2", (), x.id))
    assert _table(store)[ids["x@x.org"]] == ([T0, T0 + 2 * DAY], [10.0, 77.0]) and _table(store) == _from_records(store)
    with store.transaction() as f:  # the order facts set back whole (a failing rule's snapshot does this)
        c = f.customers[ids["a@x.org"]]
        key = max(c.history.keys())
        it = c.history[key]
        hard = dict(c.hard)
        c.add_interaction(it._replace(ts=it.ts + 5, key=0, data={"amount": 99.0}))
        c.history.pop(max(c.history.keys()))
        c.hard = hard
    assert _table(store) == _from_records(store)


def test_a_customers_orders_are_those_its_interactions_list(store: Store) -> None:
    """``orders_of`` reads the history's field rows: the same orders, in the same order, as
    ``Customer.interactions(type="order")`` — across a spilled history and the recent window, with
    late orders keyed between spilled ones, and other interaction types in between."""
    from shopkeeper.customer import HISTORY_CHUNK, Customer

    def expected(c: Customer) -> tuple[list[int], list[float]]:
        its = list(c.interactions(type="order"))
        return [it.ts for it in its], [float(it.data.get("amount", 0.0)) for it in its]

    c = Customer("c1", created_at=T0)
    n = 3 * HISTORY_CHUNK + 5
    for i in range(n):  # spills several chunks; every third a page view
        kind = "page_view" if i % 3 == 0 else "order"
        c.add_interaction(Interaction(T0 + i * DAY, T0 + i * DAY, kind, "web", "", {"amount": 1.0 + i}, "", (), "c1"))
    for i in (1, 4, n - 2):  # late orders: keys among the spilled ones and the window's
        c.add_interaction(Interaction(T0 + i * DAY, T0 + i * DAY, "order", "web", "", {"amount": -i}, "", (), "c1"))
    c.add_interaction(Interaction(T0 + n * DAY, T0 + n * DAY, "order", "web", "", {}, "", (), "c1"))  # no amount
    assert c._tree is not None and c._recent
    got = ordertable.orders_of(c)
    assert got == expected(c) and len(got[0]) == sum(1 for i in range(n) if i % 3) + 4
