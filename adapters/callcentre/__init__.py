"""The built-in call-centre adapter: CTI webhook -> live screen-pop on the agent's desk
(see docs/adapters/callcentre.md).

Registered exactly like a third-party adapter: through the ``shopkeeper`` entry-point group
(``shopkeeper.adapters.callcentre``), with :data:`shopkeeper.plugins.BUILTIN_PLUGINS` as the
fallback for a source checkout that was never installed.
"""

from __future__ import annotations

from shopkeeper import hookimpl

from .adapter import CallCentreAdapter


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [CallCentreAdapter]


__all__ = ["CallCentreAdapter"]
