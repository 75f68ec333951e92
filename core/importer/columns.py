"""Interaction rows of a delimited file converted column by column, with what a header fixes
decided once per header (§66).

Every row of a delimited file has the same columns, so most of what the general path decides
per row — shape (``RowMapper._shape_by``), drop empty cells, ``validate_event``, the import's own
checks (``RowMapper._interaction``) — is decided once here: which column is the type, the time,
each identity, each data field; that the field names, namespaces and the event type's channel
are well formed; that the row has no field an interaction cannot take. Per row what is left is a
dict lookup per cell: each typed data column keeps its cells' results memoised by text (the
event validator's own ``_check_field``, asked once per distinct value), and the time column its
microseconds (``parse_ts`` after ``--date-format``/``--time-unit``, once per distinct text:
CDNOW's 69,659 rows have ~550 dates).

A row this path cannot prove valid exactly as the general path would take it returns None, and
the general path takes it: it refuses the row with its field and reason, so the errors are the
general path's by construction. A header this path does not know how to shape (a customer file,
consents, pinned customers, traits, a ``channel`` or ``idempotency_key`` column, two columns
into one place, defaults other than the type, the channel or a data field) gets no converter at all.
``tests/test_import_columns.py`` compares both paths, record for record, on random headers,
options and cells.

The derived idempotency key and order id are made by the mapper's own functions from the same
values, so a file imported before keeps its keys (a re-import adds nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..events import _FIELD_NAME, _TOKEN, MAX_DATA_BYTES, MAX_DATA_KEYS, MAX_IDENTITIES, EventError, EventType, parse_ts
from ..events import _check_field as check_field
from .keys import derived_order_id
from .records import ImportedInteraction

if TYPE_CHECKING:
    from .mapping import RowMapper

_FAIL: Any = object()  # the general path decides (and refuses) this cell's row
_DROP: Any = object()  # an empty value of a declared field: the validator leaves it out
#: distinct cells remembered per column before the memo starts afresh (dates and small numbers
#: repeat; a column of unique values only costs the lookup that misses)
MEMO_CELLS = 50_000
#: what a number's cell can become as JSON beyond its own text (``float("1e5")`` is ``100000.0``)
_NUMBER_SLACK = 24


class ColumnRows:
    """The converter of one header's rows: ``rows(row)`` -> an ``ImportedInteraction`` or None."""

    __slots__ = ("mapper", "type_col", "type_default", "channel", "ts_col", "ids", "data", "_types", "_times",
                 "_cells", "_programs")

    def __init__(self, mapper: RowMapper, type_col: str | None, type_default: str | None, channel: str | None,
                 ts_col: str, ids: list[tuple[str, str]], data: list[tuple[str, str | None, str | None]]) -> None:
        self.mapper = mapper
        self.type_col = type_col
        self.type_default = type_default
        self.channel = channel  # --default channel=…; None: the event type's own
        self.ts_col = ts_col
        self.ids = ids  # (namespace, column), in the order the general path lists them
        self.data = data  # (data field, column or None, --default or None), in the general path's order
        self._types: dict[Any, EventType | None] = {}
        self._times: dict[Any, Any] = {}
        self._cells: dict[tuple[str, str], dict[Any, Any]] = {}  # (event type, field) -> cell -> value
        self._programs: dict[str, Any] = {}  # event type -> (declared fields, required, stand-in ok)

    @classmethod
    def build(cls, mapper: RowMapper, plan: Any) -> ColumnRows | None:
        """The converter for a header's ``plan`` (``RowMapper._plan``), or None: the general path."""
        if mapper.opts.kind not in ("auto", "interactions"):
            return None
        type_col = ts_col = None
        ids: list[tuple[str, str]] = []
        data: dict[str, tuple[str | None, str | None]] = {}
        heads: set[tuple[str, str | None]] = set()
        for src, head, sub in plan.steps:
            if (head, sub) in heads:  # two columns into one place: the last wins on the general path
                return None
            heads.add((head, sub))
            if sub is None and head == "type":
                type_col = src
            elif sub is None and head == "ts":
                ts_col = src
            elif sub is None and head in mapper.namespaces and _TOKEN.match(head):
                ids.append((head, src))
            elif head == "data" and sub is not None and _FIELD_NAME.match(sub):
                data[sub] = (src, None)
            else:
                return None
        type_default = channel = None
        for parts, value in mapper._defaults:
            if parts == ("type",) and type_default is None:
                type_default = value
            elif parts == ("channel",) and channel is None and (value == "" or _TOKEN.match(value)):
                channel = value or None  # empty: the type's default channel, as on the general path
            elif len(parts) == 2 and parts[0] == "data" and _FIELD_NAME.match(parts[1]) and \
                    data.get(parts[1], (None, None))[1] is None:
                data[parts[1]] = (data.get(parts[1], (None, None))[0], value)
            else:
                return None
        if ts_col is None or not ids or len(ids) > MAX_IDENTITIES or len(data) + 1 > MAX_DATA_KEYS \
                or (type_col is None and not type_default):
            return None
        return cls(mapper, type_col, type_default, channel, ts_col, ids,
                   [(name, src, default) for name, (src, default) in data.items()])

    # -- per row -----------------------------------------------------------------------------

    def __call__(self, row: dict[str, Any]) -> ImportedInteraction | None:
        et = self._type(row)
        if et is None:
            return None
        ts = self._time(row[self.ts_col])
        if ts is _FAIL:
            return None
        pairs = []
        for ns, src in self.ids:
            v = row[src]
            if v is not None and v.strip():
                pairs.append((ns, v))
        if not pairs:
            return None
        program = self._programs.get(et.name)
        if program is None:
            program = self._programs[et.name] = self._program(et)
        fields, required, stand_in = program
        name = et.name
        given: dict[str, Any] = {}
        for field, src, default in self.data:
            v = row[src] if src is not None else None
            if default is not None and (v is None or v == ""):
                v = default
            if v is not None:
                given[field] = v
        needs_order_id = name == "order" and not given.get("order_id")
        if needs_order_id:
            if not stand_in:
                return None
            given.pop("order_id", None)  # the stand-in goes last, as the general path's comes and goes
        if len(given) + needs_order_id > MAX_DATA_KEYS:
            return None
        out: dict[str, Any] = {}
        bound = 2 + (64 if needs_order_id else 0)  # {} and the stand-in "order_id":"-",
        cells = self._cells
        for field, v in given.items():
            if field in fields:
                memo = cells.get((name, field))
                if memo is None:
                    memo = cells[(name, field)] = {}
                got = memo.get(v, _FAIL)
                if got is _FAIL:
                    got = memo[v] = self._cell(et, field, v)
                    if len(memo) > MEMO_CELLS:
                        memo.clear()
                if got is _FAIL:
                    return None
                if got is _DROP:
                    continue
                out[field] = got
                bound += 6 * len(field) + 4 + (6 * len(got) + 2 if type(got) is str else len(v) + _NUMBER_SLACK)
            else:
                out[field] = v  # an undeclared field of a text file: text, kept as it is
                bound += 6 * len(field) + 6 * len(v) + 6
        for field in required:
            if field not in out and not (needs_order_id and field == "order_id"):
                return None
        if bound > MAX_DATA_BYTES:
            return None  # the general path measures it
        ev = ImportedInteraction(name, self.channel or et.default_channel, ts, pairs, "", out, "", {}, customer_id=None,
                                 origin="", derived_key=True)
        mapper = self.mapper
        key = mapper._derived_interaction_key(ev, True, None, "", number_repeats=needs_order_id)
        ev.idempotency_key = key
        if needs_order_id:
            mapper.guesses["order_id"] += 1
            out["order_id"] = derived_order_id(key, derived=True)
        return ev

    def _type(self, row: dict[str, Any]) -> EventType | None:
        cell = row[self.type_col] if self.type_col is not None else None
        if cell is None or cell == "":
            cell = self.type_default
            if cell is None:
                return None
        try:
            return self._types[cell]
        except KeyError:
            pass
        et = self.mapper.types.get(cell) if isinstance(cell, str) and cell else None
        if et is not None and not (isinstance(et.default_channel, str) and _TOKEN.match(et.default_channel)):
            et = None
        self._types[cell] = et
        return et

    def _time(self, cell: Any) -> Any:
        """The row's time in µs as the general path reads it, or ``_FAIL`` (a stamped or refused time)."""
        got = self._times.get(cell, _FAIL)
        if got is not _FAIL or cell is None or cell == "":
            return got
        mapper = self.mapper
        try:
            value = mapper._time(cell) if (mapper.opts.date_format or mapper.opts.time_unit) else cell
            got = parse_ts(value, earliest_us=mapper._earliest)
        except EventError:
            got = _FAIL
        if len(self._times) > MEMO_CELLS:
            self._times.clear()
        self._times[cell] = got
        return got

    @staticmethod
    def _program(et: EventType) -> tuple[frozenset[str], list[str], bool]:
        """What a type's data needs per row: its declared fields, the required ones, and whether the
        general path's order-id stand-in ("-") passes the type's check (it does for the built-in order)."""
        stand_in = ColumnRows._cell(et, "order_id", "-") == "-" if "order_id" in et.fields else True
        return frozenset(et.fields), [n for n, s in et.fields.items() if s.required], stand_in

    @staticmethod
    def _cell(et: EventType, field: str, value: Any) -> Any:
        """One cell of a declared field through the validator's own check: its value, ``_DROP`` or ``_FAIL``."""
        out = {field: value}
        try:
            check_field(et, et.fields[field], field, out)
        except EventError:
            return _FAIL
        return out.get(field, _DROP)
