"""Segment joins and leaves mark a customer for segments only (``KEPT_JOINED``/``KEPT_LEFT``), and the
audience hook patches the card's segments slot and the member sets instead of recomputing the card.

Why: a full re-evaluation enters ~9 segments per customer, and recomputing every changed card (and,
for a record that did not remember its card, asking every segment's member set whether it holds the
customer) was ~14% of a first run (docs/benchmarks.md §81, §93). These tests check the index against
a build from the records after joins, leaves, both, and a savepoint rolled back — and that the patch
path is the one taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeeper import audience
from shopkeeper.analysis.segments import SegmentSet, rejudge
from shopkeeper.customer import Customer, now_us
from shopkeeper.engine import feed
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

SEGMENTS = ("s1", "s2", "s3", "s4")


def _cards(s: Store) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the index's cards, the cards built from the records)."""
    with s.read() as f:
        index = f.root[audience.ROOT]
        stored = {cid: audience._stored(index, cid) for cid in index["cards"].keys()}
        built = {cid: audience.card_of(c) for cid, c in f.customers.items()}
        return stored, built


def _store(tmp_path: Path, remembered: bool, rows: bool = True) -> str:
    """Customers a, b, c in s1 and s2; the audience index built by its evolve step over the records
    (which leaves the records alone: they do not remember their cards) — and, with ``remembered``, each
    record written once since through the hook (it then remembers its card). Without ``rows``, no
    memberships tree (``shopkeeper.memberships``): memberships in the records, as before generation 16."""
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri) as s, s.transaction() as f:  # no steps: no index, no keepers yet
        if not rows:
            del f.root["memberships"]
        for cid in ("a", "b", "c"):
            c = f.add_customer(Customer(cid))
            c.join_segment("s1", 1)
            c.join_segment("s2", 1)
            c.set_consent("email", "marketing", True, "test", 1)
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        if remembered:
            with s.transaction() as f:
                for c in f.customers.values():
                    c.set_traits({"country": "NL"})
        with s.read() as f:
            assert all((c._card is not None) is remembered for c in f.customers.values())
    return uri


@pytest.mark.parametrize("remembered", [True, False])
@pytest.mark.parametrize("change", ["join", "leave", "both", "rolled_back_join"])
def test_segment_changes_keep_the_index_equal_to_the_records(tmp_path: Path, remembered: bool, change: str) -> None:
    uri = _store(tmp_path, remembered)
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            a, b = f.customers["a"], f.customers["b"]
            if change in ("join", "both"):
                a.join_segment("s3", 2)
                b.join_segment("s4", 2)
            if change in ("leave", "both"):
                a.leave_segment("s1")
                b.leave_segment("s2")
            if change == "rolled_back_join":
                a.join_segment("s3", 2)
                sp = f.conn.transaction_manager.get().savepoint()
                a.join_segment("s4", 2)
                b.join_segment("s4", 2)
                sp.rollback()
        stored, built = _cards(s)
    assert stored == built
    want_a = {"join": ("s1", "s2", "s3"), "leave": ("s2",), "both": ("s2", "s3"),
              "rolled_back_join": ("s1", "s2", "s3")}[change]
    assert stored["a"][1] == want_a


def test_a_remembered_card_is_patched_not_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = _store(tmp_path, remembered=True)
    calls: list[str] = []
    real = audience.card_of
    monkeypatch.setattr(audience, "card_of", lambda c, old=None: calls.append(c.id) or real(c, old))
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            f.customers["a"].join_segment("s3", 2)
            f.customers["b"].leave_segment("s1")
        assert calls == []  # patched: no card recomputed
        with s.transaction() as f:
            f.customers["c"].set_consent("sms", "marketing", True, "test", 2)
        assert calls == ["c"]  # anything else of the card: recomputed as before
        stored, built = _cards(s)
    assert stored == built


def test_after_joins_alone_only_the_customers_segments_are_asked(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that does not remember its card: after joins only, the member sets of the segments it
    is in now are asked whether they hold it — not every segment's; after a leave, every one."""
    uri = _store(tmp_path, remembered=False, rows=False)
    asked: list[Any] = []
    real = audience._segments_of
    monkeypatch.setattr(audience, "_segments_of",
                        lambda index, cid, among=None: asked.append(None if among is None else sorted(among))
                        or real(index, cid, among))
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            f.customers["a"].join_segment("s3", 2)
        with s.transaction() as f:
            f.customers["b"].leave_segment("s1")
        assert asked == [["s1", "s2", "s3"], None]
        stored, built = _cards(s)
    assert stored == built


@pytest.mark.parametrize("rows", [False, True])
def test_a_full_reevaluation_marks_each_customer_once_and_keeps_the_index(tmp_path: Path, rows: bool) -> None:
    """Memberships in the records: each customer marked once for segments. In their rows (generation 16):
    nothing marked, the member sets patched where the rows are written."""
    uri = _store(tmp_path, remembered=False, rows=rows)
    segs = SegmentSet()
    segs.define("s1", "hard.orders >= 0")  # everyone stays
    segs.define("s2", "hard.orders > 0")  # everyone leaves
    segs.define("s3", "hard.orders >= 0")  # everyone enters
    membership = segs.membership(list(segs.defs.values()))
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            got = [rejudge(f, None, c, membership, now_us(), True) for c in f.customers.values()]
            marks = getattr(f.conn, audience.KEPT_MARKS)
            assert sorted(marks.values()) == ([] if rows else [audience.KEPT_SEGMENTS] * 3)
        stored, built = _cards(s)
        with s.read() as f:
            kinds = [e.kind for e in feed.read(f, 0)]
    assert got == [(1, 1)] * 3
    assert stored == built and all(card[1] == ("s1", "s3") for card in stored.values())
    assert sorted(kinds) == ["segment_entered"] * 3 + ["segment_left"] * 3
