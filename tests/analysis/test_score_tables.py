"""Batch model scores live in per-model score tables beside the customers (``shopkeeper.scoretable``):
a fit writes no customer record, every reader still sees the scores through ``Customer.scores``,
a newer per-customer score wins over an older table row and the other way round, erasure removes
the rows (and keeps a fit in flight from writing them back), and existing stores gain the folder
through the named evolve step ``score-tables``."""

from __future__ import annotations

from pathlib import Path

from shopkeeper.analysis.models import CLV_SCORES, RFM_SCORES, write_scores
from shopkeeper.customer import Customer, IdentityLink
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.privacy import forget
from shopkeeper.scoretable import ROOT_KEY, ScoreTable
from shopkeeper.store import Store
from shopkeeper.view import customer_view

NAMES = CLV_SCORES + RFM_SCORES
NOW = 1_800_000_000 * 1_000_000


def _row(ep: float) -> tuple[float, ...]:
    return (ep, 0.5, ep * 10, 0.5, 5.0, 4.0, 3.0, 543.0)


def _customers(store: Store, n: int) -> None:
    with store.transaction() as f:
        for i in range(n):
            c = Customer(f"c{i}", created_at=0)
            c.identities[("email", f"c{i}@example.com")] = IdentityLink("test", 0)
            f.customers[c.id] = c
            f.identities[("email", f"c{i}@example.com")] = c.id


def test_a_fit_writes_no_customer_record_and_every_reader_sees_the_scores(file_store: Store) -> None:
    _customers(file_store, 50)
    with file_store.read() as f:
        serials = {cid: c._p_serial for cid, c in f.customers.items()}
    with file_store.transaction() as f:
        assert write_scores(f, [(f"c{i}", _row(float(i))) for i in range(50)], NAMES,
                            ("model:v1",) * 4 + ("model:r1",) * 4, NOW) == 50
    with file_store.read() as f:
        assert {cid: c._p_serial for cid, c in f.customers.items()} == serials  # not one rewritten
        assert isinstance(f.root[ROOT_KEY]["clv"], ScoreTable)
        c = f.customers["c7"]
        assert c.scores["clv.expected_purchases"].value == 7.0
        assert c.scores["clv.value"].source == "model:v1" and c.scores["rfm.score"].source == "model:r1"
        assert c.scores.get("clv.value").at == NOW and "rfm.r" in c.scores and len(c.scores) == 8
        view = customer_view(c)
        assert view["scores"]["clv.value"]["value"] == 70.0 and view["scores"]["rfm.score"]["value"] == 543.0


def test_the_newer_score_wins_between_the_record_and_the_table(store: Store) -> None:
    _customers(store, 2)
    with store.transaction() as f:
        f.customers["c0"].set_score("clv.value", 1.0, "live", at=NOW + 1)  # a re-score after the fit's time
        f.customers["c1"].set_score("clv.value", 1.0, "live", at=NOW - 1)  # one before it
        f.customers["c1"].set_score("loyalty", 3.0, "rule", at=NOW - 1)
        write_scores(f, [("c0", _row(2.0)), ("c1", _row(2.0))], NAMES, ("model:v1",) * 8, NOW)
    with store.read() as f:
        assert f.customers["c0"].scores["clv.value"].source == "live"
        assert f.customers["c1"].scores["clv.value"].value == 20.0
        assert dict(f.customers["c1"].scores)["loyalty"].value == 3.0  # own scores are kept beside


def test_erasure_removes_the_rows_and_a_fit_in_flight_cannot_write_them_back(store: Store) -> None:
    _customers(store, 2)
    with store.transaction() as f:
        write_scores(f, [("c0", _row(2.0)), ("c1", _row(3.0))], NAMES, ("model:v1",) * 8, NOW)
    with store.transaction() as f:
        forget(f, f.customers["c0"], reason="test")
    with store.transaction() as f:  # a fit that read c0 before the erasure writes after it
        write_scores(f, [("c0", _row(2.0)), ("c1", _row(4.0))], NAMES, ("model:v2",) * 8, NOW)
    with store.read() as f:
        assert "c0" not in f.root[ROOT_KEY]["clv"].rows and "c0" not in f.root[ROOT_KEY]["rfm"].rows
        assert not f.customers["c0"].scores
        assert f.customers["c1"].scores["clv.expected_purchases"].value == 4.0


