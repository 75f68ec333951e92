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

A store of up to :data:`STDLIB_CSV_CUSTOMERS` customers (CDNOW's walk-through, issue 15) has its
CSV written with the standard library (:class:`_CSVWriter`), in pyarrow's dialect: every string
quoted, a missing value empty, ``1`` for 1.0, ``1e-9``, ``0.00001``. Only numbers of 1e13 or
more may be written in another notation than pyarrow's (its ``1e+15``, our
``1000000000000000``): the same double when read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import audience, scoretable
from ..customer import STATUS_ACTIVE
from ..store import Store
from .phases import mark

if TYPE_CHECKING:
    import pyarrow as pa

SCORES = [("clv.expected_purchases", "expected_purchases"), ("clv.p_alive", "p_alive"), ("clv.value", "clv"),
          ("churn.risk", "churn_risk"), ("rfm.r", "rfm_r"), ("rfm.f", "rfm_f"), ("rfm.m", "rfm_m"),
          ("rfm.score", "rfm_score")]
INTS = frozenset({"rfm_r", "rfm_f", "rfm_m", "rfm_score"})
SCORE_NAMES = tuple(name for name, _ in SCORES)
#: Up to this many customers the CSV is written with the standard library: pyarrow's import
#: (~0.1-0.16 s of CPU) costs about what formatting CDNOW's 23,570 rows in Python does (float
#: ``repr`` is most of it), so a small table starts faster without it; a large one is written
#: faster by pyarrow (~3x per row). Both give the same bytes (tests/analysis/test_score_tables.py).
STDLIB_CSV_CUSTOMERS = 200_000
NUMBERS = frozenset({"orders", "total_spend", *(col for _, col in SCORES)})
STRINGS = frozenset({"id", "model", "segments"})


def column_names(namespaces: list[str]) -> list[str]:
    return ["id", *namespaces, "orders", "total_spend", *(col for _, col in SCORES), "model", "segments"]


def schema(namespaces: list[str], segments_as_list: bool) -> pa.Schema:
    import pyarrow as pa

    fields = [("id", pa.string())] + [(ns, pa.string()) for ns in namespaces]
    fields += [("orders", pa.int64()), ("total_spend", pa.float64())]
    fields += [(col, pa.int64() if col in INTS else pa.float64()) for _, col in SCORES]
    fields += [("model", pa.string()),
               ("segments", pa.list_(pa.string()) if segments_as_list else pa.string())]
    return pa.schema(fields)


class _CSVWriter:
    """The table as CSV, a batch of columns at a time, in pyarrow's CSV dialect (header and
    strings quoted, quotes doubled, None empty, integral floats without ``.0``)."""

    def __init__(self, path: str | Path, names: list[str]) -> None:
        self._fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115  (closed by close())
        self._fh.write(",".join(_quote(n) for n in names) + "\n")

    def write_columns(self, cols: dict[str, list[Any]]) -> None:
        if not cols or not next(iter(cols.values())):
            return
        cells = [_texts(name, col) for name, col in cols.items()]
        self._fh.write("\n".join(map(",".join, zip(*cells, strict=True))) + "\n")

    def close(self) -> None:
        self._fh.close()


class _ArrowCSVWriter:
    """pyarrow's CSV writer: the same bytes as :class:`_CSVWriter`, faster per row once imported."""

    def __init__(self, path: str | Path, sch: pa.Schema) -> None:
        import pyarrow.csv as pacsv

        self._sch, self._w = sch, pacsv.CSVWriter(str(path), sch)

    def write_columns(self, cols: dict[str, list[Any]]) -> None:
        import pyarrow as pa

        self._w.write_table(pa.table(cols, schema=self._sch))

    def close(self) -> None:
        self._w.close()


