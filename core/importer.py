"""Bulk import of customers and interactions from CSV and JSON Lines files.

Everything goes through the :class:`~shopkeeper.engine.ingest.Ingestor`, the one write path, so
an import gets what a live event gets: validation before any change, exactly-once by
idempotency key, identity resolution (merges included), group commit and the isolation of
a bad record. What the import adds:

* **reading** CSV (header on line 1, ``identities.email``/``data.amount``/
  ``consent.email.marketing`` columns) and JSON Lines (nested objects) as a stream, with
  the physical line of every row so that an error can be found in the file;
* **shaping**: ``--map SRC=DST`` renames, ``--default FIELD=VALUE`` fills gaps, a column
  named after an identity namespace (``email``, ``crm_id``…) is shorthand for
  ``identities.<namespace>``;
* **two kinds of rows**: an *interaction* (has a ``type``; validated by
  :func:`~shopkeeper.events.validate_event`) and a *customer* (identities, traits, soft
  facts, consents, scores, segments and optionally the ``id`` to keep from an old CRM);
* **derived idempotency keys** (``import:<sha256 of the row's canonical JSON>``) for rows
  that carry none, so that re-importing a file counts every row once;
* a per-row error report ``file:line: field: reason``, a progress bar, a summary, and
  ``strict`` mode (validate everything first, write nothing if anything is wrong).

A customer row is not an interaction: it must not add to the history nor to the hard
facts, or an export→import round trip would grow every customer's history. It travels
through the Ingestor as a :class:`CustomerRecord` (an ``Event`` subclass) that
:class:`ImportIngestor` applies with the Customer methods instead of recording it.

Memory stays flat however large the file: rows are streamed, a batch is dropped once it
is committed, and the connection's object cache is trimmed by ZODB after every commit
(bounded by the store's ``cache_size``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import click

from .customer import STATUS_ACTIVE, STATUS_FORGOTTEN, Consent, Customer, Fact, Interaction, now_us
from .engine.ingest import Applied, EventResult, Ingestor, Processor
from .events import (
    _FIELD_NAME,
    _TOKEN,
    DEFAULT_EVENT_TYPES,
    Event,
    EventError,
    EventTypes,
    _check_json_value,
    parse_ts,
    validate_event,
)
from .identity import IdentityConfig, IdentityError, Resolution, Resolver, attach, normalize, tombstone_key
from .store import Folders, Store

Kind = Literal["auto", "customers", "interactions"]
Format = Literal["auto", "csv", "jsonl"]

#: Keys whose value is a mapping; a CSV column ``data.amount`` is ``row["data"]["amount"]``.
#: Only the first dot splits, so data field names that contain dots survive.
CONTAINERS = frozenset({"identities", "data", "traits", "soft", "scores", "segments"})
#: ``consent.<channel>.<purpose>`` is two levels deep.
CONSENT = "consent"

INTERACTION_KEYS = frozenset({"type", "channel", "ts", "identities", "data", "idempotency_key", "touchpoint",
                              "traits", "customer", "origin"})
CUSTOMER_KEYS = frozenset({"id", "created_at", "identities", "traits", "soft", CONSENT, "consents", "scores",
                           "segments", "idempotency_key"})

MAX_ID_LENGTH = 128
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_TRUE = frozenset({"true", "yes", "y", "1", "granted", "opt-in", "optin", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "denied", "refused", "revoked", "opt-out", "optout", "off"})

CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})


# -- records that travel through the Ingestor -------------------------------------------


@dataclass(slots=True)
class CustomerRecord(Event):
    """A customer row, validated: applied to a customer, never recorded in its history.

    ``identities`` are already normalised; ``links`` keeps per-identity provenance
    (source, at) when the row carried it (an export does), so that eviction of the oldest
    weak identity behaves the same after a round trip.
    """

    customer_id: str | None = None
    created_at: int | None = None
    links: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    soft: dict[str, Fact] = field(default_factory=dict)
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    scores: dict[str, Fact] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # found while reading the row (placeholders)


@dataclass(slots=True)
class ImportedInteraction(Event):
    """An interaction row, validated, with what only an import knows about it.

    ``customer_id`` pins it to a Shopkeeper customer (an export says whose history it was
    in, because the identities it carried may since have moved to someone else or come in
    by a merge; re-resolving them could land it on the wrong person); when that customer
    does not exist, identities decide as usual. ``origin`` keeps the customer that first
    recorded it (what unmerge relies on). ``derived_key``: the idempotency key was made up
    from the row, so it goes into the idempotency index only and the history keeps the
    interaction exactly as it was (without a key).
    """

    customer_id: str | None = None
    origin: str = ""
    derived_key: bool = False


class ImportIngestor(Ingestor):
    """The Ingestor, taught to apply :class:`CustomerRecord` and :class:`ImportedInteraction`.

    Only ``_apply_one`` is overridden: batching, idempotency, conflict retry and isolation
    of a failing record stay the Ingestor's. Every check that can fail runs before the first
    change, so a refused record leaves nothing behind.
    """

    def _apply_one(self, folders: Folders, index: int, ev: Event) -> EventResult:
        if isinstance(ev, CustomerRecord):
            return self._apply_customer(folders, index, ev)
        if isinstance(ev, ImportedInteraction):
            return self._apply_interaction(folders, index, ev)
        return super()._apply_one(folders, index, ev)

    # -- customers ------------------------------------------------------------------------

    def _apply_customer(self, folders: Folders, index: int, rec: CustomerRecord) -> EventResult:
        target, owners = check_customer_record(folders, rec)
        source = rec.touchpoint or self.source
        at = rec.ts
        warnings: list[str] = list(rec.warnings)
        created = False
        merges: list[str] = []
        proposals: list[str] = []
        if rec.customer_id is not None:
            if target is None:
                target = folders.add_customer(Customer(rec.customer_id, created_at=rec.created_at or at))
                created = True
            # owners ⊆ {target}: attach what is new within the namespace limits, no merge needed
            for pair in rec.identities:
                if folders.identities.get(pair) is None:
                    self.resolver._attach(folders, target, pair, source, at, warnings)
            customer = target
        else:
            res = self.resolver.resolve(folders, rec.identities, source=source, at=at, normalized=True)
            customer = res.customer
            assert customer is not None
            created = res.created
            if created and rec.created_at is not None:
                customer.created_at = rec.created_at
            merges = [m.id for m in res.merges]
            proposals = [p.id for p in res.proposals]
            warnings += res.warnings
        for pair, (src, when) in rec.links.items():
            if pair in customer.identities:
                attach(folders, customer, pair, src, when)
        customer.set_traits(rec.traits)
        for name, fact in rec.soft.items():
            customer.set_soft_fact(name, fact.value, fact.source, fact.at)
        for (channel, purpose), c in rec.consents.items():
            customer.set_consent(channel, purpose, c.granted, c.source, c.at)
        for name, fact in rec.scores.items():
            customer.set_score(name, fact.value, fact.source, fact.at)
        for name, joined in rec.segments.items():
            customer.join_segment(name, joined)
        # The Ingestor counts every applied record as an interaction; this one is not.
        folders.count("interactions", -1)
        return EventResult(index, "applied", customer_id=customer.id, created=created, merges=merges,
                           proposals=proposals, warnings=warnings)

    # -- interactions -----------------------------------------------------------------------

    def _apply_interaction(self, folders: Folders, index: int, ev: ImportedInteraction) -> EventResult:
        """``Ingestor._apply_one`` plus pinning, origin and derived keys (kept in step with it)."""
        pairs, warnings = self.resolver.normalize_pairs(ev.identities)  # cached: hot identities recur
        check_tombstones(folders, pairs)
        target = pinned_customer(folders, ev)
        if target is not None:
            resolution = Resolution(target, pairs)
        else:
            if not pairs and ev.customer_id:
                raise IdentityError("identities", f"required: customer {ev.customer_id!r} is not in this store, "
                                                  "so the interaction must say who it belongs to")
            if not pairs:
                raise IdentityError("identities", "no usable identity (every value was missing or blocked)")
            resolution = self.resolver.resolve(folders, pairs, source=ev.touchpoint or self.source, at=ev.ts,
                                               normalized=True)
        customer = resolution.customer
        assert customer is not None
        it = customer.add_interaction(
            Interaction(ev.ts, ev.ts, ev.type, ev.channel, ev.touchpoint, ev.data,
                        "" if ev.derived_key else ev.idempotency_key, tuple(pairs), ev.origin or customer.id)
        )
        if ev.traits:
            customer.set_traits(ev.traits)
        res = EventResult(index, "applied", customer_id=customer.id, interaction_key=it.key,
                          created=resolution.created, merges=[m.id for m in resolution.merges],
                          proposals=[p.id for p in resolution.proposals], warnings=warnings + resolution.warnings)
        if self.processors:
            applied = Applied(ev, customer, it, resolution, res)
            for proc in self.processors:
                proc(folders, applied)
        return res


def check_tombstones(folders: Folders, pairs: Iterable[tuple[str, str]]) -> None:
    """Refuse identities of a person who asked to be forgotten (before any change)."""
    if not folders.tombstones:  # truth test: a BTree's len() walks every bucket
        return
    for pair in pairs:
        if tombstone_key(folders, pair) in folders.tombstones:
            raise IdentityError(f"identities.{pair[0]}", "belongs to a customer who asked to be forgotten")


def normalize_for_store(folders: Folders, identities: Iterable[tuple[str, str]],
                        config: IdentityConfig) -> list[tuple[str, str]]:
    """Normalised pairs (blocked placeholders dropped), refused if any is a tombstone."""
    out: list[tuple[str, str]] = []
    for ns, value in identities:
        try:
            pair = (ns, normalize(ns, value, config))
        except IdentityError as exc:
            if "blocked" in exc.reason:
                continue
            raise
        if pair not in out:
            out.append(pair)
    check_tombstones(folders, out)
    return out


def pinned_customer(folders: Folders, ev: ImportedInteraction) -> Customer | None:
    """The active customer an interaction row is pinned to, if any; refuses an erased one."""
    if not ev.customer_id:
        return None
    pinned = folders.customers.get(ev.customer_id)
    if pinned is None:
        return None
    if pinned.status == STATUS_FORGOTTEN:
        raise IdentityError("customer", f"customer {ev.customer_id!r} was erased on request; "
                                        "their interactions cannot be imported again")
    target = folders.customer(ev.customer_id)
    return target if target is not None and target.status == STATUS_ACTIVE else None


def check_customer_record(folders: Folders, rec: CustomerRecord) -> tuple[Customer | None, list[str]]:
    """Read-only checks of a customer row against the store; raises ``IdentityError``.

    Returns the customer the row's ``id`` names (if it exists) and the ids of the customers
    its identities already belong to. A row with an ``id`` must not touch anyone else: if
    its identities belong to another customer, an automatic merge would silently drop one
    of the two ids, so the row is refused and the message says how to proceed.
    """
    if rec.customer_id is not None:
        existing = folders.customers.get(rec.customer_id)
        if existing is not None and existing.status == STATUS_FORGOTTEN:
            raise IdentityError("id", f"customer {rec.customer_id!r} was erased on request and cannot be "
                                      "imported again")
    check_tombstones(folders, rec.identities)
    owners: list[str] = []
    owner_of: dict[str, tuple[str, str]] = {}
    for pair in rec.identities:
        cid = folders.identities.get(pair)
        if cid is not None:
            c = folders.customer(cid)
            if c is not None and c.id not in owner_of:
                owner_of[c.id] = pair
                owners.append(c.id)
    if rec.customer_id is None:
        return None, owners
    existing = folders.customers.get(rec.customer_id)
    target = folders.customer(rec.customer_id) if existing is not None else None
    if existing is not None and (target is None or target.status != STATUS_ACTIVE):
        raise IdentityError("id", f"customer {rec.customer_id!r} exists but is {existing.status} and its merge "
                                  "chain leads to no active customer")
    for cid in owners:
        if target is None or cid != target.id:
            ns, value = owner_of[cid]
            what = (f"the row's id {rec.customer_id!r} is a different customer" if target is not None
                    else f"a new customer {rec.customer_id!r} cannot share it")
            raise IdentityError(f"identities.{ns}", f"{value!r} already belongs to customer {cid}; {what} "
                                                    "(to merge by identity instead, import the id as one: "
                                                    "--map id=crm_id)")
    return target, owners


# -- reading files ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowError:
    """One refused row: where it is and what is wrong with it."""

    path: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.reason}"


class _Problem:
    """A row that could not even be read (bad JSON, wrong number of CSV fields)."""

    __slots__ = ("field", "reason", "fatal")

    def __init__(self, field: str, reason: str, fatal: bool = False) -> None:
        self.field, self.reason, self.fatal = field, reason, fatal


Row = dict[str, Any]


def detect_format(path: str, forced: Format = "auto") -> Literal["csv", "jsonl"]:
    """``csv`` or ``jsonl`` from ``--format`` or the file name (``.gz`` looked through)."""
    if forced != "auto":
        return forced
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES or path == "-":
        return "jsonl"
    raise click.UsageError(f"{path}: cannot tell the format from the name; use --format csv or --format jsonl")


class _Source:
    """An input file as text, with its byte position for the progress bar."""

    def __init__(self, path: str, encoding: str) -> None:
        self.path = path
        if path == "-":
            self.raw: IO[bytes] = sys.stdin.buffer
            self.size = 0
        else:
            self.raw = open(path, "rb")  # noqa: SIM115 (closed in close())
            self.size = Path(path).stat().st_size
        binary: IO[bytes] = gzip.GzipFile(fileobj=self.raw) if path.endswith(".gz") else self.raw
        self.text = io.TextIOWrapper(binary, encoding=encoding, newline="")

    def position(self) -> int:
        try:
            return self.raw.tell() if self.size else 0
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self.path != "-":
            self.text.close()


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def iter_csv(text: IO[str], delimiter: str | None = None) -> Iterator[tuple[int, Row | _Problem]]:
    """Rows as dicts (empty cells are ``None``) with the physical line each starts on."""
    header_line = text.readline()
    if not header_line.strip():
        yield 1, _Problem("header", "the file is empty or its first line is blank; CSV needs a header", True)
        return
    delim = delimiter or _sniff_delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delim))
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for h in header:
        if not h:
            yield 1, _Problem("header", "a column has no name", True)
            return
        if h in seen:
            yield 1, _Problem("header", f"column {h!r} appears twice", True)
            return
        seen.add(h)
    width = len(header)
    reader = csv.reader(text, delimiter=delim)
    prev = 1
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield prev + 1, _Problem("csv", f"{exc}; the rest of the file is skipped", True)
            return
        start, prev = prev + 1, reader.line_num + 1
        if not rec or not any(rec):
            continue  # a blank line, or a row of empty cells a spreadsheet left behind
        if len(rec) != width:
            yield start, _Problem("row", f"{len(rec)} fields, but the header has {width}")
            continue
        yield start, {h: (v if v != "" else None) for h, v in zip(header, rec, strict=True)}


def iter_jsonl(text: IO[str]) -> Iterator[tuple[int, Row | _Problem]]:
    """One JSON object per line; blank lines are skipped but counted."""
    loads = json.loads
    for n, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except ValueError as exc:
            yield n, _Problem("json", f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            yield n, _Problem("row", f"must be a JSON object, not {type(obj).__name__}")
            continue
        yield n, obj


# -- shaping rows: mapping, defaults, dotted columns ---------------------------------------


def parse_assignments(items: Iterable[str], option: str) -> list[tuple[str, str]]:
    """``["A=B", …]`` → ``[("A", "B"), …]``; a usage error names the bad one."""
    out = []
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src.strip():
            raise click.BadParameter(f"{item!r} must look like NAME=VALUE", param_hint=option)
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
    for k in [k for k, v in row.items() if v is None]:
        del row[k]
    for v in row.values():
        if isinstance(v, dict):
            _strip_none(v)


# -- the importer ------------------------------------------------------------------------


@dataclass
class ImportOptions:
    """What ``shopkeeper import`` was asked to do."""

    kind: Kind = "auto"
    format: Format = "auto"
    mapping: list[tuple[str, str]] = field(default_factory=list)
    defaults: list[tuple[str, str]] = field(default_factory=list)
    batch_size: int = 1000
    strict: bool = False
    source: str = "import"
    delimiter: str | None = None
    encoding: str = "utf-8-sig"


@dataclass
class ImportSummary:
    files: int = 0
    rows: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    customers_created: int = 0
    warnings: int = 0
    seconds: float = 0.0
    aborted: str | None = None  # why a strict import stopped before writing

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        text = (f"{self.rows} rows read from {self.files} file(s): {self.applied} applied, "
                f"{self.duplicates} duplicates, {self.rejected} rejected; "
                f"{self.customers_created} customers created; "
                + (f"{self.warnings} warnings; " if self.warnings else "")
                + f"{self.seconds:.1f} s, {self.rate:,.0f} rows/s")
        if self.aborted:
            text += f"\nstrict: {self.aborted}"
        return text


ErrorSink = Callable[[RowError], None]
ProgressSink = Callable[[int, int, int], None]  # (rows so far, bytes read, bytes total)


class Importer:
    """Reads files, shapes and validates rows, and applies them in batches.

    Usable without the CLI (tests, the hub): ``Importer(store, ImportOptions(...)).run(paths)``.
    """

    def __init__(
        self,
        store: Store,
        options: ImportOptions | None = None,
        *,
        types: EventTypes = DEFAULT_EVENT_TYPES,
        identity_config: IdentityConfig | None = None,
        on_error: ErrorSink | None = None,
        on_warning: ErrorSink | None = None,
        on_progress: ProgressSink | None = None,
        on_file: Callable[[str, int], None] | None = None,
        processors: Sequence[Processor] = (),
    ) -> None:
        self.store = store
        #: Run for every imported interaction, in its transaction (rules, change feed). None by
        #: default: a bulk load of history must not trigger "thank you for your order" mails for
        #: orders of 2019; customer rows never run them (they are not interactions).
        self.processors = list(processors)
        self.opts = options or ImportOptions()
        if self.opts.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.types = types
        self.config = identity_config or IdentityConfig()
        self.namespaces = frozenset(self.config.namespaces)
        self.on_error = on_error or (lambda e: None)
        self.on_warning = on_warning or (lambda e: None)
        self.on_progress = on_progress or (lambda rows, pos, size: None)
        self.on_file = on_file or (lambda path, size: None)
        self._map_top = {src: split_path(dst) if dst else () for src, dst in self.opts.mapping}
        self._defaults = [(split_path(k), v) for k, v in self.opts.defaults]
        self._reshape = bool(self._map_top or self._defaults)

    # -- public ---------------------------------------------------------------------------

    def run(self, paths: Iterable[str]) -> ImportSummary:
        paths = list(paths)
        if self.opts.strict and "-" in paths:
            raise ValueError("strict mode reads its input twice, which standard input cannot do; "
                             "save it to a file first")
        summary = ImportSummary(files=len(paths))
        t0 = time.perf_counter()
        try:
            if self.opts.strict and not self._validate_all(paths, summary):
                return summary
            summary.rows = 0
            with ImportIngestor(self.store, Resolver(self.config), self.processors, source=self.opts.source) as ing:
                for path in paths:
                    if not self._apply_file(ing, path, summary):
                        break
        finally:
            summary.seconds = time.perf_counter() - t0
        return summary

    def prepare(self, row: Row, *, from_csv: bool = False) -> Event:
        """One shaped, validated record from one raw row; raises ``EventError``/``IdentityError``."""
        row = self.shape(row, from_csv=from_csv)
        kind = self.opts.kind
        if kind == "auto":
            kind = "interactions" if "type" in row else "customers"
        if from_csv:
            _strip_none(row)
        if kind == "interactions":
            return self._interaction(row)
        return self._customer(row)

    def shape(self, row: Row, *, from_csv: bool = False) -> Row:
        """Apply ``--map``, nest dotted columns, apply ``--default``, expand identity shorthands."""
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
        for ns in self.namespaces & out.keys():
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
        raw = row
        if customer is not None and not row.get("identities"):
            raw = {**row, "identities": {"cookie": "stand-in"}}  # pinned: identities are optional
        ev = validate_event(raw, self.types, require_key=False)
        if raw is not row:
            ev.identities = []
        key = ev.idempotency_key
        if not key:
            key = _derived_key({
                "type": ev.type, "channel": ev.channel, "ts": ev.ts if row.get("ts") not in (None, "") else None,
                "identities": ev.identities, "data": ev.data, "touchpoint": ev.touchpoint, "traits": ev.traits,
                "customer": customer, "origin": origin,
            })
        return ImportedInteraction(ev.type, ev.channel, ev.ts, ev.identities, key, ev.data, ev.touchpoint,
                                   ev.traits, customer_id=customer, origin=origin, derived_key=not ev.idempotency_key)

    def _customer(self, row: Row) -> CustomerRecord:
        source = self.opts.source
        key = row.get("idempotency_key") or ""
        if key and (not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.:/+=-]{1,128}", key)):
            raise EventError("idempotency_key", "must be 1-128 characters of [A-Za-z0-9_.:/+=-]")
        cid = row.get("id")
        if cid is not None:
            if isinstance(cid, int) and not isinstance(cid, bool):
                cid = str(cid)
            if not isinstance(cid, str) or not _ID.match(cid):
                raise EventError("id", "must be text of 1-128 printable characters")
        created_at = parse_ts(row["created_at"], "created_at") if row.get("created_at") else None
        pairs, links, skipped = self._customer_identities(row.get("identities"))
        if not pairs and cid is None:
            known = ", ".join(sorted(self.namespaces))
            raise EventError("identities", f"required: at least one identity column ({known}) or an id")
        traits: dict[str, Any] = {}
        for k, v in row.items():
            if k not in CUSTOMER_KEYS:
                traits[k] = v
        explicit = row.get("traits") or {}
        if not isinstance(explicit, dict):
            raise EventError("traits", f"must be a mapping, not {type(explicit).__name__}")
        traits.update(explicit)
        for k, v in traits.items():
            if not _FIELD_NAME.match(k):
                raise EventError(f"traits.{k}", f"trait name must match {_FIELD_NAME.pattern}")
            _check_json_value(v, f"traits.{k}")
        now = now_us()
        rec = CustomerRecord("customer", "import", now, pairs, key, traits=traits, customer_id=cid,
                             created_at=created_at, links=links, warnings=skipped)
        rec.soft = self._facts(row.get("soft"), "soft", source, now, number=False)
        rec.scores = self._facts(row.get("scores"), "scores", source, now, number=True)
        rec.consents = self._consents(row, source, now)
        rec.segments = self._segments(row.get("segments"), now)
        if not key:
            rec.idempotency_key = _derived_key(row)
        return rec

    def _customer_identities(
        self, raw: Any
    ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[str, int]], list[str]]:
        if raw is None:
            return [], {}
        items: list[tuple[str, Any, Any, Any]] = []
        if isinstance(raw, Mapping):
            for ns, v in raw.items():
                for x in v if isinstance(v, list) else [v]:
                    items.append((ns, x, None, None))
        elif isinstance(raw, list):
            for i, item in enumerate(raw):
                if isinstance(item, Mapping) and "namespace" in item:
                    items.append((item["namespace"], item.get("value"), item.get("source"), item.get("at")))
                elif isinstance(item, (list, tuple)) and len(item) == 2:
                    items.append((item[0], item[1], None, None))
                else:
                    raise EventError(f"identities[{i}]", "must be {namespace, value} or [namespace, value]")
        else:
            raise EventError("identities", f"must be a mapping or a list, not {type(raw).__name__}")
        pairs: list[tuple[str, str]] = []
        skipped: list[str] = []
        links: dict[tuple[str, str], tuple[str, int]] = {}
        for ns, value, src, at in items:
            if not isinstance(ns, str) or not _TOKEN.match(ns):
                raise EventError("identities", f"namespace {ns!r} must be a lower-case token")
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            try:
                pair = (ns, normalize(ns, value, self.config))
            except IdentityError as exc:
                if "blocked" in exc.reason:
                    skipped.append(str(exc))  # a placeholder such as "unknown": not an identity, not an error
                    continue
                raise
            if pair not in pairs:
                pairs.append(pair)
            if src is not None or at is not None:
                if src is not None and not isinstance(src, str):
                    raise EventError(f"identities.{ns}", "source must be text")
                links[pair] = (src or self.opts.source, parse_ts(at, f"identities.{ns}.at"))
        return pairs, links, skipped

    def _facts(self, raw: Any, where: str, source: str, now: int, *, number: bool) -> dict[str, Fact]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise EventError(where, f"must be a mapping, not {type(raw).__name__}")
        out: dict[str, Fact] = {}
        for name, v in raw.items():
            fld = f"{where}.{name}"
            if not isinstance(name, str) or not _FIELD_NAME.match(name):
                raise EventError(where, f"name {name!r} must match {_FIELD_NAME.pattern}")
            src, at = source, now
            if isinstance(v, Mapping) and "value" in v:
                src = v.get("source") or source
                if not isinstance(src, str):
                    raise EventError(fld, "source must be text")
                at = parse_ts(v["at"], f"{fld}.at") if v.get("at") else now
                v = v["value"]
            if number:
                try:
                    if isinstance(v, bool):
                        raise ValueError
                    v = float(v)
                except (TypeError, ValueError):
                    raise EventError(fld, f"must be a number, not {v!r}") from None
                if v != v or v in (float("inf"), float("-inf")):
                    raise EventError(fld, "must be a finite number")
            else:
                _check_json_value(v, fld)
            out[name] = Fact(v, src, at)
        return out

    def _consents(self, row: Row, source: str, now: int) -> dict[tuple[str, str], Consent]:
        out: dict[tuple[str, str], Consent] = {}
        nested = row.get(CONSENT)
        entries: list[tuple[str, Any, Any, str]] = []  # (channel, purpose, value, field)
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise EventError(CONSENT, "must be a mapping channel -> purpose -> yes/no")
            for channel, purposes in nested.items():
                if not isinstance(purposes, Mapping):
                    raise EventError(f"consent.{channel}", "needs a purpose: consent.<channel>.<purpose>, "
                                                          "e.g. consent.email.marketing")
                for purpose, v in purposes.items():
                    entries.append((channel, purpose, v, f"consent.{channel}.{purpose}"))
        listed = row.get("consents")
        if listed is not None:
            if not isinstance(listed, list):
                raise EventError("consents", "must be a list of {channel, purpose, granted}")
            for i, item in enumerate(listed):
                if not isinstance(item, Mapping):
                    raise EventError(f"consents[{i}]", "must be {channel, purpose, granted}")
                entries.append((item.get("channel"), item.get("purpose", "marketing"), dict(item), f"consents[{i}]"))
        for channel, purpose, v, fld in entries:
            if not isinstance(channel, str) or not _TOKEN.match(channel):
                raise EventError(fld, f"channel {channel!r} must be a lower-case token such as email, sms, phone")
            if not isinstance(purpose, str) or not _TOKEN.match(purpose):
                raise EventError(fld, f"purpose {purpose!r} must be a lower-case token such as marketing")
            src, at = source, now
            if isinstance(v, Mapping):
                src = v.get("source") or source
                if not isinstance(src, str):
                    raise EventError(fld, "source must be text")
                at = parse_ts(v["at"], f"{fld}.at") if v.get("at") else now
                v = v.get("granted")
            out[(channel, purpose)] = Consent(_yes_no(v, fld), src, at)
        return out

    def _segments(self, raw: Any, now: int) -> dict[str, int]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise EventError("segments", f"must be a mapping, not {type(raw).__name__}")
        out: dict[str, int] = {}
        for name, v in raw.items():
            fld = f"segments.{name}"
            if not isinstance(name, str) or not _FIELD_NAME.match(name):
                raise EventError("segments", f"name {name!r} must match {_FIELD_NAME.pattern}")
            if isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE):
                if _yes_no(v, fld):
                    out[name] = now
            else:
                out[name] = parse_ts(v, fld)  # joined at
        return out

    # -- passes ----------------------------------------------------------------------------

    def _rows(self, path: str) -> tuple[_Source, Iterator[tuple[int, Row | _Problem]], bool]:
        fmt = detect_format(path, self.opts.format)
        src = _Source(path, self.opts.encoding)
        delimiter = self.opts.delimiter or ("\t" if ".tsv" in Path(path).suffixes else None)
        rows = iter_csv(src.text, delimiter) if fmt == "csv" else iter_jsonl(src.text)
        return src, _guard_decoding(rows, path), fmt == "csv"

    def _validate_all(self, paths: list[str], summary: ImportSummary) -> bool:
        """Strict mode, pass 1: every row and the store checks, writing nothing."""
        with self.store.read() as folders:
            for path in paths:
                src, rows, from_csv = self._rows(path)
                self.on_file(path, src.size)
                try:
                    for line, item in rows:
                        summary.rows += 1
                        err = self._check_row(folders, item, from_csv)
                        if err is not None:
                            summary.rejected += 1
                            self.on_error(RowError(path, line, *err))
                            summary.aborted = f"{path}:{line} is wrong, nothing was imported"
                            return False
                        if summary.rows % 1000 == 0:
                            folders.conn.cacheGC()
                            self.on_progress(summary.rows, src.position(), src.size)
                finally:
                    src.close()
        return True

    def _check_row(self, folders: Folders, item: Row | _Problem, from_csv: bool) -> tuple[str, str] | None:
        if isinstance(item, _Problem):
            return item.field, item.reason
        try:
            rec = self.prepare(item, from_csv=from_csv)
            if isinstance(rec, CustomerRecord):
                check_customer_record(folders, rec)
            else:
                if rec.identities:
                    normalize_for_store(folders, rec.identities, self.config)
                if isinstance(rec, ImportedInteraction):
                    pinned_customer(folders, rec)
        except (EventError, IdentityError) as exc:
            return exc.field, exc.reason
        return None

    def _apply_file(self, ing: ImportIngestor, path: str, summary: ImportSummary) -> bool:
        """Pass over one file; returns False when a strict import must stop."""
        src, rows, from_csv = self._rows(path)
        self.on_file(path, src.size)
        batch: list[Event] = []
        lines: list[int] = []
        size = self.opts.batch_size
        ok = True

        def reject(line: int, fld: str, reason: str) -> None:
            summary.rejected += 1
            self.on_error(RowError(path, line, fld, reason))

        def flush() -> bool:
            results = ing.apply(batch, note=f"shopkeeper import: {Path(path).name}")
            good = True
            for r in results:
                if r.status == "applied":
                    summary.applied += 1
                    summary.customers_created += r.created
                    for w in r.warnings:
                        summary.warnings += 1
                        self.on_warning(RowError(path, lines[r.index], "warning", w))
                elif r.status == "duplicate":
                    summary.duplicates += 1
                else:
                    fld = r.error_field or "row"
                    reason = r.error or "rejected"
                    if reason.startswith(fld + ": "):
                        reason = reason[len(fld) + 2:]
                    reject(lines[r.index], fld, reason)
                    good = False
            batch.clear()
            lines.clear()
            self.on_progress(summary.rows, src.position(), src.size)
            return good

        try:
            for line, item in rows:
                summary.rows += 1
                if summary.rows % size == 0:
                    self.on_progress(summary.rows, src.position(), src.size)
                if isinstance(item, _Problem):
                    reject(line, item.field, item.reason)
                    if self.opts.strict:
                        ok = False
                        break
                    continue
                try:
                    batch.append(self.prepare(item, from_csv=from_csv))
                except (EventError, IdentityError) as exc:
                    reject(line, exc.field, exc.reason)
                    if self.opts.strict:
                        ok = False
                        break
                    continue
                lines.append(line)
                if len(batch) >= size and not flush() and self.opts.strict:
                    ok = False
                    break
            if ok and batch and not flush() and self.opts.strict:
                ok = False
        finally:
            src.close()
        if not ok:
            summary.aborted = ("a row was refused while applying (it depends on an earlier row of the import); "
                               "the batches before it are committed")
        return ok


def _guard_decoding(rows: Iterator[tuple[int, Row | _Problem]], path: str) -> Iterator[tuple[int, Row | _Problem]]:
    """Turn an undecodable byte into a row error instead of a traceback."""
    line = 0
    try:
        for line, item in rows:
            yield line, item
    except UnicodeDecodeError as exc:
        yield line + 1, _Problem("encoding", f"{exc.reason} at byte {exc.start} of a read chunk; "
                                             "use --encoding (e.g. cp1252); the rest of the file is skipped", True)
    except (OSError, EOFError) as exc:  # a truncated .gz
        yield line + 1, _Problem("file", f"{exc}; the rest of the file is skipped", True)


def _derived_key(content: Any) -> str:
    """``import:<sha256>`` of canonical JSON: the same row always gets the same key."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "import:" + hashlib.sha256(text.encode()).hexdigest()


