"""The store's counters kept in the change feed's chunk: where a commit's counts go (generation 15).

``root['counters']`` is one :class:`~shopkeeper.records.Counters` record (generation 9). Rewritten by
every commit that counts, it was one of a lone event's three records through the hub's writer (the
customer, the feed's chunk, the counters: ~80 calls of ZODB's commit machinery each,
docs/benchmarks.md §96). Now a commit that writes the feed's chunk anyway puts its counts in that
chunk (its ``deltas``) while the chunk is the one the record names (``Counters.pending``); the first
commit into a new chunk that later commits will join folds the old one's deltas into the record and
names the new chunk. Lone events share a chunk for :data:`~shopkeeper.engine.feed.TAIL_ENTRIES`
entries, so the record is written about once per 16 lone commits (with the folded chunk); a group
commit, whose chunk no commit joins, writes the record as before.

Why this keeps the counts exact, kill -9 included: a count is committed in the same transaction as
what it counts (in the record, or in the chunk that transaction writes), and every read of a counter
adds the pending chunk's deltas (``Counters.get``: one more record read, whatever the store's size).
Why not counts kept in memory and written every N commits: a crash would lose up to N of them.
Why not in the transaction's metadata: RelStorage's history-free mode keeps none.

A commit with no feed entry (an offline import, an Ingestor without the feed's processor) writes the
record as before. Only the pending chunk holds deltas: a fold clears them.
"""

from __future__ import annotations

from typing import Any

from ..records import Counters


def settle(counters: Any, chunk: Any, joinable: bool) -> None:
    """Before the commit of a transaction that wrote the change feed's ``chunk`` (a
    :class:`~shopkeeper.engine.records.FeedChunk`; the feed's before-commit hook): this transaction's
    counts move into ``chunk`` when it is the pending chunk, and ``counters`` is left unwritten. Else
    ``counters`` is written with them, and, when later commits will join ``chunk`` (``joinable``: it
    holds fewer entries than ``feed.TAIL_ENTRIES``), the pending chunk is folded into the values and
    ``chunk`` named pending. So a group commit (a chunk of its own, which no commit joins) writes the
    record as before and leaves the pending chunk as it is.

    Beside other writers of the store (a second process appending to the feed, the sequencer beside
    staging hubs that count in the record): folding rewrites the folded chunk without its deltas, so a
    commit moving counts into that chunk meanwhile conflicts with the fold on the chunk and retries
    (``FeedChunk`` resolves no conflict); two folds at once conflict on the chunk too, or, with none
    pending, on the record (``Counters._p_resolveConflict``); plain counts in the record merge as ever.
    Nothing moves — the record is written as it is, which is always exact — when the record was changed
    otherwise (``set``). Savepoints need nothing more: storing the record at a savepoint marks it
    unchanged, so ``Counters.change`` starts the transaction's changes again from there, and the commit
    copies the savepoint's state of the record (which holds the changes before) beside the chunk's."""
    if type(counters) is not Counters or not counters._p_changed:  # (before generation 9) / nothing counted
        return
    mine = counters._v_delta
    if counters.pending is chunk:
        if mine is not None:
            chunk.add_deltas(mine)
            counters.moved(mine)
        return
    if joinable:
        fold(counters, chunk)


def fold(counters: Any, then: Any = None) -> None:
    """The pending chunk's deltas into ``counters``' values, cleared from the chunk (which is rewritten:
    see :func:`settle`), and ``then`` named pending (None: no chunk): when another chunk is named, and
    when the feed trims (a trimmed pending chunk would still count — the record names the chunk, not its
    key — but the record would keep it alive until the next fold)."""
    if type(counters) is not Counters or (counters.pending is None and then is None):
        return
    pending = counters.pending
    counters.fold_in(pending.take_deltas() if pending is not None else None, then)
