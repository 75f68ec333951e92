"""``shopkeeper adapter …``: list installed adapters, check a config, run one as its own process."""

from __future__ import annotations

import signal
import sys
import threading

import click


def _classes() -> dict:
    from shopkeeper.plugins import get_plugin_manager

    from .base import adapter_classes

    return adapter_classes(get_plugin_manager())


@click.group("adapter")
def adapter_group() -> None:
    """Touch-point adapters: list, check a config, run one out of the hub."""


@adapter_group.command("list")
def list_cmd() -> None:
    """Installed adapters with their channels and settings."""
    import dataclasses

    for name, cls in sorted(_classes().items()):
        fields = ", ".join(f.name for f in dataclasses.fields(cls.Config))
        click.echo(f"{name:<16} channels={','.join(cls.channels) or '-':<10} settings: {fields or '-'}")


@adapter_group.command("check")
@click.argument("name")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Hub config file (its adapters.NAME section) or a file holding just the adapter's settings.")
def check_cmd(name: str, config_file: str) -> None:
    """Validate NAME's settings against its schema; print every problem."""
    from .base import AdapterConfigError, load_config_file, validate_config

    cls = _classes().get(name)
    if cls is None:
        raise click.ClickException(f"no installed adapter named {name!r} (known: {', '.join(sorted(_classes()))})")
    try:
        config = validate_config(name, cls.Config, load_config_file(config_file, name))
    except AdapterConfigError as exc:
        for e in exc.errors:
            click.echo(e, err=True)
        raise SystemExit(1) from None
    from .delivery import ChannelAdapter, no_journal_warning

    if issubclass(cls, ChannelAdapter) and not getattr(config, "journal", None):
        click.echo(f"warning: {no_journal_warning(name)}", err=True)
    click.echo(f"adapter.{name}: ok")


@adapter_group.command("run")
@click.argument("name")
@click.option("--hub", "hub_addr", required=True, envvar="SHOPKEEPER_HUB", help="The hub's gRPC address, host:port.")
@click.option("--api-key", envvar="SHOPKEEPER_API_KEY", default=None, help="API key (env SHOPKEEPER_API_KEY).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Hub config file (its adapters.NAME section) or a file holding just the adapter's settings.")
@click.option("--tls", is_flag=True, envvar="SHOPKEEPER_TLS",
              help="Connect with TLS, trusting the system's CAs (implied by --tls-ca/--tls-cert).")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), envvar="SHOPKEEPER_TLS_CA", default=None,
              help="PEM file of the CA that signed the hub's certificate.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), envvar="SHOPKEEPER_TLS_CERT",
              default=None, help="Client certificate (PEM) for a hub that requires mutual TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), envvar="SHOPKEEPER_TLS_KEY", default=None,
              help="Private key (PEM) of --tls-cert.")
def run_cmd(name: str, hub_addr: str, api_key: str | None, config_file: str | None, tls: bool,
            tls_ca: str | None, tls_cert: str | None, tls_key: str | None) -> None:
    """Run adapter NAME as its own process, talking to the hub over gRPC, until SIGTERM/Ctrl-C."""
    from pathlib import Path

    from .base import AdapterConfigError, AdapterStartError, HubError, RemoteHub, load_config_file, run_adapter

    cls = _classes().get(name)
    if cls is None:
        raise click.ClickException(f"no installed adapter named {name!r} (known: {', '.join(sorted(_classes()))})")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if bool(tls_cert) != bool(tls_key):
        raise click.ClickException("give both --tls-cert and --tls-key (mutual TLS), or neither")

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    hub = RemoteHub(hub_addr, api_key, touchpoint=name, tls=tls, root_certificates=read(tls_ca),
                    private_key=read(tls_key), certificate_chain=read(tls_cert))
    try:
        secure = " (TLS)" if tls or tls_ca or tls_cert else ""
        click.echo(f"adapter {name} running against {hub_addr}{secure}", err=True)
        sys.stderr.flush()
        run_adapter(cls, load_config_file(config_file, name), hub, stop)
    except AdapterConfigError as exc:
        raise click.ClickException("\n".join(exc.errors)) from None
    except (AdapterStartError, HubError) as exc:
        raise click.ClickException(f"adapter {name} did not start: {exc}") from None
