"""The plugin manager: built-ins and third-party plugins, loaded the same way."""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterable
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

hookimpl = pluggy.HookimplMarker("shopkeeper")

ENTRY_POINT_GROUP = "shopkeeper"

#: Built-in plugins, by module: the one list (as datasette's DEFAULT_PLUGINS). They are
#: registered from it exactly as a third-party plugin is from its entry point (``pm.register``
#: under the module's name), before the entry points, so an installed plugin's hooks run first
#: (pluggy calls the last registered first). ``pyproject.toml`` declares no built-in entry
#: points; ``tests/test_plugin_api.py`` checks that every module with hook implementations is here.
BUILTIN_PLUGINS: tuple[str, ...] = ("shopkeeper.engine.steps", "shopkeeper.analysis.plugin", "shopkeeper.outbox.plugin",
                                     "shopkeeper.adapters.base", "shopkeeper.adapters.email", "shopkeeper.adapters.web",
                                     "shopkeeper.adapters.callcentre", "shopkeeper.adapters.segment",
                                     "shopkeeper.adapters.console", "shopkeeper.adapters.sms",
                                     "shopkeeper.rules.plugin", "shopkeeper.campaigns.plugin")

#: The hooks each built-in implements, so that a command needing one hook imports only the
#: built-ins that answer it: ``shopkeeper models fit`` opens its store with the evolve steps of
#: five small modules instead of importing every channel adapter (grpc, asyncio, uvicorn, ...),
#: about a third of a second of CPU per command. ``tests/test_plugin_api.py`` checks this table
#: against what each module really implements; a built-in missing from it is always loaded.
BUILTIN_HOOKS: dict[str, frozenset[str]] = {
    "shopkeeper.engine.steps": frozenset({"shopkeeper_evolve_steps"}),
    "shopkeeper.analysis.plugin": frozenset({"shopkeeper_decide", "shopkeeper_evolve_steps", "shopkeeper_processors",
                                             "shopkeeper_register_commands", "shopkeeper_shutdown",
                                             "shopkeeper_startup"}),
    "shopkeeper.outbox.plugin": frozenset({"shopkeeper_event_types", "shopkeeper_evolve_steps",
                                           "shopkeeper_processors"}),
    "shopkeeper.adapters.base": frozenset({"shopkeeper_register_commands", "shopkeeper_shutdown",
                                           "shopkeeper_startup"}),
    "shopkeeper.adapters.email": frozenset({"shopkeeper_adapters", "shopkeeper_event_types",
                                            "shopkeeper_message_templates"}),
    "shopkeeper.adapters.web": frozenset({"shopkeeper_adapters"}),
    "shopkeeper.adapters.callcentre": frozenset({"shopkeeper_adapters"}),
    "shopkeeper.adapters.segment": frozenset({"shopkeeper_adapters"}),
    "shopkeeper.adapters.console": frozenset({"shopkeeper_adapters"}),
    "shopkeeper.adapters.sms": frozenset({"shopkeeper_adapters", "shopkeeper_event_types",
                                          "shopkeeper_message_templates"}),
    "shopkeeper.rules.plugin": frozenset({"shopkeeper_decide", "shopkeeper_event_types", "shopkeeper_evolve_steps",
                                          "shopkeeper_processors", "shopkeeper_register_commands",
                                          "shopkeeper_reload_rules", "shopkeeper_shutdown", "shopkeeper_startup"}),
    "shopkeeper.campaigns.plugin": frozenset({"shopkeeper_evolve_steps", "shopkeeper_register_commands",
                                              "shopkeeper_shutdown", "shopkeeper_startup"}),
}


def builtins_implementing(*hooks: str) -> tuple[str, ...]:
    """The built-in plugin modules that implement any of ``hooks`` (:data:`BUILTIN_HOOKS`), in
    :data:`BUILTIN_PLUGINS` order; a built-in the table does not describe is included."""
    wanted = set(hooks)
    return tuple(m for m in BUILTIN_PLUGINS if m not in BUILTIN_HOOKS or BUILTIN_HOOKS[m] & wanted)


