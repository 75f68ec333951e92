"""The Segment adapter's section of the hub config file (``adapters: {segment: {...}}``), validated.

Example::

    adapters:
      segment:
        listen: 127.0.0.1:8710
        write_keys:
          WRITE_KEY: {touchpoint: web}                 # per key: the touch point (and its API key's scopes)
          APP_KEY: {touchpoint: app, channel: app}     # channel: what Decide assumes when none is given
        events:                                        # Segment event name -> hub event type (over the defaults)
          Subscription Started: {type: order, fields: {order_id: subscription_id, amount: price}}
          Lead Created: custom
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..base import ListenAddress
from .mapping import DEFAULT_EVENT_TABLE, EventRule

_TOKEN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class WriteKey:
    """What one write key stands for: the touch point its events are recorded under."""

    touchpoint: str
    #: the channel ``/v1/decide`` assumes when the caller names none ("" = the touch point's API key's)
    channel: str = ""


def parse_write_keys(raw: Any) -> dict[str, WriteKey]:
    if not isinstance(raw, dict) or not raw:
        raise ValueError("write_keys: give at least one, e.g. {WRITE_KEY: {touchpoint: web}}")
    out: dict[str, WriteKey] = {}
    for key, spec in raw.items():
        if not isinstance(key, str) or len(key) < 8 or ":" in key:
            raise ValueError("write_keys: each key must be text of at least 8 characters without ':'")
        where = f"write_keys.{key[:4]}…"
        if isinstance(spec, WriteKey):
            out[key] = spec
            continue
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: must be a mapping such as {{touchpoint: web}}")
        unknown = set(spec) - {"touchpoint", "channel"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: ['channel', 'touchpoint']")
        tp = spec.get("touchpoint")
        if not isinstance(tp, str) or not _TOKEN.match(tp):
            raise ValueError(f"{where}.touchpoint: required, a lower-case token such as web")
        channel = spec.get("channel") or ""
        if channel and (not isinstance(channel, str) or not _TOKEN.match(channel)):
            raise ValueError(f"{where}.channel: must be a lower-case token such as web")
        out[key] = WriteKey(tp, channel)
    return out


def parse_events(raw: Any) -> dict[str, EventRule]:
    """The event-name table: the defaults, with ``raw`` (name -> type or {type, fields}) over them."""
    table = dict(DEFAULT_EVENT_TABLE)
    if not isinstance(raw, dict):
        raise ValueError("events: must map Segment event names to hub event types")
    for name, spec in raw.items():
        where = f"events.{name}"
        if not isinstance(name, str) or not name.strip():
            raise ValueError("events: event names must be non-empty text")
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) or set(spec) - {"type", "fields"}:
            raise ValueError(f"{where}: must be an event type, or {{type: ..., fields: {{hub_field: property}}}}")
        etype = spec.get("type")
        if not isinstance(etype, str) or not _TOKEN.match(etype):
            raise ValueError(f"{where}.type: must be a hub event type such as order or custom")
        fields = spec.get("fields") or {}
        if not isinstance(fields, dict) or not all(isinstance(k, str) and isinstance(v, str | list)
                                                   for k, v in fields.items()):
            raise ValueError(f"{where}.fields: must map hub data fields to Segment property names")
        table[name] = EventRule(etype, {k: tuple(v) if isinstance(v, list) else (v,) for k, v in fields.items()})
    return table


@dataclass
class SegmentConfig(ListenAddress):
    """Schema of ``adapters.segment`` (unknown keys are refused by the adapter base)."""

    write_keys: dict
    listen: str = "127.0.0.1:8710"
    #: Segment event name -> hub event type, over the defaults (docs/adapters/segment.md)
    events: dict = field(default_factory=dict)
    #: the identity namespaces ``userId`` and ``anonymousId`` (and alias's ``previousId``) are recorded in
    user_id_namespace: str = "customer_id"
    anonymous_id_namespace: str = "cookie"
    #: a request body (a batch), before and after un-gzipping; Segment's own limit is 500 KB
    max_body_bytes: int = 512 * 1024
    max_batch_messages: int = 2500
    #: seconds to wait for the hub's commit before answering 503 (the SDKs retry with the same messageIds)
    commit_timeout: float = 10.0
    #: most actions ``/v1/decide`` returns when the caller sets no limit
    decide_limit: int = 10

    def __post_init__(self) -> None:
        self.key_map: dict[str, WriteKey] = parse_write_keys(self.write_keys)
        self.event_table: dict[str, EventRule] = parse_events(self.events)
        self.check_listen()
        for name in ("user_id_namespace", "anonymous_id_namespace"):
            if not _TOKEN.match(getattr(self, name)):
                raise ValueError(f"{name}: must be an identity namespace such as customer_id")
        for name in ("max_body_bytes", "max_batch_messages", "decide_limit"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.commit_timeout <= 0:
            raise ValueError("commit_timeout: must be positive")
