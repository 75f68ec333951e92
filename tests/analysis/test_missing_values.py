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
