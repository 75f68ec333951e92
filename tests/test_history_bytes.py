"""Generation 7 (``history-bytes``): a customer's spilled history buckets hold each interaction's packed
bytes instead of a pickled ``Interaction``. Reads must not tell the formats apart — old buckets,
new buckets and buckets holding both read back the same history, 360° view and export — and a
spill's bucket rewrite must cost ZODB's ``persistent_id`` hook two calls per entry, not five
(docs/benchmarks.md §77)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import transaction
from BTrees.LOBTree import LOBTree

from shopkeeper.customer import HISTORY_CHUNK, Customer, Interaction
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import Event
from shopkeeper.exporter import interaction_record
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store
from shopkeeper.view import customer_view
from shopkeeper.windows import total

GOLDEN = Path(__file__).parent / "data" / "golden"
T = 1_790_000_000_000_000
KINDS = ("page_view", "order", "cart_add", "email_open")


def _its(n: int, start: int = 0) -> list[Interaction]:
    out = []
    for i in range(start, start + n):
        kind = KINDS[i % len(KINDS)]
        data = {"amount": 1.5 * i, "order_id": f"o{i}"} if kind == "order" else {"url": f"/{i}"}
        out.append(Interaction(0, T + i * 3_600_000_000, kind, "email" if kind == "email_open" else "web",
                               data=data, idempotency_key=f"k{i}", identities=(("email", "x@example.com"),)))
    return out


def _old_format(c: Customer, its: list[Interaction]) -> None:
    """What the code before generation 7 wrote: the spilled tree's values pickled ``Interaction``s."""
    c._tree = LOBTree()
    for it in its:
        c._tree[it.ts] = it._replace(key=it.ts)
    for it in its:
        c._apply_hard_facts(it)


def _kinds(c: Customer) -> set[str]:
    """What the spilled tree's values are: packed bytes, or interactions their pickles rebuilt."""
    return {"bytes" if type(v) is bytes else "pickled" if isinstance(v, Interaction) else repr(v)
            for v in c._tree.values()}


