"""The Parquet export (``shopkeeper.analysis.export.export_parquet``) against the customer API:
every column of every row as ``Customer`` reads it — hard facts, segments, consent, the Decide
group and control time, scores from the model tables and the record's own (newest wins), and
every interaction, spilled or recent — on a store whose customers span several export batches."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shopkeeper import scoretable
from shopkeeper.analysis.export import CUSTOMER_SCHEMA, INTERACTION_SCHEMA, SCORE_COLUMNS, export_parquet
from shopkeeper.analysis.offers import FIRST_CONTROL_DECISION, in_control_group
from shopkeeper.analysis.state import create_analysis_folder
from shopkeeper.customer import STATUS_ACTIVE
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

DAY = 86_400
NOW = time.time() - 3600
TYPES = ("page_view", "order", "email_open", "email_click", "offer_shown", "call")


def _store(path: Path) -> Store:
    """60 customers with 0-40 interactions each (some spilled out of the record), CLV rows in the
    score table for half, an own score newer or older than the row for some, segments, consents,
    a control-group time for a few, and one merged away (not exported)."""
    s = Store.open(f"file://{path}/Data.fs", steps=builtin_evolve_steps())
    rng = random.Random(5)
    events = []
    for i in range(60):
        who = {"email": f"c{i:02d}@example.org"}
        for n in range(rng.choice([1, 3, 12, 40])):
            t = rng.choice(TYPES)
            data = {"url": "/"} if t == "page_view" else {}
            if t == "order":
                data = {"order_id": f"o{i}-{n}", "amount": rng.choice([5.0, 40.5, 120.0])}
            if t.startswith("email_"):
                data = {"campaign": f"camp{n % 3}"}
            if t == "offer_shown":
                data = {"offer": f"offer{n % 4}"}
            events.append({"type": t, "identities": who, "channel": rng.choice(["web", "email", "phone"]),
                           "ts": NOW - rng.randint(1, 300) * DAY - n, "data": data, "idempotency_key": f"{i}-{n}"})
    with Ingestor(s) as ing:
        ing.apply([validate_event(e) for e in events])
    with s.transaction() as f:
        create_analysis_folder(f.root)
        ids = sorted(f.customers.keys())
        at = int(NOW * 1e6)
        scoretable.write_rows(f.root, "clv", scoretable.CLV_SCORES,
                              [(cid, (1.0 + k, 0.5, 10.0 * k, 0.25)) for k, cid in enumerate(ids[::2])], "fit", at)
        for k, cid in enumerate(ids):
            c = f.customers[cid]
            if k % 5 == 0:  # own clv.value: newer than the table's row for some, older for others
                c.set_score("clv.value", 999.0 + k, "rule", at + (1 if k % 10 == 0 else -1))
            if k % 4 == 0:
                c.set_score("propensity.email_click", 0.1 * (k % 7), "model", at)
            if k % 3 == 0:
                c.join_segment("vip", at)
                c.join_segment("a_first", at - 5)
            if k % 6 == 1:
                c.set_consent("email", "marketing", k % 12 == 1, "test")
            if k % 7 == 2:
                c.set_soft_fact(FIRST_CONTROL_DECISION, at - k, "decide")
    with s.transaction() as f:
        f.customers[ids[7]].status = "merged"  # a merged-away shell: not exported
    return s


def _int_ts(t: pa.Table) -> dict[str, list]:
    """The table's columns as Python values, timestamps as µs integers."""
    cols = {}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        cols[name] = col.to_pylist()
    return cols


