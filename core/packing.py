"""Packing a persistent object's plain attributes into one ``bytes`` value (``Customer.__getstate__``).

ZODB pickles a record with a Python ``persistent_id`` hook that it calls for *every* object the
pickler visits; the C pickler alone, given a dispatch table, visits the same values without any
Python call. The table refuses BTrees and persistent containers by exact type: a value holding one
must stay a reference in the record (packing would copy it)."""

from __future__ import annotations

import io
import pickle
import threading
from typing import Any

from persistent import Persistent


def _refuse_persistent(obj: Any) -> Any:
    raise _NotPlain


class _NotPlain(Exception):
    """A value to pack holds a persistent object (e.g. rules' ``rule_state['outbox']`` LOBTree)."""


def _refusing_table() -> dict[type, Any]:
    import BTrees
    from persistent.list import PersistentList
    from persistent.mapping import PersistentMapping

    table: dict[type, Any] = {Persistent: _refuse_persistent, PersistentList: _refuse_persistent,
                              PersistentMapping: _refuse_persistent}
    for fam in ("OO", "IO", "OI", "II", "LO", "OL", "LL", "IF", "LF", "OU", "UO"):
        mod = getattr(BTrees, f"{fam}BTree", None)
        if mod is None:
            try:
                mod = __import__(f"BTrees.{fam}BTree", fromlist=["x"])
            except ImportError:
                continue
        for kind in ("BTree", "Bucket", "Set", "TreeSet"):
            cls = getattr(mod, f"{fam}{kind}", None)
            if cls is not None:
                table[cls] = _refuse_persistent
    return table


_REFUSING: dict[type, Any] | None = None
#: one pickler and buffer per thread, reused: making them was ~2.5 µs of each customer record's write
_local = threading.local()


def pack_plain(values: dict[str, Any]) -> bytes | None:
    """``values`` as one pickle made by the C pickler without ZODB's hook, or None when one of them
    holds a persistent object (that must stay a reference: packing would copy it)."""
    try:
        buf, p = _local.pickler
    except AttributeError:
        global _REFUSING
        if _REFUSING is None:
            _REFUSING = _refusing_table()
        buf = io.BytesIO()
        p = pickle.Pickler(buf, 4)
        p.dispatch_table = _REFUSING  # C-level, by exact type: BTrees and persistent containers refuse
        _local.pickler = buf, p
    buf.seek(0)
    buf.truncate()
    try:
        p.dump(values)
    except _NotPlain:
        return None
    finally:
        p.clear_memo()  # the memo would keep every value packed alive, and refer to them in the next
    return buf.getvalue()


