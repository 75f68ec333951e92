"""The adapter base: what every touch-point adapter (built-in or third-party) is written on.

An adapter is a class with a ``name``, a ``Config`` dataclass (the validated schema of its
section in the hub config file), the ``channels`` it delivers on, and ``start``/``stop``.
It talks to the hub **only** through :class:`HubAPI`, which has two implementations:

* :class:`InProcessHub` — inside the hub process, calling the engine functions the gRPC
  servicers call, through the hub's bounded reads and its one writer;
* :class:`RemoteHub` — in its own process: :class:`shopkeeper.client.Client` (TLS, mutual
  TLS, API keys, retries) plus what adapters need.

So the same class runs in both places (*location transparency*)::

    adapters:                      # hub config file: run it inside the hub
      email: {smtp_host: mail.example.com, from_addr: shop@example.com}

    shopkeeper adapter run email --hub hub.example.com:50051 --api-key $KEY --config email.yaml

This module is the stable import path (``from shopkeeper.adapters.base import Adapter``)
and the built-in plugin that runs the adapter manager; the parts live by job:
:mod:`.config` (settings schema), :mod:`.hubapi` and :mod:`.remote` (the hub API),
:mod:`.adapter` (the base class), :mod:`.delivery` (claim -> send -> mark for any channel),
:mod:`.batching` (many coroutines, one hub call) and :mod:`.manager` (starting adapters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapter import Adapter, AdapterStartError
from .batching import EventBatcher, MicroBatcher, ReadBatcher
from .config import AdapterConfigError, ListenAddress, NoConfig, load_config_file, validate_config
from .delivery import ChannelAdapter, DeliveryJournal, PermanentFailure
from .hubapi import CustomerRef, HubAPI, HubError, HubUnavailable, InProcessHub, may_contact
from .manager import (
    AdapterManager,
    adapter_classes,
    run_adapter,
    shopkeeper_register_commands,
    shopkeeper_shutdown,
    shopkeeper_startup,
)

if TYPE_CHECKING:
    from .remote import RemoteHub, proto_customer_view

#: imported on first use (PEP 562): :mod:`.remote` brings grpc and the SDK, which a third-party
#: adapter plugin's ``import shopkeeper.adapters.base`` would otherwise load into every
#: ``shopkeeper`` command that loads plugins (~0.3 s of CPU each, issue 15's walk-through)
_FROM_REMOTE = ("RemoteHub", "proto_customer_view")


def __getattr__(name: str) -> object:
    if name in _FROM_REMOTE:
        from . import remote

        value = getattr(remote, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Adapter", "AdapterStartError", "HubAPI", "ListenAddress", "MicroBatcher", "ReadBatcher",
           "InProcessHub", "RemoteHub", "EventBatcher", "AdapterConfigError", "HubError", "HubUnavailable",
           "ChannelAdapter",
           "DeliveryJournal", "PermanentFailure", "CustomerRef", "validate_config", "adapter_classes",
           "may_contact", "NoConfig", "run_adapter", "load_config_file", "proto_customer_view", "AdapterManager",
           "shopkeeper_startup", "shopkeeper_shutdown", "shopkeeper_register_commands"]
