"""The importer: reads files, shapes and validates rows, and applies them in batches through
the :class:`~.records.ImportIngestor` (the Ingestor: the one write path of an offline tool),
so an import gets what a live event gets: validation before any change, exactly-once by
idempotency key, identity resolution (merges included), group commit and the isolation of
a bad record.

A bad row of any kind (unreadable bytes, a field over the limit, bad JSON, a wrong number
of fields, a refused value) is reported with its file and line and skipped; the import
keeps going and its summary says how many rows were skipped and where the first ones are.
Only ``strict`` mode stops (validate everything first, write nothing if anything is wrong).

Memory stays flat however large the file: rows are streamed, a batch is dropped once it
is committed, and the connection's object cache is trimmed by ZODB after every commit
(bounded by the store's ``cache_size``). What grows is one 64-bit digest per order row
without an order id (to number repeats of an identical row).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import startup_gc
from ..engine.ingest import Processor
from ..events import DEFAULT_EVENT_TYPES, Event, EventError, EventTypes
from ..identity import IdentityConfig, IdentityError, Resolver
from ..store import Folders, Store
from .mapping import MapOptions, RowMapper
from .parsing import (
    Format,
    Kind,
    Problem,
    Row,
    RowError,
    Rows,
    Source,
    describe_delimiter,
    detect_format,
    guard_reading,
    iter_csv,
    iter_jsonl,
)
from .records import ImportIngestor, check_record, customer_order
from .records import pinned_customer as pinned_customer

#: How many refused lines the summary names.
SHOWN_LINES = 5
#: Rows between progress reports while a batch fills (and after each commit).
PROGRESS_ROWS = 1000
#: The collector's middle-generation threshold while an import runs (CPython's default: 10);
#: see :func:`relaxed_collector`.
IMPORT_GC_OLDER = 1000


@contextlib.contextmanager
def relaxed_collector() -> Iterator[None]:
    """Collect the collector's middle generation rarely while an import runs, then put the
    thresholds back.

    Why: an import keeps a growing set of long-lived objects (the connection's cache of the batch's
    customers, their dicts and windows, the mapper's memos) and allocates several containers per
    row, so CPython's default thresholds ran ~200 middle- and ~14 full-generation collections over
    the CDNOW file, each walking everything alive: ~30% of the import's CPU (docs/benchmarks.md
    §75). The young generation is still collected every 700 allocations (cheap: it holds only the
    newest objects) and the middle one every ``IMPORT_GC_OLDER`` of those, so cyclic garbage is still
    freed, only later; the full collection keeps its threshold (every 10 middle ones, and CPython's
    own 25%-of-the-heap rule), so an import of many millions of rows does not hold cyclic garbage
    promoted to the oldest generation for its whole run (CDNOW runs none either way). The thresholds are
    the process's: a program that imports from several threads at once with its own settings
    should set them itself (they are restored as found)."""
    old = gc.get_threshold()
    gc.set_threshold(old[0], max(old[1], IMPORT_GC_OLDER), old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


@dataclass
class ImportOptions:
    """What ``shopkeeper import`` was asked to do."""

    kind: Kind = "auto"
    format: Format = "auto"
    mapping: list[tuple[str, str]] = field(default_factory=list)
    defaults: list[tuple[str, str]] = field(default_factory=list)
    #: rows per transaction: a customer a batch names several times is written once per commit, so
    #: fewer, larger commits write far less (§43); a kill loses at most the open batch
    batch_size: int = 10_000
    strict: bool = False
    source: str = "import"
    delimiter: str | None = None  # one character, "whitespace" (runs of blanks) or any string; None sniffs
    encoding: str = "utf-8-sig"
    date_format: str | None = None  # strftime pattern of text times, e.g. %Y%m%d
    time_unit: str | None = None  # unit of numeric times: s, ms, us, ns, days
    historical: bool = False  # history: times before 2000 accepted, no rules or messages run

    def map_options(self) -> MapOptions:
        return MapOptions(self.kind, self.mapping, self.defaults, self.source, self.date_format, self.time_unit,
                          self.historical)


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
    historical: bool = False
    guesses: dict[str, int] = field(default_factory=dict)  # what was derived for rows that did not say
    read_as: list[str] = field(default_factory=list)  # how each delimited file was split
    refused_at: list[str] = field(default_factory=list)  # FILE:LINE of the first refused rows

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        text = (f"{self.rows} rows read from {self.files} file(s): {self.applied} applied, "
                f"{self.duplicates} duplicates, {self.rejected} rejected; "
                f"{self.customers_created} customers created; "
                + (f"{self.warnings} warnings; " if self.warnings else "")
                + f"{self.seconds:.1f} s, {self.rate:,.0f} rows/s")
        lines = [text]
        lines += self.read_as
        g = self.guesses
        if g.get("idempotency_key"):
            repeated = g.get("repeated_row", 0)
            lines.append(f"guessed: an idempotency key from the row's content for {g['idempotency_key']:,} rows "
                         "without one (re-importing the file counts them once)"
                         + (f"; {repeated:,} orders repeat an earlier identical row and were kept as separate "
                            "purchases" if repeated else ""))
        if g.get("order_id"):
            lines.append(f"guessed: an order_id for {g['order_id']:,} orders without one (import-<hash of the row>)")
        if self.historical:
            lines.append("historical: times before 2000 accepted; no rules ran and no messages were sent")
        if self.rejected and not self.aborted:
            more = "…" if self.rejected > len(self.refused_at) else ""
            lines.append(f"kept going after {self.rejected} refused row(s), each reported above with its line "
                         f"({', '.join(self.refused_at)}{more}); every other row was read")
        if self.aborted:
            lines.append(f"strict: {self.aborted}")
        return "\n".join(lines)


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
        ingestor: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        #: where the batches go: None = this store, through :class:`ImportIngestor`; a factory of
        #: an object with the same ``apply(batch, note=)`` (``remote.HubIngestor``: a running hub)
        self.ingestor = ingestor
        self.opts = options or ImportOptions()
        #: Run for every imported interaction, in its transaction (rules, change feed). None by
        #: default: a bulk load of history must not trigger "thank you for your order" mails for
        #: orders of 2019; customer rows never run them (they are not interactions). A
        #: historical import never runs them, whatever it is given.
        self.processors = [] if self.opts.historical else list(processors)
        if self.opts.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.types = types
        self.config = identity_config or IdentityConfig()
        self.mapper = RowMapper(self.opts.map_options(), types, self.config)
        self.on_error = on_error or (lambda e: None)
        self.on_warning = on_warning or (lambda e: None)
        self.on_progress = on_progress or (lambda rows, pos, size: None)
        self.on_file = on_file or (lambda path, size: None)

    # -- public ---------------------------------------------------------------------------

    def run(self, paths: Iterable[str]) -> ImportSummary:
        paths = list(paths)
        if self.opts.strict and "-" in paths:
            raise ValueError("strict mode reads its input twice, which standard input cannot do; "
                             "save it to a file first")
        summary = ImportSummary(files=len(paths), historical=self.opts.historical)
        t0 = time.perf_counter()
        try:
            with relaxed_collector():
                self._run(paths, summary)
        finally:
            summary.seconds = time.perf_counter() - t0
            summary.guesses = dict(self.mapper.guesses)
        return summary

    def _run(self, paths: list[str], summary: ImportSummary) -> None:
        if self.opts.strict and not self._validate_all(paths, summary):
            return
        summary.rows = 0
        summary.read_as.clear()
        self.mapper.guesses.clear()
        ingestor = self.ingestor() if self.ingestor is not None else ImportIngestor(
            self.store, Resolver(self.config), self.processors, source=self.opts.source)
        with ingestor as ing:
            for path in paths:
                if not self._apply_file(ing, path, summary):
                    break

    def prepare(self, row: Row, *, from_csv: bool = False) -> Event:
        """One shaped, validated record from one raw row; raises ``EventError``/``IdentityError``."""
        return self.mapper.prepare(row, from_csv=from_csv)

    def shape(self, row: Row, *, from_csv: bool = False) -> Row:
        """Apply ``--map``, nest dotted columns, apply ``--default``, expand identity shorthands."""
        return self.mapper.shape(row, from_csv=from_csv)

    # -- passes ----------------------------------------------------------------------------

    def _rows(self, path: str, summary: ImportSummary) -> tuple[Source, Rows, bool]:
        fmt = detect_format(path, self.opts.format)
        src = Source(path, self.opts.encoding)
        self.mapper.new_file()
        if fmt != "csv":
            return src, guard_reading(iter_jsonl(src.text, self.opts.encoding)), False
        delimiter = self.opts.delimiter or ("\t" if ".tsv" in Path(path).suffixes else None)

        def told(delim: str, sniffed: bool) -> None:
            if sniffed:
                summary.read_as.append(f"guessed: {Path(path).name} is split on {describe_delimiter(delim)} "
                                       "(from its header; --delimiter to say otherwise)")

        rows = iter_csv(src.text, delimiter, self.opts.encoding, on_delimiter=told)
        return src, guard_reading(rows), True

    def _refused(self, summary: ImportSummary, path: str, line: int, fld: str, reason: str) -> None:
        summary.rejected += 1
        if len(summary.refused_at) < SHOWN_LINES:
            summary.refused_at.append(f"{Path(path).name}:{line}")
        self.on_error(RowError(path, line, fld, reason))

    def _validate_all(self, paths: list[str], summary: ImportSummary) -> bool:
        """Strict mode, pass 1: every row and the store checks, writing nothing."""
        if self.ingestor is not None:  # through a hub: it checks the rows against its store
            with self.ingestor() as ing:
                return self._validate_remote(ing, paths, summary)
        with self.store.read() as folders:
            for path in paths:
                src, rows, from_csv = self._rows(path, summary)
                self.on_file(path, src.size)
                try:
                    for line, item in rows:
                        summary.rows += 1
                        err = self._check_row(folders, item, from_csv)
                        if err is not None:
                            self._refused(summary, path, line, *err)
                            summary.aborted = f"{path}:{line} is wrong, nothing was imported"
                            return False
                        if summary.rows % 1000 == 0:
                            folders.conn.cacheGC()
                            self.on_progress(summary.rows, src.position(), src.size)
                finally:
                    src.close()
        return True

    def _validate_remote(self, ing: Any, paths: list[str], summary: ImportSummary) -> bool:
        """Strict mode's pass 1 through a hub: rows are shaped here and checked there in batches
        (``ing.check``), so a refused row is reported with its file and line as offline."""
        return all(self._validate_remote_file(ing, path, summary) for path in paths)

    def _validate_remote_file(self, ing: Any, path: str, summary: ImportSummary) -> bool:
        src, rows, from_csv = self._rows(path, summary)
        self.on_file(path, src.size)
        batch: list[Event] = []
        lines: list[int] = []

        def refuse(line: int, fld: str, reason: str) -> bool:
            self._refused(summary, path, line, fld, reason)
            summary.aborted = f"{path}:{line} is wrong, nothing was imported"
            return False

        def check() -> bool:
            for r in ing.check(batch):
                return refuse(lines[r.index], r.error_field or "row", r.error or "rejected")
            batch.clear()
            lines.clear()
            startup_gc.settle_batch()  # the program's collector: the committed batch out of its sight
            self.on_progress(summary.rows, src.position(), src.size)
            return True

        try:
            for line, item in rows:
                summary.rows += 1
                if isinstance(item, Problem):
                    return refuse(line, item.field, item.reason)
                try:
                    batch.append(self.prepare(item, from_csv=from_csv))
                except (EventError, IdentityError) as exc:
                    return refuse(line, exc.field, exc.reason)
                lines.append(line)
                if len(batch) >= self.opts.batch_size and not check():
                    return False
            return not batch or check()
        finally:
            src.close()

    def _check_row(self, folders: Folders, item: Row | Problem, from_csv: bool) -> tuple[str, str] | None:
        if isinstance(item, Problem):
            return item.field, item.reason
        try:
            check_record(folders, self.prepare(item, from_csv=from_csv), self.config)
        except (EventError, IdentityError) as exc:
            return exc.field, exc.reason
        return None

    def _apply_file(self, ing: ImportIngestor, path: str, summary: ImportSummary) -> bool:
        """Pass over one file; returns False when a strict import must stop."""
        src, rows, from_csv = self._rows(path, summary)
        self.on_file(path, src.size)
        batch: list[Event] = []
        lines: list[int] = []
        size = self.opts.batch_size
        ok = True
        note = f"shopkeeper import{' --historical' if self.opts.historical else ''}: {Path(path).name}"

        def flush() -> bool:
            order = customer_order(batch)  # each customer's rows together: resolved once per batch
            results = ing.apply([batch[i] for i in order], note=note)
            # counted in one pass; only the rows with something to say (warnings, refusals) are put
            # back in file order to be reported — most batches have none (every row was put back and
            # sorted: 0.49 -> 0.12 µs a row, ~0.025 s of CDNOW's import)
            said = []
            applied = duplicates = created = 0
            for r in results:
                status = r.status
                if status == "applied":
                    applied += 1
                    if r.created:
                        created += 1
                    if r.warnings:
                        said.append(r)
                elif status == "duplicate":
                    duplicates += 1
                else:
                    said.append(r)
            summary.applied += applied
            summary.duplicates += duplicates
            summary.customers_created += created
            for r in said:
                r.index = order[r.index]
            said.sort(key=lambda r: r.index)  # warnings and refusals reported in file order
            good = True
            for r in said:
                if r.status == "applied":
                    for w in r.warnings:
                        summary.warnings += 1
                        self.on_warning(RowError(path, lines[r.index], "warning", w))
                else:
                    fld = r.error_field or "row"
                    reason = r.error or "rejected"
                    if reason.startswith(fld + ": "):
                        reason = reason[len(fld) + 2:]
                    self._refused(summary, path, lines[r.index], fld, reason)
                    good = False
            batch.clear()
            lines.clear()
            startup_gc.settle_batch()  # the program's collector: the committed batch out of its sight
            self.on_progress(summary.rows, src.position(), src.size)
            return good

        try:
            for line, item in rows:
                summary.rows += 1
                if summary.rows % PROGRESS_ROWS == 0:  # the bar moves between commits of a large batch
                    self.on_progress(summary.rows, src.position(), src.size)
                if isinstance(item, Problem):
                    self._refused(summary, path, line, item.field, item.reason)
                    if self.opts.strict:
                        ok = False
                        break
                    if item.fatal:  # nothing after it can be read
                        break
                    continue
                try:
                    batch.append(self.prepare(item, from_csv=from_csv))
                except (EventError, IdentityError) as exc:
                    self._refused(summary, path, line, exc.field, exc.reason)
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
