"""The ``shopkeeper`` command line.

Each command lives beside the code it drives; this module only assembles the group, so
that adding a command never means editing a long file. Plugins add theirs through the
``shopkeeper_register_commands`` hook.

The group loads a command when it is asked for (:class:`_Commands`): ``shopkeeper models fit``
imports the analysis commands and nothing of the hub, the gRPC client, the channel adapters or
the importer. Start-up was ~1.2 s of CPU per command when every command module and every
plugin was imported first — three commands' start-up alone were most of the CDNOW walk-through's
5 s budget (issue 15). ``shopkeeper --help`` (and any name not known here) loads them all.
"""

from __future__ import annotations

from .analysis.phases import mark

mark("start")  # the interpreter, site and the package's __init__ (pluggy): our first line

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402

# One BLAS thread for the program unless the user says otherwise, set before numpy's first
# import (OpenBLAS reads it when it loads). Our numerical work is vectors of a few thousand
# elements (a 4-parameter fit, scores): OpenBLAS's extra threads do not speed it up, and after
# each large-enough dot product they spin for their wake-up timeout on another core — in
# `models fit` on CDNOW that spinning was 0.26 of the fit's 0.32 s of CPU at load 16 (0.06
# with one thread, the same parameters), and in a hub it would take a core from the writer.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import sys  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from . import __version__  # noqa: E402
from . import startup_gc as collector  # noqa: E402
from .cli_common import (  # noqa: E402 — re-exported: plugins' commands import these from shopkeeper.cli
    DEFAULT_STORE,
    HubTarget,
    end_without_teardown,
    find_customer_or_exit,
    hub_options,
    open_store_or_exit,
    store_option,
    who_ref,
)

#: Commands that live beside the code they drive: name -> (module, attribute), imported on use.
CORE_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (".demo", "demo"),
    "serve": (".hub.cli", "serve"),
    "import": (".importer.cli", "import_cmd"),
    "export": (".exporter_cli", "export_cmd"),
    "backup": (".ops.cli", "backup"),
    "restore": (".ops.cli", "restore"),
    "health": (".ops.cli", "health"),
    "storage": (".ops.cli", "storage"),
}

#: The commands the built-in plugins register, by the plugin that registers them: naming one
#: loads that plugin's commands (and every third-party plugin's, which may replace it) instead of
#: importing every built-in. ``tests/test_cli_startup.py`` checks it against the plugins' hooks.
BUILTIN_PLUGIN_COMMANDS: dict[str, str] = {
    "models": "shopkeeper.analysis.plugin",
    "segments": "shopkeeper.analysis.plugin",
    "offers": "shopkeeper.analysis.plugin",
    "report": "shopkeeper.analysis.plugin",
    "rules": "shopkeeper.rules.plugin",
    "outbox": "shopkeeper.rules.plugin",
    "timers": "shopkeeper.rules.plugin",
    "campaign": "shopkeeper.campaigns.plugin",
    "adapter": "shopkeeper.adapters.base",
}


class _Commands(click.Group):
    """The ``shopkeeper`` group: its commands are imported when named (:data:`CORE_COMMANDS`,
    :data:`BUILTIN_PLUGIN_COMMANDS`), every one of them when listed (``--help``) or when a name
    is not known here (a third-party plugin's command)."""

    _plugins_loaded: set[str] | None = None  # the built-in plugins whose commands are registered

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """As click's, but the program run from a shell (no ``args`` given, standalone) ends a
        successful command that said :func:`~shopkeeper.cli_common.teardown_not_needed` without
        the interpreter's shutdown (``cli_common.end_without_teardown``)."""
        try:
            if args is None and standalone_mode:  # the program itself: no collections while it imports
                collector.pause_for_startup()
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        except SystemExit as exc:
            if args is None and standalone_mode and exc.code in (0, None):
                end_without_teardown()
            raise

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            if cmd_name in CORE_COMMANDS:
                self._add_core(cmd_name)
            elif cmd_name in BUILTIN_PLUGIN_COMMANDS:
                self._add_plugin_commands((BUILTIN_PLUGIN_COMMANDS[cmd_name],))
            else:
                self._add_everything()
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        self._add_everything()
        return sorted(self.commands)

    def _add_core(self, name: str) -> None:
        import importlib

        module, attr = CORE_COMMANDS[name]
        cmd = getattr(importlib.import_module(module, __package__), attr)
        if name == "storage" and "serve" not in cmd.commands:
            from .storage_cli import serve as storage_serve

            cmd.add_command(storage_serve)
        self.add_command(cmd, name)

    def _add_everything(self) -> None:
        for name in CORE_COMMANDS:
            if name not in self.commands:
                self._add_core(name)
        self._add_plugin_commands(None)

    def _add_plugin_commands(self, builtins: tuple[str, ...] | None) -> None:
        """Run ``shopkeeper_register_commands`` of ``builtins`` (None: every built-in that has
        commands), each once, and the first time of every third-party plugin too. Third-party
        plugins run first (pluggy calls the last registered first), so one may replace a built-in's
        command: the built-ins add only names still missing."""
        from .plugins import builtins_implementing, call_each, get_plugin_manager

        wanted = builtins_implementing("shopkeeper_register_commands") if builtins is None else builtins
        first = self._plugins_loaded is None
        done = self._plugins_loaded = self._plugins_loaded or set()
        todo = tuple(m for m in wanted if m not in done)
        if not (todo or first):
            return
        done.update(todo)
        try:
            # one by one: a plugin whose commands fail to load must not hide the others'
            call_each(get_plugin_manager(load_entrypoints=first, builtins=todo), "shopkeeper_register_commands",
                      disable_on_error=False, cli=self)
        except Exception as exc:  # a broken plugin must not take the CLI down
            logging.getLogger(__name__).warning("plugin commands not loaded: %s", exc)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="shopkeeper")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Shopkeeper: one living object per customer, shared by every touch point."""
    mark("commands")  # click has parsed the group and loaded the command named (its plugins)
    collector.resume_after_startup()  # what the start-up imported, frozen; collections from here
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


mark("cli")  # shopkeeper.cli imported

__all__ = ["main", "DEFAULT_STORE", "HubTarget", "find_customer_or_exit", "hub_options", "open_store_or_exit",
           "store_option", "who_ref"]