def _yes_no(value: Any, fld: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    raise EventError(fld, f"{value!r} is not yes/no (true/false, yes/no, 1/0, granted/denied)")


def load_vocabulary() -> tuple[EventTypes, IdentityConfig]:
    """Event types and identity namespaces including what installed plugins contribute."""
    types = EventTypes()
    config = IdentityConfig()
    try:
        from .plugins import get_plugin_manager

        pm = get_plugin_manager()
        for contributed in pm.hook.shopkeeper_event_types():
            for et in contributed or ():
                types.register(et)
        for contributed in pm.hook.shopkeeper_identity_namespaces():
            for ns in contributed or ():
                config.namespaces[ns.name] = ns
    except Exception as exc:  # a broken plugin must not stop an import of built-in types
        click.echo(f"warning: plugin vocabulary not loaded: {exc}", err=True)
    return types, config


# -- the command -----------------------------------------------------------------------


@click.command("import")
@click.option("--store", "store_uri", default=None, envvar="SHOPKEEPER_STORE",
              help="Storage URI (default: $SHOPKEEPER_STORE or file://./var/Data.fs).")
@click.argument("files", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto", show_default=True,
              help="File format; auto goes by extension (.csv/.tsv, .jsonl/.ndjson/.json, optionally .gz).")
@click.option("--kind", type=click.Choice(["auto", "customers", "interactions"]), default="auto", show_default=True,
              help="What the rows are; auto: a row with a `type` field is an interaction.")
@click.option("--map", "maps", multiple=True, metavar="SRC=DST",
              help="Rename a column/key, e.g. --map E-Mail=identities.email --map Betrag=data.amount "
                   "(empty DST drops it). Repeatable.")
@click.option("--default", "defaults", multiple=True, metavar="FIELD=VALUE",
              help="Value for a field that is missing or empty, e.g. --default channel=store. Repeatable.")
@click.option("--batch", "batch_size", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Rows per transaction.")
@click.option("--strict", is_flag=True, help="Validate everything first; on any error write nothing.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the per-row error report to this file.")
@click.option("--source", default="import", show_default=True,
              help="Provenance recorded on identities, consents and soft facts.")
@click.option("--delimiter", default=None, help="CSV delimiter (default: sniffed from the header).")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="Text encoding of the files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def import_cmd(store_uri: str | None, files: tuple[str, ...], fmt: Format, kind: Kind, maps: tuple[str, ...],
               defaults: tuple[str, ...], batch_size: int, strict: bool, errors_path: str | None, source: str,
               delimiter: str | None, encoding: str, quiet: bool) -> None:
    """Import customers or interactions from CSV / JSON Lines FILES (`-` for stdin).

    Every refused row is reported as FILE:LINE: FIELD: REASON; the exit status is 1 if any
    row was refused. Re-importing a file counts its rows once (idempotency keys).
    """
    from tqdm import tqdm

    from .cli import DEFAULT_STORE, open_store_or_exit

    if strict and "-" in files:
        raise click.BadParameter("--strict reads the input twice; save standard input to a file first",
                                 param_hint="FILES")
    for f in files:
        if f != "-" and not Path(f).is_file():
            raise click.BadParameter(f"{f}: no such file", param_hint="FILES")
        detect_format(f, fmt)
    options = ImportOptions(kind=kind, format=fmt, mapping=parse_assignments(maps, "--map"),
                            defaults=parse_assignments(defaults, "--default"), batch_size=batch_size,
                            strict=strict, source=source, delimiter=delimiter, encoding=encoding)
    types, config = load_vocabulary()
    show_bar = not quiet and sys.stderr.isatty()
    bar: Any = None
    report: IO[str] | None = None
    t0 = time.perf_counter()

    def on_error(err: RowError) -> None:
        line = str(err)
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)
        if report is not None:
            report.write(line + "\n")

    def on_warning(warning: RowError) -> None:
        if bar is not None:
            bar.write(str(warning), file=sys.stderr)
        else:
            click.echo(str(warning), err=True)

    def on_file(path: str, size: int) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
        if show_bar:
            bar = tqdm(total=size or None, unit="B", unit_scale=True, desc=Path(path).name, file=sys.stderr,
                       dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
                                                      "{postfix}")

    def on_progress(rows: int, pos: int, size: int) -> None:
        if bar is not None:
            bar.update(max(0, pos - bar.n))
            rate = rows / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{rows:,} rows, {rate:,.0f} rows/s", refresh=True)

    store = open_store_or_exit(store_uri or DEFAULT_STORE)
    try:
        if errors_path:
            report = open(errors_path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        importer = Importer(store, options, types=types, identity_config=config, on_error=on_error,
                            on_warning=on_warning, on_progress=on_progress, on_file=on_file)
        summary = importer.run(files)
    finally:
        if bar is not None:
            bar.close()
        if report is not None:
            report.close()
        store.close()
    click.echo(summary.render(), err=True)
    if summary.rejected:
        sys.exit(1)


__all__ = ["Importer", "ImportOptions", "ImportSummary", "ImportIngestor", "CustomerRecord",
           "ImportedInteraction", "RowError", "import_cmd", "load_vocabulary"]
