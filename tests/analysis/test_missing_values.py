"""Segments that drive offers mean what they say: a comparison with a missing value is false."""

from __future__ import annotations

from pathlib import Path

from shopkeeper.analysis import offers as nba
from shopkeeper.analysis.conditions import Env, compile_condition
from shopkeeper.analysis.segments import load_segments
from shopkeeper.customer import Customer, Interaction

REPO = Path(__file__).resolve().parents[2]
DAY_US = 86_400 * 1_000_000


def test_a_new_buyer_without_page_views_is_not_a_lapsed_visitor_nor_offered_winback() -> None:
    now = 1_800_000_000 * 1_000_000
    c = Customer("new-buyer", created_at=now - DAY_US)
    c.add_interaction(Interaction(now - 3600_000_000, now - 3600_000_000, "order", "web", "", {"amount": 30.0},
                                  "o1", (), c.id))
    env = Env(c, now)
    assert compile_condition("days_since('page_view') >= 30")(env) is False
    assert compile_condition("days_since('page_view') < 30")(env) is False  # missing: false either way
    assert compile_condition("days_since('order') < 1")(env) is True
    segs = load_segments(REPO / "rules" / "segments")
    assert not segs.defs["lapsed_visitors"].condition(env)
    cat = nba.load_catalogue(REPO / "rules" / "offers")
    cat.policy["control_percent"] = 0
    for s in [n for n, d in segs.defs.items() if d.condition(env)]:
        c.join_segment(s, now)
    got = nba.decide(cat, c, "web", "home_hero", {"channel": "web"}, now=now)
    assert "winback_20" not in [a["id"] for a in got]


def test_segments_that_read_scores_follow_scores_written_by_a_fit(store) -> None:
    """`models fit` writes scores no event announces: the score segments are refreshed after it."""
    from shopkeeper.analysis.models import write_scores
    from shopkeeper.analysis.segments import SegmentSet, refresh_score_segments

    segs = SegmentSet()
    segs.define("high_value", "score('clv.value') >= 500")
    segs.define("buyers", "hard.orders >= 1")
    with store.transaction() as f:
        for i in range(3):
            f.customers[f"c{i}"] = Customer(f"c{i}", created_at=0)
    now = 1_800_000_000 * 1_000_000
    with store.transaction() as f:
        write_scores(f, [("c0", (900.0,)), ("c1", (100.0,))], ("clv.value",), ("test",), now)
    report = refresh_score_segments(store, segs, now=now)
    assert report["segments"] == ["high_value"]
    with store.read() as f:
        assert [c for c in ("c0", "c1", "c2") if "high_value" in f.customers[c].segments] == ["c0"]
