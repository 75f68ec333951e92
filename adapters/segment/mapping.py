"""From a message of the Segment tracking spec to a hub event (pure functions, no I/O).

``track`` events are mapped by name through an event table (the defaults below follow
Segment's e-commerce and email specs; the hub config adds to them): a mapped name becomes
that hub event type, with the type's fields taken from the properties Segment's spec names
(``Order Completed``'s ``total`` or ``revenue`` becomes the order's ``amount``); any other
name becomes a ``custom`` event carrying the name. Every property is kept in ``data`` as
well, and so is ``context``. ``userId``, ``anonymousId`` and ``traits.email`` (or
``context.traits.email``) become identities.

Errors are :class:`~shopkeeper.events.EventError` with the field named the way the sender
wrote it (``properties.total``, ``timestamp``, ``userId``), so a 400 says what to fix.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from shopkeeper.events import FUTURE_SLACK_US, MIN_TS_US, EventError, parse_ts

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")


@dataclass(frozen=True)
class EventRule:
    """One row of the event table: the hub event type, and where its data fields come from
    (hub field -> Segment property names, first present wins); unlisted fields use the type's defaults."""

    type: str
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)


#: Where each hub event type's fields come from in Segment's specs (properties, first present wins).
FIELD_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "order": {"order_id": ("order_id", "checkout_id"), "amount": ("total", "revenue", "value"),
              "currency": ("currency",)},
    "return": {"order_id": ("order_id",), "amount": ("total", "revenue", "value")},
    "cart_add": {"sku": ("sku", "product_id"), "price": ("price",), "quantity": ("quantity",)},
    "checkout_started": {"cart_value": ("value", "revenue", "total")},
    "click": {"url": ("url",), "target": ("product_id", "sku", "name")},
    "email_open": {"campaign": ("campaign_name", "campaign_id"), "message_id": ("email_id",)},
    "email_click": {"campaign": ("campaign_name", "campaign_id"), "message_id": ("email_id",),
                    "link": ("link_url",)},
    "email_bounce": {"message_id": ("email_id",)},
    "unsubscribe": {"campaign": ("campaign_name", "campaign_id")},
    "offer_shown": {"offer": ("promotion_id", "offer"), "placement": ("position", "placement")},
    "offer_accepted": {"offer": ("promotion_id", "offer")},
}

#: Segment event names and the hub event types they become; every other name -> ``custom``.
DEFAULT_EVENT_TABLE: dict[str, EventRule] = {
    "Order Completed": EventRule("order"),
    "Order Refunded": EventRule("return"),
    "Product Added": EventRule("cart_add"),
    "Checkout Started": EventRule("checkout_started"),
    "Product Clicked": EventRule("click"),
    "Promotion Viewed": EventRule("offer_shown"),
    "Promotion Clicked": EventRule("offer_accepted"),
    "Email Opened": EventRule("email_open"),
    "Email Link Clicked": EventRule("email_click"),
    "Email Bounced": EventRule("email_bounce"),
    "Unsubscribed": EventRule("unsubscribe"),
}

_IDEM = re.compile(r"^[A-Za-z0-9_.:/+=-]+$")
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
MAX_ID_LENGTH = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: property name -> data field name, remembered: a shop sends the same few dozen names in every
#: message, and the regular expression per property was a tenth of the mapping's CPU. Bounded
#: (names past the bound are converted each time), so a sender of random names cannot grow it.
_FIELD_NAMES: dict[str, str] = {}
_FIELD_NAMES_MAX = 4096


@dataclass(slots=True)
class Converted:
    """A message as the hub's event, in the decoded form :func:`~shopkeeper.events.validate_decoded`
    checks (no raw event dict is built on the hub's own path), and, for error messages, which
    sender field each hub field came from."""

    type: str
    ts_us: int
    identities: list[tuple[str, str]]
    idempotency_key: str
    data: dict[str, Any]
    touchpoint: str
    origin: dict[str, str]
    channel: str = ""
    traits: dict[str, Any] | None = None

    def sender_field(self, hub_field: str) -> str:
        if hub_field in self.origin:
            return self.origin[hub_field]
        if hub_field.startswith("data."):
            return "properties." + hub_field[5:]
        return hub_field

    @property
    def event(self) -> dict[str, Any]:
        """The raw event, for a hub in another process (it validates what it receives itself)."""
        out: dict[str, Any] = {"type": self.type, "ts": self.ts_us / 1e6,
                               "identities": [list(p) for p in self.identities],
                               "idempotency_key": self.idempotency_key, "data": self.data,
                               "touchpoint": self.touchpoint}
        if self.channel:
            out["channel"] = self.channel
        if self.traits:
            out["traits"] = self.traits
        return out


