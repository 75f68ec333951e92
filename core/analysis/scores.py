"""One row per customer with the scores that live with them: the table an analyst takes away
(``shopkeeper report scores --csv/--parquet``).

Read straight from the store, so it needs no ``report export`` first, and without loading the
customer records where the store keeps what a row needs beside them: status, order facts and
segments from the audience index (``shopkeeper.audience.iter_cards``), scores from the model
score tables (``shopkeeper.scoretable``). Which score wins is what ``Customer.scores`` says
everywhere else — the newer ``at`` per name — so a per-event re-score newer than the fit is in
the table, as in the 360° view; the records of the customers that hold such own scores (the
score-owners set) are loaded for that, and only they. A store without the audience index or
the owners set (made before them) is read record by record, a batch of customers per read
view (memory bounded by the batch), as before; both paths give the same rows (tested). Columns: the customer
id, one column per identity namespace asked for (``--id crm_id``; several values of one
namespace are joined with ``;``), orders and spend, expected purchases, P(alive), CLV, churn
risk, RFM, the CLV model version the scores came from, and the segments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import audience, scoretable
from ..customer import STATUS_ACTIVE
from ..store import Store
from .models import iter_active

SCORES = [("clv.expected_purchases", "expected_purchases"), ("clv.p_alive", "p_alive"), ("clv.value", "clv"),
          ("churn.risk", "churn_risk"), ("rfm.r", "rfm_r"), ("rfm.f", "rfm_f"), ("rfm.m", "rfm_m"),
          ("rfm.score", "rfm_score")]
INTS = frozenset({"rfm_r", "rfm_f", "rfm_m", "rfm_score"})


def schema(namespaces: list[str], segments_as_list: bool) -> pa.Schema:
    fields = [("id", pa.string())] + [(ns, pa.string()) for ns in namespaces]
    fields += [("orders", pa.int64()), ("total_spend", pa.float64())]
    fields += [(col, pa.int64() if col in INTS else pa.float64()) for _, col in SCORES]
    fields += [("model", pa.string()),
               ("segments", pa.list_(pa.string()) if segments_as_list else pa.string())]
    return pa.schema(fields)


def write_scores_table(store: Store, path: str | Path, fmt: str = "csv", namespaces: list[str] | None = None,
                       buyers_only: bool = False, batch: int = 10_000) -> int:
    """Write the table to ``path`` as ``csv`` or ``parquet``; returns the number of rows."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    namespaces = list(namespaces or [])
    sch = schema(namespaces, segments_as_list=fmt == "parquet")
    writer: Any = (pq.ParquetWriter(str(path), sch, compression="zstd") if fmt == "parquet"
                   else pacsv.CSVWriter(str(path), sch))
    n = 0
    found = _identities(store, namespaces)
    try:
        with store.read() as f:
            root = f.conn.root()
            fast = audience.cards_of(root) is not None and scoretable.owners_of(root) is not None
            if fast:
                for cols in _from_tables(f, root, sch, namespaces, found, buyers_only, fmt, batch):
                    n += len(cols["id"])
                    writer.write_table(pa.table(cols, schema=sch))
                return n
        for ids in iter_active(store, batch):
            cols: dict[str, list[Any]] = {name: [] for name in sch.names}
            with store.read() as f:
                for cid in ids:
                    c = f.customers[cid]
                    if c.status != STATUS_ACTIVE:
                        continue
                    h = c.hard
                    orders = int(h.get("orders", 0) or 0)
                    if buyers_only and not orders:
                        continue
                    cols["id"].append(c.id)
                    for ns in namespaces:
                        values = found[ns].get(cid)
                        cols[ns].append(";".join(values) if values else None)
                    cols["orders"].append(orders)
                    cols["total_spend"].append(float(h.get("total_spend", 0.0) or 0.0))
                    _score_columns(cols, c.scores.as_dict())
                    segs = sorted(c.segments)
                    cols["segments"].append(segs if fmt == "parquet" else ";".join(segs))
                f.conn.cacheMinimize()
            n += len(cols["id"])
            writer.write_table(pa.table(cols, schema=sch))
    finally:
        writer.close()
    return n


def _from_tables(f: Any, root: Any, sch: pa.Schema, namespaces: list[str], found: dict[str, dict[str, list[str]]],
                 buyers_only: bool, fmt: str, batch: int) -> Any:
    """The table's columns, ``batch`` rows at a time, from the audience cards and the score tables
    (a record loaded only for a customer in the score-owners set)."""
    cards: list[tuple[str, tuple]] = []

    def columns() -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {name: [] for name in sch.names}
        by_id = dict(cards)
        for cid, scores in scoretable.merged_rows(root, by_id, f.customers.__getitem__):
            card = by_id[cid]
            orders, spend, _last = card[7]
            cols["id"].append(cid)
            for ns in namespaces:
                values = found[ns].get(cid)
                cols[ns].append(";".join(values) if values else None)
            cols["orders"].append(int(orders or 0))
            cols["total_spend"].append(float(spend or 0.0))
            _score_columns(cols, scores)
            segs = list(card[1])  # sorted, as the member sets give them
            cols["segments"].append(segs if fmt == "parquet" else ";".join(segs))
        return cols

    for i, (cid, card) in enumerate(audience.iter_cards(root), 1):
        if card[0] != STATUS_ACTIVE or (buyers_only and not card[7][0]):
            continue
        cards.append((cid, card))
        if len(cards) >= batch:
            yield columns()
            cards.clear()
        if i % batch == 0:
            f.conn.cacheGC()
    if cards:
        yield columns()


def _score_columns(cols: dict[str, list[Any]], scores: dict[str, Any]) -> None:
    for name, col in SCORES:
        s = scores.get(name)
        value = None if s is None else s.value
        cols[col].append(int(value) if value is not None and col in INTS else value)
    src = scores.get("clv.value") or scores.get("rfm.score")
    cols["model"].append(src.source.removeprefix("model:") if src is not None else None)


def _identities(store: Store, namespaces: list[str]) -> dict[str, dict[str, list[str]]]:
    """namespace -> customer id -> its values, from the identity index (one range scan per
    namespace) rather than each customer's own identities tree, a second record to load per
    customer. The index names each identity's current owner (merges re-point it, erasure and
    eviction remove it), so the values are those of ``Customer.identities_in``, in its order.
    Memory: one entry per identity of the namespaces asked for."""
    out: dict[str, dict[str, list[str]]] = {}
    with store.read() as f:
        for ns in namespaces:
            owners: dict[str, list[str]] = {}
            for (_ns, value), cid in f.identities.items(min=(ns, ""), max=(ns, "\U0010ffff")):
                owners.setdefault(cid, []).append(value)
            out[ns] = owners
    return out
