"""The immutable values a ``Customer`` record holds: interactions, facts, consents, identity links,
per-day aggregates.

Why apart from :mod:`shopkeeper.customer`: they are plain values with their own pickled
forms, used by readers that never touch a record (views, exports, rules' messages), while
``Customer`` is the persistent record and its bookkeeping.

Values that sit inside BTrees (``Interaction``, ``IdentityLink``) are *not* persistent: they
are named tuples pickled into their bucket (no field names), which keeps one event at a couple
of hundred bytes on disk instead of a full record with its own oid. New fields must be appended
with defaults so old pickles load.

An ``Interaction`` pickles as one opaque ``bytes`` value (its fields as a plain pickle, see
``Interaction.__reduce__``): ZODB's pickler calls a Python ``persistent_id`` hook for every
object it visits, and a history bucket of 60 interactions with nested data dicts and identity
pairs is ~1,400 visits, re-paid each time the bucket is rewritten. Records written before that
change (class reference plus values) still load.

**Pickled names.** Every record written so far names these classes and functions
``shopkeeper.customer.<name>``; :mod:`shopkeeper.customer` re-exports them, and their
``__module__`` stays ``shopkeeper.customer`` (set at the end of this module), so records
written now are byte-for-byte what the previous version wrote and read by it too (two hubs
of different versions on one store during an upgrade).
"""

from __future__ import annotations

import pickle
import time
from typing import Any, NamedTuple


def now_us() -> int:
    """Wall-clock time in integer microseconds, the unit of every stored timestamp."""
    return time.time_ns() // 1000


class Interaction(NamedTuple):
    """One thing that happened at a touch point; immutable once recorded.

    ``identities`` keeps the (namespace, value) pairs the event carried so that an unmerge
    can send interactions recorded after a merge back to the person they belonged to.
    ``origin`` is the id of the customer that first recorded it (changes only by merge).
    """

    key: int
    ts: int
    type: str
    channel: str
    touchpoint: str = ""
    data: dict[str, Any] = {}  # never mutated: records are immutable
    idempotency_key: str = ""
    identities: tuple[tuple[str, str], ...] = ()
    origin: str = ""

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _unpack_interaction, (_pack_fields(self),)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "ts": self.ts,
            "type": self.type,
            "channel": self.channel,
            "touchpoint": self.touchpoint,
            "data": dict(self.data),
            "idempotency_key": self.idempotency_key,
            "identities": [list(p) for p in self.identities],
            "origin": self.origin,
        }


_PICKLE4 = b"\x80\x04"  # protocol-4 header; framing is optional, so it is stored without either


