"""Shaping rows into records: ``--map`` renames, ``--default`` fills, dotted columns nest,
identity-namespace columns expand, times are read with ``--date-format`` / ``--time-unit``,
and each row becomes a validated :class:`~.records.ImportedInteraction` (has a ``type``, built
here) or :class:`~.records.CustomerRecord` (built by :mod:`.customer_rows`).

What the file does not say is derived, stably, and counted in :attr:`RowMapper.guesses` so
the summary can tell the user what was made up: an idempotency key per row (the sha256 of
the row's canonical JSON; for an order without an order id, the n-th repeat of an identical
row gets ``#n`` appended, so a file listing the same purchase twice keeps both, and a
re-import still counts each once) and an ``order_id`` for an order row without one (from
that key); the key functions are in :mod:`.keys`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..events import (
    _FIELD_NAME,
    DEFAULT_EVENT_TYPES,
    HISTORICAL_MIN_TS_US,
    MIN_TS_US,
    Event,
    EventError,
    EventTypes,
    validate_event,
)
from ..identity import IdentityConfig
from .columns import ColumnRows
from .customer_rows import CONSENT, CustomerRows
from .keys import canonical_interaction, derived_key, derived_order_id, key_of_text
from .parsing import Kind, Row
from .records import ImportedInteraction

#: Keys whose value is a mapping; a CSV column ``data.amount`` is ``row["data"]["amount"]``.
#: Only the first dot splits, so data field names that contain dots survive.
CONTAINERS = frozenset({"identities", "data", "traits", "soft", "scores", "segments"})
#: ``consent.<channel>.<purpose>`` is two levels deep (``CONSENT``, from :mod:`.customer_rows`).

INTERACTION_KEYS = frozenset({"type", "channel", "ts", "identities", "data", "idempotency_key", "touchpoint",
                              "traits", "customer", "origin"})

MAX_ID_LENGTH = 128
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
#: ``--time-unit``: what one unit of a numeric time is, in µs.
TIME_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001, "days": 86_400_000_000}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YYYYMMDD = re.compile(r"(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")


class UsageError(ValueError):
    """A bad option value (the CLI names the option)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def parse_assignments(items: Iterable[str], option: str) -> list[tuple[str, str]]:
    """``["A=B", …]`` → ``[("A", "B"), …]``; a usage error names the bad one."""
    out = []
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src.strip():
            raise UsageError(option, f"{item!r} must look like NAME=VALUE")
        out.append((src.strip(), dst.strip() if option == "--map" else dst))
    return out


def split_path(path: str) -> tuple[str, ...]:
    """Where a dotted name lives: ``data.utm.source`` → ``("data", "utm.source")``,
    ``consent.email.marketing`` → three parts, anything else is one top-level key."""
    head, sep, rest = path.partition(".")
    if not sep or not rest:
        return (path,)
    if head == CONSENT:
        channel, sep2, purpose = rest.partition(".")
        return (head, channel, purpose) if sep2 and purpose else (head, rest)
    if head in CONTAINERS:
        return (head, rest)
    return (path,)


def _set_in(row: Row, parts: tuple[str, ...], value: Any, where: str) -> None:
    node = row
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        elif not isinstance(nxt, dict):
            raise EventError(where, f"cannot set it: {p!r} is already {type(nxt).__name__} {nxt!r}")
        node = nxt
    node[parts[-1]] = value


def _get_in(row: Row, parts: tuple[str, ...]) -> Any:
    node: Any = row
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _pop_nested(row: Row, dotted: str) -> tuple[bool, Any]:
    """Pop ``a.b.c`` from nested JSON objects (for ``--map`` on JSON Lines)."""
    parts = dotted.split(".")
    trail: list[dict[str, Any]] = [row]
    for p in parts[:-1]:
        nxt = trail[-1].get(p)
        if not isinstance(nxt, dict):
            return False, None
        trail.append(nxt)
    if parts[-1] not in trail[-1]:
        return False, None
    value = trail[-1].pop(parts[-1])
    for depth in range(len(parts) - 1, 0, -1):  # an object left empty by the move goes too
        if trail[depth]:
            break
        del trail[depth - 1][parts[depth - 1]]
    return True, value


def _strip_none(row: Row) -> None:
    """Empty CSV cells mean "not given": drop them (two levels deep covers consent.*.*)."""
    values = row.values()
    if None in values:  # one scan in C; most rows have every cell
        for k in [k for k, v in row.items() if v is None]:
            del row[k]
    for v in values:
        if type(v) is dict:  # what shape() nests (a JSON row's objects are dicts too)
            _strip_none(v)


