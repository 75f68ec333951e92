"""The built-in Segment adapter: the Segment tracking spec over HTTP (see docs/adapters/segment.md).

Shops already instrumented with Segment's SDKs (analytics.js, analytics-node, analytics-python,
RudderStack's) point their ``host`` here and every page view, identify and order lands on the
customer object. Registered exactly like a third-party adapter: through the ``shopkeeper``
entry-point group (``shopkeeper.adapters.segment``), with
:data:`shopkeeper.plugins.BUILTIN_PLUGINS` as the fallback for a source checkout.
"""

from __future__ import annotations

from shopkeeper import hookimpl

from .adapter import SegmentAdapter


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [SegmentAdapter]


__all__ = ["SegmentAdapter"]
