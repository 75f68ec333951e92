"""What an interaction event must look like before it may touch a customer.

Validation happens entirely *before* any object is changed, so a bad event is refused
with a precise ``field: reason`` and never leaves a customer half-written. The event-type
vocabulary is open: plugins add types (and the rules issue checks rules against it).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC as _UTC
from datetime import datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

MAX_DATA_BYTES = 16 * 1024
MAX_DATA_KEYS = 64
MAX_IDENTITIES = 16
MAX_KEY_LENGTH = 128
MIN_TS_US = 946_684_800 * 1_000_000  # 2000-01-01: older timestamps are unit mistakes
HISTORICAL_MIN_TS_US = -2_208_988_800 * 1_000_000  # 1900-01-01: the floor for a declared historical import
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_ONE_US = timedelta(microseconds=1)
FUTURE_SLACK_US = 24 * 3600 * 1_000_000  # clocks may be off, but not by more than a day
MAX_TS_SECONDS = 1e15  # far past any unit mistake (ms, µs as seconds); larger could overflow below

_TOKEN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_IDEM = re.compile(r"^[A-Za-z0-9_.:/+=-]{1,128}$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class EventError(ValueError):
    """One problem with one event: ``index`` in its batch (or line), ``field`` and ``reason``."""

    def __init__(self, field: str, reason: str, index: int | None = None,
                 violations: list[tuple[str, str]] | None = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        #: every (field, reason) found in the event, this one first (a client fixes them all at once)
        self.violations = violations or [(field, reason)]
        where = f"event {index}: " if index is not None else ""
        more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        super().__init__(f"{where}{field}: {reason}{more}")

    def at(self, index: int) -> EventError:
        return EventError(self.field, self.reason, index, self.violations)

    @classmethod
    def collect(cls, found: list[EventError]) -> EventError:
        """One error carrying every violation of ``found`` (the first one's field and reason)."""
        return cls(found[0].field, found[0].reason, violations=[v for e in found for v in e.violations])


@dataclass(frozen=True)
class FieldSpec:
    kind: type | tuple[type, ...]
    required: bool = False
    min: float | None = None
    max: float | None = None
    max_length: int = 2048


@dataclass(frozen=True)
class EventType:
    """A kind of interaction and the fields Shopkeeper relies on; extra fields are kept."""

    name: str
    default_channel: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    description: str = ""


_S, _N, _I = str, (int, float), int
BUILTIN_EVENT_TYPES: tuple[EventType, ...] = (
    EventType("page_view", "web", {"url": FieldSpec(_S, True), "referrer": FieldSpec(_S), "session": FieldSpec(_S)},
              "a page was shown on the web site or app"),
    EventType("click", "web", {"url": FieldSpec(_S), "target": FieldSpec(_S)}, "a click on a page element"),
    EventType("identify", "web", {}, "a touch point learned who the visitor is (log-in, form)"),
    EventType("cart_add", "web",
              {"sku": FieldSpec(_S, True), "price": FieldSpec(_N, min=0), "quantity": FieldSpec(_I, min=1)}),
    EventType("checkout_started", "web", {"cart_value": FieldSpec(_N, min=0)}),
    EventType("order", "web", {"order_id": FieldSpec(_S, True), "amount": FieldSpec(_N, True, 0, 10_000_000),
                                "items": FieldSpec(_I, False, 0, 100_000), "currency": FieldSpec(_S, max_length=3)},
              "a purchase; feeds orders and total spend"),
    EventType("return", "web", {"order_id": FieldSpec(_S, True), "amount": FieldSpec(_N, min=0)}),
    EventType("email_sent", "email", {"campaign": FieldSpec(_S), "message_id": FieldSpec(_S)}),
    EventType("email_open", "email", {"campaign": FieldSpec(_S), "message_id": FieldSpec(_S)}),
    EventType("email_click", "email", {"campaign": FieldSpec(_S), "message_id": FieldSpec(_S), "link": FieldSpec(_S)}),
    EventType("email_bounce", "email", {"message_id": FieldSpec(_S), "kind": FieldSpec(_S)}),
    EventType("unsubscribe", "email", {"campaign": FieldSpec(_S)}),
    EventType("call", "phone", {"duration": FieldSpec(_N, False, 0, 86_400), "agent": FieldSpec(_S),
                                 "direction": FieldSpec(_S), "disposition": FieldSpec(_S)},
              "a phone conversation with the contact centre"),
    EventType("offer_shown", "web", {"offer": FieldSpec(_S, True), "placement": FieldSpec(_S)}),
    EventType("offer_accepted", "web", {"offer": FieldSpec(_S, True)}),
    EventType("offer_declined", "web", {"offer": FieldSpec(_S, True)}),
    EventType("custom", "api", {"name": FieldSpec(_S, True)}, "anything else; rules can match on data.name"),
)


class EventTypes:
    """The open vocabulary of event types (built-ins plus what plugins contribute)."""

    def __init__(self, types: tuple[EventType, ...] = BUILTIN_EVENT_TYPES) -> None:
        self._types: dict[str, EventType] = {t.name: t for t in types}

    def register(self, et: EventType) -> None:
        if not _TOKEN.match(et.name):
            raise ValueError(f"event type name {et.name!r} must match {_TOKEN.pattern}")
        self._types[et.name] = et

    def get(self, name: str) -> EventType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def without(self, names: tuple[str, ...] | set[str]) -> EventTypes:
        """A copy lacking ``names`` (a hub without the plugin that registers them; the
        conformance kit uses it to check that adapters notice)."""
        return EventTypes(tuple(t for n, t in self._types.items() if n not in names))


DEFAULT_EVENT_TYPES = EventTypes()


@dataclass(slots=True)
class Event:
    """A validated event; ``ts`` in integer microseconds since the epoch."""

    type: str
    channel: str
    ts: int
    identities: list[tuple[str, str]]
    idempotency_key: str
    data: dict[str, Any] = field(default_factory=dict)
    touchpoint: str = ""
    traits: dict[str, Any] = field(default_factory=dict)
    #: ``ts`` was stamped on arrival (the sender gave none): a redelivery will carry another ts, so
    #: exactly-once must not rely on it (``Customer.has_key``)
    stamped: bool = False


def parse_ts(value: Any, fld: str = "ts", *, earliest_us: int = MIN_TS_US) -> int:
    """Seconds (int/float), ISO 8601 text or an aware ``datetime`` -> µs; timezone-less text is
    taken as UTC. ``earliest_us``: older times are refused as unit mistakes, except where the
    caller knows it is loading history (``shopkeeper import --historical``)."""
    if value is None or value == "":
        return time.time_ns() // 1000
    if isinstance(value, bool):
        raise EventError(fld, "must be a timestamp, not a boolean")
    if isinstance(value, datetime):
        us = (value - _EPOCH) // _ONE_US  # exact, no float rounding
    elif isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > MAX_TS_SECONDS:
            raise EventError(fld, f"must be a number of seconds since 1970 (at most {MAX_TS_SECONDS:.0e})")
        us = int(round(value * 1_000_000))
    elif isinstance(value, str):
        text = value.strip()
        try:
            if re.fullmatch(r"-?\d+(\.\d+)?", text):
                return parse_ts(float(text), fld)
            else:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if dt.tzinfo is None:
                    from datetime import UTC

                    dt = dt.replace(tzinfo=UTC)
                us = int(dt.timestamp() * 1_000_000)
        except EventError:
            raise
        except ValueError:
            raise EventError(fld, f"{value!r} is neither seconds since 1970 nor an ISO 8601 time") from None
    else:
        raise EventError(fld, f"must be seconds or ISO 8601 text, not {type(value).__name__}")
    if us < earliest_us:
        if earliest_us != MIN_TS_US:
            raise EventError(fld, f"{value!r} is before {datetime.fromtimestamp(earliest_us / 1e6, _UTC):%Y-%m-%d}")
        raise EventError(fld, f"{value!r} is before 2000-01-01 (milliseconds sent as seconds?)")
    if us > time.time_ns() // 1000 + FUTURE_SLACK_US:
        raise EventError(fld, f"{value!r} is more than a day in the future (milliseconds sent as seconds?)")
    return us


def _identities(raw: Any) -> list[tuple[str, str]]:
    if raw is None:
        raise EventError("identities", "required: at least one (namespace, value) such as {\"email\": \"…\"}")
    pairs: list[tuple[str, Any]] = []
    if isinstance(raw, Mapping):
        for ns, v in raw.items():
            if isinstance(v, (list, tuple)):
                pairs.extend((ns, x) for x in v)
            else:
                pairs.append((ns, v))
    elif isinstance(raw, (list, tuple)):
        for i, item in enumerate(raw):
            if isinstance(item, Mapping) and "namespace" in item:
                pairs.append((item["namespace"], item.get("value")))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise EventError(f"identities[{i}]", "must be {namespace, value} or [namespace, value]")
    else:
        raise EventError("identities", f"must be a mapping or a list, not {type(raw).__name__}")
    if not pairs:
        raise EventError("identities", "required: at least one identity")
    if len(pairs) > MAX_IDENTITIES:
        raise EventError("identities", f"{len(pairs)} identities, at most {MAX_IDENTITIES} per event")
    out = []
    for ns, v in pairs:
        if not isinstance(ns, str) or not _TOKEN.match(ns):
            raise EventError("identities", f"namespace {ns!r} must be a lower-case token")
        if v is None or (isinstance(v, str) and not v.strip()):
            continue  # an empty column is not an identity
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise EventError(f"identities.{ns}", f"must be text, not {type(v).__name__}")
        out.append((ns, str(v)))
    if not out:
        raise EventError("identities", "every identity value is empty")
    return out


def _check_json_value(value: Any, fld: str, depth: int = 0) -> None:
    if depth > 6:
        raise EventError(fld, "nested more than 6 levels deep")
    t = type(value)  # exact types first: JSON decoders make these, and isinstance on an ABC is slow
    if value is None or t is str or t is int or t is bool:
        return
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise EventError(fld, f"key {k!r} must be text")
            _check_json_value(v, f"{fld}.{k}", depth + 1)
        return
    if isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventError(fld, "must be a finite number")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise EventError(fld, f"key {k!r} must be text")
            _check_json_value(v, f"{fld}.{k}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json_value(v, f"{fld}[{i}]", depth + 1)
        return
    raise EventError(fld, f"{type(value).__name__} is not a JSON value")


#: The C encoder ``json.dumps(v, separators=(",", ":"), default=str)`` builds on every call, made
#: once: a third of the cost for a small event's data. No circular-reference markers: callers check
#: nesting (at most 6 levels, :func:`_check_json_value`) first, so a cycle never reaches it.
_COMPACT_JSON = c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True) \
    if c_make_encoder is not None else None


def json_size(value: Any) -> int:
    """Characters of ``value`` as compact JSON (non-ASCII escaped, other types as ``str``)."""
    if _COMPACT_JSON is None:
        return len(json.dumps(value, separators=(",", ":"), default=str))
    return sum(map(len, _COMPACT_JSON(value, 0)))


_GOOD_FIELD_NAMES: set[str] = set()  # data field names already seen to match _FIELD_NAME
#: why an ``identify`` event with ``data.traits`` is refused: the profile is set from the event's
#: top-level ``traits``; inside ``data`` they were accepted and kept as event data only
_TRAITS_IN_DATA = ("an identify event's traits go at the top level of the event (\"traits\": {...}, beside "
                   "\"data\"), where they set the customer's profile; inside data they would be ignored")


def _check_data(et: EventType, data: Any, json_bound: int | None = None) -> dict[str, Any]:
    """Check ``data`` against ``et``; ``json_bound``, if given, is a proven upper bound of its
    size as JSON (see :func:`validate_decoded`): the exact size is computed only above the limit."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise EventError("data", f"must be a mapping, not {type(data).__name__}")
    if len(data) > MAX_DATA_KEYS:
        raise EventError("data", f"{len(data)} fields, at most {MAX_DATA_KEYS}")
    good = _GOOD_FIELD_NAMES
    for k in data:
        if k not in good:
            if not isinstance(k, str) or not _FIELD_NAME.match(k):
                raise EventError("data", f"field name {k!r} must match {_FIELD_NAME.pattern}")
            if len(good) < 4096:
                good.add(k)
    out = dict(data)
    found: list[EventError] = []
    for name, spec in et.fields.items():
        try:
            _check_field(et, spec, name, out)
        except EventError as exc:
            found.append(exc)
    for k, v in out.items():
        if type(v) is not str and k not in et.fields:
            try:
                _check_json_value(v, f"data.{k}")
            except EventError as exc:
                found.append(exc)
    if "traits" in out and et.name == "identify":  # a silent loss before: kept as event data, never profile
        found.append(EventError("data.traits", _TRAITS_IN_DATA))
    if found:
        raise EventError.collect(found)
    if json_bound is not None and json_bound <= MAX_DATA_BYTES:
        return out
    size = json_size(out)
    if size > MAX_DATA_BYTES:
        raise EventError("data", f"{size} bytes as JSON, at most {MAX_DATA_BYTES}")
    return out


def _check_field(et: EventType, spec: FieldSpec, name: str, out: dict[str, Any]) -> None:
    """Check (and coerce in ``out``) one field ``et`` declares."""
    v = out.get(name)
    fld = "data." + name
    if v is None or v == "":
        if spec.required:
            raise EventError(fld, f"required for {et.name} events")
        out.pop(name, None)
        return
    if type(v) is str and spec.kind is str and spec.min is None and spec.max is None:  # the common case
        if len(v) > spec.max_length:
            raise EventError(fld, f"longer than {spec.max_length} characters")
        return
    if spec.kind is int and isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = out[name] = int(v)
    elif spec.kind == (int, float) and isinstance(v, str):
        try:
            v = out[name] = float(v)
        except ValueError:
            raise EventError(fld, f"{v!r} is not a number") from None
    if isinstance(v, bool) or not isinstance(v, spec.kind):
        want = "text" if spec.kind is str else "a whole number" if spec.kind is int else "a number"
        raise EventError(fld, f"must be {want}, not {type(v).__name__} {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise EventError(fld, "must be a finite number")
    if spec.min is not None and v < spec.min:
        raise EventError(fld, f"{v} is below the minimum {spec.min}")
    if spec.max is not None and v > spec.max:
        raise EventError(fld, f"{v} is above the maximum {spec.max}")
    if isinstance(v, str) and len(v) > spec.max_length:
        raise EventError(fld, f"longer than {spec.max_length} characters")


def validate_event(raw: Mapping[str, Any], types: EventTypes = DEFAULT_EVENT_TYPES, *,
                   index: int | None = None, require_key: bool = True, earliest_us: int = MIN_TS_US) -> Event:
    """Check one raw event (as decoded from JSON or a proto) and return a clean ``Event``."""
    try:
        if not isinstance(raw, Mapping):
            raise EventError("event", f"must be an object, not {type(raw).__name__}")
        etype = raw.get("type")
        if not isinstance(etype, str) or not etype:
            raise EventError("type", "required: the kind of interaction, e.g. page_view or order")
        et = types.get(etype)
        if et is None:
            import difflib

            hint = difflib.get_close_matches(etype, types.names(), n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(types.names())})"
            raise EventError("type", f"unknown event type {etype!r}{more}")
        channel = raw.get("channel") or et.default_channel
        if not isinstance(channel, str) or not _TOKEN.match(channel):
            raise EventError("channel", f"{channel!r} must be a lower-case token such as web, email, phone")
        key = raw.get("idempotency_key")
        if key is None or key == "":
            if require_key:
                raise EventError("idempotency_key", "required: a unique id per event so replays count once")
            key = ""
        elif not isinstance(key, str) or not _IDEM.match(key):
            raise EventError("idempotency_key", f"must be 1-{MAX_KEY_LENGTH} characters of [A-Za-z0-9_.:/+=-]")
        touchpoint = raw.get("touchpoint") or ""
        if not isinstance(touchpoint, str) or len(touchpoint) > 128:
            raise EventError("touchpoint", "must be text of at most 128 characters")
        traits = raw.get("traits") or {}
        if not isinstance(traits, Mapping):
            raise EventError("traits", f"must be a mapping, not {type(traits).__name__}")
        _check_json_value(dict(traits), "traits")
        return Event(
            type=etype,
            channel=channel,
            ts=parse_ts(raw.get("ts"), earliest_us=earliest_us),
            stamped=raw.get("ts") in (None, ""),
            identities=_identities(raw.get("identities")),
            idempotency_key=key,
            data=_check_data(et, raw.get("data")),
            touchpoint=touchpoint,
            traits=dict(traits),
        )
    except EventError as exc:
        if index is not None and exc.index is None:
            raise exc.at(index) from None
        raise


def _check_ts_us(us: int | None) -> int:
    now = time.time_ns() // 1000
    if us is None:
        return now
    if us < MIN_TS_US:
        raise EventError("ts", f"{us / 1e6!r} is before 2000-01-01 (milliseconds sent as seconds?)")
    if us > now + FUTURE_SLACK_US:
        raise EventError("ts", f"{us / 1e6!r} is more than a day in the future (milliseconds sent as seconds?)")
    return us


def validate_decoded(types: EventTypes, etype: str, channel: str, ts_us: int | None,
                     identities: list[tuple[str, str]], key: str, data: dict[str, Any] | None,
                     touchpoint: str, traits: dict[str, Any] | None, *, data_json_bound: int | None = None,
                     index: int | None = None, require_key: bool = True) -> Event:
    """:func:`validate_event` for an event already decoded into native values (a protobuf
    message: strings, integer µs, dicts of JSON values), without building a raw mapping.

    Same checks, same errors. ``data_json_bound``: an upper bound of ``data``'s size as JSON
    (for a protobuf ``Struct``, 6 x its encoded size: one byte never becomes more than six
    JSON characters), which lets the common small event skip serialising its data to JSON.
    """
    try:
        if not etype:
            raise EventError("type", "required: the kind of interaction, e.g. page_view or order")
        et = types._types.get(etype)
        if et is None:
            return validate_event({"type": etype}, types)  # raises the unknown-type error with its hint
        found: list[EventError] = []

        def check(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except EventError as exc:
                found.append(exc)
                return None

        if not channel:
            channel = et.default_channel
        elif not _TOKEN.match(channel):
            found.append(EventError("channel", f"{channel!r} must be a lower-case token such as web, email, phone"))
        if not key:
            if require_key:
                found.append(EventError("idempotency_key", "required: a unique id per event so replays count once"))
        elif not _IDEM.match(key):
            found.append(EventError("idempotency_key",
                                    f"must be 1-{MAX_KEY_LENGTH} characters of [A-Za-z0-9_.:/+=-]"))
        if len(touchpoint) > 128:
            found.append(EventError("touchpoint", "must be text of at most 128 characters"))
        if traits:
            check(_check_json_value, traits, "traits")
        else:
            traits = {}
        ts = check(_check_ts_us, ts_us)
        ids = identities
        if not identities:
            found.append(EventError("identities",
                                    "required: at least one (namespace, value) such as {\"email\": \"…\"}"))
        else:
            for ns, v in identities:  # the common case: short, clean, a known shape
                if not _TOKEN.match(ns) or not v or len(identities) > MAX_IDENTITIES or not v.strip():
                    ids = check(_identities, identities)
                    break
        clean = check(_check_data, et, data, data_json_bound) if data else check(_check_data, et, None)
        if found:
            raise EventError.collect(found)
        return Event(etype, channel, ts, ids, key, clean, touchpoint, traits, ts_us is None)
    except EventError as exc:
        if index is not None and exc.index is None:
            raise exc.at(index) from None
        raise