@dataclass(slots=True)
class _Plan:
    """How the rows of one delimited file's header are shaped (:meth:`RowMapper._plan`)."""

    steps: list[tuple[str, str, str | None]]  # (column, top-level key, key inside it or None)
    identities: list[str]  # top-level keys that are identity namespaces, in the order they were set


_NO_PLAN: Any = object()


@dataclass
class MapOptions:
    """The part of the import options that decides how a row becomes a record."""

    kind: Kind = "auto"
    mapping: list[tuple[str, str]] = field(default_factory=list)
    defaults: list[tuple[str, str]] = field(default_factory=list)
    source: str = "import"
    date_format: str | None = None  # strftime pattern for text times, e.g. %Y%m%d
    time_unit: str | None = None  # unit of numeric times: s, ms, us, ns, days
    historical: bool = False  # times before 2000 are history, not unit mistakes


class RowMapper:
    """Turns raw rows into validated records; one per import (it counts repeats and guesses)."""

    def __init__(self, options: MapOptions, types: EventTypes = DEFAULT_EVENT_TYPES,
                 config: IdentityConfig | None = None) -> None:
        self.opts = options
        self.types = types
        self.config = config or IdentityConfig()
        self.namespaces = frozenset(self.config.namespaces)
        if options.time_unit is not None and options.time_unit not in TIME_UNITS:
            raise UsageError("--time-unit", f"{options.time_unit!r} is not one of {', '.join(TIME_UNITS)}")
        if options.date_format is not None:
            try:
                datetime.strptime(datetime(2001, 2, 3, 4, 5, 6).strftime(options.date_format), options.date_format)
            except ValueError as exc:
                raise UsageError("--date-format", f"{options.date_format!r} is not a usable strftime "
                                                  f"pattern ({exc})") from None
        self._map_top = {src: split_path(dst) if dst else () for src, dst in options.mapping}
        self._defaults = [(split_path(k), v) for k, v in options.defaults]
        self._reshape = bool(self._map_top or self._defaults)
        self._earliest = HISTORICAL_MIN_TS_US if options.historical else MIN_TS_US
        self._customers = CustomerRows(self.config, options.source, self._earliest)
        self._times: dict[Any, datetime] = {}
        #: a delimited file's header -> how its rows are shaped (:meth:`_plan`); None: the general path
        self._plans: dict[tuple[str, ...], _Plan | None] = {}
        #: a delimited file's header -> its interaction rows' converter (:class:`.columns.ColumnRows`)
        self._columns: dict[tuple[str, ...], ColumnRows | None] = {}
        self._seen: set[int] = set()
        self._repeats: dict[int, int] = {}
        #: what was made up for rows that did not say: {"idempotency_key": n, "order_id": n, ...}
        self.guesses: Counter[str] = Counter()

    def new_file(self) -> None:
        """Repeats are counted within one file: the n-th identical row keeps its number on re-import."""
        self._seen.clear()
        self._repeats.clear()

    def prepare(self, row: Row, *, from_csv: bool = False) -> Event:
        """One shaped, validated record from one raw row; raises ``EventError``/``IdentityError``."""
        if from_csv:  # an interaction row of a delimited file: column by column (falls back on doubt)
            header = tuple(row)
            columns = self._columns.get(header, _NO_PLAN)
            if columns is _NO_PLAN:
                plan = self._plans.get(header, _NO_PLAN)
                if plan is _NO_PLAN:
                    plan = self._plans[header] = self._plan(header)
                columns = self._columns[header] = ColumnRows.build(self, plan) if plan is not None else None
            if columns is not None:
                ev = columns(row)
                if ev is not None:
                    return ev
        row = self.shape(row, from_csv=from_csv)
        kind = self.opts.kind
        if kind == "auto":
            kind = "interactions" if "type" in row else "customers"
        if from_csv:
            _strip_none(row)
        if kind == "interactions":
            return self._interaction(row)
        return self._customers.record(row)

    def shape(self, row: Row, *, from_csv: bool = False) -> Row:
        """Apply ``--map``, nest dotted columns, apply ``--default``, expand identity shorthands."""
        if from_csv:  # every row of a delimited file has the same columns: shaped by a plan made once
            header = tuple(row)
            plan = self._plans.get(header, _NO_PLAN)
            if plan is _NO_PLAN:
                plan = self._plans[header] = self._plan(header)
            if plan is not None:
                return self._shape_by(plan, row)
        return self._shape_general(row, from_csv=from_csv)

    def _shape_general(self, row: Row, *, from_csv: bool) -> Row:
        """:meth:`shape` of any row: a JSON line's, or a delimited file's without a plan."""
        if not self._reshape and not (self.namespaces & row.keys()) and not any("." in k for k in row):
            return row  # the common case (an export, a touch point's own events): nothing to do
        moved: list[tuple[tuple[str, ...], Any]] = []
        if self._map_top:
            for src, dst in self._map_top.items():
                if src in row:
                    moved.append((dst, row.pop(src)))
                elif not from_csv and "." in src:
                    found, value = _pop_nested(row, src)
                    if found:
                        moved.append((dst, value))
        out: Row = {}
        for key, value in row.items():
            parts = split_path(key) if "." in key else (key,)
            if len(parts) == 1:
                if key in out and isinstance(out[key], dict) and isinstance(value, dict):
                    out[key].update(value)
                else:
                    out[key] = value
            else:
                _set_in(out, parts, value, key)
        for dst, value in moved:
            if dst:
                _set_in(out, dst, value, ".".join(dst))
        for parts, value in self._defaults:
            current = _get_in(out, parts)
            if current is None or current == "":
                _set_in(out, parts, value, ".".join(parts))
        # in the row's column order: a set's order follows the string hashes, which differ per
        # process, and the identities' order is part of a derived key (a re-import must match)
        for ns in [k for k in out if k in self.namespaces]:
            value = out.pop(ns)
            if value is None:
                continue
            ids = out.get("identities")
            if ids is None:
                ids = out["identities"] = {}
            if not isinstance(ids, dict):
                raise EventError("identities", f"must be a mapping when a {ns!r} column is given too")
            if ns in ids and ids[ns] is not None:
                have = ids[ns] if isinstance(ids[ns], list) else [ids[ns]]
                ids[ns] = have + (value if isinstance(value, list) else [value])
            else:
                ids[ns] = value
        return out

    def _plan(self, header: tuple[str, ...]) -> _Plan | None:
        """Where each column of a delimited file goes, worked out once for its header: the same
        steps as the general path of :meth:`shape` in the same order (columns as they come, then
        the ``--map``s in their order, ``--default``s, then identity columns into ``identities``),
        without its per-cell checks. None when the general path is needed: a destination that is
        both a value and an object (``data`` and ``data.x``), three-level names (consents), an
        identity given both as a column and as ``identities.<ns>``, a default on an identity."""
        mapped = {src for src in self._map_top if src in header}
        steps = [(key, split_path(key) if "." in key else (key,)) for key in header if key not in mapped]
        steps += [(src, dst) for src, dst in self._map_top.items() if src in mapped and dst]
        dests = [parts for _, parts in steps] + [parts for parts, _ in self._defaults]
        if any(len(parts) > 2 for parts in dests):
            return None
        plain = {parts[0] for parts in dests if len(parts) == 1}
        nested = {parts[0] for parts in dests if len(parts) == 2}
        ids = [parts[0] for _, parts in steps if len(parts) == 1 and parts[0] in self.namespaces]
        if (plain & nested or ("identities" in plain and ids)
                or any(("identities", ns) in dests for ns in ids)
                or any(parts[0] in self.namespaces or parts[0] == "identities" for parts, _ in self._defaults)):
            return None
        return _Plan([(src, parts[0], parts[1] if len(parts) == 2 else None) for src, parts in steps],
                     list(dict.fromkeys(ids)))

    def _shape_by(self, plan: _Plan, row: Row) -> Row:
        """:meth:`shape` of a delimited file's row by its header's plan (same result)."""
        out: Row = {}
        for src, head, sub in plan.steps:
            value = row[src]
            if sub is None:
                out[head] = value
            else:
                node = out.get(head)
                if node is None:
                    node = out[head] = {}
                node[sub] = value
        for parts, value in self._defaults:
            current = _get_in(out, parts)
            if current is None or current == "":
                _set_in(out, parts, value, ".".join(parts))
        for ns in plan.identities:
            value = out.pop(ns)
            if value is not None:
                ids = out.get("identities")
                if ids is None:
                    ids = out["identities"] = {}
                ids[ns] = value
        return out

    # -- records --------------------------------------------------------------------------

    def _interaction(self, row: Row) -> ImportedInteraction:
        unknown = row.keys() - INTERACTION_KEYS
        if unknown:
            name = sorted(unknown)[0]
            hint = f"; did you mean data.{name}? (--map {name}=data.{name})" if _FIELD_NAME.match(name) else ""
            raise EventError(name, f"unknown field for an interaction{hint}")
        customer = row.get("customer")
        origin = row.get("origin") or ""
        if customer is not None and (not isinstance(customer, str) or not _ID.match(customer)):
            raise EventError("customer", "must be a customer id: text of 1-128 printable characters")
        if not isinstance(origin, str) or len(origin) > MAX_ID_LENGTH:
            raise EventError("origin", "must be a customer id: text of at most 128 characters")
        raw = dict(row)  # one copy for the stand-ins below: the row itself stays as given
        if customer is not None and not row.get("identities"):
            raw["identities"] = {"cookie": "stand-in"}  # pinned: identities are optional
        given_ts = row.get("ts")
        if given_ts not in (None, "") and (self.opts.date_format or self.opts.time_unit):
            raw["ts"] = self._time(given_ts)
        needs_order_id = False
        data = row.get("data")
        if row.get("type") == "order" and (data is None or isinstance(data, dict)) and not (data or {}).get("order_id"):
            needs_order_id = True  # made up below, from the row's key; a stand-in passes validation
            raw["data"] = {**(data or {}), "order_id": "-"}
        try:
            ev = validate_event(raw, self.types, require_key=False, earliest_us=self._earliest)
        except EventError as exc:
            if exc.field == "ts":
                raise EventError("ts", self._ts_hint(given_ts, exc.reason)) from None
            raise
        if customer is not None and not row.get("identities"):
            ev.identities = []
        key = ev.idempotency_key
        if needs_order_id:
            del ev.data["order_id"]
        if not key:
            key = self._derived_interaction_key(ev, given_ts not in (None, ""), customer, origin,
                                                number_repeats=needs_order_id)
        if needs_order_id:
            self.guesses["order_id"] += 1
            ev.data["order_id"] = derived_order_id(key, derived=not ev.idempotency_key)
        return ImportedInteraction(ev.type, ev.channel, ev.ts, ev.identities, key, ev.data, ev.touchpoint,
                                   ev.traits, customer_id=customer, origin=origin, derived_key=not ev.idempotency_key)

    def _derived_interaction_key(self, ev: Event, has_ts: bool, customer: str | None, origin: str, *,
                                 number_repeats: bool) -> str:
        """``import:<sha256>`` of the row's content; with ``number_repeats``, ``#n`` for the n-th
        repeat of it in this file.

        Repeats are numbered only for orders that carry no order id: a purchase file that lists
        the same purchase twice (CDNOW does, 215 times) means two purchases, whereas a repeated
        row that names its order, or any other interaction, is the same thing sent twice.
        """
        text = (canonical_interaction(ev.type, ev.channel, ev.ts, ev.identities, ev.data)
                if has_ts and customer is None and origin == "" and ev.touchpoint == "" and ev.traits == {} else None)
        key = key_of_text(text) if text is not None else derived_key({
            "type": ev.type, "channel": ev.channel, "ts": ev.ts if has_ts else None,
            "identities": ev.identities, "data": ev.data, "touchpoint": ev.touchpoint, "traits": ev.traits,
            "customer": customer, "origin": origin,
        })
        self.guesses["idempotency_key"] += 1
        if not number_repeats:
            return key
        digest = int(key[7:23], 16)  # 64 bits: a set of ints stays small for a million rows
        if digest in self._seen:
            n = self._repeats[digest] = self._repeats.get(digest, 0) + 1
            self.guesses["repeated_row"] += 1
            return f"{key}#{n}"
        self._seen.add(digest)
        return key

    def _time(self, value: Any) -> Any:
        """A row's time read with ``--date-format`` (text) or ``--time-unit`` (numbers), as a datetime."""
        cached = self._times.get(value)
        if cached is not None:
            return cached
        text = value.strip() if isinstance(value, str) else value
        out: Any = value
        if self.opts.time_unit and (isinstance(text, (int, float)) and not isinstance(text, bool)
                                    or isinstance(text, str) and re.fullmatch(r"-?\d+(\.\d+)?", text)):
            us = float(text) * TIME_UNITS[self.opts.time_unit]
            if us != us or abs(us) > 1e17:
                raise EventError("ts", f"{value!r} {self.opts.time_unit} is out of range")
            out = _EPOCH + timedelta(microseconds=round(us))
        elif self.opts.date_format and isinstance(text, str):
            try:
                dt = datetime.strptime(text, self.opts.date_format)
            except ValueError:
                raise EventError("ts", f"{value!r} does not match --date-format {self.opts.date_format!r}") from None
            out = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
        if len(self._times) > 100_000:
            self._times.clear()  # dates repeat, times of day rarely: keep the cache bounded
        self._times[value] = out
        return out

    def _ts_hint(self, value: Any, reason: str) -> str:
        """The validation error, with what the user most likely has to say instead."""
        text = str(value).strip()
        if not self.opts.date_format and _YYYYMMDD.fullmatch(text):
            return (f"{value!r} looks like a date written YYYYMMDD, not seconds since 1970; "
                    "read it with --date-format %Y%m%d" + ("" if self.opts.historical else
                                                           " (and --historical if it is before 2000)"))
        if "before" in reason and not self.opts.historical:
            return reason + "; to load history that old, use --historical"
        return reason
