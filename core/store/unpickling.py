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
"""

from __future__ import annotations

import io

import ZODB.serialize


class PeekableBytesIO(io.BytesIO):
    """``BytesIO`` with ``peek``, so a C unpickler reading from it prefetches (see module)."""

    def peek(self, size: int = 0) -> bytes:
        pos = self.tell()
        data = self.read(size if size > 0 else 1)
        self.seek(pos)
        return data


def install() -> None:
    """Make ZODB read records through :class:`PeekableBytesIO` (idempotent)."""
    ZODB.serialize.BytesIO = PeekableBytesIO  # type: ignore[attr-defined]


def installed() -> bool:
    return ZODB.serialize.BytesIO is PeekableBytesIO  # type: ignore[attr-defined]


__all__ = ["PeekableBytesIO", "install", "installed"]
