"""The console adapter: a web page on its own port, served from inside the hub process."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from shopkeeper.adapters.adapter import Adapter, AdapterStartError
from shopkeeper.adapters.web.server import HttpServed, ThreadedServer

from .config import ConsoleConfig


class ConsoleAdapter(HttpServed, Adapter):
    """Customer 360°, timeline, rules, segments, outbox and hub pages behind the hub's API keys.

    Unlike a touch point, the console looks at the hub itself (its API keys, rules in force,
    metrics, plugins), so it runs only inside the hub (``adapters: {console: …}``), never as
    ``shopkeeper adapter run``. It writes nothing but unmerges, through the hub's one writer.
    """

    name: ClassVar[str] = "console"
    Config: ClassVar[type] = ConsoleConfig
    #: committed changes pushed live to open customer pages
    watch_kinds: ClassVar[tuple[str, ...]] = ("interaction", "consent", "identify", "merge", "unmerge",
                                              "forget", "segment_entered", "segment_left", "customer_rules")

    def __init__(self, config: ConsoleConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.server: ThreadedServer | None = None
        self.app: Any = None

    def start(self) -> None:
        inner = getattr(self.hub, "hub", None)
        if self.hub.mode != "in-process" or inner is None:
            raise AdapterStartError("adapter console: runs only inside the hub (adapters: {console: {listen: …}} "
                                    "in the hub config); it reads the hub's keys, rules and metrics")
        from .app import create_app

        keys = getattr(getattr(inner, "config", None), "api_keys", None) or []
        if not any("console" in k.scopes for k in keys):
            self.log.warning("console: no API key of this hub has the 'console' scope: nobody can log in "
                             "(add one: python -m shopkeeper.hub.config new-key NAME console)")

        self.app = create_app(self.config, inner)
        cert, key = self.config.tls_cert, self.config.tls_key
        tls = getattr(getattr(inner, "config", None), "tls", None)
        if not cert and tls is not None and tls.enabled:
            cert, key = tls.cert, tls.key
        self.app.state.console.secure = bool(cert)
        self.server = ThreadedServer(self.app, self.config.host, self.config.port, "console",
                                     ssl_certfile=cert or None, ssl_keyfile=key or None).start()
        self.app.state.console.loop = self.server.loop
        super().start()

    def close_streams(self) -> None:
        self.console.close()  # the open pages' live streams

    @property
    def console(self) -> Any:
        return self.app.state.console

    def on_change(self, change: dict[str, Any]) -> None:
        """A committed change (feed thread): tell the open pages of that customer."""
        server = self.server
        if server is None or server.loop is None or not change.get("customer_id"):
            return
        console = self.console
        if change["customer_id"] in console.subs:
            asyncio.run_coroutine_threadsafe(console.publish(change), server.loop)