class _ParquetWriter:
    def __init__(self, path: str | Path, sch: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self._sch, self._w = sch, pq.ParquetWriter(str(path), sch, compression="zstd")

    def write_columns(self, cols: dict[str, list[Any]]) -> None:
        import pyarrow as pa

        self._w.write_table(pa.table(cols, schema=self._sch))

    def close(self) -> None:
        self._w.close()


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _texts(name: str, col: list[Any]) -> list[str]:
    """One column's cells, formatted a column at a time (a function call per cell was slower
    than pyarrow's import and writer together)."""
    if name in STRINGS or name not in NUMBERS:
        return ["" if v is None else '"' + v.replace('"', '""') + '"' for v in col]
    if name in INTS or name == "orders":
        return ["" if v is None else str(v) for v in col]
    return [t[:-2] if t[-2:] == ".0" else ("" if t == "None" else _exponent(t) if "e" in t else t)
            for t in map(repr, col)]


def _cell(value: Any) -> str:
    """One value as :func:`_texts` writes it."""
    kind = type(value)
    if kind is float:
        text = repr(value)
        if text[-2:] == ".0":
            return text[:-2]
        return _exponent(text) if "e" in text else text
    if kind is str:
        return '"' + value.replace('"', '""') + '"' if '"' in value else '"' + value + '"'
    return "" if value is None else str(value)


def _exponent(text: str) -> str:
    """``repr``'s shortest round-trip digits in exponent form, written as pyarrow writes them:
    ``1e-9`` not ``1e-09``, ``0.00001`` not ``1e-05`` (positional down to 1e-6)."""
    mant, _e, exp = text.partition("e")
    power = int(exp)
    if power in (-5, -6):
        sign, digits = ("-", mant[1:]) if mant.startswith("-") else ("", mant)
        return f"{sign}0.{'0' * (-power - 1)}{digits.replace('.', '')}"
    return f"{mant}e{'-' if power < 0 else '+'}{abs(power)}"


def write_scores_table(store: Store, path: str | Path, fmt: str = "csv", namespaces: list[str] | None = None,
                       buyers_only: bool = False, batch: int = 10_000) -> int:
    """Write the table to ``path`` as ``csv`` or ``parquet``; returns the number of rows."""
    namespaces = list(namespaces or [])
    names = column_names(namespaces)
    with store.read() as f:
        customers = f.counter("customers")
    writer: Any = (_ParquetWriter(path, schema(namespaces, segments_as_list=True)) if fmt == "parquet"
                   else _CSVWriter(path, names) if customers <= STDLIB_CSV_CUSTOMERS
                   else _ArrowCSVWriter(path, schema(namespaces, segments_as_list=False)))
    n = 0
    found = _identities(store, namespaces)
    mark("identities")
    try:
        with store.read() as f:
            root = f.conn.root()
            fast = audience.cards_of(root) is not None and scoretable.owners_of(root) is not None
            if fast:
                for cols in _from_tables(f, root, names, namespaces, found, buyers_only, fmt, batch):
                    n += len(cols["id"])
                    writer.write_columns(cols)
                mark("rows read and written")
                return n
        from .models import iter_active  # numpy's import, for the old stores' path only

        for ids in iter_active(store, batch):
            cols: dict[str, list[Any]] = {name: [] for name in names}
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
            writer.write_columns(cols)
    finally:
        writer.close()
    return n


def _from_tables(f: Any, root: Any, names: list[str], namespaces: list[str], found: dict[str, dict[str, list[str]]],
                 buyers_only: bool, fmt: str, batch: int) -> Any:
    """The table's columns, ``batch`` rows at a time, from the audience cards and the score tables
    (a record loaded only for a customer in the score-owners set)."""
    cards: list[tuple[str, tuple]] = []

    def columns() -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {name: [] for name in names}
        by_id = dict(cards)
        score_cols = [(cols[col], col in INTS) for _, col in SCORES]
        model = cols["model"]
        for cid, scores, src in scoretable.merged_values(root, by_id, f.customers.__getitem__, SCORE_NAMES,
                                                          ("clv.value", "rfm.score")):
            card = by_id[cid]
            orders, spend, _last = card[7]
            cols["id"].append(cid)
            for ns in namespaces:
                values = found[ns].get(cid)
                cols[ns].append(";".join(values) if values else None)
            cols["orders"].append(int(orders or 0))
            cols["total_spend"].append(float(spend or 0.0))
            for (col, as_int), value in zip(score_cols, scores, strict=True):
                col.append(int(value) if as_int and value is not None else value)
            model.append(src.removeprefix("model:") if src is not None else None)
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
