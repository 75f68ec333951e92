"""``shopkeeper backup``, ``shopkeeper restore`` and ``shopkeeper storage copy``."""

from __future__ import annotations

import click

from ..cli_common import store_option
from ..store import StoreError


@click.command()
@store_option
@click.option("--to", "directory", required=True, type=click.Path(file_okay=False),
              help="Backup directory (created if needed); later backups into it are incremental.")
@click.option("--full", is_flag=True, help="A full backup even if the directory holds one already.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes computing the manifest's digests (file:// and zeo://; each costs a core a hub may need).")
def backup(store_uri: str, directory: str, full: bool, workers: int) -> None:
    """Back up the store online (a hub may keep serving it): repozo for file://, the storage's
    transactions for zeo://, pg_dump for postgresql://; writes a manifest (counts and a digest
    per customer) for `restore --verify`."""
    from .backup import backup as run

    try:
        rep = run(store_uri, directory, full=full, workers=workers)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    how = "incremental" if rep.incremental else "full"
    click.echo(f"backed up {rep.customers} customers ({rep.kind}, {how}, up to transaction {rep.tid}) "
               f"into {rep.directory}")


@click.command()
@click.option("--from", "directory", required=True, type=click.Path(exists=True, file_okay=False),
              help="Backup directory written by `shopkeeper backup`.")
@click.option("--to", "target", required=True, help="Storage URI of an empty store (a new file, an empty "
                                                    "ZEO storage or PostgreSQL database).")
@click.option("--verify", "check", is_flag=True,
              help="Then compare the restored store with the backup's manifest, customer by customer.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes computing the manifest's digests (--verify).")
def restore(directory: str, target: str, check: bool, workers: int) -> None:
    """Restore the latest backup in a directory into an empty store (exit 1 if --verify finds a difference)."""
    from .backup import restore as run
    from .backup import verify_restore

    try:
        kind = run(directory, target)
        click.echo(f"restored the {kind} backup from {directory} into {target}")
        if not check:
            return
        cmp = verify_restore(directory, target, workers)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in cmp.lines():
        click.echo(line)
    if not cmp.ok:
        raise SystemExit(1)
    click.echo(f"verified: counts and {cmp.customers} customers match the backup")


@click.command()
@click.option("--hub", "hub_addr", envvar="SHOPKEEPER_HUB", default="127.0.0.1:50051", show_default=True,
              help="HOST:PORT of the hub (env SHOPKEEPER_HUB).")
@click.option("--service", default="", help="A service name (shopkeeper.v1.Interactions, rules…); default the hub.")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the answer.")
@click.option("--tls", is_flag=True, help="Connect with TLS.")
def health(hub_addr: str, service: str, timeout: float, tls: bool) -> None:
    """Ask a hub's gRPC health service; exit 0 if SERVING, 1 otherwise (a container HEALTHCHECK)."""
    import grpc

    from ..client import Client

    try:
        with Client(hub_addr, tls=tls, retries=0) as c:
            status = c.health(service, timeout=timeout)
    except grpc.RpcError as exc:
        click.echo(f"{hub_addr}: {exc.code().name}: {exc.details()}")
        raise SystemExit(1) from None
    click.echo(f"{hub_addr} {service or '(hub)'}: {status}")
    if status != "SERVING":
        raise SystemExit(1)


@click.group()
def storage() -> None:
    """Storage-level tools: copy a store between storages, serve one to several hubs (ZEO)."""


@storage.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--verify", "check", is_flag=True, help="Then compare SRC and DST customer by customer.")
@click.option("--current", is_flag=True,
              help="Copy only the current records reachable from the root (what a pack keeps), in large "
                   "transactions: object ids kept, no history. Much faster from an unpacked FileStorage.")
def copy_cmd(src: str, dst: str, quiet: bool, check: bool, current: bool) -> None:
    """Copy every transaction of the store at SRC into the empty storage at DST (zodbconvert's
    copyTransactionsFrom: object and transaction ids kept), or with --current its current records
    only. SRC is only read: a hub may serve it."""
    from tqdm import tqdm

    from .backup import store_manifest
    from .copy import copy_storage
    from .verify import compare

    bar = tqdm(unit="B", unit_scale=True, disable=quiet, desc="copying")
    done = [0]

    def progress(rep) -> None:  # type: ignore[no-untyped-def]
        bar.update(rep.bytes - done[0])
        done[0] = rep.bytes
        bar.set_postfix(transactions=rep.transactions, refresh=False)

    try:
        rep = copy_storage(src, dst, on_progress=progress, on_start=lambda n: setattr(bar, "total", n),
                           current=current)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        bar.close()
    click.echo(f"copied {rep.transactions} transactions, {rep.records} records, {rep.bytes} bytes "
               f"from {src} to {dst}")
    if check:
        cmp = compare(store_manifest(src), store_manifest(dst))
        for line in cmp.lines():
            click.echo(line)
        if not cmp.ok:
            raise SystemExit(1)
        click.echo(f"verified: counts and {cmp.customers} customers match")
