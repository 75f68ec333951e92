"""The built-in Segment adapter: the Segment tracking spec over HTTP (see docs/adapters/segment.md).

Shops already instrumented with Segment's SDKs (analytics.js, analytics-node, analytics-python,
RudderStack's) point their ``host`` here and every page view, identify and order lands on the
customer object. Registered exactly like a third-party adapter (a module under its name,
``shopkeeper.adapters.segment``), from the one built-in list :data:`shopkeeper.plugins.BUILTIN_PLUGINS`.
"""

from __future__ import annotations

from shopkeeper import hookimpl

from .adapter import SegmentAdapter


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [SegmentAdapter]


__all__ = ["SegmentAdapter"]