def field_name(name: str) -> str:
    """A property name as a hub data field: characters outside [A-Za-z0-9_.-] become ``_``
    (``"Plan Type"`` -> ``Plan_Type``), a leading digit or dot gets a ``_`` in front, 64 at most."""
    out = _BAD_NAME_CHARS.sub("_", name)
    if not out or not (out[0].isalpha() or out[0] == "_"):
        out = "_" + out
    return out[:64]


def idempotency_key(touchpoint: str, message_id: str) -> str:
    """``seg:<touchpoint>:<messageId>``; a hash stands in for an id that is too long or holds
    characters an idempotency key may not (the same id always gives the same key)."""
    key = f"seg:{touchpoint}:{message_id}"
    if len(key) <= 128 and _IDEM.match(message_id):
        return key
    return f"seg:{touchpoint}:h:{hashlib.sha256(message_id.encode()).hexdigest()[:40]}"


def _obj(msg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``msg[key]`` as it was parsed (read, never changed, so not copied), or an empty mapping."""
    v = msg.get(key)
    if type(v) is dict:  # what JSON decodes to; isinstance against the Mapping ABC is slow
        return v
    if v is None:
        return _EMPTY
    if not isinstance(v, Mapping):
        raise EventError(key, f"must be an object, not {type(v).__name__}")
    return v


def _text_id(msg: Mapping[str, Any], key: str) -> str | None:
    v = msg.get(key)
    if type(v) is str and 0 < len(v) <= MAX_ID_LENGTH:  # the common case
        return v
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise EventError(key, f"must be text, not {type(v).__name__}")
    if isinstance(v, float):
        v = int(v) if v.is_integer() else v
    text = str(v)
    if len(text) > MAX_ID_LENGTH:
        raise EventError(key, f"longer than {MAX_ID_LENGTH} characters")
    return text


def _first(props: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    for n in names:
        v = props.get(n)
        if v is not None and v != "":
            return n, v
    return None


def _parse_ts(value: Any, fld: str, now_us: int) -> int:
    """:func:`~shopkeeper.events.parse_ts` with a fast path for what the SDKs send (ISO 8601 with
    a zone, e.g. ``2026-12-01T09:00:00.123Z``) in range; anything else, and every error, is its."""
    if type(value) is str:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            dt = None
        if dt is not None and dt.tzinfo is not None:
            us = (dt - _EPOCH) // _ONE_US
            if MIN_TS_US <= us <= now_us + FUTURE_SLACK_US:
                return us
    return parse_ts(value, fld)


def _ts_us(msg: Mapping[str, Any], now_us: int, sent_at: Any = None) -> int:
    """The event's time in µs: ``timestamp``, else ``originalTimestamp`` corrected by the sender's
    clock skew (``sentAt`` — the message's, else its batch's — against now, as Segment does), else now."""
    ts = msg.get("timestamp")
    if ts is not None and ts != "":
        return _parse_ts(ts, "timestamp", now_us)
    original = msg.get("originalTimestamp")
    if original is not None and original != "":
        us = _parse_ts(original, "originalTimestamp", now_us)
        sent = msg.get("sentAt", sent_at)
        if sent is not None and sent != "":
            try:
                skew = now_us - _parse_ts(sent, "sentAt", now_us)
            except EventError:
                skew = 0
            return min(us + skew, now_us)
        return us
    return now_us


class Mapper:
    """Converts messages for one adapter configuration (namespaces and event table)."""

    def __init__(self, table: Mapping[str, EventRule], user_ns: str = "customer_id", anon_ns: str = "cookie") -> None:
        self.table = dict(table)
        self.user_ns = user_ns
        self.anon_ns = anon_ns
        #: per mapped event name, where its hub fields come from (the type's defaults, then the table's)
        self._sources = {name: {**FIELD_SOURCES.get(r.type, {}), **r.fields} for name, r in self.table.items()}

    def identities(self, msg: Mapping[str, Any], traits: Mapping[str, Any], context: Mapping[str, Any],
                   origin: dict[str, str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        uid, aid = _text_id(msg, "userId"), _text_id(msg, "anonymousId")
        if uid is not None:
            out.append((self.user_ns, uid))
            origin[f"identities.{self.user_ns}"] = "userId"
        if aid is not None:
            out.append((self.anon_ns, aid))
            origin.setdefault(f"identities.{self.anon_ns}", "anonymousId")
        email = traits.get("email") if traits else None
        where = "traits.email"
        if not (isinstance(email, str) and email.strip()):
            ctx_traits = context.get("traits") if context else None
            email = ctx_traits.get("email") if isinstance(ctx_traits, Mapping) else None
            where = "context.traits.email"
        if isinstance(email, str) and email.strip():
            out.append(("email", email))
            origin["identities.email"] = where
        return out

    def convert(self, msg: Any, kind: str, touchpoint: str, now_us: int | None = None,
                shared_context: Mapping[str, Any] | None = None, sent_at: Any = None) -> Converted:
        """The hub event for one message of type ``kind`` (``track``, ``page``…). In a batch,
        ``shared_context`` is the batch's ``context`` (the message's own keys win) and ``sent_at``
        its ``sentAt`` (used when the message has none); neither is copied into the message."""
        if not isinstance(msg, Mapping):
            raise EventError("message", f"must be an object, not {type(msg).__name__}")
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        origin: dict[str, str] = {"ts": "timestamp", "idempotency_key": "messageId", "data": "properties"}
        message_id = _text_id(msg, "messageId")
        if message_id is None:
            raise EventError("messageId", "required: a unique id per message so that retries count once "
                                          "(every Segment SDK sends one)")
        context = _obj(msg, "context")
        if shared_context:
            context = {**shared_context, **context}
        props = _obj(msg, "properties")
        traits = _obj(msg, "traits")
        data: dict[str, Any]
        event_traits: Mapping[str, Any] | None = None
        channel = ""
        if kind == "track":
            name = msg.get("event")
            if not isinstance(name, str) or not name.strip():
                raise EventError("event", "required: the name of the action, e.g. 'Order Completed'")
            rule = self.table.get(name)
            etype = rule.type if rule is not None else "custom"
            data = self._properties(props)
            sources = self._sources.get(name) if rule is not None else None
            if sources is None:
                sources = FIELD_SOURCES.get(etype, _EMPTY)
            for hub_field, names in sources.items():
                found = _first(props, names)
                if found is not None:
                    data[hub_field] = found[1]
                    origin["data." + hub_field] = "properties." + found[0]
                else:
                    origin["data." + hub_field] = "properties." + names[0]
            if etype == "order" and "items" not in data and isinstance(props.get("products"), list):
                data["items"] = len(props["products"])
            if etype == "custom":
                data["name"] = name
                origin["data.name"] = "event"
            else:
                data["event"] = name
        elif kind in ("page", "screen"):
            etype = "page_view"
            data = self._properties(props)
            page = context.get("page") if isinstance(context.get("page"), Mapping) else _EMPTY
            name = _text_id(msg, "name")
            url = _first(props, ("url", "path")) or _first(page, ("url", "path"))
            if url is not None:
                data["url"] = url[1]
                origin["data.url"] = f"properties.{url[0]}" if url[0] in props else f"context.page.{url[0]}"
            elif name is not None:
                data["url"] = name if kind == "page" else f"screen:{name}"
                origin["data.url"] = "name"
            else:
                raise EventError("properties.url", f"a {kind} needs a url (properties.url or context.page.url) "
                                                   "or a name")
            if name is not None:
                data["name"] = name
            category = _text_id(msg, "category")
            if category is not None:
                data["category"] = category
            ref = _first(props, ("referrer",)) or _first(page, ("referrer",))
            if ref is not None:
                data["referrer"] = ref[1]
            if kind == "screen":
                channel = "app"
        elif kind == "identify":
            etype = "identify"
            data = {}
            event_traits = traits
        elif kind == "group":
            etype = "custom"
            group = _text_id(msg, "groupId")
            if group is None:
                raise EventError("groupId", "required: the id of the group (account, company)")
            data = {"name": "group", "group_id": group}
            if traits:
                data["group_traits"] = traits
        elif kind == "alias":
            etype = "identify"
            prev, uid = _text_id(msg, "previousId"), _text_id(msg, "userId")
            if prev is None or uid is None:
                raise EventError("previousId" if prev is None else "userId",
                                 "required: alias links previousId to userId")
            data = {"previous_id": prev}
        else:
            raise EventError("type", f"{kind!r} is not a message type of the tracking spec "
                                     f"({', '.join(MESSAGE_TYPES)})")
        if context:
            data["context"] = context
        if kind == "alias":
            ids = [(self.user_ns, uid), (self.anon_ns, prev)]
            origin[f"identities.{self.user_ns}"], origin[f"identities.{self.anon_ns}"] = "userId", "previousId"
        else:
            ids = self.identities(msg, traits, context, origin)
        if not ids:
            raise EventError("userId", "required: userId or anonymousId")
        return Converted(etype, _ts_us(msg, now_us, sent_at), ids, idempotency_key(touchpoint, message_id), data,
                         touchpoint, origin, channel, dict(event_traits) if event_traits else None)

    @staticmethod
    def _properties(props: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = _FIELD_NAMES
        for k, v in props.items():
            if v is None:
                continue
            name = names.get(k)
            if name is None:
                name = field_name(str(k))
                if len(names) < _FIELD_NAMES_MAX and type(k) is str:
                    names[k] = name
            out[name] = v
        return out
