"""The central gRPC hub: transport only.

One module per proto service (``customers``, ``interactions``, ``watch``, ``admin``), each a
thin translation from protobuf to the engine (:mod:`shopkeeper.engine`) and back; auth,
conversion, config and metrics; :mod:`.server` assembles them. The write path — the single
writer, the change feed, the domain operations — lives in :mod:`shopkeeper.engine`.
See ``docs/hub.md`` (running and configuring) and ``docs/api.md`` (the API).
"""

from .config import HubConfig

__all__ = ["HubConfig"]
