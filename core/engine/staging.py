"""One change feed across several hubs sharing a store (docs/scaleout.md): each hub's writer
stages its transactions' entries, and the ``feed`` lease holder sequences them into ``changes``.

Split from :mod:`.feed` (which re-exports every name here, so ``feed.sequence`` and friends keep
working) because the feed module had grown past the layout cap with two jobs: the single-hub
append/read/trim path, and this multi-hub staging. The pickled classes (``Staged``,
``StagingHead``) stay in :mod:`.records`, aliased in :mod:`.feed` for stores written before.
"""

from __future__ import annotations

import weakref
from typing import Any

from persistent import Persistent

from ..customer import now_us
from ..store import Folders
from .feed import Change, _max_key, _put, _txn_feed, changes_tree
from .records import Staged, StagingHead

# -- one feed across several hubs (docs/scaleout.md) ---------------------------------------
#
# Hubs sharing a store must not all insert into ``changes`` with cursors taken from their
# clocks: a transaction that took cursor 100 can commit after one that took 105, and a watcher
# that already passed 105 would never see 100. So each hub stages its entries — one
# ``Staged`` record per transaction, in a tree only that hub writes (no conflicts between hubs)
# — and the hub holding the ``feed`` lease moves them into ``changes`` in commit order: the
# order of the staged records' commit tids (``_p_serial``), which the storage assigns in commit
# order. A staged record not visible to the sequencer's snapshot commits later, with a higher
# tid, so it is sequenced after everything already sequenced: every change once, in commit order.

STAGING = "feed_staging"  # hub id -> LOBTree seq -> Staged (written by that hub's writer only)
POSITIONS = "feed_positions"  # hub id -> last seq sequenced (written by the sequencer only)
HEADS = "feed_heads"  # hub id -> StagingHead: the fence between a hub's staging and its reclaim

#: databases whose hub stages its entries: ZODB.DB -> hub id
_STAGING_HUB: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def create_staging(root: Any) -> None:
    """The named evolve steps ``feed_staging`` and ``feed_heads`` (contributed by :mod:`.steps`)."""
    from BTrees.OOBTree import OOBTree

    for name in (STAGING, POSITIONS, HEADS):
        if name not in root:
            root[name] = OOBTree()


def stage_in(db: Any, hub_id: str | None) -> None:
    """Make the writers of ``db`` (a ``ZODB.DB``) stage feed entries as hub ``hub_id`` (None: stop)."""
    if hub_id is None:
        _STAGING_HUB.pop(db, None)
    else:
        _STAGING_HUB[db] = hub_id


class _TxnStage:
    __slots__ = ("record", "last")

    def __init__(self, record: Staged) -> None:
        self.record = record
        self.last = 0


def _stage(folders: Folders, hub: str, kind: str, customer_id: str, event_type: str, channel: str,
           at: int | None, interaction_key: int, segments: tuple[str, ...], detail: str) -> Change:
    txn = folders.conn.transaction_manager.get()
    try:
        state = txn.data(_TxnStage)
    except KeyError:
        root = folders.root
        if HEADS not in root:
            create_staging(root)
        from BTrees.LOBTree import LOBTree

        trees, heads = root[STAGING], root[HEADS]
        tree = trees.get(hub)
        if tree is None:
            tree = trees[hub] = LOBTree()
        head = heads.get(hub)
        if head is None:
            head = heads[hub] = StagingHead(_max_key(tree))
        head.last += 1  # written by every staging transaction: the fence against reclaim_staging
        state = _TxnStage(Staged())
        tree[head.last] = state.record
        txn.set_data(_TxnStage, state)
    cursor = max(now_us(), state.last + 1)  # provisional: the sequencer gives the store-wide one
    state.last = cursor
    at = at if at is not None else cursor
    state.record.entries.append((kind, customer_id, event_type, channel, at, interaction_key, segments, detail))
    return Change(cursor, kind, customer_id, event_type, channel, at, interaction_key, segments, detail)


def pending(folders: Folders) -> bool:
    """Whether any hub has staged entries not sequenced yet (a cheap read before :func:`sequence`)."""
    trees, positions = folders.root.get(STAGING), folders.root.get(POSITIONS)
    if trees is None:
        return False
    return any(_max_key(tree) > positions.get(hub, 0) for hub, tree in trees.items())


