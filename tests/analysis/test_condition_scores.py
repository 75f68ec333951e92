"""Score conditions (``score('clv.value') >= 5``) in segments and offers: judged on the same merged
scores ``Customer.scores`` reads — a table row against the record's own score, the newer winning —
with every score of the customer merged once per evaluation (``Env.memo_score``), not a walk of
the score tables per name (docs/benchmarks.md §54)."""

from __future__ import annotations

import pytest

from shopkeeper import scoretable
from shopkeeper.analysis.conditions import Env
from shopkeeper.analysis.models import CLV_SCORES, RFM_SCORES, write_scores
from shopkeeper.analysis.segments import SegmentSet
from shopkeeper.customer import Customer
from shopkeeper.store import Store

NAMES = CLV_SCORES + RFM_SCORES
NOW = 1_800_000_000 * 1_000_000


def _segments() -> SegmentSet:
    segs = SegmentSet()
    segs.define("valuable", "score('clv.value') >= 15")
    segs.define("alive", "score('clv.p_alive') > 0.4 and score('rfm.r') >= 5")
    segs.define("loyal", "score('loyalty') >= 2")  # a record's own score of no table
    segs.define("unscored", "not score('churn.risk')")  # a NaN row value reads as not scored
    return segs


def test_score_conditions_judge_the_merged_scores_and_read_the_tables_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with store.transaction() as f:
        for i in range(3):
            f.customers[f"c{i}"] = Customer(f"c{i}", created_at=0)
        f.customers["c0"].set_score("clv.value", 1.0, "live", at=NOW + 1)  # newer than the row: wins
        f.customers["c1"].set_score("clv.value", 1.0, "live", at=NOW - 1)  # older: the row's 20 wins
        f.customers["c1"].set_score("loyalty", 3.0, "rule", at=NOW - 1)
        row = (2.0, 0.5, 20.0, float("nan"), 5.0, 4.0, 3.0, 543.0)
        write_scores(f, [("c0", row), ("c1", row)], NAMES, ("model:v1",) * 8, NOW)
    segs = _segments()
    walks = []
    tables_of = scoretable.tables_of
    monkeypatch.setattr(scoretable, "tables_of", lambda c: walks.append(c.id) or tables_of(c))
    with store.read() as f:
        got = {cid: sorted(segs.evaluate(f.customers[cid], list(segs.defs.values()), NOW, Env(f.customers[cid], NOW)))
               for cid in ("c0", "c1", "c2")}
        by_get = {cid: sorted(name for name, d in segs.defs.items() if d.condition(Env(f.customers[cid], NOW)))
                  for cid in ("c0", "c1", "c2")}
    assert got == {"c0": [("alive", "enter"), ("unscored", "enter")],
                   "c1": [("alive", "enter"), ("loyal", "enter"), ("unscored", "enter"), ("valuable", "enter")],
                   "c2": [("unscored", "enter")]}
    assert by_get == {cid: [name for name, _ in changes] for cid, changes in got.items()}
    # one membership evaluation of four score conditions (five score reads) walks the tables once
    assert walks[:3] == ["c0", "c1", "c2"] and len(walks) == 3 + 3 * 4


def test_a_full_re_evaluation_reads_the_score_tables_once_per_batch_not_per_customer(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record path of ``reevaluate`` hands each batch's score tables to every customer's
    evaluation: no ``tables_of`` (a ``Connection.root()`` and a walk of the tables) per customer,
    and the same memberships as judged one customer at a time."""
    from shopkeeper.analysis.segments import reevaluate

    with store.transaction() as f:
        for i in range(6):
            f.customers[f"c{i}"] = Customer(f"c{i}", created_at=0)
        f.customers["c0"].set_score("clv.value", 1.0, "live", at=NOW + 1)
        f.customers["c1"].set_score("loyalty", 3.0, "rule", at=NOW - 1)
        row = (2.0, 0.5, 20.0, float("nan"), 5.0, 4.0, 3.0, 543.0)
        write_scores(f, [("c0", row), ("c1", row), ("c4", row)], NAMES, ("model:v1",) * 8, NOW)
    segs = _segments()
    with store.read() as f:
        want = {cid: sorted(n for n, d in segs.defs.items() if d.condition(Env(f.customers[cid], NOW)))
                for cid in sorted(f.customers.keys())}
    walks = []
    tables_of = scoretable.tables_of
    monkeypatch.setattr(scoretable, "tables_of", lambda c: walks.append(c.id) or tables_of(c))
    r = reevaluate(store, segs, now=NOW, batch=4, cards=False)
    with store.read() as f:
        got = {cid: sorted(f.customers[cid].segments) for cid in sorted(f.customers.keys())}
    assert r["customers"] == 6 and r["entered"] == sum(map(len, want.values())) > 6
    assert got == want and "valuable" in got["c4"]
    assert walks == []
