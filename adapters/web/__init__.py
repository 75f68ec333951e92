"""The built-in web adapter: a JavaScript snippet and an HTTP collector (see docs/adapters/web.md).

Registered exactly like a third-party adapter (a module under its name, ``shopkeeper.adapters.web``),
from the one built-in list :data:`shopkeeper.plugins.BUILTIN_PLUGINS`.
"""

from __future__ import annotations

from shopkeeper import hookimpl

from .adapter import WebAdapter


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [WebAdapter]


__all__ = ["WebAdapter"]
