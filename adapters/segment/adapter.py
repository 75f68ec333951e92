"""The Segment adapter: the tracking-spec HTTP endpoint as a Shopkeeper adapter (in the hub or its own process)."""

from __future__ import annotations

from typing import Any, ClassVar

from shopkeeper.adapters.base import Adapter
from shopkeeper.adapters.web.adapter import _event_types
from shopkeeper.adapters.web.server import HttpServed, ThreadedServer

from .config import SegmentConfig


class SegmentAdapter(HttpServed, Adapter):
    """Takes what Segment's SDKs send (track, identify, page, screen, group, alias, batch); answers decide."""

    name: ClassVar[str] = "segment"
    Config: ClassVar[type] = SegmentConfig

    def __init__(self, config: SegmentConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.server: ThreadedServer | None = None
        self.app: Any = None

    def start(self) -> None:
        from .app import create_app

        super().start()
        types = _event_types(self.hub)
        unknown = sorted({r.type for r in self.config.event_table.values() if types.get(r.type) is None})
        if unknown and self.hub.mode == "in-process":
            raise ValueError(f"events: {unknown} are not event types of this hub (known: {', '.join(types.names())})")
        self.app = create_app(self.config, self.hub, types, _api_keys(self.hub))
        self.server = ThreadedServer(self.app, self.config.host, self.config.port, "segment").start()

    @property
    def endpoint(self) -> Any:
        return self.app.state.endpoint


def _api_keys(hub: Any) -> list[Any]:
    """The hub's API keys in-process (a write key gets the scopes of its touch point's key);
    remotely the hub itself checks the adapter's own key."""
    config = getattr(getattr(hub, "hub", None), "config", None)
    return list(getattr(config, "api_keys", None) or [])
