"""What a hook's ``hub`` argument offers (:class:`HubContext`), and per-hub plugin state.

Hooks that take ``hub`` (``shopkeeper_processors``, ``shopkeeper_startup``,
``shopkeeper_shutdown``, ``shopkeeper_reload_rules``) receive the running hub: the gRPC
:class:`shopkeeper.hub.server.Hub`, or the :class:`shopkeeper.engine.Engine` when it runs
without gRPC. Both provide :class:`HubContext`, so a plugin reads documented attributes
instead of fishing with ``getattr``.

A plugin keeps what it starts for a hub (a service, a background runner) in
``plugin_state(hub)``, not in a module global keyed by ``id(hub)``: two hubs in one process
(tests, scale-out on one machine) then never share or overwrite each other's state, and the
state goes with the hub.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


class PluginState:
    """Per-hub state of plugins, by a key each plugin chooses (its module name and a word).

    Thread-safe: hooks run on the hub's start-up thread, gRPC threads and background threads."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._lock = threading.RLock()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._items.get(key, default)

    def setdefault(self, key: str, factory: Callable[[], T]) -> T:
        """The value under ``key``, made by ``factory()`` (once) when there is none."""
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value

    def pop(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._items.pop(key, default)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items


@runtime_checkable
class HubContext(Protocol):
    """The ``hub`` argument of the hooks that take one (see ``docs/plugins.md``).

    - ``config``: the hub config (``rules_dir``, ``adapters``, ...); None for a bare engine;
    - ``store``: the :class:`shopkeeper.store.Store`; read with ``read()``, never write to it;
    - ``read()``: a read-only snapshot (``with hub.read() as folders: ...``);
    - ``writer``: the one writer; hand changes to it (``writer.submit_op(op)``,
      ``writer.submit_events(events)``); None before the engine started;
    - ``pm``: the plugin manager (call other hooks);
    - ``event_types``: the event types in force;
    - ``plugin_state``: this hub's :class:`PluginState`;
    - ``set_component(name, problem)``: report a part's health (None = healthy).
    """

    config: Any
    store: Any
    pm: Any
    plugin_state: PluginState

    @property
    def writer(self) -> Any: ...

    @property
    def event_types(self) -> Any: ...

    def read(self) -> AbstractContextManager[Any]: ...

    def set_component(self, name: str, reason: str | None) -> None: ...


#: state of objects that are not hubs (a tool or test calling a hook with its own object)
_elsewhere: weakref.WeakKeyDictionary[Any, PluginState] = weakref.WeakKeyDictionary()
_elsewhere_lock = threading.Lock()


def plugin_state(hub: Any) -> PluginState:
    """The :class:`PluginState` of ``hub``: its own, or one kept beside an object that has none."""
    own = getattr(hub, "plugin_state", None)
    if isinstance(own, PluginState):
        return own
    with _elsewhere_lock:
        try:
            return _elsewhere.setdefault(hub, PluginState())
        except TypeError:  # None, or an object that cannot be weakly referenced
            raise TypeError(f"per-hub plugin state needs a hub (a HubContext), not {type(hub).__name__}") from None

