"""The ``shopkeeper`` command line.

Each command lives beside the code it drives; this module only assembles the group, so
that adding a command never means editing a long file. Plugins add theirs through the
``shopkeeper_register_commands`` hook.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from . import __version__

DEFAULT_STORE = os.environ.get("SHOPKEEPER_STORE", "file://./var/Data.fs")

store_option = click.option(
    "--store", "store_uri", default=DEFAULT_STORE, show_default=True, envvar="SHOPKEEPER_STORE",
    help="Storage URI: file:///path/Data.fs, memory://, zeo://host:port (env SHOPKEEPER_STORE).",
)


def open_store_or_exit(uri: str, **kwargs):  # type: ignore[no-untyped-def]
    from .store import Store, StoreError

    try:
        return Store.open(uri, **kwargs)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


def find_customer_or_exit(folders, who: str):  # type: ignore[no-untyped-def]
    """The customer WHO names (an id or ``namespace:value``), or a clean CLI error saying what was tried."""
    from .lookup import LookupError_, find_customer

    try:
        return find_customer(folders, who)
    except LookupError_ as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="shopkeeper")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Shopkeeper: one living object per customer, shared by every touch point."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@main.command()
@store_option
@click.argument("who")
@click.option("--recent", default=10, show_default=True, help="How many recent interactions to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the view as JSON.")
def show(store_uri: str, who: str, recent: int, as_json: bool) -> None:
    """Print the 360° view of WHO: a customer id or NAMESPACE:VALUE (email:ann@example.com)."""
    from .view import customer_view, render_text

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
@click.option("--days", default=0.0, show_default=True, help="Keep revisions newer than this many days.")
def pack(store_uri: str, days: float) -> None:
    """Remove old object revisions (and erased personal data) from the storage."""
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
    from .plugins import get_plugin_manager, plugin_versions

    pm = get_plugin_manager()
    hooks_by_plugin: dict[str, list[str]] = {}
    for name, plugin in pm.list_name_plugin():
        hooks_by_plugin[name] = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    rows = plugin_versions(pm)
    if not rows:
        click.echo("no plugins loaded")
    for name, version in rows:
        click.echo(f"{name:<40} {version:<10} {', '.join(hooks_by_plugin.get(name, []))}")


def _register_plugin_commands() -> None:
    try:
        from .plugins import call_each, get_plugin_manager

        # one by one: a plugin whose commands fail to load must not hide the others'
        call_each(get_plugin_manager(), "shopkeeper_register_commands", disable_on_error=False, cli=main)
    except Exception as exc:  # a broken plugin must not take the CLI down
        logging.getLogger(__name__).warning("plugin commands not loaded: %s", exc)


# Commands that live beside the code they drive.
from .demo import demo  # noqa: E402
from .exporter import export_cmd  # noqa: E402
from .hub.cli import serve  # noqa: E402
from .importer.cli import import_cmd  # noqa: E402

main.add_command(demo)
main.add_command(serve)
main.add_command(import_cmd)
main.add_command(export_cmd)
_register_plugin_commands()
