"""Between Python values and the protocol's well-known types (Struct, Value, Timestamp).

Protocol-level, beside the generated code: the SDK (``shopkeeper.client``) and the hub
(``shopkeeper.hub.convert``) both import it, so the SDK shares nothing with the server but the
generated code and this one copy of the value conversion. It imports only protobuf.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2


def ts(us: int | None) -> timestamp_pb2.Timestamp | None:
    if us is None:
        return None
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


#: The range ``google.protobuf.Timestamp`` defines (0001-01-01 to 9999-12-31), in seconds.
MIN_TS_SECONDS = -62_135_596_800
MAX_TS_SECONDS = 253_402_300_799


def timestamp_problem(t: timestamp_pb2.Timestamp) -> str | None:
    """Why ``t`` is not a valid Timestamp (the proto's own rules), or None."""
    if not 0 <= t.nanos <= 999_999_999:
        return f"nanos {t.nanos} outside 0..999999999"
    if not MIN_TS_SECONDS <= t.seconds <= MAX_TS_SECONDS:
        return f"seconds {t.seconds} outside 0001-01-01..9999-12-31 ({MIN_TS_SECONDS}..{MAX_TS_SECONDS})"
    return None


def value_to_py(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "number_value":
        n = v.number_value
        # JSON numbers arrive as doubles: give whole numbers back as int (items: 3, not 3.0)
        if math.isfinite(n) and n.is_integer() and abs(n) < 2**53:
            return int(n)
        return n
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_dict(v.struct_value)
    if kind == "list_value":
        return [value_to_py(x) for x in v.list_value.values]
    return None


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    fields = s.fields
    return {k: value_to_py(fields[k]) for k in fields}  # not .items(): a slow Python view on upb maps


def py_to_value(x: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    if x is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(x, bool):
        v.bool_value = x
    elif isinstance(x, (int, float)):
        v.number_value = float(x)
    elif isinstance(x, str):
        v.string_value = x
    elif isinstance(x, dict):
        v.struct_value.CopyFrom(dict_to_struct(x))
    elif isinstance(x, (list, tuple)):
        v.list_value.values.extend(py_to_value(i) for i in x)
    else:
        v.string_value = str(x)
    return v


def dict_to_struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    fill_struct(s, d)
    return s


def fill_struct(s: struct_pb2.Struct, d: dict[str, Any]) -> None:
    """Put ``d`` into ``s`` (as :func:`py_to_value` would, value by value): the common scalar
    values are set in place on the map entry, without building a ``Value`` and copying it —
    this is most of the CPU of a ``GetCustomer`` answer (every recent interaction has data)."""
    fields = s.fields
    for k, x in d.items():
        t = type(x)
        if t is str:
            fields[k if type(k) is str else str(k)].string_value = x
        elif t is float or t is int:
            fields[k if type(k) is str else str(k)].number_value = x
        elif t is bool:
            fields[k if type(k) is str else str(k)].bool_value = x
        else:  # None, containers, subclasses, anything else: the general path
            fields[str(k)].CopyFrom(py_to_value(x))


def set_ts(t: timestamp_pb2.Timestamp, us: int) -> None:
    """Set a message's Timestamp field in place (no Timestamp built and copied in)."""
    t.seconds = us // 1_000_000
    t.nanos = us % 1_000_000 * 1000
