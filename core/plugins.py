"""The plugin manager: built-ins and third-party plugins, loaded the same way."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

hookimpl = pluggy.HookimplMarker("shopkeeper")

ENTRY_POINT_GROUP = "shopkeeper"

#: Built-in plugins, by module; they are also declared as entry points in pyproject.toml,
#: and are registered from this list only when the package metadata is missing (a source
#: checkout that was never installed).
BUILTIN_PLUGINS: tuple[str, ...] = ("shopkeeper.analysis.plugin", "shopkeeper.outbox", "shopkeeper.adapters.base",
                                     "shopkeeper.adapters.email", "shopkeeper.adapters.web",
                                     "shopkeeper.adapters.callcentre", "shopkeeper.rules.plugin")


class PluginError(Exception):
    """A plugin could not be loaded or failed its checks; the message names it."""


def get_plugin_manager(load_entrypoints: bool = True, extra: tuple[object, ...] = ()) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("shopkeeper")
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    names = {name for name, _ in pm.list_name_plugin()}
    for modname in BUILTIN_PLUGINS:
        if modname in names or pm.has_plugin(modname):
            continue
        module = importlib.import_module(modname)
        if pm.is_registered(module):  # already loaded through its entry point
            continue
        pm.register(module, name=modname)
    for plugin in extra:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
    return pm


def call_each(pm: pluggy.PluginManager, hook_name: str, *, disabled: dict[str, str] | None = None,
              disable_on_error: bool = True, **kwargs: Any) -> dict[str, str]:
    """Call every implementation of ``hook_name`` one by one, isolating failures.

    This is the hub's safe start-up (and shutdown) loop: a plugin that raises is logged
    **by name**, and with ``disable_on_error`` it is unregistered (so none of its other
    hooks run) and recorded in ``disabled`` as ``name -> "hook: Error: message"``, which
    ``shopkeeper plugins`` and ``Admin.ListPlugins`` show. The caller keeps running.
    Implementations are called in registration order (built-ins first). Returns ``disabled``.
    """
    disabled = {} if disabled is None else disabled
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})
        except Exception as exc:
            log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
            if disable_on_error:
                disabled[impl.plugin_name] = f"{hook_name}: {type(exc).__name__}: {exc}"
                if pm.is_registered(impl.plugin):
                    pm.unregister(impl.plugin)
    return disabled


def plugin_versions(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """(name, version) for every registered plugin, for ``shopkeeper plugins`` and Admin."""
    dists = {id(p): dist for p, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(id(plugin))
        out.append((name, getattr(dist, "version", None) or _own_version(plugin)))
    return sorted(out)


def _own_version(plugin: object) -> str:
    from . import __version__

    mod = getattr(plugin, "__name__", "") or type(plugin).__module__
    return __version__ if mod.startswith("shopkeeper") else "unknown"


__all__ = ["hookimpl", "get_plugin_manager", "plugin_versions", "call_each", "PluginError", "entry_points"]
