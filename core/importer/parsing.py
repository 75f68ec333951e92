"""Reading import files: CSV / delimited text and JSON Lines as a stream of rows, each with
the physical line it starts on, and every unreadable row turned into a :class:`Problem`
that names that line, so that one bad row never costs the rest of the file.

Bytes are decoded with the ``shopkeeper-mark`` error handler: an undecodable byte becomes
a lone surrogate instead of an exception raised somewhere in a read-ahead chunk (which is
what used to report the wrong line and skip the rest of the file). The rows are scanned
for such surrogates only while some are known to be outstanding, so clean files pay
nothing for it.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

Kind = Literal["auto", "customers", "interactions"]
Format = Literal["auto", "csv", "jsonl"]
Row = dict[str, Any]

CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".dat"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
#: ``--delimiter`` values meaning "one or more spaces or tabs" (no quoting), as in CDNOW's files.
WHITESPACE = frozenset({" ", "whitespace", r"\s+", "space", "spaces"})
#: Python's csv default; a longer field is refused for its row only.
FIELD_LIMIT = csv.field_size_limit()


class FormatError(ValueError):
    """The file's format cannot be told (the CLI turns it into a usage error)."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One refused row: where it is and what is wrong with it."""

    path: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.reason}"


class Problem:
    """A row that could not even be read (bad JSON, wrong number of fields, a bad byte).

    ``fatal``: nothing after it can be read (an empty header, a truncated .gz).
    """

    __slots__ = ("field", "reason", "fatal")

    def __init__(self, field: str, reason: str, fatal: bool = False) -> None:
        self.field, self.reason, self.fatal = field, reason, fatal


_Problem = Problem  # the name before the package split

Rows = Iterator[tuple[int, Row | Problem]]


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
    raise FormatError(f"{path}: cannot tell the format from the name; use --format csv or --format jsonl")


# -- decoding ------------------------------------------------------------------------------

_BAD = re.compile("[\udc80-\udcff]")


class _Marks:
    """How many bytes the decoder could not decode and no row has owned up to yet."""

    outstanding = 0


