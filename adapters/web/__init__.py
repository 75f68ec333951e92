"""The built-in web adapter: a JavaScript snippet and an HTTP collector (see docs/adapters/web.md).

Registered exactly like a third-party adapter: through the ``shopkeeper`` entry-point group
(``shopkeeper.adapters.web``), with :data:`shopkeeper.plugins.BUILTIN_PLUGINS` as the fallback
for a source checkout that was never installed.
"""

from __future__ import annotations

from shopkeeper import hookimpl

from .adapter import WebAdapter


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [WebAdapter]


__all__ = ["WebAdapter"]
