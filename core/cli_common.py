"""What the CLI modules share: the --store and --hub options, opening a store, naming a customer.

Every command module (``shopkeeper.cli``, ``rules.cli``, ``campaigns.cli``, ``importer.cli``,
``exporter_cli``, ...) imports these from here rather than from ``shopkeeper.cli``, which
assembles the command group and imports the command modules: importing helpers from it made
domain modules and the group import each other. ``shopkeeper.cli`` re-exports them for plugins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_STORE = os.environ.get("SHOPKEEPER_STORE", "file://./var/Data.fs")

store_option = click.option(
    "--store", "store_uri", default=DEFAULT_STORE, show_default=True, envvar="SHOPKEEPER_STORE",
    help="Storage URI: file:///path/Data.fs, memory://, zeo://host:port (env SHOPKEEPER_STORE).",
)


def open_store_or_exit(uri: str, **kwargs):  # type: ignore[no-untyped-def]
    """Open the store an offline command works on, with the installed plugins' named evolve steps
    (their folders, and the indexes they keep current on every write). Of the built-ins, only
    those with evolve steps are imported: the channel adapters have none, and importing them
    (grpc, asyncio, uvicorn) cost every offline command a third of a second of CPU."""
    from .plugins import PluginError, builtins_implementing, evolve_steps, get_plugin_manager
    from .store import Store, StoreError

    try:
        kwargs.setdefault("steps", evolve_steps(get_plugin_manager(
            check=False, builtins=builtins_implementing("shopkeeper_evolve_steps"))))
        return Store.open(uri, **kwargs)
    except PluginError as exc:
        raise click.ClickException(str(exc)) from exc
    except StoreError as exc:
        if "lock" in str(exc).lower():  # FileStorage's "Couldn't lock": almost always a running hub
            raise click.ClickException(
                f"{exc}\nThe store is in use, most likely by a running hub. Ask the hub instead: add "
                "--hub HOST:PORT (and --api-key) to this command or set SHOPKEEPER_HUB; or stop the hub.") from exc
        raise click.ClickException(str(exc)) from exc


class HubTarget:
    """Where a CLI command finds a running hub, and how it authenticates (the SDK's options)."""

    def __init__(self, addr: str, api_key: str | None, tls: bool, ca_cert: str | None, client_cert: str | None,
                 client_key: str | None) -> None:
        self.addr, self.api_key, self.tls = addr, api_key, tls
        self.files = (ca_cert, client_key, client_cert)

    def client(self):  # type: ignore[no-untyped-def]
        from pathlib import Path

        from .client import Client

        ca, key, cert = (Path(p).read_bytes() if p else None for p in self.files)
        return Client(self.addr, self.api_key, tls=self.tls, root_certificates=ca, private_key=key,
                      certificate_chain=cert, retries=2)

    def call(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        """``fn(client, ...)``; a gRPC error becomes a one-line CLI error naming the hub and the reason."""
        import grpc

        with self.client() as c:
            try:
                return fn(c, *args, **kwargs)
            except grpc.RpcError as exc:
                raise click.ClickException(f"hub {self.addr}: {exc.code().name}: {exc.details()}") from exc


def hub_options(f):  # type: ignore[no-untyped-def]
    """``--hub`` (env SHOPKEEPER_HUB), ``--api-key`` and the TLS options, passed as ``hub``:
    a :class:`HubTarget`, or None to work on the store file as before."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, hub_addr, api_key, tls, ca_cert, client_cert, client_key, **kw):  # type: ignore[no-untyped-def]
        kw["hub"] = HubTarget(hub_addr, api_key, tls, ca_cert, client_cert, client_key) if hub_addr else None
        return f(*args, **kw)

    path = click.Path(exists=True, dir_okay=False)
    for opt in reversed([
        click.option("--hub", "hub_addr", envvar="SHOPKEEPER_HUB", default=None,
                     help="HOST:PORT of a running hub: ask it instead of opening the store (env SHOPKEEPER_HUB)."),
        click.option("--api-key", envvar="SHOPKEEPER_API_KEY", default=None, help="API key for --hub."),
        click.option("--tls", is_flag=True, help="Connect to --hub with TLS."),
        click.option("--ca-cert", type=path, default=None, help="PEM CA bundle to verify the hub (implies --tls)."),
        click.option("--client-cert", type=path, default=None, help="PEM client certificate (mutual TLS)."),
        click.option("--client-key", type=path, default=None, help="PEM key of --client-cert."),
    ]):
        wrapper = opt(wrapper)
    return wrapper


_done_and_closed = False


def teardown_not_needed() -> None:
    """Said by an offline command that has finished and closed what it opened (its store, its
    files, no thread left running): the ``shopkeeper`` program may then end the process without
    the interpreter's shutdown, which frees every object one by one — after a fit or a report on
    CDNOW's 23,570 customers, ~0.1-0.3 s of CPU of the walk-through's 5 s for nothing the OS would
    not free at once (issue 15). Only the program run from a shell does so
    (:meth:`shopkeeper.cli._Commands.main`), and only on success; a command run in-process
    (tests, ``main([...])``, click's test runner) returns as before."""
    global _done_and_closed
    _done_and_closed = True


def end_without_teardown() -> None:
    """If the command said :func:`teardown_not_needed`: flush what Python would flush at exit
    (the standard streams, logging's handlers, the phases) and end the process with status 0."""
    if not _done_and_closed:
        return
    import logging

    from .analysis import phases

    try:
        phases.dump()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: let the ordinary exit report it
        return
    os._exit(0)


def who_ref(who: str) -> dict:
    """WHO (a customer id or NAMESPACE:VALUE) as the SDK's keyword arguments."""
    ns, sep, value = who.partition(":")
    return {"identity": (ns, value)} if sep else {"id": who}


def find_customer_or_exit(folders, who: str):  # type: ignore[no-untyped-def]
    """The customer WHO names (an id or ``namespace:value``), or a clean CLI error saying what was tried."""
    from .lookup import LookupError_, find_customer

    try:
        return find_customer(folders, who)
    except LookupError_ as exc:
        raise click.ClickException(str(exc)) from exc


def adapter_templates(config_file: str | None) -> dict[str, set[str]]:
    """Channel -> template names the installed channel adapters declare
    (``shopkeeper_message_templates``) for the hub config's ``adapters:`` section, or for no
    section without a config (the adapters' built-in templates)."""
    import yaml

    from .plugins import get_plugin_manager, message_templates

    data: Any = {}
    if config_file:
        try:
            data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise click.ClickException(f"{config_file}: cannot read the hub config: {exc}") from exc
    try:
        pm = get_plugin_manager()
    except Exception as exc:  # a broken plugin must not stop a rule author (reported by _vocabulary)
        click.echo(f"warning: plugins not loaded, templates not checked: {exc}", err=True)
        return {}
    return message_templates(pm, (data.get("adapters") or {}) if isinstance(data, dict) else {})
