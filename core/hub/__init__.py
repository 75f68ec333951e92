"""The central gRPC hub: every touch point reads and writes customers through it.

One module per proto service (``customers``, ``interactions``, ``watch``, ``admin``), each a
thin translation from protobuf to :mod:`.domain` and back; :mod:`.writer` is the single
writer thread doing group commit; :mod:`.feed` the persisted change feed; :mod:`.server`
assembles them. See ``docs/hub.md`` (running and configuring) and ``docs/api.md`` (the API).
"""

from .config import HubConfig

__all__ = ["HubConfig"]
