"""``shopkeeper storage serve``: a ZEO server for a FileStorage, so several hubs share one store
(a command of the ``storage`` group of :mod:`shopkeeper.ops.cli`)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click

from .servers import zeo_command


@click.command("serve")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--listen", default="127.0.0.1:8100", show_default=True,
              help="host:port the ZEO server listens on; hubs open zeo://HOST:PORT")
def serve(path: Path, listen: str) -> None:
    """Serve the FileStorage at PATH with a ZEO server, so several hub processes share one store
    (``shopkeeper serve --store zeo://HOST:PORT`` on each). Runs until interrupted."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{listen!r}: expected host:port, e.g. 127.0.0.1:8100", param_hint="--listen")
    path.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"ZEO server for {path} on zeo://{host}:{port}", err=True)
    proc = subprocess.Popen(zeo_command(path, host, int(port)))

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = proc.wait()
    sys.exit(0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code)


__all__ = ["serve"]