def sequence(folders: Folders, limit: int = 5000) -> list[Change]:
    """Move staged entries of every hub into ``changes`` in commit order (in the current
    transaction, on the ``feed`` lease holder's writer); returns the entries with their cursors."""
    trees, positions = folders.root.get(STAGING), folders.root.get(POSITIONS)
    if trees is None:
        return []
    records = []
    cutoff = None  # a hub with more than `limit` waiting: nothing committed after its last taken one
    for hub, tree in trees.items():
        taken = 0
        for seq, rec in tree.items(min=positions.get(hub, 0), excludemin=True):
            rec._p_activate()
            records.append((rec._p_serial, hub, seq, rec))
            taken += 1
            if taken >= limit:
                cutoff = rec._p_serial if cutoff is None else min(cutoff, rec._p_serial)
                break
    if cutoff is not None:  # the rest of that hub is sequenced next round, still in commit order
        records = [r for r in records if r[0] <= cutoff]
    records.sort(key=lambda r: r[:3])
    tree = changes_tree(folders)
    state = _txn_feed(folders, tree)
    out: list[Change] = []
    done: dict[str, int] = {}
    for _serial, hub, seq, rec in records:
        for kind, customer_id, event_type, channel, at, key, segments, detail in rec.entries:
            cursor = max(now_us(), state.last + 1)
            state.last = cursor
            change = Change(cursor, kind, customer_id, event_type, channel, at, key, segments, detail)
            _put(tree, state, tuple(change))
            out.append(change)
        done[hub] = seq
    for hub, seq in done.items():
        positions[hub] = seq
    return out


def trim_staging(folders: Folders, hub: str, batch: int = 20_000) -> int:
    """Drop this hub's staged records the sequencer has moved (run on this hub's writer)."""
    trees, positions = folders.root.get(STAGING), folders.root.get(POSITIONS)
    tree = trees.get(hub) if trees is not None else None
    if tree is None:
        return 0
    # the newest record stays even when sequenced: the next seq is counted on from it
    doomed = list(tree.keys(max=min(positions.get(hub, 0), _max_key(tree) - 1)))[:batch]
    for k in doomed:
        del tree[k]
    return len(doomed)


def hub_lease(hub: str) -> str:
    """The lease a hub sharing the store holds while it runs (``shopkeeper.engine.leases``):
    renewed by its feed thread, released at stop, lapsed when it died."""
    return f"hub:{hub}"


#: a staging tree from before the fence (no StagingHead) is reclaimed only after this long quiet
LEGACY_QUIET_US = 24 * 3600 * 1_000_000

#: a hub whose ``hub:`` lease *lapsed* (not released) is reclaimed only this long after: a lapse
#: is what a busy hub shows too (its renewal waits for the group its writer is committing — under
#: load, a group retried after a conflict took longer than the lease's 5 s margin), and reclaiming
#: a live hub costs it a conflict and its whole group applied again (benchmarks §47, §57). Nothing
#: waits for a reclaim — it only tidies the staging of hubs that are gone — so minutes are free.
LAPSED_GRACE_US = 300 * 1_000_000


def reclaim_staging(folders: Folders, now: int | None = None) -> list[str]:
    """Remove the staging of hubs that are gone (on the ``feed`` lease holder's writer): a hub's
    tree, position, head and ``hub:`` lease go when everything it staged is sequenced and its
    lease was released, or lapsed more than :data:`LAPSED_GRACE_US` ago. Returns the hubs reclaimed.

    Why it is safe even if the hub is alive after all (paused past its lease): the reclaim writes
    the hub's :class:`StagingHead`, which each of its staging transactions writes too, so one of
    the two gets a ``ConflictError`` — a staging that commits first leaves a record this retry
    sees unsequenced (nothing reclaimed); one that retries after the reclaim starts a new tree,
    sequenced from seq 1. The pack then collects the unreachable records."""
    from .leases import FOLDER as LEASES

    trees, positions, heads = folders.root.get(STAGING), folders.root.get(POSITIONS), folders.root.get(HEADS)
    if not trees:
        return []
    leases = folders.root.get(LEASES)
    now = now if now is not None else now_us()
    gone = []
    for hub, tree in list(trees.items()):
        last = _max_key(tree)
        if last > positions.get(hub, 0):
            continue  # not all sequenced yet
        lease = leases.get(hub_lease(hub)) if leases is not None else None
        if lease is not None and lease.expires and lease.expires + LAPSED_GRACE_US > now:
            continue  # the hub is alive, or its lease lapsed so lately that it may be only busy
        head = heads.get(hub) if heads is not None else None
        if head is not None:
            head.last = -1  # the fence: conflicts with any staging of this hub since our snapshot
            del heads[hub]
        elif last and now - _commit_us(tree[last]) < LEGACY_QUIET_US:
            continue  # staged by a hub from before the fence: wait until it has long been quiet
        del trees[hub]
        if hub in positions:
            del positions[hub]
        if lease is not None:
            del leases[hub_lease(hub)]
        gone.append(hub)
    return gone


def _commit_us(record: Persistent) -> int:
    from persistent.timestamp import TimeStamp

    record._p_activate()
    return int(TimeStamp(record._p_serial).timeTime() * 1_000_000)