def _pack_fields(it: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(tuple(it), 4)
    return data[11:] if data[2] == 0x95 else data[2:]  # drop header (and FRAME opcode + length)


def unpack(packed: bytes) -> Interaction:
    """A plain ``Interaction`` from its packed bytes: what a history bucket (generation 7) and the
    recent window hold. Plain, not :class:`_Packed`: the bytes stay where they are stored, and an
    interaction read from them is never pickled as an object again (docs/benchmarks.md §77)."""
    fields = pickle.loads(_PICKLE4 + packed)
    if len(fields) != _N_FIELDS:  # written before fields were appended: fill in their defaults
        return Interaction(*fields)
    return _new_tuple(Interaction, fields)


def fields_of(value: Any) -> tuple[Any, ...]:
    """A stored interaction's fields as a plain tuple (``key, ts, type, channel, touchpoint, data,
    ...``), from its packed bytes or the ``Interaction`` an older bucket's pickle rebuilt — without
    an ``Interaction`` object for the bytes: a bulk reader (the Parquet export) reads millions."""
    if type(value) is not bytes:
        return value
    fields = pickle.loads(_PICKLE4 + value)
    return fields if len(fields) == _N_FIELDS else tuple(Interaction(*fields))  # older: defaults filled


def stored(value: Any) -> Interaction:
    """A history bucket's value as an ``Interaction``: packed bytes (generation 7 on) or, in buckets
    written before, the ``Interaction`` its pickle already rebuilt."""
    return unpack(value) if type(value) is bytes else value


def _unpack_interaction(packed: bytes) -> Interaction:
    """Rebuild an ``Interaction`` from ``__reduce__``'s bytes (module-level: pickles name it); it keeps
    them (:class:`_Packed`), so writing it again hands them back. Since generation 7 only history
    buckets written before hold such pickles."""
    fields = pickle.loads(_PICKLE4 + packed)
    if len(fields) != _N_FIELDS:  # written before fields were appended: fill in their defaults
        return Interaction(*fields)
    it = _new_tuple(_Packed, fields)
    it._b = packed
    return it


class _Packed(Interaction):
    """An ``Interaction`` that carries its packed bytes: as loaded from a record, or as packed once for
    one (``RecentWindow.packed``). Pickling it hands the same bytes back: a history bucket rewritten by
    a spill re-packed every one of its up to 60 interactions, and a spill re-packed the window it had
    loaded packed (docs/benchmarks.md §49, §56, §68). The stored form is the same bytes, so nothing
    stored names this class. A tuple subclass cannot have slots: the bytes sit in its ``__dict__``."""

    _make = Interaction._make  # ``_replace`` gives a plain Interaction: the bytes would be stale

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _unpack_interaction, (self._b,)

    def __repr__(self) -> str:
        return repr(Interaction._make(self))


_new_tuple = tuple.__new__
_N_FIELDS = len(Interaction._fields)


class Fact(NamedTuple):
    """A soft fact with its provenance: who said so, and when."""

    value: Any
    source: str
    at: int

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "at": self.at}


class Consent(NamedTuple):
    """Permission (or refusal) to contact on one channel for one purpose."""

    granted: bool
    source: str
    at: int

    def as_dict(self) -> dict[str, Any]:
        return {"granted": self.granted, "source": self.source, "at": self.at}


class IdentityLink(NamedTuple):
    """Where and when an identity was attached to a customer."""

    source: str
    at: int


#: Hard facts are derived from interactions only; ``recompute_hard_facts`` rebuilds them
#: from the history, which is what makes unmerge exact.
HARD_FACT_DEFAULTS: dict[str, Any] = {
    "orders": 0,
    "total_spend": 0.0,
    "first_seen": None,
    "last_seen": None,
    "last_channel": None,
    "last_order_at": None,
    "interactions": 0,
}


#: Days of per-day aggregates kept in ``Customer.daily`` (windowed segment conditions such as
#: ``spend(days=90)`` read them instead of the history; longer windows read the history).
DAILY_KEEP_DAYS = 400
US_PER_DAY = 86_400 * 1_000_000
SPEND = "$spend"  # the order amounts of a day, in ``Customer.daily[day]`` (not an event type)


class Daily(dict):
    """``Customer.daily``: a plain dict that pickles as one ``bytes`` value (like ``Interaction``),
    so ZODB's Python ``persistent_id`` hook visits it once instead of every day and count.

    A loaded one keeps the bytes it was loaded from (``_b``) and pickles as them again until it is
    changed: a record rewritten for anything but an interaction (a segment joined by a re-evaluation,
    rule state, a consent) re-pickled the aggregates unchanged (docs/benchmarks.md §81, §93). Its one
    writer, :mod:`shopkeeper.hardfacts`, drops them (:meth:`changed`) before it changes a day in place;
    code that changes it elsewhere must do the same. The stored form is unchanged."""

    __slots__ = ("_b",)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        b = getattr(self, "_b", None)
        if b is None:
            b = self._b = pickle.dumps(dict(self), 4)  # as written: unchanged since, it is written as this
        return _unpack_daily, (b,)

    def changed(self) -> None:
        """About to change in place: the bytes kept are stale."""
        self._b = None


def _unpack_daily(packed: bytes) -> Daily:
    d = Daily(pickle.loads(packed))
    d._b = packed
    return d


#: the module every stored pickle names these by (see the module notes)
_PICKLED_MODULE = "shopkeeper.customer"
for _v in (Interaction, Fact, Consent, IdentityLink, Daily, _unpack_interaction, _unpack_daily):
    _v.__module__ = _PICKLED_MODULE
del _v
