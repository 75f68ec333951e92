"""The call-centre adapter: the agent desk as a Shopkeeper adapter (in the hub or its own process)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from shopkeeper.adapters.base import Adapter
from shopkeeper.adapters.web.server import HttpServed, ThreadedServer

from .config import CallCentreConfig


class CallCentreAdapter(HttpServed, Adapter):
    """CTI webhook -> screen-pop with the 360° view and next best action; outcomes back to the hub."""

    name: ClassVar[str] = "callcentre"
    Config: ClassVar[type] = CallCentreConfig
    #: committed changes that re-pop an open call's screen (the base class follows the feed)
    watch_kinds: ClassVar[tuple[str, ...]] = ("interaction", "consent", "identify", "merge")
    event_types: ClassVar[tuple[str, ...]] = ("call", "offer_accepted", "offer_declined")

    def __init__(self, config: CallCentreConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.server: ThreadedServer | None = None
        self.app: Any = None

    def start(self) -> None:
        from .app import create_app

        self.app = create_app(self.config, self.hub)
        self.server = ThreadedServer(self.app, self.config.host, self.config.port, "callcentre").start()
        super().start()  # follow the change feed only once the desk can take updates

    def close_streams(self) -> None:
        self.desk.close()  # the agents' live streams

    @property
    def desk(self) -> Any:
        return self.app.state.desk

    def on_change(self, change: dict[str, Any]) -> None:
        """A committed change (from the feed thread): re-pop open calls about that customer."""
        server = self.server
        cid = change.get("customer_id")
        if server is None or server.loop is None or not cid:
            return
        desk = self.desk
        if not any(c.customer_id == cid for c in list(desk.calls.values())):
            return
        asyncio.run_coroutine_threadsafe(desk.refresh_customer(cid), server.loop)