def _expected(s: Store, pct: float, salt: str) -> tuple[dict[str, list], dict[str, list]]:
    cust: dict[str, list] = {n: [] for n in CUSTOMER_SCHEMA.names}
    inter: dict[str, list] = {n: [] for n in INTERACTION_SCHEMA.names}
    with s.read() as f:
        for cid in sorted(f.customers.keys()):
            c = f.customers[cid]
            if c.status != STATUS_ACTIVE:
                continue
            h = c.hard
            since = c.soft.get(FIRST_CONTROL_DECISION)
            row = {"id": cid, "created_at": c.created_at, "orders": h.get("orders", 0),
                   "total_spend": h.get("total_spend", 0.0), "interactions": h.get("interactions", 0),
                   "first_seen": h.get("first_seen"), "last_seen": h.get("last_seen"),
                   "last_order_at": h.get("last_order_at"), "last_channel": h.get("last_channel"),
                   "segments": sorted(c.segments), "email_consent": c.may_contact("email"),
                   "nba_group": "control" if in_control_group(cid, pct, salt) else "treatment",
                   "control_since": since.value if since is not None else None}
            for name, col in SCORE_COLUMNS.items():
                fact = c.scores.get(name)
                row[col] = fact.value if fact is not None else None
            for k, v in row.items():
                cust[k].append(v)
            for it in c.history.values():
                d = it.data
                for k, v in (("customer_id", cid), ("ts", it.ts), ("type", it.type), ("channel", it.channel),
                             ("touchpoint", it.touchpoint),
                             ("amount", d.get("amount") if it.type == "order" else None),
                             ("offer", d.get("offer")), ("campaign", d.get("campaign"))):
                    inter[k].append(v)
    return cust, inter


def test_the_export_has_every_customer_and_interaction_as_the_customer_api_reads_them(tmp_path: Path) -> None:
    s = _store(tmp_path)
    try:
        r = export_parquet(s, tmp_path / "out", batch=7, control_percent=30, control_salt="t")
        cust, inter = _expected(s, 30.0, "t")
        got_c = _int_ts(pq.read_table(tmp_path / "out" / "customers.parquet"))
        got_i = _int_ts(pq.read_table(tmp_path / "out" / "interactions.parquet"))
    finally:
        s.close()
    assert r["customers"] == 59 and r["interactions"] == len(inter["ts"]) > 600
    assert got_c == cust
    assert got_i == inter
    # the case the export must get right is there: spilled and recent history, both score sources
    assert any(v and v > 900 for v in cust["clv_value"]) and any(v == 10.0 for v in cust["clv_value"])
    assert "control" in cust["nba_group"] and any(cust["control_since"]) and any(cust["email_consent"])


def test_the_export_reads_one_snapshot_while_the_store_changes(tmp_path: Path) -> None:
    """What is committed while the export runs (a customer of a later batch gains an interaction and
    a segment, another leaves, a new one arrives) is not in it: the files are the store as it was
    when the export began, as one read view sees it — not a fresh view per batch."""
    s = _store(tmp_path)
    try:
        cust, inter = _expected(s, 30.0, "t")
        with s.read() as f:
            ids = sorted(f.customers.keys())
        late = ids[-3]  # in the last batch of 7
        calls: list[int] = []

        def meanwhile(done: int, _seconds: float) -> None:
            calls.append(done)
            if len(calls) != 1:
                return
            with Ingestor(s) as ing:
                ing.apply([validate_event({"type": "order", "identities": {"email": "new@example.org"},
                                           "ts": NOW, "data": {"order_id": "n1", "amount": 9.0},
                                           "idempotency_key": "meanwhile-1"})])
            with s.transaction() as f:
                f.customers[late].join_segment("meanwhile", int(NOW * 1e6))
                f.customers[ids[-1]].status = "merged"

        r = export_parquet(s, tmp_path / "out", batch=7, control_percent=30, control_salt="t", progress=meanwhile)
        got_c = _int_ts(pq.read_table(tmp_path / "out" / "customers.parquet"))
        got_i = _int_ts(pq.read_table(tmp_path / "out" / "interactions.parquet"))
        with s.read() as f:  # the changes did land
            assert "meanwhile" in f.customers[late].segments and len(f.customers) == 61
    finally:
        s.close()
    assert len(calls) > 5 and calls[-1] == 59  # progress after every batch
    assert r["customers"] == 59
    assert got_c == cust
    assert got_i == inter
