"""Peeked records (``shopkeeper.analysis.peek``) against loaded customers, on copies of the same store:
a full re-evaluation judged from peeks gives the same memberships (with their join times), reports,
sizes and change-feed entries as one that loads every customer — over a first run, a re-run, runs
days later and after new events —; a re-run in which nothing changes loads no customer; a condition a
peek cannot answer (identities, history) is judged from the record; and the Parquet export writes the
same rows from peeks as from loaded customers."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shopkeeper.analysis import peek as peek_mod
from shopkeeper.analysis.export import export_parquet
from shopkeeper.analysis.models import CLV_SCORES, RFM_SCORES, write_scores
from shopkeeper.analysis.segments import SegmentSet, reevaluate
from shopkeeper.customer import STATUS_FORGOTTEN, Customer, IdentityLink
from shopkeeper.engine import feed
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

DAY_US = 86_400_000_000
#: the store's "now": events are up to 120 days before it, and the last ones 201 days after it (not in the future)
NOW = (int(time.time()) // 86_400 - 250) * DAY_US + 37_000_000_000


def _build(path: Path, seed: int = 7) -> None:
    """~240 customers with what conditions read: orders, page views, e-mail opens and clicks and calls
    over 120 days (some past the record's window of 16: a spilled history), consents, own scores and
    model score-table rows, soft facts, traits, rule tags, many identities (a tree of their own), and a
    few customers erased."""
    s = Store.open(f"file://{path}", steps=builtin_evolve_steps())
    rng = random.Random(seed)
    events = []
    for i in range(240):
        who = f"p{i:03d}@example.org"
        n = rng.choice((0, 1, 3, 8, 20)) if i % 11 else 30
        for k in range(n):
            typ = rng.choice(("order", "page_view", "page_view", "email_open", "email_click", "call"))
            data = {"order_id": f"o{i}-{k}", "amount": rng.choice((5.0, 40.0, 120.0, 300.0))} if typ == "order" \
                else {"url": f"/p/{k}"} if typ == "page_view" else {"campaign": "spring"}
            # some at the same time of day as "now": a window's first, partial day holds them (read from history)
            ts = NOW - rng.randint(0, 120) * DAY_US - (0 if rng.random() < 0.2 else rng.randint(1, DAY_US - 1))
            events.append({"type": typ, "identities": {"email": who}, "ts": ts / 1e6, "data": data,
                           "channel": rng.choice(("web", "email", "phone")), "idempotency_key": f"{i}-{k}"})
    with Ingestor(s) as ing:
        ing.apply([validate_event(e) for e in events])
    with s.transaction() as f:
        ids = sorted(f.customers.keys())
        for j, cid in enumerate(ids):
            c = f.customers[cid]
            pick = random.Random(f"{seed}-{c.identities_in('email')[0]}")
            if pick.random() < 0.4:
                c.set_consent("email", "marketing", pick.random() < 0.8, "test", at=NOW)
            if pick.random() < 0.3:
                c.set_score("loyalty", pick.choice((1.0, 3.0, 5.0)), "rule", at=NOW)
            if pick.random() < 0.3:
                c.set_soft_fact("vip", pick.random() < 0.5, "test", at=NOW)
            if pick.random() < 0.3:
                c.set_traits({"city": pick.choice(("Oslo", "Lima"))})
            if pick.random() < 0.2:
                c.put_rule_state("tags", "hot", {"rule": "t", "version": 1, "at": NOW})
            if j % 37 == 5:  # more identities than fit in the record: a tree of their own
                for k in range(12):
                    c.link_identity(("cookie", f"ck{j}-{k}"), IdentityLink("test", NOW))
            if j % 53 == 9:
                c.status = STATUS_FORGOTTEN
        rows = [(cid, (float(j % 7), 0.5, float(j % 13) * 90, 0.3, float(j % 5) + 1, 3.0, 2.0, 400.0))
                for j, cid in enumerate(ids) if j % 3]
        write_scores(f, rows, CLV_SCORES + RFM_SCORES, ("model:v1",) * 8, NOW - DAY_US)
    s.close()


def _segments(identity: bool = True) -> SegmentSet:
    segs = SegmentSet()
    segs.define("buyer", "hard.orders >= 1")
    segs.define("repeat", "hard.orders >= 3 and hard.total_spend / hard.orders > 60")
    segs.define("spend_30", "spend(days=30) > 50")
    segs.define("spend_90", "spend(days=90) > 250")
    segs.define("clicks_30", "count('email_click', days=30) >= 1")
    segs.define("any_14", "count('*', days=14) >= 2")
    segs.define("no_visit_30", "days_since('page_view') >= 30")
    segs.define("no_order_60", "hard.orders > 0 and days_since('order') >= 60")
    segs.define("recent_caller", "days_since('call') < 7")
    segs.define("callers", "count('call') >= 1")
    segs.define("new", "days_since_first() < 20")
    segs.define("emailable", "consent('email')")
    segs.define("clv_500", "score('clv.value') >= 500")
    segs.define("loyal", "score('loyalty') >= 3")
    segs.define("vip", "fact.vip == True")
    segs.define("oslo", "trait.city == 'Oslo'")
    segs.define("hot", "tag.hot")
    segs.define("vip_combo", "in_segment('clv_500') or in_segment('spend_90')")
    segs.define("web_last", "hard.last_channel == 'web'")
    if identity:
        segs.define("has_cookie", "identity.cookie")
    return segs


def _state(s: Store) -> tuple[dict, list, dict]:
    """Memberships with join times, the feed's segment entries, and the audience index's member sets."""
    with s.read() as f:
        members = {cid: dict(c.segments) for cid, c in f.customers.items()}
        entries = [(e.kind, e.customer_id, e.segments, e.at) for e in feed.read(f, 0, 1_000_000)
                   if e.kind in ("segment_entered", "segment_left")]
        sets = {name: set(m) for name, m in f.root["audience"]["segments"].items() if len(m)}
    return members, entries, sets


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("peek") / "Data.fs"
    _build(path)
    return path


def _copy(built: Path, to: Path) -> Store:
    shutil.copy(built, to)
    return Store.open(f"file://{to}", steps=builtin_evolve_steps())


def test_a_re_evaluation_from_peeks_is_the_one_from_records(built: Path, tmp_path: Path) -> None:
    stores = {p: _copy(built, tmp_path / f"{p}.fs") for p in (False, True)}
    try:
        segs = _segments(identity=False)  # (an identity condition loads every customer: the test below)
        peeked = 0
        for days in (0, 0, 10, 45, 46, 200):
            got = {}
            for p, s in stores.items():
                r = reevaluate(s, segs, now=NOW + days * DAY_US, batch=50, peek=p)
                r.pop("seconds")
                got[p] = (r.pop("loaded"), r)
            assert got[True][1] == got[False][1], days
            assert got[False][0] == got[False][1]["customers"]  # the record path loads every one
            peeked += got[True][1]["customers"] - got[True][0]
        assert peeked > 500  # the peek path was taken (the record path judged the rest)
        more = [validate_event({"type": "order", "identities": {"email": f"p{i:03d}@example.org"},
                                "ts": (NOW + 201 * DAY_US) / 1e6, "data": {"order_id": f"late{i}", "amount": 90.0},
                                "idempotency_key": f"late{i}"}) for i in range(0, 240, 5)]
        assert _state(stores[True]) == _state(stores[False])
        with Ingestor(stores[True]) as ing:  # (once: the event loop's own segment updates stamp the wall clock)
            ing.apply(more)
        stores[True].close()
        stores[False].close()
        stores = {p: _copy(tmp_path / "True.fs", tmp_path / f"after-{p}.fs") for p in (False, True)}
        for p, s in stores.items():
            reevaluate(s, segs, now=NOW + 202 * DAY_US, batch=50, peek=p)
        assert _state(stores[True]) == _state(stores[False])
        members, entries, _sets = _state(stores[True])
        assert entries and sum(len(m) for m in members.values()) > 500  # something to compare
    finally:
        for s in stores.values():
            s.close()


def test_a_re_run_that_changes_nothing_loads_few_customers(built: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    s = _copy(built, tmp_path / "Data.fs")
    try:
        segs = _segments(identity=False)
        loads = []
        setstate = Customer.__setstate__
        monkeypatch.setattr(Customer, "__setstate__", lambda c, state: (loads.append(1), setstate(c, state))[1])
        first = reevaluate(s, segs, now=NOW, batch=50)
        # a first run: nearly all change, written to their memberships rows without being loaded
        assert first["entered"] > 500 and first["loaded"] < first["customers"] / 4, first
        assert len(loads) == first["loaded"]
        loads.clear()
        again = reevaluate(s, segs, now=NOW, batch=50)
        assert again["entered"] == again["exited"] == 0
        # only the customers a condition reads the history of (a window's partial first day) are loaded
        assert again["loaded"] < again["customers"] / 4, again
        assert len(loads) == again["loaded"]
        later = reevaluate(s, segs, now=NOW + 3 * DAY_US, batch=50)
        assert 0 < later["entered"] + later["exited"] and later["loaded"] < later["customers"] / 2
    finally:
        s.close()


def test_what_a_peek_cannot_answer_is_judged_from_the_record(built: Path, tmp_path: Path) -> None:
    """``identity.cookie`` reads the identities, which a peek does not give: every customer is loaded,
    and those whose identities are a tree of their own are judged right."""
    s = _copy(built, tmp_path / "Data.fs")
    try:
        segs = SegmentSet()
        segs.define("has_cookie", "identity.cookie")
        reevaluate(s, segs, now=NOW, batch=50)
        again = reevaluate(s, segs, now=NOW, batch=50)
        assert again["loaded"] == again["customers"]
        with s.read() as f:
            cookies = {cid for cid, c in f.customers.items() if c.status == "active" and c.identities_in("cookie")}
            assert cookies and cookies == {cid for cid, c in f.customers.items() if "has_cookie" in c.segments}
    finally:
        s.close()


def test_a_peek_reads_the_record_as_stored_and_not_other_classes(built: Path, tmp_path: Path) -> None:
    s = _copy(built, tmp_path / "Data.fs")
    try:
        with s.read() as f:
            cid, c = next(iter(f.customers.items()))
            x = peek_mod.peek(f.conn, c._p_oid, Customer)
            assert x is not None and c._p_changed is None  # nothing loaded into the connection
            assert (x.id, x.hard, x.type_counts, dict(x.daily), x.last_at, x.segments, x.consents) == \
                (c.id, c.hard, c.type_counts, dict(c.daily), c.last_at, c.segments, c.consents)
            assert peek_mod.peek(f.conn, f.root["customers"]._p_oid, Customer) is None  # not a customer
            with pytest.raises(peek_mod.NeedRecord):
                x.history  # noqa: B018
    finally:
        s.close()


def test_the_export_from_peeks_writes_the_rows_of_loaded_customers(built: Path, tmp_path: Path) -> None:
    s = _copy(built, tmp_path / "base.fs")
    reevaluate(s, _segments(), now=NOW, batch=50)  # segments in the rows too
    s.close()
    tables = {}
    for p in (False, True):
        s = _copy(tmp_path / "base.fs", tmp_path / f"{p}.fs")
        try:
            r = export_parquet(s, tmp_path / f"out{p}", batch=40, control_percent=10, control_salt="t", peek=p)
            assert r["customers"] > 150 and r["interactions"] > 1000
        finally:
            s.close()
        tables[p] = {name: pq.read_table(tmp_path / f"out{p}" / name)
                     for name in ("customers.parquet", "interactions.parquet")}
    for name, t in tables[True].items():
        assert t.equals(tables[False][name]), name


def _legacy(built: Path, to: Path) -> Store:
    """A copy of the store without the memberships tree (as a store before generation 16 kept them): a
    re-evaluation then writes memberships into the records."""
    s = _copy(built, to)
    with s.transaction() as f:
        del f.root["memberships"]
    s.close()
    return Store.open(f"file://{to}", steps=builtin_evolve_steps())


def test_a_first_run_writes_memberships_rows_and_no_customer_record(built: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Since generation 16 a peeked customer whose membership moves is written to its row alone: a first
    run pickles only the customers a peek cannot judge (none with these conditions' data in the record),
    with the same memberships, feed entries and sizes as a store keeping memberships in the records."""
    pickled: list[str] = []
    getstate = Customer.__getstate__
    monkeypatch.setattr(Customer, "__getstate__", lambda c: (pickled.append(c.id), getstate(c))[1])
    s = _copy(built, tmp_path / "rows.fs")
    try:
        r = reevaluate(s, _segments(identity=False), now=NOW, batch=120)
    finally:
        s.close()
    assert r["entered"] > 500 and len(pickled) == 0, (r, len(pickled))
    old = _legacy(built, tmp_path / "records.fs")
    try:
        r_old = reevaluate(old, _segments(identity=False), now=NOW, batch=120)
    finally:
        old.close()
    assert len(pickled) >= r_old["customers"] - r_old["customers"] // 20  # the records rewritten
    for x in (r, r_old):
        x.pop("seconds")
        x.pop("loaded")
    assert r == r_old
    a, b = (Store.open(f"file://{tmp_path / n}") for n in ("rows.fs", "records.fs"))
    try:
        assert _state(a) == _state(b)
        sets = []
        for st in (a, b):  # the audience index's member sets: patched where the rows are written
            with st.read() as f:
                index = f.root["audience"]["segments"]
                sets.append({name: set(m) for name, m in index.items() if len(m)})
        assert sets[0] == sets[1] and sum(map(len, sets[0].values())) == r["entered"]
        with a.read() as f:
            assert all("segments" not in c.__dict__ for c in f.customers.values())
    finally:
        a.close()
        b.close()


def test_without_the_tree_a_first_run_stops_peeking_once_most_peeked_customers_change(
        built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memberships in the records (no memberships tree): every customer of a first run enters segments, so
    a peek is wasted on each: the batch stops peeking after 64 of them — and the next batch does not
    start — with the same result as loading them all."""
    reports = {}
    real = peek_mod.peek
    for p in (False, True):
        s = _legacy(built, tmp_path / f"{p}.fs")
        peeks: list[int] = []
        monkeypatch.setattr(peek_mod, "peek", lambda *a, peeks=peeks: (peeks.append(1), real(*a))[1])
        try:
            r = reevaluate(s, _segments(identity=False), now=NOW, batch=120, peek=p)
        finally:
            s.close()
        r.pop("seconds")
        reports[p] = (r.pop("loaded"), r)
        # 64 active customers peeked, and the erased ones among the first of them (not judged, not counted)
        assert (64 <= len(peeks) < 72) if p else not peeks
    assert reports[True][1] == reports[False][1]
    customers = reports[True][1]["customers"]
    assert reports[False][0] == customers > 150 and customers - 64 < reports[True][0] < customers
