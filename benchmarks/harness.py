"""What benchmark scripts need to run a hub and adapters, without pytest.

``shopkeeper.testing`` is a pytest plugin (it imports pytest), and the ``[bench]`` extra does
not install pytest; so benchmarks start their hubs and adapters with these few helpers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from shopkeeper.servers import free_port as free_port  # the benchmarks take it from here


class BenchHub:
    """A running hub on a free loopback port with one all-scopes API key."""

    def __init__(self, config: dict[str, Any] | None = None, store_uri: str = "memory://") -> None:
        from shopkeeper.hub.config import SCOPES, ApiKey, HubConfig, hash_key, new_key
        from shopkeeper.hub.server import Hub

        self.api_key = new_key()
        data = {"store": store_uri, "listen": "127.0.0.1:0", "log_format": "text", **(config or {})}
        # a benchmark must measure the same work by day and by night: no quiet hours unless asked
        # (with them, every marketing message claimed between 21:00 and 08:00 is suppressed)
        data.setdefault("contact", {"quiet_hours": None})
        cfg = HubConfig.from_mapping(data)
        cfg.api_keys.append(ApiKey("bench", hash_key(self.api_key), frozenset(SCOPES)))
        self.hub = Hub(cfg).start()
        self.address = f"127.0.0.1:{self.hub.port}"

    def in_process(self, touchpoint: str = "bench") -> Any:
        from shopkeeper.adapters.base import InProcessHub

        return InProcessHub(self.hub, touchpoint=touchpoint)

    def remote(self, touchpoint: str = "bench") -> Any:
        from shopkeeper.adapters.base import RemoteHub

        return RemoteHub(self.address, self.api_key, touchpoint=touchpoint)

    @contextlib.contextmanager
    def run_adapter(self, cls: type, config: dict[str, Any], mode: str = "in-process") -> Iterator[Any]:
        api = self.in_process(cls.name) if mode == "in-process" else self.remote(cls.name)
        adapter = cls.from_config(dict(config), api)
        if mode == "in-process":
            self.hub.pm.register(adapter, name=f"adapter:{cls.name}")
        adapter.start()
        try:
            yield adapter
        finally:
            adapter.stop()
            if mode == "in-process" and self.hub.pm.is_registered(adapter):
                self.hub.pm.unregister(adapter)
            api.close()

    def stop(self) -> None:
        self.hub.stop(grace=0.5)
