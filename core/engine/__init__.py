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

from .engine import Engine

__all__ = ["Engine"]