def _mark(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    _Marks.outstanding += len(bad)
    return "".join(chr(0xDC00 + b) for b in bad), exc.end


codecs.register_error("shopkeeper-mark", _mark)


def bad_bytes(values: Any, encoding: str) -> Problem | None:
    """A :class:`Problem` if any of ``values`` (strings) holds a byte the decoder could not read."""
    if not _Marks.outstanding:
        return None
    for i, v in enumerate(values):
        if isinstance(v, str):
            m = _BAD.search(v)
            if m is not None:
                n = len(_BAD.findall(v))
                _Marks.outstanding = max(0, _Marks.outstanding - n)
                where = f"column {i + 1}" if len(values) > 1 else "the line"
                return Problem("encoding", f"byte 0x{ord(m.group()) - 0xDC00:02x} in {where} is not valid "
                                           f"{encoding}; use --encoding (e.g. cp1252)")
    return None


class Source:
    """An input file as text, with its byte position for the progress bar."""

    def __init__(self, path: str, encoding: str) -> None:
        self.path = path
        self.encoding = encoding
        _Marks.outstanding = 0
        if path == "-":
            self.raw: IO[bytes] = sys.stdin.buffer
            self.size = 0
        else:
            self.raw = open(path, "rb")  # noqa: SIM115 (closed in close())
            self.size = Path(path).stat().st_size
        binary: IO[bytes] = gzip.GzipFile(fileobj=self.raw) if path.endswith(".gz") else self.raw
        self.text = io.TextIOWrapper(binary, encoding=encoding, errors="shopkeeper-mark", newline="")

    def position(self) -> int:
        try:
            return self.raw.tell() if self.size else 0
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self.path != "-":
            self.text.close()


# -- delimited text ------------------------------------------------------------------------


def sniff_delimiter(first_line: str) -> str:
    """The most frequent of , ; TAB | in the header; runs of blanks when there is none of them."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best]:
        return best
    return "whitespace" if len(first_line.split()) > 1 else ","


def describe_delimiter(delim: str) -> str:
    return {"whitespace": "runs of blanks", "\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(
        delim, repr(delim))


def normalise_delimiter(delimiter: str | None) -> str | None:
    """``--delimiter`` as given: ``\\t``/``tab`` → TAB, any of :data:`WHITESPACE` → ``whitespace``."""
    if delimiter is None or delimiter == "":
        return None
    if delimiter in WHITESPACE:
        return "whitespace"
    if delimiter in (r"\t", "tab"):
        return "\t"
    return delimiter


def iter_csv(text: IO[str], delimiter: str | None = None, encoding: str = "utf-8",
             on_delimiter: Any = None) -> Rows:
    """Rows as dicts (empty cells are ``None``) with the physical line each starts on.

    ``delimiter``: one character (CSV quoting applies), ``whitespace`` (runs of spaces and
    tabs, no quoting) or any longer string (split on it, no quoting); ``None`` sniffs the
    header. ``on_delimiter(delim, sniffed)`` is told what was used.
    """
    header_line = text.readline()
    if not header_line.strip():
        yield 1, Problem("header", "the file is empty or its first line is blank; CSV needs a header",
                         True)
        return
    delim = normalise_delimiter(delimiter)
    sniffed = delim is None
    if delim is None:
        delim = sniff_delimiter(header_line)
    if on_delimiter is not None:
        on_delimiter(delim, sniffed)
    if len(delim) == 1:
        header = next(csv.reader([header_line], delimiter=delim))
    else:
        header = _split(header_line, delim)
    header = [h.strip() for h in header]
    problem = bad_bytes(header, encoding)
    if problem is not None:
        yield 1, Problem("header", problem.reason, True)
        return
    seen: set[str] = set()
    for i, h in enumerate(header, 1):
        if not h:
            yield 1, Problem("header", f"column {i} has no name (delimiter: {describe_delimiter(delim)}; "
                                       "--delimiter whitespace splits on runs of blanks)", True)
            return
        if h in seen:
            yield 1, Problem("header", f"column {h!r} appears twice", True)
            return
        seen.add(h)
    if len(delim) == 1:
        yield from _csv_rows(text, header, delim, encoding)
    else:
        yield from _split_rows(text, header, delim, encoding)


def _split(line: str, delim: str) -> list[str]:
    line = line.rstrip("\r\n")
    return line.split() if delim == "whitespace" else line.split(delim)


def _split_rows(text: IO[str], header: list[str], delim: str, encoding: str) -> Rows:
    width = len(header)
    for n, line in enumerate(text, 2):
        rec = _split(line, delim)
        if not rec or not any(rec):
            continue
        problem = bad_bytes(rec, encoding)
        if problem is not None:
            yield n, problem
            continue
        if len(rec) != width:
            yield n, Problem("row", f"{len(rec)} fields, but the header has {width}")
            continue
        yield n, {h: (v if v != "" else None) for h, v in zip(header, rec, strict=True)}


def _csv_rows(text: IO[str], header: list[str], delim: str, encoding: str) -> Rows:
    width = len(header)
    reader = csv.reader(text, delimiter=delim)
    prev = 1  # the header was read outside the reader: its line_num is one short
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # the reader starts afresh at the next line: only this row is lost
            start, prev = prev + 1, reader.line_num + 1
            reason = str(exc)
            if "field larger than field limit" in reason:
                reason = f"a field is longer than {FIELD_LIMIT // 1024} KiB (the limit per field)"
            yield start, Problem("csv", reason)
            continue
        start, prev = prev + 1, reader.line_num + 1
        if not rec or not any(rec):
            continue  # a blank line, or a row of empty cells a spreadsheet left behind
        problem = bad_bytes(rec, encoding)
        if problem is not None:
            yield start, problem
            continue
        if len(rec) != width:
            yield start, Problem("row", f"{len(rec)} fields, but the header has {width}")
            continue
        yield start, {h: (v if v != "" else None) for h, v in zip(header, rec, strict=True)}


# -- JSON Lines ----------------------------------------------------------------------------


def iter_jsonl(text: IO[str], encoding: str = "utf-8") -> Rows:
    """One JSON object per line; blank lines are skipped but counted."""
    loads = json.loads
    for n, line in enumerate(text, 1):
        if not line.strip():
            continue
        problem = bad_bytes((line,), encoding)
        if problem is not None:
            yield n, problem
            continue
        try:
            obj = loads(line)
        except ValueError as exc:
            yield n, Problem("json", f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            yield n, Problem("row", f"must be a JSON object, not {type(obj).__name__}")
            continue
        yield n, obj


def guard_reading(rows: Rows) -> Rows:
    """A truncated .gz or a failing device: report it on the line where reading stopped."""
    line = 0
    try:
        for line, item in rows:
            yield line, item
    except (OSError, EOFError) as exc:
        yield line + 1, Problem("file", f"{exc}; nothing after this line could be read", True)