class PluginError(Exception):
    """A plugin could not be loaded or failed its checks; the message names it."""


def get_plugin_manager(load_entrypoints: bool = True, extra: tuple[object, ...] = (),
                       check: bool = True, builtins: Iterable[str] | None = None) -> pluggy.PluginManager:
    """Every plugin registered; with ``check`` a hookimpl no hookspec names (a misspelled hook)
    raises :class:`PluginError`. ``shopkeeper plugins`` passes ``check=False`` and reports
    :func:`unknown_hooks` itself, so the one diagnostic command still lists everything.

    ``builtins`` limits the built-ins registered (default: all of :data:`BUILTIN_PLUGINS`), for
    a command that calls one hook: ``builtins_implementing("shopkeeper_evolve_steps")``.
    Third-party plugins are loaded whole either way."""
    pm = pluggy.PluginManager("shopkeeper")
    pm.add_hookspecs(hookspecs)
    for modname in BUILTIN_PLUGINS if builtins is None else builtins:
        pm.register(importlib.import_module(modname), name=modname)
    if load_entrypoints:
        # third-party plugins; an entry point named like a built-in (metadata of an older install
        # that still declared them) is skipped by pluggy, which loads each name once
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        pm.register(plugin)
    if check:
        bad = unknown_hooks(pm)
        if bad:
            raise PluginError("; ".join(f"plugin {name!r} implements an unknown hook: {msg}"
                                        for name, msgs in bad.items() for msg in msgs))
    return pm


def unknown_hooks(pm: pluggy.PluginManager) -> dict[str, list[str]]:
    """Plugin name -> its hookimpls that match no hookspec, each with a did-you-mean when a
    hook name is close (``shopkeeper_comitted``: did you mean ``shopkeeper_committed``?).
    Optional hooks (``optionalhook=True``) are not reported, as ``pm.check_pending()``. (``difflib``
    is imported only for a hook to report: every command that loads plugins runs this check.)"""
    known = sorted(name for name in dir(pm.hook) if getattr(getattr(pm.hook, name), "has_spec", lambda: False)())
    out: dict[str, list[str]] = {}
    for name in sorted(dir(pm.hook)):
        caller = getattr(pm.hook, name)
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            import difflib

            hint = difflib.get_close_matches(name, known, n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else f" (known hooks: {', '.join(known)})"
            out.setdefault(impl.plugin_name, []).append(f"{name!r}{more}")
    return out


class StartupRefused(Exception):
    """Raised by a ``shopkeeper_startup`` hook when the hub must not serve at all (e.g. its
    central rules are invalid): unlike other failures it is not isolated by disabling the
    plugin — a hub quietly running without its rules is worse than one that does not start."""


def dispatch(pm: pluggy.PluginManager, hook_name: str, *, disabled: dict[str, str] | None = None,
             what: str = "", **kwargs: Any) -> list[tuple[str, Any]]:
    """Call every implementation of ``hook_name`` one by one, isolating failures; return
    ``[(plugin name, result)]`` of those that answered, in the hook's calling order.

    The one isolated-dispatch loop of the hub (start-up, shutdown, processors, ``Decide``,
    after-commit): a plugin that raises is logged **by name** (``what`` says what follows,
    e.g. "the commit stands") and the others still run. With ``disabled`` given, the plugin
    is also unregistered (so none of its other hooks run) and recorded there as
    ``name -> "hook: Error: message"``, which ``shopkeeper plugins`` and ``Admin.ListPlugins``
    show. Implementations run in the order pluggy would call them (last registered first).
    """
    out: list[tuple[str, Any]] = []
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        try:
            got = impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})
        except StartupRefused:
            raise
        except Exception as exc:
            log.exception("plugin %s failed in %s%s", impl.plugin_name, hook_name, f"; {what}" if what else "")
            if disabled is not None:
                disabled[impl.plugin_name] = f"{hook_name}: {type(exc).__name__}: {exc}"
                if pm.is_registered(impl.plugin):
                    pm.unregister(impl.plugin)
            continue
        out.append((impl.plugin_name, got))
    return out


