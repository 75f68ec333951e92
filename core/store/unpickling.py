"""Loading records without a Python call per pickle opcode: ZODB's reader gets a peekable buffer.

Why: ZODB's ``ObjectReader`` unpickles every record it loads from an ``io.BytesIO`` (a record is
two pickles, class then state, so it cannot use ``pickle.loads``). The C unpickler prefetches
its input only from a file that has ``peek()``; ``BytesIO`` has none (CPython gh-90533, added in
3.16), so the unpickler calls ``read(n)`` — a Python-level call that makes a new ``bytes`` — for
every opcode. A bucket of 60 small entries took ~96 µs to unpickle that way and ~29 µs with a
``peek`` (measured on this machine, docs/benchmarks.md §34); a campaign dry run reading the
audience index's buckets spent ~20% of its instructions there, and every cold load of a
customer record pays it too.

:class:`PeekableBytesIO` adds ``peek`` (the bytes from the position on, up to ``size``, without
moving it); the unpickler then reads from its own prefetched buffer and, after each pickle,
advances the file by exactly what it consumed (``_Unpickler_SkipConsumed``), so the second
pickle of a record starts where it must. :func:`install` makes it the ``BytesIO`` of
``ZODB.serialize`` (the reader, ``referencesf`` and the writer's buffer, where it changes
nothing); ``shopkeeper.store`` installs it on import. Same bytes in, same objects out:
``tests/test_store_unpickling.py``.

Second, every persistent reference in a loaded record (a customers-folder bucket holds one per
customer) goes through ZODB's ``ObjectReader._persistent_load`` and ``load_persistent``: two Python
frames and five C calls (``isinstance`` three times, ``issubclass``, the cache lookup) before the
ghost is made. :func:`_persistent_load` does the common case — an ``(oid bytes, class)`` pair of a
class already seen to load that way — in one frame and the three calls it needs (the cache lookup,
``__new__``, ``new_ghost``); anything else (a class still to check, a class given by name, a broken
class, weak and cross-database references) takes ZODB's own path, which is how a class is first
seen. A lone event through the writer cold-loads ~10 references (docs/benchmarks.md §96).
"""

from __future__ import annotations

import io
from typing import Any

import ZODB.broken
import ZODB.serialize


class PeekableBytesIO(io.BytesIO):
    """``BytesIO`` with ``peek``, so a C unpickler reading from it prefetches (see module)."""

    def peek(self, size: int = 0) -> bytes:
        pos = self.tell()
        data = self.read(size if size > 0 else 1)
        self.seek(pos)
        return data


_zodb_persistent_load = ZODB.serialize.ObjectReader._persistent_load
_zodb_load_persistent = ZODB.serialize.ObjectReader.load_persistent
#: classes ZODB's ``load_persistent`` made a ghost of from a class object: not broken, ``__new__``
#: works (it is the same class object each time: a module reloaded gives new objects, checked anew)
_ghostable: set[type] = set()


def _persistent_load(self: Any, reference: Any) -> Any:
    """ZODB's ``ObjectReader._persistent_load``, with its common case inline (see the module)."""
    if reference.__class__ is tuple:
        try:
            oid, klass = reference
        except ValueError:
            return _zodb_persistent_load(self, reference)
        if klass in _ghostable and oid.__class__ is bytes:
            obj = self._cache.get(oid, None)
            if obj is None:
                try:
                    obj = klass.__new__(klass)
                except TypeError:  # as ZODB does: the record itself may tell how to make it
                    return self._conn.get(oid)
                self._cache.new_ghost(oid, obj)
            return obj
    return _zodb_persistent_load(self, reference)


def _load_persistent(self: Any, oid: Any, klass: Any) -> Any:
    """ZODB's ``load_persistent``; a class object it made a ghost of is remembered as ghostable."""
    obj = _zodb_load_persistent(self, oid, klass)
    if klass.__class__ is not tuple and obj.__class__ is klass and not issubclass(klass, ZODB.broken.Broken):
        _ghostable.add(klass)
    return obj


def install() -> None:
    """Make ZODB read records through :class:`PeekableBytesIO` and :func:`_persistent_load` (idempotent)."""
    ZODB.serialize.BytesIO = PeekableBytesIO  # type: ignore[attr-defined]
    ZODB.serialize.ObjectReader._persistent_load = _persistent_load  # type: ignore[method-assign]
    ZODB.serialize.ObjectReader.load_persistent = _load_persistent  # type: ignore[method-assign]


def installed() -> bool:
    return (ZODB.serialize.BytesIO is PeekableBytesIO  # type: ignore[attr-defined]
            and ZODB.serialize.ObjectReader._persistent_load is _persistent_load)


__all__ = ["PeekableBytesIO", "install", "installed"]
