"""The built-in web console: operators, analysts and rule authors look at the living customers
(see docs/console.md).

Registered exactly like a third-party adapter (a module under its name, ``shopkeeper.adapters.console``),
from the one built-in list :data:`shopkeeper.plugins.BUILTIN_PLUGINS`. Off unless the hub config names it::

    adapters:
      console: {listen: 127.0.0.1:8720}
"""

from __future__ import annotations

from shopkeeper import hookimpl

from .adapter import ConsoleAdapter


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [ConsoleAdapter]


__all__ = ["ConsoleAdapter"]