def _reads(c: Customer) -> dict[str, Any]:
    """Everything the readers ask a history: the view's calls, ranges, point reads, windows, export."""
    h = c.history
    keys = list(h.keys())
    mid = keys[len(keys) // 2]
    return {
        "items": list(h.items()),
        "range": list(h.items(min=keys[3], max=mid)),
        "keys": keys, "values": list(h.values()), "len": len(h), "bool": bool(h),
        "point": [h[k] for k in keys[::7]], "get": h.get(mid), "missing": h.get(1, "none"),
        "contains": [k in h for k in keys[::5]] + [1 in h],
        "max": h.maxKey(), "min": h.minKey(), "max_below": h.maxKey(mid), "min_above": h.minKey(mid),
        "newest": c.recent(5), "orders": list(c.interactions(type="order", newest_first=True)),
        "since": list(c.interactions(since=mid)),
        "window": total(c, ("order",), keys[2] + 1, mid + 1, field="amount"),
        "view": customer_view(c, recent=20),
        "export": [{**interaction_record(c, it), "customer": "-"} for it in c.interactions()],
        "rows": h.field_rows(),  # the Parquet export's reader: plain field tuples, in key order
    }


def test_old_new_and_mixed_history_buckets_read_the_same(tmp_path: Path) -> None:
    its = _its(5 * HISTORY_CHUNK + 3)
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        old = f.add_customer(Customer("old", created_at=0))
        _old_format(old, its[:-3])
        for it in its[-3:]:  # the recent window is the record's, in both formats
            old._recent[it.ts] = it._replace(key=it.ts)
            old._apply_hard_facts(it)
        new = f.add_customer(Customer("new", created_at=0))
        for it in its:
            new.add_interaction(it)
        mixed = f.add_customer(Customer("mixed", created_at=0))
        _old_format(mixed, its[:2 * HISTORY_CHUNK])
        for it in its[2 * HISTORY_CHUNK:]:  # spills into the old buckets: entries of both kinds
            mixed.add_interaction(it)
    store.close()
    store = Store.open(str(tmp_path / "s.fs"))
    try:
        with store.read() as f:
            trees = {cid: _kinds(f.customers[cid]) for cid in ("old", "new", "mixed")}
            assert trees == {"old": {"pickled"}, "new": {"bytes"}, "mixed": {"pickled", "bytes"}}
            want = _reads(f.customers["old"])
            assert len(want["items"]) == len(its) and want["view"]["hard_facts"]["orders"] > 0
            assert want["rows"] == [tuple(it) for it in want["values"]]
            for cid in ("new", "mixed"):
                got = _reads(f.customers[cid])
                got["view"]["id"] = want["view"]["id"]
                for part in want:
                    assert got[part] == want[part], (cid, part)
    finally:
        store.close()


def test_popping_and_filing_in_a_bytes_bucket_give_interactions(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s.fs"))
    its = _its(2 * HISTORY_CHUNK)
    with store.transaction() as f:
        c = f.add_customer(Customer("c", created_at=0))
        for it in its:
            c.add_interaction(it)
        filed = c.history.file(Interaction(0, T + 5, "email_delivered", "email", data={"intent": "i1"}))
    with store.transaction() as f:
        c = f.customers["c"]
        assert type(c._tree[filed.key]) is bytes
        assert c.history[filed.key] == filed and c.history.pop(filed.key) == filed
        first = its[0]._replace(key=its[0].ts)
        assert c.history.pop(first.key) == first and type(first) is Interaction
        assert c.history.pop(first.key, None) is None
    with store.read() as f:
        assert list(f.customers["c"].history.values()) == [it._replace(key=it.ts) for it in its[1:]]
    store.close()


def test_a_spill_rewrites_its_bucket_with_two_persistent_id_calls_per_entry(tmp_path: Path,
                                                                           persistent_id_calls: list[int]) -> None:
    """ZODB's hook runs per object the pickler visits: a bucket of pickled interactions cost five per
    entry (key, object, reduce function, argument tuple, bytes) each time a spill rewrote it."""
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        c = f.add_customer(Customer("c", created_at=0))
        for it in _its(3 * HISTORY_CHUNK):  # three spills: one bucket of 48
            c.add_interaction(it)
    calls = persistent_id_calls
    calls.clear()
    with store.transaction() as f:
        c = f.customers["c"]
        for it in _its(HISTORY_CHUNK, start=100):  # the fourth spill: the bucket of 64 is split, both written
            c.add_interaction(it)
    entries = len(c._tree)
    assert entries == 4 * HISTORY_CHUNK
    # the buckets' entries twice each, plus the tree, the customer and the bucket headers (~25):
    # on the code before generation 7, 5 per entry (~345)
    assert entries < len(calls) < 2 * entries + 40, len(calls)  # (at least one per entry: the counter counts)
    store.close()


@pytest.fixture
def golden7(tmp_path: Path) -> tuple[Store, dict[str, Any]]:
    shutil.copy(GOLDEN / "gen6-7277197.fs", tmp_path / "golden.fs")
    expected = json.loads((GOLDEN / "gen6-7277197.json").read_text())
    store = Store.open(str(tmp_path / "golden.fs"), steps=builtin_evolve_steps())
    yield store, expected
    store.close()


def test_a_golden_customers_old_buckets_take_new_events_and_every_key_stays_a_duplicate(golden7: Any) -> None:
    """The store of 7277197 evolves to generation 7 without rewriting a bucket; its customers' old
    buckets take new interactions as bytes; the old ones read back as the golden dump says, and
    every event applied before, and after, is a duplicate when sent again."""
    store, expected = golden7
    assert store.generation >= 7
    ann_id = next(cid for cid, c in expected["customers"].items() if len(c["history"]) > 100)
    with store.read() as f:
        assert _kinds(f.customers[ann_id]) == {"pickled"}
    new = [Event(type="page_view", channel="web", ts=T + 10**12 + i * 10**6, identities=[("email", "ann@example.com")],
                 data={"url": f"/late/{i}"}, idempotency_key=f"late-{i}") for i in range(3 * HISTORY_CHUNK)]
    with Ingestor(store) as ing:
        assert {r.status for r in ing.apply(new)} == {"applied"}
    with store.read() as f:
        ann = f.customers[ann_id]
        assert _kinds(ann) == {"pickled", "bytes"}
        got = [it.as_dict() for it in ann.interactions()]
    old = json.loads(json.dumps(got[:len(expected["customers"][ann_id]["history"])]))
    assert old == expected["customers"][ann_id]["history"]
    assert [g["idempotency_key"] for g in got[len(old):]] == [e.idempotency_key for e in new]
    again = new + [Event(type=it["type"], channel=it["channel"], ts=it["ts"],
                         identities=[tuple(p) for p in it["identities"]], data=it["data"],
                         idempotency_key=it["idempotency_key"], touchpoint=it["touchpoint"])
                   for c in expected["customers"].values() for it in c["history"] if it["idempotency_key"]]
    with Ingestor(store) as ing:
        assert {r.status for r in ing.apply(again)} == {"duplicate"}
    transaction.abort()
