"""The built-in rules plugin, registered through the ``shopkeeper`` entry point like any other.

* ``shopkeeper_event_types`` — ``cart_abandoned``, an event rules emit (``emit_event``);
* ``shopkeeper_processors`` — the rules processor, run inside each event's transaction;
* ``shopkeeper_startup`` / ``shopkeeper_shutdown`` — the timer runner (firing through the
  hub's writer) and the rules-directory watcher (hot reload);
* ``shopkeeper_reload_rules`` — ``Admin.ReloadRules``: validate, compile, swap or keep;
* ``shopkeeper_decide`` — offers and messages proposed by rules (``propose_offer``/``propose_message``);
* ``shopkeeper_register_commands`` — ``shopkeeper rules …``.

The rules directory is ``$SHOPKEEPER_RULES_DIR`` (default ``./rules``) or the hub config's
``rules_dir`` attribute when it has one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..context import plugin_state
from ..events import EventType, FieldSpec
from ..plugins import hookimpl

log = logging.getLogger("shopkeeper.rules")

RULE_EVENT_TYPES = (
    EventType("cart_abandoned", "web", {"cart_value": FieldSpec((int, float), min=0)},
              "emitted by rules when a started checkout ends without an order"),
)

# per-hub state (shopkeeper.context.plugin_state): the rules service and the timer runner
SERVICE = "shopkeeper.rules.service"
RUNNER = "shopkeeper.rules.timer_runner"


def service_for(hub: Any) -> Any:
    """The :class:`~shopkeeper.rules.runtime.RulesService` of ``hub`` (created on first use)."""
    return plugin_state(hub).setdefault(SERVICE, lambda: _new_service(hub))


def _new_service(hub: Any) -> Any:
    from .actions import Vocabulary
    from .runtime import RulesConfig, RulesService

    pm = getattr(hub, "pm", None)
    extra = [a for got in pm.hook.shopkeeper_rule_actions() for a in (got or ())] if pm is not None else []
    from ..plugins import message_templates

    cfg = RulesConfig()
    hub_cfg = getattr(hub, "config", None)
    d = getattr(hub_cfg, "rules_dir", None)
    if d:
        cfg.directory = Path(d)
    cfg.allow_invalid = bool(getattr(hub_cfg, "allow_invalid_rules", False))
    # every channel adapter's declared templates (shopkeeper_message_templates), built-in ones too
    cfg.templates = (message_templates(pm, getattr(hub_cfg, "adapters", None) or {}) if pm is not None
                     else None) or None
    types = getattr(hub, "event_types", None)
    svc = RulesService(cfg, vocabulary=Vocabulary.builtin(extra), event_types=types)
    if hasattr(hub, "set_component"):
        def on_reload(report: dict[str, Any]) -> None:
            hub.set_component("rules", _rules_problem(svc))
            _record_reload(hub, report)

        svc.on_reload = on_reload
        hub.set_component("rules", _rules_problem(svc))
    return svc


def _record_reload(hub: Any, report: dict[str, Any]) -> None:
    """Every reload after the start, through the hub's writer (``shopkeeper.rules.audit``); waits
    for the commit so that ``Admin.ReloadRules`` answers once its record is in the store."""
    from .audit import entry, record

    writer = getattr(hub, "writer", None)
    if report.get("initial") or writer is None:
        return
    item = entry(report, report.get("by"), report.get("previous_version", ""))
    try:
        writer.submit_op(lambda f, ch: record(f, ch, item)).result(timeout=30)
    except Exception:  # the reload itself stands; its record is what is missing, and the log says so
        log.exception("rules: could not record the reload by %s", item["who"])


def _rules_problem(svc: Any) -> str | None:
    """Why the rules in force are not the rules directory (None when they are)."""
    if svc.degraded:
        return svc.degraded
    if svc.last_errors and not svc.current.rules and svc.current.version in ("empty", ""):
        return "no rules in force: " + "; ".join(svc.last_errors)
    return None


@hookimpl
def shopkeeper_event_types() -> list[EventType]:
    return list(RULE_EVENT_TYPES)


@hookimpl
def shopkeeper_evolve_steps() -> list[Any]:
    """Who reloaded the rules (``root['rule_reloads']``); rule timers are generation 5's."""
    from ..store import EvolveStep
    from .audit import create_folder

    return [EvolveStep("rule-reloads", create_folder)]


@hookimpl
def shopkeeper_processors(hub: Any) -> list[Any]:
    from .waiving import HubRulesProcessor

    return [HubRulesProcessor(service_for(hub))]


@hookimpl
def shopkeeper_startup(hub: Any) -> None:
    from ..engine.leases import holds
    from ..plugins import StartupRefused
    from .runtime import TimerRunner

    store = getattr(hub, "store", None)
    writer = getattr(hub, "writer", None)
    if store is None or writer is None or getattr(hub, "pm", None) is None:
        return  # not a hub process (a tool calling the hook): nothing to run in the background
    svc = service_for(hub)
    if svc.last_errors and not svc.config.allow_invalid:
        raise StartupRefused("the central rules have errors; fix them (shopkeeper rules check) or start with "
                             "--allow-invalid-rules to serve the valid files:\n" + "\n".join(svc.last_errors))
    if svc.config.watch:
        svc.start_watching()
    # the runner's thread decides when; the hub's one writer commits (and publishes) the firing
    # with several hubs over one store, only the holder of the "rule-timers" lease fires (docs/scaleout.md)
    plugin_state(hub).set(RUNNER, TimerRunner(store, svc, submit=writer.submit_op,
                                              may_run=holds(hub, "rule-timers")).start())


@hookimpl
def shopkeeper_shutdown(hub: Any) -> None:
    state = plugin_state(hub)
    runner = state.pop(RUNNER)
    if runner is not None:
        runner.stop()
    svc = state.pop(SERVICE)
    if svc is not None:
        svc.stop()


@hookimpl
def shopkeeper_reload_rules(hub: Any, requested_by: dict[str, str] | None) -> dict[str, Any] | None:
    # on_reload updates the hub's ``rules`` component and records who reloaded (shopkeeper.rules.audit)
    return service_for(hub).reload(by=requested_by)


@hookimpl
def shopkeeper_decide(customer: Any, touchpoint: str, placement: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    from .customer_rules import proposals

    return proposals(customer, placement=placement)


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import outbox_group, rules, timers_group

    for group in (rules, outbox_group, timers_group):
        if group.name not in cli.commands:
            cli.add_command(group)
