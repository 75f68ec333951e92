"""Run an ASGI app with uvicorn on a thread of its own, so an adapter's ``start()`` returns at once.

Shared by the web, call-centre, Segment and console adapters: the hub calls ``start()`` from its start-up hook
and ``stop()`` from its shutdown hook; out of the hub, ``shopkeeper adapter run`` does the same.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn

log = logging.getLogger("shopkeeper.adapters.http")


class ThreadedServer:
    def __init__(self, app: Any, host: str, port: int, name: str, *, ssl_certfile: str | None = None,
                 ssl_keyfile: str | None = None) -> None:
        self.name = name
        self.scheme = "https" if ssl_certfile else "http"
        self.host = host
        # bind here, so a busy port fails start() (the adapter is reported and disabled)
        # and port 0 gives a free port the caller can read back at once
        # IPPROTO_TCP, not 0: accepted sockets inherit the proto, and asyncio sets TCP_NODELAY only on
        # sockets whose proto says TCP. Without it a response written as headers then body (every
        # JSON answer) waited for the client's delayed ACK: a fixed ~40 ms on each request.
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                                  socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise OSError(f"{name}: cannot listen on {host}:{port}: {exc}") from exc
        self.port = self.sock.getsockname()[1]
        # proxy_headers off: uvicorn's default trusts X-Forwarded-For from 127.0.0.1 before our
        # app sees the request; the web adapter's ``trusted_proxies`` is the one policy for that
        self.config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                     timeout_keep_alive=30, backlog=2048, proxy_headers=False,
                                     timeout_graceful_shutdown=2, ssl_certfile=ssl_certfile,
                                     ssl_keyfile=ssl_keyfile)
        self.server = uvicorn.Server(self.config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the hub owns signals
        self.thread = threading.Thread(target=self._run, name=f"shopkeeper-{name}-http", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        except Exception:
            log.exception("%s: HTTP server failed", self.name)
        finally:
            self.loop.close()

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self.thread.start()
        waited = 0.0
        while not self.server.started and self.thread.is_alive() and waited < timeout:
            threading.Event().wait(0.01)
            waited += 0.01
        if not self.server.started:
            raise RuntimeError(f"{self.name}: HTTP server did not start")
        log.info("%s listening on %s", self.name, self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(1.0)
        self.sock.close()


class HttpServed:
    """For adapters that serve an ASGI app on a port of their own (web collector, call centre,
    Segment endpoint, console): ``stop()`` and ``url`` written once. Put it before ``Adapter``
    in the bases; ``start()`` sets ``self.server`` to a started :class:`ThreadedServer`."""

    server: ThreadedServer | None = None

    def close_streams(self) -> None:
        """Run on the server's own event loop just before it stops: end live streams there
        (asyncio queues are not thread-safe). Nothing by default."""

    def stop(self) -> None:
        server = self.server
        if server is not None:
            if server.loop is not None and server.loop.is_running():
                server.loop.call_soon_threadsafe(self.close_streams)
            server.stop()
            self.server = None
        super().stop()  # type: ignore[misc]

    @property
    def url(self) -> str:
        assert self.server is not None, "start() the adapter first"
        return self.server.url

