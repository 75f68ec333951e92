"""The command line: every command documents itself; demo, show, info and pack work."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from shopkeeper import __version__
from shopkeeper.cli import main


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, (*prefix, name))
    return out


def test_version() -> None:
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


@pytest.mark.parametrize("path", all_commands(main), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    r = CliRunner().invoke(main, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output
    cmd = main
    for part in path:
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
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
