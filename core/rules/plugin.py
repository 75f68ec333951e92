"""The built-in rules plugin, registered through the ``shopkeeper`` entry point like any other.

* ``shopkeeper_event_types`` — ``cart_abandoned``, an event rules emit (``emit_event``);
* ``shopkeeper_processors`` — the rules processor, run inside each event's transaction;
* ``shopkeeper_startup`` / ``shopkeeper_shutdown`` — the timer runner and the rules-directory
  watcher (hot reload);
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

from ..events import EventType, FieldSpec
from ..plugins import hookimpl

log = logging.getLogger("shopkeeper.rules")

RULE_EVENT_TYPES = (
    EventType("cart_abandoned", "web", {"cart_value": FieldSpec((int, float), min=0)},
              "emitted by rules when a started checkout ends without an order"),
)

# per hub object (id -> (hub, thing)); entries go away in shopkeeper_shutdown
_services: dict[int, tuple[Any, Any]] = {}
_runners: dict[int, Any] = {}


def service_for(hub: Any) -> Any:
    """The :class:`~shopkeeper.rules.runtime.RulesService` of ``hub`` (created on first use)."""
    from .actions import Vocabulary
    from .runtime import RulesConfig, RulesService

    got_svc = _services.get(id(hub))
    svc = got_svc[1] if got_svc is not None and got_svc[0] is hub else None
    if svc is None:
        pm = getattr(hub, "pm", None)
        extra = [a for got in pm.hook.shopkeeper_rule_actions() for a in (got or ())] if pm is not None else []
        cfg = RulesConfig()
        d = getattr(getattr(hub, "config", None), "rules_dir", None)
        if d:
            cfg.directory = Path(d)
        types = getattr(hub, "event_types", None)
        svc = RulesService(cfg, vocabulary=Vocabulary.builtin(extra), event_types=types)
        if not svc.current.ok or svc.last_errors:
            log.error("rules: %s", "; ".join(svc.last_errors))
        _services[id(hub)] = (hub, svc)
    return svc


@hookimpl
def shopkeeper_event_types() -> list[EventType]:
    return list(RULE_EVENT_TYPES)


@hookimpl
def shopkeeper_processors(hub: Any) -> list[Any]:
    return [service_for(hub).processor]


@hookimpl
def shopkeeper_startup(hub: Any) -> None:
    from .runtime import TimerRunner

    store = getattr(hub, "store", None)
    if store is None or getattr(hub, "pm", None) is None:
        return  # not a hub process (a tool calling the hook): nothing to run in the background
    svc = service_for(hub)
    if svc.config.watch:
        svc.start_watching()
    _runners[id(hub)] = TimerRunner(store, svc).start()


@hookimpl
def shopkeeper_shutdown(hub: Any) -> None:
    runner = _runners.pop(id(hub), None)
    if runner is not None:
        runner.stop()
    got = _services.pop(id(hub), None)
    if got is not None:
        got[1].stop()


@hookimpl
def shopkeeper_reload_rules(hub: Any) -> dict[str, Any] | None:
    return service_for(hub).reload()


@hookimpl
def shopkeeper_decide(customer: Any, touchpoint: str, placement: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    from .customer_rules import proposals

    return proposals(customer, placement=placement)


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import rules

    if "rules" not in cli.commands:
        cli.add_command(rules)
