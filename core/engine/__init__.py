"""The write engine: everything that changes the store, knowing no transport.

* :class:`Engine` (:mod:`.engine`) — one process's write path as one object: store,
  vocabulary, processors, the writer, the change-feed broker and after-commit publishing;
* :mod:`.writer` — the one writer thread: group commit for events and operations; every
  committed change is handed to the change feed after the commit;
* :mod:`.ingest` — the apply loop (validate → dedupe → resolve → record → processors) that
  the writer, the importer and offline tools share;
* :mod:`.feed` — the change feed: entries written in the transaction of their change, and the
  in-memory broker that live ``Watch`` streams wait on;
* :mod:`.operations` — the domain operations the hub's servicers call (identify, consent,
  merges, erasure, reads with limits);
* :mod:`.decisions` — recording what ``Decide`` offered, through the writer.

Layering (downward only): CLI and adapters → hub (gRPC) → engine → rules/analysis → domain →
store. Nothing here imports :mod:`shopkeeper.hub` or gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine


def __getattr__(name: str) -> Any:
    """:class:`Engine`, imported when first asked for (PEP 562): importing any ``shopkeeper.engine.*``
    module — the engine's evolve steps every offline command opens its store with, the apply loop an
    import runs — ran this package's ``__init__``, and ``Engine`` brought the writer, ``Decide``'s
    recording, the offer catalogue and the contact policy: ~0.05 s of CPU of each CDNOW command
    that uses none of them (issue 15)."""
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Engine"]
