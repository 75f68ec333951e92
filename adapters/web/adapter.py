"""The web adapter: the collector as a Shopkeeper adapter (in the hub or in its own process)."""

from __future__ import annotations

from typing import Any, ClassVar

from shopkeeper.adapters.base import Adapter

from .config import WebConfig
from .server import HttpServed, ThreadedServer


class WebAdapter(HttpServed, Adapter):
    """Collects page views, clicks and custom events from web sites; answers personalisation."""

    name: ClassVar[str] = "web"
    Config: ClassVar[type] = WebConfig

    def __init__(self, config: WebConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.server: ThreadedServer | None = None
        self.app: Any = None

    def start(self) -> None:
        from .app import create_app

        super().start()
        self.app = create_app(self.config, self.hub, _event_types(self.hub))
        self.server = ThreadedServer(self.app, self.config.host, self.config.port, "web").start()

    @property
    def url(self) -> str:
        """The collector's base URL (``public_url`` if configured)."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        assert self.server is not None, "start() the adapter first"
        return self.server.url

    @property
    def collector(self) -> Any:
        return self.app.state.collector


def _event_types(hub: Any) -> Any:
    """The hub's vocabulary (with plugin event types) in-process; the built-in one remotely."""
    from shopkeeper.events import DEFAULT_EVENT_TYPES

    inner = getattr(hub, "hub", None)
    return getattr(inner, "event_types", None) or DEFAULT_EVENT_TYPES