def test_records_with_scores_inside_still_read_and_the_evolve_step_adds_the_folder(tmp_path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri, steps=builtin_evolve_steps())
    with store.transaction() as f:
        c = Customer("old", created_at=0)
        c.set_score("clv.value", 12.5, "model:old", at=1)
        f.customers["old"] = c
        del f.root[ROOT_KEY]  # as a store written before the step
        del f.meta["steps"]["score-tables"]
    store.close()
    store = Store.open(uri, steps=builtin_evolve_steps())
    try:
        with store.read() as f:
            assert ROOT_KEY in f.root and "score-tables" in f.meta["steps"]
            assert f.customers["old"].scores["clv.value"].value == 12.5
    finally:
        store.close()


def test_report_scores_names_each_customers_own_identities_after_a_merge(store: Store, tmp_path: Path) -> None:
    """``report scores --id`` reads the identity index, not each customer's identities tree:
    after a merge the survivor lists both addresses and the absorbed customer is gone."""
    import csv

    from shopkeeper.analysis.scores import write_scores_table
    from shopkeeper.engine.ingest import Ingestor
    from shopkeeper.events import Event
    from shopkeeper.identity_merge import merge

    with Ingestor(store) as ing:
        ing.apply([Event("order", "web", NOW, [("email", f"p{i}@x.org"), ("crm_id", f"C{i}")], f"k{i}",
                         {"order_id": f"o{i}", "amount": 1.0}) for i in range(4)])
        ing.apply([Event("page_view", "web", NOW, [("email", "p0b@x.org"), ("crm_id", "C0")], "k9", {})])
    with store.transaction() as f:
        a, b = f.identities[("email", "p1@x.org")], f.identities[("email", "p2@x.org")]
        merge(f, f.customers[a], f.customers[b], reason="test", source="test")
    out = tmp_path / "s.csv"
    assert write_scores_table(store, out, namespaces=["email", "crm_id"]) == 3
    with open(out, newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    with store.read() as f:
        for cid, row in rows.items():
            c = f.customers[cid]
            assert row["email"].split(";") == c.identities_in("email")
            assert row["crm_id"].split(";") == c.identities_in("crm_id")
    assert rows[a]["email"] == "p1@x.org;p2@x.org" and rows[a]["crm_id"] == "C1;C2"


def test_report_scores_reads_the_tables_and_only_the_records_of_customers_with_own_scores(
        file_store: Store, tmp_path: Path, monkeypatch) -> None:
    """``report scores`` takes status, orders, segments and scores from the audience index and the
    score tables, and loads a record only for a customer holding own scores of table names (the
    score-owners set): its newer re-score wins over the fit's row, as ``Customer.scores`` says
    everywhere. The rows equal those of the record-by-record path (a store without the set)."""
    from shopkeeper.analysis.scores import write_scores_table
    from shopkeeper.engine.ingest import Ingestor
    from shopkeeper.events import Event
    from shopkeeper.identity_merge import merge
    from shopkeeper.scoretable import OWNERS

    store = file_store
    with Ingestor(store) as ing:
        ing.apply([Event("order", "web", NOW, [("email", f"p{i}@x.org")], f"k{i}",
                         {"order_id": f"o{i}", "amount": float(i + 1)}) for i in range(8)]
                  + [Event("page_view", "web", NOW, [("email", "v@x.org")], "kv", {})])
    with store.read() as f:
        ids = [f.identities[("email", f"p{i}@x.org")] for i in range(8)]
    with store.transaction() as f:
        write_scores(f, [(cid, _row(float(i))) for i, cid in enumerate(ids)], NAMES, ("model:v1",) * 8, NOW)
        # a buyer with only a churn risk from another CLV fit (NaN: not scored), RFM by another model
        write_scores(f, [(ids[6], (float("nan"),) * 3 + (0.25, 1.0, 2.0, 3.0, 123.0))], NAMES,
                     ("model:c2",) * 4 + ("model:r2",) * 4, NOW)
    with store.transaction() as f:
        f.customers[ids[0]].set_score("clv.value", 99.0, "live", at=NOW + 1)  # newer than the fit: wins
        f.customers[ids[1]].set_score("clv.value", 77.0, "live", at=NOW - 1)  # older: the fit's row wins
        f.customers[ids[2]].set_score("loyalty", 3.0, "rule")  # not a table name: no record needed
        f.customers[ids[3]].join_segment("vip", NOW)
        merge(f, f.customers[ids[4]], f.customers[ids[5]], reason="test", source="test")
    with store.read() as f:
        owners = set(f.root[ROOT_KEY][OWNERS])
    assert owners == {ids[0], ids[1], ids[4]}  # the merge copied the absorbed one's scores into the survivor

    loaded: list[str] = []
    setstate = Customer.__setstate__

    def counting(self: Customer, state: dict) -> None:
        setstate(self, state)
        loaded.append(self.id)

    monkeypatch.setattr(Customer, "__setstate__", counting)
    store.db.cacheMinimize()  # every customer a ghost: a read of one is a load
    fast = tmp_path / "fast.csv"
    assert write_scores_table(store, fast, namespaces=["email"]) == 8  # 7 buyers after the merge + a visitor
    assert sorted(loaded) == sorted(owners)
    monkeypatch.setattr(Customer, "__setstate__", setstate)
    text = fast.read_text()
    assert ",99," in text and ",77," not in text
    assert ',,,0.25,1,2,3,123,"r2",' in text  # unscored columns empty; no clv.value: the model is the RFM's

    with store.transaction() as f:  # the record-by-record path, as on a store made before the set
        del f.root[ROOT_KEY][OWNERS]
    slow = tmp_path / "slow.csv"
    assert write_scores_table(store, slow, namespaces=["email"]) == 8
    assert text == slow.read_text()
    buyers = tmp_path / "buyers.csv"
    assert write_scores_table(store, buyers, buyers_only=True) == 7


def test_the_stdlib_csv_writer_writes_pyarrows_bytes(tmp_path: Path) -> None:
    """Small stores' CSV is written without pyarrow (start-up, issue 15); it must be the file
    pyarrow writes: quoting, missing values, integral floats, exponents, tiny values."""
    from shopkeeper.analysis import scores

    names = scores.column_names(["crm_id"])
    floats = [1.0, 0.0, -0.0, 1.1482710159865627e-09, 3.2e-07, 1e-05, -1.5e-06, 0.00015, 6552.7, 123456.789,
              float("nan"), float("inf"), 2.5e-300, None]
    n = len(floats)
    cols = {name: [] for name in names}
    for i, x in enumerate(floats):
        cols["id"].append(f"c{i}")
        cols["crm_id"].append(None if i == 2 else 'a"b,c\nd' if i == 3 else "")
        cols["orders"].append(i)
        for name in names[3:-2]:
            cols[name].append(None if x is None else (int(i) if name in scores.INTS else x))
        cols["model"].append(None if i % 2 else "bgnbd-1")
        cols["segments"].append("a;b" if i % 3 else "")
    assert all(len(v) == n for v in cols.values())
    for writer in (scores._CSVWriter(tmp_path / "ours.csv", names),
                   scores._ArrowCSVWriter(tmp_path / "arrow.csv", scores.schema(["crm_id"], False))):
        writer.write_columns(cols)
        writer.write_columns(cols)
        writer.close()
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "arrow.csv").read_bytes()
