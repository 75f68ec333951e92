"""The ``shopkeeper`` command line.

Each command lives beside the code it drives; this module only assembles the group, so
that adding a command never means editing a long file. Plugins add theirs through the
``shopkeeper_register_commands`` hook.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from . import __version__
from .cli_common import (  # re-exported: plugins' commands import these from shopkeeper.cli
    DEFAULT_STORE,
    HubTarget,
    find_customer_or_exit,
    hub_options,
    open_store_or_exit,
    store_option,
    who_ref,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="shopkeeper")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Shopkeeper: one living object per customer, shared by every touch point."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@main.command()
@store_option
@hub_options
@click.argument("who")
@click.option("--recent", default=10, show_default=True, help="How many recent interactions to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the view as JSON.")
def show(store_uri: str, hub: HubTarget | None, who: str, recent: int, as_json: bool) -> None:
    """Print the 360° view of WHO: a customer id or NAMESPACE:VALUE (email:ann@example.com)."""
    from .view import customer_view, render_text

    if hub is not None:
        from google.protobuf import json_format

        got = hub.call(lambda c: c.get_customer(recent=recent, **who_ref(who)))
        data = json_format.MessageToDict(got, preserving_proto_field_name=True)
        if as_json:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            import yaml

            click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
        return
    store = open_store_or_exit(store_uri)
    try:
        with store.read() as f:
            c = find_customer_or_exit(f, who)
            view = customer_view(c, recent=recent)
    finally:
        store.close()
    click.echo(json.dumps(view, indent=2, ensure_ascii=False) if as_json else render_text(view))


@main.command()
@store_option
def info(store_uri: str) -> None:
    """Store facts: generation, customers, interactions, size on disk."""
    store = open_store_or_exit(store_uri)
    try:
        with store.read() as f:
            data = {
                "store": store.description,
                "generation": int(f.meta.get("generation", 0)),
                "customers": f.counter("customers"),
                "interactions": f.counter("interactions"),
                "duplicates": f.counter("duplicates"),
                "forgotten": f.counter("forgotten"),
                "bytes": store.storage_size(),
            }
    finally:
        store.close()
    for k, v in data.items():
        click.echo(f"{k:<13} {v}")


@main.command()
@store_option
@click.option("--erased", is_flag=True,
              help="Also prove erasure: no tombstoned identity readable in any file of the storage directory.")
@click.option("--value", "values", multiple=True, metavar="TEXT",
              help="Also search every file of the storage directory for this exact text (repeatable).")
@click.option("--files", "files_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="With --erased/--value: scan this directory instead of the store's own (e.g. a ZEO "
                   "server's data directory on this machine).")
def doctor(store_uri: str, erased: bool, values: tuple[str, ...], files_dir: str | None) -> None:
    """Check a store's integrity, read-only: customers load, identities, merges and outbox agree.

    One line per check; exit status 0 when every check passes, 1 otherwise (docs/operations.md).
    """
    from .doctor import run
    from .store import StoreError

    try:
        checks = run(store_uri, erased=erased, values=values, files=files_dir)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    for ck in checks:
        click.echo(ck.line())
        for text in ck.problems:
            click.echo(f"  - {text}")
    bad = sum(ck.count for ck in checks)
    click.echo(f"{bad} problem(s)")
    if bad:
        raise SystemExit(1)


@main.command()
@store_option
@hub_options
@click.option("--days", default=0.0, show_default=True, help="Keep revisions newer than this many days.")
def pack(store_uri: str, hub: HubTarget | None, days: float) -> None:
    """Remove old object revisions (and erased personal data) from the storage.

    With --hub, the running hub packs through its writer (after every change it acknowledged);
    without, the store is opened here (no hub may hold it)."""
    if hub is not None:
        got = hub.call(lambda c: c.pack(days))
        click.echo(f"packed through {hub.addr}: {got.bytes_before} -> {got.bytes_after} bytes")
        return
    store = open_store_or_exit(store_uri)
    try:
        before = store.storage_size()
        store.pack(days=days)
        click.echo(f"packed {store.description}: {before} -> {store.storage_size()} bytes")
    finally:
        store.close()


@main.command()
def plugins() -> None:
    """List the loaded plugins (built-in and third-party) with their versions and hooks."""
    from .plugins import get_plugin_manager, plugin_versions, unknown_hooks

    pm = get_plugin_manager(check=False)  # a broken plugin is listed and marked, not fatal here
    bad = unknown_hooks(pm)
    hooks_by_plugin: dict[str, list[str]] = {}
    for name, plugin in pm.list_name_plugin():
        hooks_by_plugin[name] = sorted(h.name for h in pm.get_hookcallers(plugin) or [] if h.has_spec())
    rows = plugin_versions(pm)
    if not rows:
        click.echo("no plugins loaded")
    for name, version in rows:
        click.echo(f"{name:<40} {version:<10} {', '.join(hooks_by_plugin.get(name, []))}")
        for msg in bad.get(name, ()):
            click.echo(f"  BROKEN: unknown hook {msg}: the hub refuses to start with this plugin installed")
    if bad:
        raise SystemExit(1)


def _register_plugin_commands() -> None:
    try:
        from .plugins import call_each, get_plugin_manager

        # one by one: a plugin whose commands fail to load must not hide the others'
        call_each(get_plugin_manager(), "shopkeeper_register_commands", disable_on_error=False, cli=main)
    except Exception as exc:  # a broken plugin must not take the CLI down
        logging.getLogger(__name__).warning("plugin commands not loaded: %s", exc)


# Commands that live beside the code they drive.
from .demo import demo  # noqa: E402
from .exporter_cli import export_cmd  # noqa: E402
from .hub.cli import serve  # noqa: E402
from .importer.cli import import_cmd  # noqa: E402
from .ops.cli import backup, health, restore, storage  # noqa: E402
from .storage_cli import serve as storage_serve  # noqa: E402

main.add_command(demo)
main.add_command(serve)
main.add_command(import_cmd)
main.add_command(export_cmd)
main.add_command(backup)
main.add_command(restore)
main.add_command(health)
storage.add_command(storage_serve)
main.add_command(storage)
_register_plugin_commands()

__all__ = ["main", "DEFAULT_STORE", "HubTarget", "find_customer_or_exit", "hub_options", "open_store_or_exit",
           "store_option", "who_ref"]
