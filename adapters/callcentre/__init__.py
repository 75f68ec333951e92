"""The built-in call-centre adapter: CTI webhook -> live screen-pop on the agent's desk
(see docs/adapters/callcentre.md).

Registered exactly like a third-party adapter (a module under its name, ``shopkeeper.adapters.callcentre``),
from the one built-in list :data:`shopkeeper.plugins.BUILTIN_PLUGINS`.
"""

from __future__ import annotations

from shopkeeper import hookimpl

from .adapter import CallCentreAdapter


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [CallCentreAdapter]


__all__ = ["CallCentreAdapter"]
