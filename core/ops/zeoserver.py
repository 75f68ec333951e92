"""A ZEO server for one Shopkeeper FileStorage that keeps the erasure guarantee.

``python -m shopkeeper.ops.zeoserver PATH HOST:PORT``

Why not plain ``runzeo -f PATH``: its ``<filestorage>`` keeps the pre-pack file as ``Data.fs.old``
and its commit buffer ``Data.fs.tmp`` keeps the last large transaction's records after a pack —
in the server's directory, where a hub's pack cannot reach. This serves an
:class:`~shopkeeper.store.ErasureSafeFileStorage` (storage name ``1``, what ``zeo://`` URIs open)
with ZEO's own ``StorageServer``, and closes it cleanly on SIGTERM or SIGINT (the index is saved).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from ..store import ErasureSafeFileStorage


def serve(path: Path | str, host: str, port: int) -> None:
    """Serve the FileStorage at ``path`` on ``host:port`` until SIGTERM or SIGINT."""
    from ZEO.StorageServer import StorageServer

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    server = StorageServer((host, port), {"1": ErasureSafeFileStorage(str(path))})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start_thread()
    try:
        stop.wait()
    finally:
        server.close(join_timeout=10)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    host, _, port = args[1].rpartition(":") if len(args) == 2 else ("", "", "")
    if not host or not port.isdigit():
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args[0], host, int(port))


if __name__ == "__main__":
    main()
