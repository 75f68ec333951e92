"""A delimited file's interaction rows are converted column by column (``importer.columns``): the
record must be exactly what the general path (shape, ``validate_event``, the import's checks)
makes of the same row — values, key order, derived key and order id, the guesses counted — and a
row it cannot prove valid goes to the general path, which refuses it with its own error."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import pytest

from shopkeeper.importer.columns import ColumnRows
from shopkeeper.importer.mapping import MapOptions, RowMapper

COLUMNS = ["customer_id", "date", "email", "phone", "crm_id", "data.amount", "data.items", "data.order_id",
           "data.note", "type", "ts", "data.sku", "channel", "traits.city", "number_of_cds", "dollar_value"]
DATA = ["data.amount", "data.items", "data.order_id", "data.note", "data.sku", "number_of_cds", "dollar_value"]
CDNOW_MAPS = [("customer_id", "crm_id"), ("date", "ts"), ("dollar_value", "data.amount"),
              ("number_of_cds", "data.items")]
MAPS = [[], CDNOW_MAPS, [("date", "ts"), ("ts", "data.when")], [("phone", "")]]
DEFAULTS = [[], [("type", "order")], [("type", "order"), ("data.currency", "EUR")], [("type", "cart_add")],
            [("data.order_id", "")], [("type", "order"), ("channel", "store")], [("channel", "Bad Channel")]]
TIMES = [dict(date_format="%Y%m%d", historical=True), dict(), dict(time_unit="s"), dict(date_format="%Y%m%d")]
CELLS = [None, "", " ", "19970101", "19970102", "1997-01-01", "2024-03-01", "1700000000", "12.5", "3", "-1",
         "abc", "a@example.com", "order", "page_view", "cart_add", "nope", "1e5", "nan", "100001", "0", "é" * 3000]


#: cells a column usually has (the other fifth of the cells: anything from CELLS)
GOOD = {"date": ["19970101", "1997-01-01", "1700000000"], "ts": ["1700000000", "2024-03-01"],
        "email": ["a@example.com"], "phone": ["+44 20 7946 0000"], "crm_id": ["00001", "7"], "customer_id": ["00002"],
        "data.amount": ["12.5", "3"], "dollar_value": ["11.77", "0"], "data.items": ["3"], "number_of_cds": ["1", "2"],
        "type": ["order", "order", "page_view", "cart_add"], "data.sku": ["sku-1"], "data.order_id": ["o-1"]}


class _General(dict):  # a mapper whose headers never get a column converter
    def get(self, key: Any, default: Any = None) -> Any:
        return None


def _record(mapper: RowMapper, row: dict[str, Any]) -> Any:
    try:
        ev = mapper.prepare(dict(row), from_csv=True)
    except Exception as exc:  # noqa: BLE001 - both paths must refuse a row with the same error
        return repr(exc)
    stamped = abs(ev.ts - time.time_ns() // 1000) < 600_000_000  # "now" (no time given): differs between calls
    return (type(ev).__name__, ev.type, ev.channel, None if stamped else ev.ts, ev.identities, ev.idempotency_key,
            list(ev.data.items()), ev.touchpoint, ev.traits, ev.stamped, ev.customer_id,  # type: ignore[attr-defined]
            getattr(ev, "origin", None), getattr(ev, "derived_key", None))


@pytest.mark.parametrize("maps,defaults", list(itertools.product(MAPS, DEFAULTS)))
def test_column_rows_give_what_the_general_path_gives(maps, defaults) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    converted = 0
    for times in TIMES:
        opts = MapOptions(mapping=maps, defaults=defaults, **times)
        fast, general, probe = RowMapper(opts), RowMapper(opts), RowMapper(opts)
        general._columns = _General()
        when = ["19970101" if times.get("historical") else "20240301"] if times.get("date_format") else \
            ["1700000000"] if times.get("time_unit") else ["2024-03-01", "1700000000"]
        good = {**GOOD, "date": when, "ts": when}
        # the columns of a header a converter takes: identities, a time, the type
        core = ["crm_id", "email", "type"] + (["date"] if ("date", "ts") in maps else []) + \
            (["ts"] if maps != CDNOW_MAPS else [])
        for _ in range(12):
            header = tuple(rng.sample(COLUMNS, rng.randint(2, 7)) if rng.random() < 0.5 else
                           rng.sample(core + rng.sample(DATA, 2), len(core) + 1))
            for _ in range(6):
                row = {h: rng.choice(good.get(h, ["x"]) if rng.random() < 0.8 else CELLS) for h in header}
                for _ in range(rng.choice([1, 1, 2])):  # an identical row again: its order's repeat number
                    assert _record(fast, row) == _record(general, row), (header, row)
                plan = probe._plan(header)
                columns = ColumnRows.build(probe, plan) if plan is not None else None
                converted += columns is not None and columns(dict(row)) is not None
        assert fast.guesses == general.guesses
    # valid rows are a minority of random cells (cart_add needs a sku); a bad channel: no converter
    assert converted > 5 or defaults == DEFAULTS[-1]


def test_a_cdnow_row_is_converted_and_a_bad_one_is_refused_by_the_general_path() -> None:
    mapper = RowMapper(MapOptions(mapping=CDNOW_MAPS, defaults=[("type", "order")], date_format="%Y%m%d",
                                  historical=True))
    header = ("customer_id", "date", "number_of_cds", "dollar_value")
    columns = ColumnRows.build(mapper, mapper._plan(header))
    assert columns is not None
    row = dict(zip(header, ["00001", "19970101", "1", "11.77"], strict=True))
    ev = columns(dict(row))
    assert ev is not None and ev.identities == [("crm_id", "00001")] and ev.data["amount"] == 11.77
    assert ev.data["items"] == 1 and list(ev.data) == ["amount", "items", "order_id"]
    bad = {**row, "number_of_cds": "many"}
    assert columns(dict(bad)) is None
    with pytest.raises(Exception, match="data.items"):
        mapper.prepare(bad, from_csv=True)


def test_headers_without_a_converter() -> None:
    mapper = RowMapper(MapOptions(defaults=[("type", "order")]))
    for header in [("email", "ts", "customer"), ("email", "ts", "traits.city"), ("email", "ts", "channel"),
                   ("email", "data.amount"), ("ts", "data.amount"), ("email", "ts", "idempotency_key")]:
        plan = mapper._plan(header)
        assert plan is None or ColumnRows.build(mapper, plan) is None, header
    customers = RowMapper(MapOptions(kind="customers", defaults=[("type", "order")]))
    assert ColumnRows.build(customers, customers._plan(("email", "ts"))) is None


def test_a_file_imported_before_the_converter_counts_once_when_imported_with_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The derived keys are unchanged: a CDNOW-like file imported on the general path (as every
    version before the converter did) is all duplicates when imported again column by column."""
    from shopkeeper.importer import Importer, ImportOptions
    from shopkeeper.store import Store

    path = tmp_path / "cdnow.txt"
    path.write_text(" customer_id  date number_of_cds  dollar_value\r\n 00001 19970101  1   11.77\r\n"
                    " 00002 19970112  5   77.00\r\n 00002 19970112  5   77.00\r\n 00003 19970102  2   20.76\r\n")
    opts = ImportOptions(delimiter="whitespace", date_format="%Y%m%d", historical=True, mapping=CDNOW_MAPS,
                         defaults=[("type", "order")])
    with Store.open(f"file://{tmp_path}/d.fs") as store:
        before = Importer(store, opts)
        before.mapper._columns = _General()
        first = before.run([str(path)])
        assert (first.applied, first.duplicates) == (4, 0)
        again = Importer(store, opts)
        summary = again.run([str(path)])
        assert any(c is not None for c in again.mapper._columns.values())  # the converter took the rows
        assert (summary.applied, summary.duplicates, summary.rejected) == (0, 4, 0)
