"""``shopkeeper import``: the command line over :class:`~.importer.Importer` (progress bar,
error report file, summary, exit status)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from ..cli_common import HubTarget, hub_options, teardown_not_needed
from ..events import EventTypes
from ..identity import IdentityConfig
from .importer import Importer, ImportOptions
from .mapping import TIME_UNITS, RowMapper, UsageError, parse_assignments
from .parsing import Format, FormatError, Kind, RowError, detect_format


class _NoRpcError(Exception):
    """Stands in for ``grpc.RpcError`` in an offline import, which is never raised there."""


def load_vocabulary() -> tuple[EventTypes, IdentityConfig]:
    """Event types and identity namespaces including what installed plugins contribute."""
    types = EventTypes()
    config = IdentityConfig()
    try:
        from ..plugins import builtins_implementing, get_plugin_manager

        # only the built-ins that contribute vocabulary: the channel adapters' packages pull grpc
        pm = get_plugin_manager(builtins=builtins_implementing("shopkeeper_event_types",
                                                               "shopkeeper_identity_namespaces"))
        for contributed in pm.hook.shopkeeper_event_types():
            for et in contributed or ():
                types.register(et)
        for contributed in pm.hook.shopkeeper_identity_namespaces():
            for ns in contributed or ():
                config.namespaces[ns.name] = ns
    except Exception as exc:  # a broken plugin must not stop an import of built-in types
        click.echo(f"warning: plugin vocabulary not loaded: {exc}", err=True)
    return types, config


@click.command("import")
@click.option("--store", "store_uri", default=None, envvar="SHOPKEEPER_STORE",
              help="Storage URI (default: $SHOPKEEPER_STORE or file://./var/Data.fs).")
@hub_options
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
@click.option("--batch", "batch_size", type=click.IntRange(1, 100_000), default=10_000, show_default=True,
              help="Rows per transaction (a kill loses at most the open batch; running again adds it).")
@click.option("--strict", is_flag=True, help="Validate everything first; on any error write nothing.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the per-row error report to this file.")
@click.option("--source", default="import", show_default=True,
              help="Provenance recorded on identities, consents and soft facts.")
@click.option("--delimiter", default=None,
              help="Field delimiter: one character (CSV quoting applies), 'whitespace' or ' ' for runs of "
                   "blanks (e.g. CDNOW's files), '\\t', or any string (default: guessed from the header).")
@click.option("--date-format", default=None, metavar="STRFTIME",
              help="How text times are written, e.g. %Y%m%d or '%d/%m/%Y %H:%M' (UTC unless %z).")
@click.option("--time-unit", type=click.Choice(list(TIME_UNITS)), default=None,
              help="Unit of numeric times (default: seconds since 1970; ISO 8601 text always works).")
@click.option("--historical", is_flag=True,
              help="Loading history: accept times before 2000 (back to 1900) and run no rules or messages.")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="Text encoding of the files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def import_cmd(store_uri: str | None, hub: HubTarget | None, files: tuple[str, ...], fmt: Format, kind: Kind,
               maps: tuple[str, ...], defaults: tuple[str, ...], batch_size: int, strict: bool,
               errors_path: str | None, source: str, delimiter: str | None, date_format: str | None,
               time_unit: str | None, historical: bool, encoding: str, quiet: bool) -> None:
    """Import customers or interactions from CSV / JSON Lines FILES (`-` for stdin).

    Every refused row is reported as FILE:LINE: FIELD: REASON; the exit status is 1 if any
    row was refused. Re-importing a file counts its rows once (idempotency keys).

    With --hub, the rows go to the running hub in batches, with the same progress and per-row
    errors; it applies them through its writer (interaction rows run its rules, as for any touch
    point, unless --historical).
    """
    from ..cli_common import DEFAULT_STORE, open_store_or_exit

    if strict and "-" in files:
        raise click.BadParameter("--strict reads the input twice; save standard input to a file first",
                                 param_hint="FILES")
    for f in files:
        if f != "-" and not Path(f).is_file():
            raise click.BadParameter(f"{f}: no such file", param_hint="FILES")
        try:
            detect_format(f, fmt)
        except FormatError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        options = ImportOptions(kind=kind, format=fmt, mapping=parse_assignments(maps, "--map"),
                                defaults=parse_assignments(defaults, "--default"), batch_size=batch_size,
                                strict=strict, source=source, delimiter=delimiter, encoding=encoding,
                                date_format=date_format, time_unit=time_unit, historical=historical)
        types, config = load_vocabulary()
        RowMapper(options.map_options(), types, config)  # option values checked before the store opens
    except UsageError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None
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
            from tqdm import tqdm  # only with a bar to show: --quiet and a pipe do without its import

            bar = tqdm(total=size or None, unit="B", unit_scale=True, desc=Path(path).name, file=sys.stderr,
                       dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
                                                      "{postfix}")

    def on_progress(rows: int, pos: int, size: int) -> None:
        if bar is not None:
            bar.update(max(0, pos - bar.n))
            rate = rows / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{rows:,} rows, {rate:,.0f} rows/s", refresh=True)

    store = open_store_or_exit(store_uri or DEFAULT_STORE) if hub is None else None
    ingestor = None
    rpc_error: type[BaseException] = _NoRpcError  # an offline import never imports grpc (issue 15's start-up)
    if hub is not None:
        from grpc import RpcError

        from .remote import HubIngestor

        rpc_error = RpcError

        ingestor = lambda: HubIngestor(hub.client(), historical=historical, source=source)  # noqa: E731
    try:
        if errors_path:
            report = open(errors_path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        importer = Importer(store, options, types=types, identity_config=config, on_error=on_error,  # type: ignore[arg-type]
                            on_warning=on_warning, on_progress=on_progress, on_file=on_file, ingestor=ingestor)
        summary = importer.run(files)
    except rpc_error as exc:
        raise click.ClickException(f"hub {hub.addr if hub else ''}: {exc.code().name}: {exc.details()} "  # type: ignore[attr-defined]
                                   "(rows before this batch are committed; re-running skips them)") from exc
    finally:
        if bar is not None:
            bar.close()
        if report is not None:
            report.close()
        if store is not None:
            store.close()
    click.echo(summary.render(), err=True)
    if summary.rejected:
        sys.exit(1)
    if store is not None:  # offline, store closed: no interpreter shutdown (~1.5 s of CPU at load on CDNOW)
        teardown_not_needed()
