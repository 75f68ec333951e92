"""Finding adapters and running them: the in-hub adapter manager and ``shopkeeper adapter run``.

The manager is part of the built-in plugin ``shopkeeper.adapters.base`` (which re-exports
its hook implementations): on ``shopkeeper_startup`` it instantiates every adapter named in
the hub config's ``adapters:`` section, validates its config, registers the instance as a
plugin (its methods may implement hooks such as ``shopkeeper_deliver``) and starts it with
an :class:`~shopkeeper.adapters.hubapi.InProcessHub`; a bad config or a ``start()`` that
raises disables that adapter only, reported by name.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from shopkeeper import hookimpl

from .adapter import Adapter
from .hubapi import HubAPI, InProcessHub

log = logging.getLogger("shopkeeper.adapters")


def adapter_classes(pm: Any) -> dict[str, type[Adapter]]:
    """Every adapter class contributed through ``shopkeeper_adapters``, by name."""
    out: dict[str, type[Adapter]] = {}
    for classes in pm.hook.shopkeeper_adapters():
        for cls in classes or ():
            if not cls.name:
                raise TypeError(f"adapter class {cls.__qualname__} has no name")
            out[cls.name] = cls
    return out


class AdapterManager:
    """Starts the adapters named in the hub config (``adapters:``) and stops them again.

    Running adapters are kept on the hub object as ``hub.adapters`` (name -> instance).
    """

    def start_all(self, hub: Any) -> None:
        hub.adapters = running = {}
        sections = dict(getattr(hub.config, "adapters", None) or {})
        if not sections:
            return
        classes = adapter_classes(hub.pm)
        disabled = getattr(hub, "disabled", {})
        for name, raw in sections.items():
            key = f"adapter:{name}"
            raw = raw or {}
            if raw.get("enabled") is False:
                continue
            cls = classes.get(name)
            if cls is None:
                disabled[key] = f"adapter.{name}: no installed adapter has this name (known: {sorted(classes)})"
                log.error("%s", disabled[key])
                continue
            try:
                adapter = cls.from_config(raw, InProcessHub(hub, touchpoint=name))
                hub.pm.register(adapter, name=key)
                adapter.start()
            except Exception as exc:
                log.exception("adapter %s failed to start; disabled (the hub keeps running)", name)
                disabled[key] = f"start: {type(exc).__name__}: {exc}"
                if hub.pm.has_plugin(key):
                    hub.pm.unregister(name=key)
                continue
            running[name] = adapter
            log.info("adapter %s started in-process", name)

    def stop_all(self, hub: Any) -> None:
        running = getattr(hub, "adapters", None) or {}
        for name, adapter in list(running.items()):
            try:
                adapter.stop()
            except Exception:
                log.exception("adapter %s failed to stop cleanly", name)
            running.pop(name, None)


_manager = AdapterManager()


@hookimpl
def shopkeeper_startup(hub: Any) -> None:
    _manager.start_all(hub)


@hookimpl
def shopkeeper_shutdown(hub: Any) -> None:
    _manager.stop_all(hub)


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import adapter_group

    cli.add_command(adapter_group)


def run_adapter(cls: type[Adapter], raw: dict[str, Any], hub: HubAPI, stop: threading.Event) -> Adapter:
    """Run ``cls`` until ``stop`` is set (the body of ``shopkeeper adapter run``)."""
    adapter = cls.from_config(raw, hub)
    adapter.start()
    try:
        stop.wait()
    finally:
        adapter.stop()
        hub.close()
    return adapter


__all__ = ["AdapterManager", "adapter_classes", "run_adapter", "shopkeeper_startup", "shopkeeper_shutdown",
           "shopkeeper_register_commands"]
