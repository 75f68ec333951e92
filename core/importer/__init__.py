"""Bulk import of customers and interactions from delimited text and JSON Lines files.

One module per job: :mod:`.parsing` reads files into rows (with their line numbers),
:mod:`.mapping` shapes rows into validated records, :mod:`.records` applies them through
the Ingestor, :mod:`.importer` runs the passes and keeps the summary, and :mod:`.cli` is
the ``shopkeeper import`` command. The names below are the package's API (they were the
old single module's, so ``from shopkeeper.importer import Importer`` keeps working).
"""

from __future__ import annotations

from .importer import Importer, ImportOptions, ImportSummary
from .mapping import MapOptions, RowMapper, UsageError, parse_assignments, split_path
from .parsing import FormatError, Problem, RowError, detect_format, iter_csv, iter_jsonl
from .records import (
    CustomerRecord,
    ImportedInteraction,
    ImportIngestor,
    check_customer_record,
    check_tombstones,
    normalize_for_store,
    pinned_customer,
)


def __getattr__(name: str) -> object:
    """``import_cmd`` / ``load_vocabulary`` live in the CLI module; loaded only when asked for."""
    if name in ("import_cmd", "load_vocabulary"):
        from . import cli

        return getattr(cli, name)
    raise AttributeError(name)


__all__ = ["Importer", "ImportOptions", "ImportSummary", "ImportIngestor", "CustomerRecord",
           "ImportedInteraction", "RowError", "Problem", "FormatError", "UsageError", "MapOptions", "RowMapper",
           "detect_format", "iter_csv", "iter_jsonl", "parse_assignments", "split_path", "check_customer_record",
           "check_tombstones", "normalize_for_store", "pinned_customer", "import_cmd", "load_vocabulary"]
