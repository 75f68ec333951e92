"""``shopkeeper export``: the click command over :mod:`shopkeeper.exporter` (a store file or a hub)."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import IO, Any

import click

from .cli_common import DEFAULT_STORE, hub_options, open_store_or_exit
from .exporter import ExportKind, ExportSummary, export, export_from_hub


@click.command("export")
@click.option("--store", "store_uri", default=None, envvar="SHOPKEEPER_STORE",
              help="Storage URI (default: $SHOPKEEPER_STORE or file://./var/Data.fs).")
@click.option("--kind", type=click.Choice(["customers", "interactions", "all"]), default="all", show_default=True,
              help="What to export; `all` writes every customer before the first interaction.")
@click.option("-o", "--output", "output", default="-", show_default=True,
              help="JSON Lines file to write (`-`: stdout; a .gz name is compressed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@hub_options
def export_cmd(store_uri: str | None, kind: ExportKind, output: str, quiet: bool, hub: Any) -> None:
    """Export customers and/or interactions as JSON Lines that `shopkeeper import` reads back.

    With --hub a running hub writes the same lines from one snapshot (Admin.Export)."""
    from tqdm import tqdm

    store = open_store_or_exit(store_uri or DEFAULT_STORE, options=_read_only()) if hub is None else None
    bar: Any = None
    try:
        expected = 0
        if store is not None:
            with store.read() as f:
                expected = (f.counter("customers") if kind != "interactions" else 0) + \
                           (f.counter("interactions") if kind != "customers" else 0)
        if not quiet and sys.stderr.isatty():
            bar = tqdm(total=expected or None, unit=" lines", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

        def run(out: IO[str]) -> ExportSummary:
            if hub is None:
                return export(store, out, kind, bar.update if bar else None)  # type: ignore[arg-type]
            return hub.call(export_from_hub, out, kind, bar.update if bar else None)

        if output == "-":
            summary = run(sys.stdout)
        else:
            path = Path(output)
            tmp = path.with_name(path.name + ".partial")
            raw = gzip.open(tmp, "wt", encoding="utf-8") if path.suffix == ".gz" else \
                open(tmp, "w", encoding="utf-8")  # noqa: SIM115
            try:
                with raw:
                    summary = run(raw)
                tmp.replace(path)  # a half-written export never carries the final name
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    finally:
        if bar is not None:
            bar.close()
        if store is not None:
            store.close()
    click.echo(summary.render(), err=True)


def _read_only() -> Any:
    from .store import StoreOptions

    return StoreOptions(read_only=True)