def call_each(pm: pluggy.PluginManager, hook_name: str, *, disabled: dict[str, str] | None = None,
              disable_on_error: bool = True, **kwargs: Any) -> dict[str, str]:
    """:func:`dispatch` for hooks whose answers do not matter (``shopkeeper_startup``,
    ``shopkeeper_shutdown``): with ``disable_on_error`` a failing plugin is disabled and
    recorded in ``disabled``; the caller keeps running. Returns ``disabled``."""
    disabled = {} if disabled is None else disabled
    dispatch(pm, hook_name, disabled=disabled if disable_on_error else None, **kwargs)
    return disabled


def evolve_steps(pm: pluggy.PluginManager) -> list[Any]:
    """Every plugin's named evolve steps (``shopkeeper_evolve_steps``), in the order pluggy calls
    them, for :meth:`shopkeeper.store.Store.open` (``steps=``) and ``Store.add_steps``. A step that
    is not an ``EvolveStep``, or a name two plugins both claim, is a :class:`PluginError` naming
    the plugins: two owners of one root folder is the bug the hook exists to prevent. (Checked by
    shape, not class: this module must not import the store, which the SDK never loads.)"""
    out: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for impl in reversed(pm.hook.shopkeeper_evolve_steps.get_hookimpls()):
        name = impl.plugin_name
        try:  # not isolated: a plugin whose folders cannot be made must not run without them
            got = impl.function()
        except Exception as exc:
            raise PluginError(f"plugin {name!r} failed in shopkeeper_evolve_steps: "
                              f"{type(exc).__name__}: {exc}") from exc
        for step in got or ():
            if not (isinstance(getattr(step, "name", None), str) and callable(getattr(step, "run", None))):
                raise PluginError(f"plugin {name!r}: shopkeeper_evolve_steps returned {step!r}, "
                                  "not a shopkeeper.store.EvolveStep")
            if step.name in out:
                raise PluginError(f"evolve step {step.name!r} is contributed by both {owner[step.name]!r} "
                                  f"and {name!r}: each root folder has one owner")
            out[step.name], owner[step.name] = step, name
    return list(out.values())


@functools.cache
def builtin_evolve_steps() -> tuple[Any, ...]:
    """The built-in plugins' evolve steps (no entry points), for in-memory stores the rule and
    campaign test runners open, and the test suite's store fixtures."""
    return tuple(evolve_steps(get_plugin_manager(load_entrypoints=False, check=False)))


def plugin_versions(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """(name, version) for every registered plugin, for ``shopkeeper plugins`` and Admin."""
    dists = {id(p): dist for p, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(id(plugin))
        out.append((name, getattr(dist, "version", None) or _own_version(plugin)))
    return sorted(out)


def entry_points(**select: Any) -> Any:
    """``importlib.metadata.entry_points``, imported when asked (it reads every installed
    distribution's metadata: no business of a command that loads no third-party plugin)."""
    from importlib.metadata import entry_points as found

    return found(**select)


def _own_version(plugin: object) -> str:
    from . import __version__

    mod = getattr(plugin, "__name__", "") or type(plugin).__module__
    return __version__ if mod.startswith("shopkeeper") else "unknown"


def message_templates(pm: pluggy.PluginManager, adapters: dict[str, Any] | None = None) -> dict[str, set[str]]:
    """Channel -> the template names the installed channel adapters declare
    (``shopkeeper_message_templates``, every answer united) for the hub config's ``adapters:``
    section. Channels nobody declares are absent: their template names are not checked."""
    out: dict[str, set[str]] = {}
    sections = {str(k): (v if isinstance(v, dict) else {}) for k, v in (adapters or {}).items()}
    for got in pm.hook.shopkeeper_message_templates(adapters=sections):
        for channel, names in (got or {}).items():
            out.setdefault(str(channel), set()).update(str(n) for n in names)
    return out


__all__ = ["StartupRefused", "hookimpl", "get_plugin_manager", "plugin_versions", "call_each", "dispatch",
           "PluginError", "entry_points", "evolve_steps", "BUILTIN_HOOKS",
           "builtins_implementing", "builtin_evolve_steps", "unknown_hooks", "message_templates"]
