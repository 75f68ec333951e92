"""The command line: every command documents itself; demo, show, info and pack work."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from shopkeeper import __version__
from shopkeeper.cli import main


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, through click's own listing (``list_commands``/``get_command``): the
    ``shopkeeper`` group loads a command's module only when it is named, so ``group.commands``
    holds only those already loaded and walking it silently skipped most commands."""
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, (*prefix, name))
    return out


def test_version() -> None:
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_the_help_walk_reaches_lazily_loaded_commands() -> None:
    """The walk below must see the commands the group loads on demand (it saw 16 fewer once the
    CLI became lazy, and the suite still passed)."""
    paths = set(all_commands(main))
    assert {("serve",), ("models", "fit"), ("report", "scores"), ("campaign", "dry-run"), ("import",)} <= paths


@pytest.mark.parametrize("path", all_commands(main), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    r = CliRunner().invoke(main, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output
    cmd: click.Command = main
    for part in path:
        cmd = cmd.get_command(click.Context(cmd), part)  # type: ignore[attr-defined]
    assert (cmd.help or "").strip(), f"`shopkeeper {' '.join(path)}` has no help text"


def test_demo_show_info_pack(tmp_path) -> None:
    uri = f"file://{tmp_path}/demo.fs"
    runner = CliRunner()
    r = runner.invoke(main, ["demo", "--store", uri, "--customers", "30"])
    assert r.exit_code == 0, r.output
    assert "Customer " in r.output and "ann.0@example.org" in r.output
    again = runner.invoke(main, ["demo", "--store", uri, "--customers", "30"])
    assert "0 events applied" in again.output  # idempotent re-run

    r = runner.invoke(main, ["show", "--store", uri, "email:ANN.0@example.org", "--json"])
    assert r.exit_code == 0, r.output
    view = json.loads(r.output)
    assert {"email", "cookie"} <= {i["namespace"] for i in view["identities"]}
    assert view["hard_facts"]["interactions"] >= 2

    r = runner.invoke(main, ["show", "--store", uri, view["id"]])
    assert r.exit_code == 0 and view["id"] in r.output

    r = runner.invoke(main, ["show", "--store", uri, "email:nobody@example.org"])
    assert r.exit_code == 1 and "no customer with email 'nobody@example.org'" in r.output

    r = runner.invoke(main, ["info", "--store", uri])
    assert r.exit_code == 0 and "customers     30" in r.output

    r = runner.invoke(main, ["pack", "--store", uri])
    assert r.exit_code == 0 and "packed" in r.output


def test_bad_store_uri_is_a_clean_error() -> None:
    r = CliRunner().invoke(main, ["info", "--store", "ftp://nowhere/x"])
    assert r.exit_code == 1
    assert "unknown storage scheme 'ftp'" in r.output
