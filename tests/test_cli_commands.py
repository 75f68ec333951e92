"""The ``shopkeeper`` group loads its commands when named (``shopkeeper.cli._Commands``): the
tables it does that from must say what the code does."""

from __future__ import annotations

import importlib

import click
from click.testing import CliRunner

from shopkeeper import cli
from shopkeeper.plugins import BUILTIN_HOOKS, BUILTIN_PLUGINS, get_plugin_manager


def test_builtin_hooks_table_says_what_each_builtin_implements() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    real = {name: frozenset(h.name for h in pm.get_hookcallers(pm.get_plugin(name)) or []) for name in BUILTIN_PLUGINS}
    assert real == BUILTIN_HOOKS


def test_builtin_plugin_commands_table_names_every_builtin_command() -> None:
    real: dict[str, str] = {}
    for name in BUILTIN_PLUGINS:
        group = click.Group("probe")
        hook = getattr(importlib.import_module(name), "shopkeeper_register_commands", None)
        if hook is not None:
            hook(cli=group)
            real.update(dict.fromkeys(group.commands, name))
    assert real == cli.BUILTIN_PLUGIN_COMMANDS


def test_help_lists_every_command_and_each_runs_when_named() -> None:
    listed = cli.main.list_commands(click.Context(cli.main))
    assert set(cli.CORE_COMMANDS) | set(cli.BUILTIN_PLUGIN_COMMANDS) | {"show", "info", "doctor", "pack",
                                                                         "plugins"} <= set(listed)
    out = CliRunner().invoke(cli.main, ["--help"]).output
    assert all(f"  {name} " in out for name in ("models", "report", "import", "serve", "adapter", "campaign"))
    got = CliRunner().invoke(cli.main, ["storage", "--help"])
    assert got.exit_code == 0 and "serve" in got.output  # storage's serve is attached on load
