"""Schema generations: numbered evolve steps, and the named steps features contribute.

``meta['generation']`` says which layout a store has; :func:`evolve` runs the missing
numbered steps (:data:`EVOLVE_STEPS`), each in its own transaction, and refuses a store
newer than the code. Plugins add no numbered steps here: they contribute **named steps**
(:class:`EvolveStep`) through the ``shopkeeper_evolve_steps`` hook, each run once per store,
after the numbered ones, in its own transaction, and recorded by name in ``meta['steps']``
(name -> µs applied). This package imports no feature package.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import transaction
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from ZODB.Connection import Connection

from ..customer import STATUS_ACTIVE, STATUS_FORGOTTEN, STATUS_MERGED, now_us
from ..records import Counters
from .errors import StoreError


def _gen1(root: Any) -> None:
    """The first layout: customers, identity index, idempotency keys, merges, counters."""
    for name in ("customers", "identities", "idempotency", "merges", "counters", "meta"):
        if name not in root:
            root[name] = OOBTree()
    counters = root["counters"]
    for name in ("customers", "interactions", "duplicates"):
        if name not in counters:
            counters[name] = Length()
    meta = root["meta"]
    if "secret" not in meta:
        meta["secret"] = secrets.token_hex(32)
        meta["created_at"] = now_us()


def _gen2(root: Any) -> None:
    """Erasure and proposed merges: tombstones and a proposals folder."""
    for name in ("tombstones", "proposals"):
        if name not in root:
            root[name] = OOBTree()
    if "forgotten" not in root["counters"]:
        root["counters"]["forgotten"] = Length()


def _gen3(root: Any) -> None:
    """The hub's change feed: committed changes by cursor, for ``Watch`` and resuming."""
    from BTrees.LOBTree import LOBTree

    if "changes" not in root:
        root["changes"] = LOBTree()
    if "changes" not in root["counters"]:
        root["counters"]["changes"] = Length()


def _gen4(root: Any) -> None:
    """Analysis and personalisation: models, learned propensities, segment sizes, offer counts.

    Kept as a number so that every store's generation still means what it meant; the folders
    themselves are the named step ``analysis`` that the analysis plugin contributes
    (it runs on stores of any generation that have not recorded it; it is idempotent)."""


def _gen5(root: Any) -> None:
    """Rules: pending rule timers by due time, (due µs, customer id, timer id) -> rule
    (see ``shopkeeper.rules.runtime``), and a counter of failed rule actions."""
    if "rule_timers" not in root:
        root["rule_timers"] = OOBTree()
    if "rule_failures" not in root["counters"]:
        root["counters"]["rule_failures"] = Length()


def _gen6(root: Any, checkpoint: Callable[[], None]) -> None:
    """Exactly-once moves into the customers' own records (issue 10): every idempotency key of the
    wave-1 global index, and every key in a customer's history, goes into that customer's
    ``key_log`` (``Customer.log_key``); then the global index is replaced by an empty one, which
    nothing writes any more. In place, committing every 2,000 customers (``checkpoint``): the
    generation is recorded only at the end, and re-running the step after a crash is harmless."""
    customers = root["customers"]
    for n, c in enumerate(customers.values(), 1):
        if c.status != STATUS_FORGOTTEN:
            for it in c.history.values():
                if it.idempotency_key:
                    c.log_key(it.idempotency_key, it.ts)
        if c.recent_keys is None:
            c.recent_keys = {}
        if n % 2000 == 0:
            checkpoint()
    legacy = root["idempotency"]
    for n, (key, cid) in enumerate(legacy.items(), 1):
        c = customers.get(cid)
        hops = 0
        while c is not None and c.status == STATUS_MERGED and c.merged_into and hops < 64:
            c, hops = customers.get(c.merged_into), hops + 1
        if c is not None and c.status == STATUS_ACTIVE:  # an erased person's keys: the tombstones refuse
            c.log_key(key, 0)
        if n % 20_000 == 0:
            checkpoint()
    root["idempotency"] = OOBTree()


def _gen7(root: Any) -> None:
    """``history-bytes``: a customer's spilled history ``LOBTree`` holds each interaction's packed
    bytes (``shopkeeper.history``) instead of a pickled ``Interaction`` — two ZODB ``persistent_id``
    calls per entry instead of five each time a spill rewrites a bucket (docs/benchmarks.md §77).
    Lazy: readers take both forms (``values.stored``) and every spill from now on writes bytes, so
    nothing is rewritten here; the generation is recorded so that code older than this, which would
    hand the bytes out as interactions, refuses the store instead of misreading it."""


def _gen8(root: Any) -> None:
    """``key-log-strings``: a customer's spilled idempotency keys (``key_log``) are one string each
    (``shopkeeper.keylog``) instead of a ``(ts, key)`` tuple — one ZODB ``persistent_id`` call per
    entry instead of three each time a spill rewrites the log's bucket (docs/benchmarks.md §77). Lazy:
    a log in tuples is read as it is and converted in place when keys are next added to it
    (``Customer.key_log_v`` says which); recorded so that older code, which would look the strings up
    as tuples and miss them (a redelivery applied twice), refuses the store."""


def _gen9(root: Any) -> None:
    """``counters-one-record``: the store's counters (customers, interactions, duplicates, forgotten,
    changes, rule failures) move from an ``OOBTree`` of ``BTrees.Length`` — one record per counter,
    two of them rewritten by every commit of events (``interactions`` and the change feed's
    ``changes``) — into one :class:`~shopkeeper.records.Counters` record that merges concurrent
    changes per name as ``Length`` did (docs/benchmarks.md §84). In place, values kept; recorded so
    that older code, which reads ``counters[name]`` as a ``Length``, refuses the store."""
    counters = root["counters"]
    if type(counters) is not Counters:
        root["counters"] = Counters({name: length() for name, length in counters.items()})


def _gen10(root: Any) -> None:
    """``identities-inline``: a customer's few identities are kept inside their own record
    (``shopkeeper.identitymap.IdentityMap``) instead of an ``OOBTree`` record of their own — one
    record fewer per new customer and one load fewer per cold read (docs/benchmarks.md §90). Lazy,
    O(1) here: an ``OOBTree`` is read as it is and moves inline on the customer's next write of their
    identities (``identitymap.linked``); recorded so that older code, which cannot unpickle the
    inline form, refuses the store instead of failing on a customer."""


def _gen11(root: Any) -> None:
    """``key-log-pruning``: a customer's spilled idempotency keys are kept for the replay window (at
    least 7 days after they were logged), no longer forever: besides ``key_log`` a customer may have
    ``key_log_old``, the log before, dropped whole when ``key_log`` (begun at ``key_log_at``) is a
    window old (``shopkeeper.keylog``). Lazy and O(1) here: a log from before has ``key_log_at`` 0 and
    its clock starts at its next spill; nothing is walked. Recorded so that older code, which would
    not look in ``key_log_old`` (a redelivery within the window applied twice), refuses the store."""


def _gen12(root: Any) -> None:
    """``customer-tuple-state``: a customer record's state is a tuple ``(hot, identities, _tree,
    key_log, outbox, key_log_old)`` (trailing Nones left out) instead of a dict naming the same
    parts: ZODB's ``persistent_id`` hook visited the dict's key strings too (a customer with history
    and a key log: 12 calls → 10, most customers 4 → 3; ``shopkeeper.packedrecord``). Lazy, O(1):
    dict-form records load as they are and are written as a tuple on the customer's next write.
    Recorded so that older code, which would take the tuple for Persistent's ``(dict, slots)`` state
    and fail to load every customer written since, refuses the store."""


def _gen13(root: Any) -> None:
    """``key-fingerprints``: beside each key log a customer keeps a 4-byte fingerprint of every key in
    it (``key_fp``, ``key_fp_old``, in the record), so that a redelivery is found by its key whatever
    its ts: a client that stamps events at send time resent a run of more than 16 events as new ones
    (issue 10; ``shopkeeper.keylog``). Lazy, O(1) here: a log from before is looked up by ``(ts, key)``
    as before until its next spill, merge or evolve write fingerprints it. Recorded so that older
    code, which would log keys without their fingerprints (a fingerprint miss then skips the log: a
    redelivery applied twice), refuses the store."""


def _gen14(root: Any) -> None:
    """``lane-trees``: the customer-keyed trees two hubs write — the audience index's order facts and
    the order table — become :class:`~shopkeeper.lanetree.LaneTree` (one tree per customer-id lane),
    so one hub's bucket split no longer rewrites a node another hub's group read (issue 17: each such
    split threw the other hub's whole group away; docs/benchmarks.md §101). Lazy, O(1): the tree
    from before is kept whole as the new one's ``legacy`` and its keys move into their lane's tree on
    their next write. Recorded so that older code, which cannot read a ``LaneTree``, refuses the store."""
    from ..lanetree import laned
    from ..records import OrderFacts, OrderRows

    if root.get("orders") is not None:
        root["orders"] = laned(root["orders"], OrderRows)
    index = root.get("audience")
    if index is not None and index.get("order_facts") is not None:
        index["order_facts"] = laned(index["order_facts"], OrderFacts)


def _gen15(root: Any) -> None:
    """``counter-deltas``: a commit that writes the change feed's chunk puts its counts of the store's
    counters in that chunk (``FeedChunk.deltas``) instead of rewriting ``root['counters']``, which names
    the chunk they are pending in and folds them in once per chunk (``shopkeeper.store.counting``): a
    lone event's commit through the writer wrote three records, now about two (docs/benchmarks.md §109).
    Lazy, O(1): nothing to convert — a counters record from before names no pending chunk, and the
    first commit into a chunk names it. Recorded so that older code, which would read the counters
    without the pending deltas (short by up to a chunk's counts), refuses the store."""


def _gen16(root: Any) -> None:
    """``segment-memberships``: a customer's segment memberships move out of its record into a row of
    ``root['memberships']`` (a ``MembershipRows`` tree; ``shopkeeper.memberships``), so a
    segments-only change — a first re-evaluation, a scheduler's run 45 days on — rewrites a small row
    and not the whole record (issue 10; docs/benchmarks.md, the thirteenth session's re-evaluation
    section). Lazy, O(1): only the empty tree is added; a record from before keeps its memberships
    until they next change, which moves them. Recorded so that older code, which reads memberships from
    the record only (a customer would seem to be in no segment), refuses the store."""
    from ..memberships import ROOT, new_tree

    if root.get(ROOT) is None:
        root[ROOT] = new_tree()


def _gen17(root: Any) -> None:
    """``lane-customers``: the trees a hub inserts into when it *creates* customers — the customers
    folder and the audience index's cards — become :class:`~shopkeeper.lanetree.LaneTree` too (the
    order trees did in generation 14). A hub appends its new customers at its lane's end of each;
    with one tree, a bucket split there rewrites the root node every other hub's inserts marked
    read-current, and the other hub's whole group is applied again (a cold two-hub run: 5 of 14
    conflicts on the customers folder, then 8 of 22 on the cards once it was cut; docs/benchmarks.md).
    Lazy, O(1): an empty tree is replaced, a populated one kept whole as ``legacy`` (a customer's
    folder entry is never written again after its creation, so old customers stay there; a card
    moves on its next write). Recorded so that older code, which cannot read a ``LaneTree``,
    refuses the store."""
    from ..lanetree import LaneTree, laned
    from ..records import Cards

    customers = root.get("customers")
    if customers is None or (type(customers) is OOBTree and not customers):  # bool: O(1), no walk
        root["customers"] = LaneTree(OOBTree)
    elif type(customers) is not LaneTree:  # (one already cut is not written again)
        root["customers"] = laned(customers, OOBTree)
    index = root.get("audience")
    if index is not None and index.get("cards") is not None and type(index["cards"]) is not LaneTree:
        index["cards"] = laned(index["cards"], Cards)


#: Evolve steps in order; generation N is reached by running steps 1..N. A step that takes two
#: arguments gets a ``checkpoint()`` that commits its work so far (large stores, one step).
EVOLVE_STEPS: list[Callable[..., None]] = [_gen1, _gen2, _gen3, _gen4, _gen5, _gen6, _gen7, _gen8, _gen9, _gen10,
                                           _gen11, _gen12, _gen13, _gen14, _gen15, _gen16, _gen17]
CURRENT_GENERATION = len(EVOLVE_STEPS)

@dataclass(frozen=True)
class EvolveStep:
    """A named, idempotent evolve step: ``run(root)`` makes (or completes) the root folders a part
    needs, once per store; ``keep(conn, tm)``, when given, is installed on every connection the
    store opens so that what the step built stays current on every write (the audience index's
    before-commit hook).

    Why named, not numbered: a plugin (analysis, campaigns, a third-party one) adds the root
    folders it owns without this package importing it and without plugins competing for the next
    generation number. Plugins contribute steps through the ``shopkeeper_evolve_steps`` hook, and
    so does the engine for its own folders (``shopkeeper.engine.steps``, a built-in plugin). Each step
    runs once per store, in its own transaction, after the numbered ones, and is recorded in
    ``meta['steps']`` (name -> µs applied); renaming a step runs it again.
    """

    name: str
    run: Callable[[Any], None]
    keep: Callable[[Connection, transaction.TransactionManager], None] | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"an evolve step needs a name, not {self.name!r}")
        if not callable(self.run):
            raise ValueError(f"evolve step {self.name!r}: run must be callable, not {self.run!r}")


def evolve_named(conn: Connection, tm: transaction.TransactionManager, steps: Iterable[EvolveStep]) -> list[str]:
    """Run every step of ``steps`` (the plugins' and the engine's, through the hook) that the store behind
    ``conn`` has not recorded, each in its own transaction; return the names run. A step with a
    ``keep`` is also recorded in ``meta['kept']`` (name -> ``module:function`` of the keeper), so
    that any process opening the store keeps that data current (:func:`load_keeper`), as a
    pickle names its class. Only for a store no writer holds (``Store.open``, ``Store.add_steps``
    before a hub starts); on a held store each step is a writer operation (:func:`apply_named`)."""
    root = conn.root()
    ran = []
    for step in list(steps):
        tm.begin()
        done = apply_named(root, step)
        if done is None:
            tm.abort()
            continue
        tm.get().note(f"shopkeeper: evolve step {step.name}" if done else f"shopkeeper: keeper of {step.name}")
        tm.commit()
        if done:
            ran.append(step.name)
    return ran


def apply_named(root: Any, step: EvolveStep) -> bool | None:
    """In the caller's transaction: run ``step`` if the store has not recorded it (True); else
    record its keeper if a store of 326c13c did not (False); else change nothing (None)."""
    meta = root["meta"]
    if step.name in (meta.get("steps") or ()):
        if step.keep is not None and step.name not in (meta.get("kept") or ()):
            _record_keeper(meta, step)  # a step recorded before keepers were (stores of 326c13c)
            return False
        return None
    step.run(root)
    if "steps" not in meta:
        meta["steps"] = OOBTree()
    meta["steps"][step.name] = now_us()
    if step.keep is not None:
        _record_keeper(meta, step)
    return True


def _record_keeper(meta: Any, step: EvolveStep) -> None:
    if "kept" not in meta:
        meta["kept"] = OOBTree()
    meta["kept"][step.name] = f"{step.keep.__module__}:{step.keep.__qualname__}"


def load_keeper(path: str) -> Callable[[Connection, transaction.TransactionManager], None] | None:
    """The keeper recorded as ``module:function`` in ``meta['kept']``, or None when it cannot be
    imported (the plugin that owns the data is not installed)."""
    import importlib

    module, _, name = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return None
    return obj if callable(obj) else None


def evolve(conn: Connection, tm: transaction.TransactionManager, target: int = CURRENT_GENERATION) -> int:
    """Bring the store behind ``conn`` to generation ``target``; return the generation before."""
    root = conn.root()
    meta = root.get("meta")
    found = int(meta.get("generation", 0)) if meta is not None else 0
    if found > CURRENT_GENERATION:
        raise StoreError(
            f"store is at generation {found} but this Shopkeeper only knows up to "
            f"{CURRENT_GENERATION}; upgrade Shopkeeper before opening it"
        )
    def checkpoint() -> None:
        tm.commit()
        tm.begin()

    for gen in range(found + 1, target + 1):
        tm.begin()
        step = EVOLVE_STEPS[gen - 1]
        if step.__code__.co_argcount == 2:
            step(root, checkpoint)
        else:
            step(root)
        root["meta"]["generation"] = gen
        tm.get().note(f"shopkeeper: evolve to generation {gen}")
        tm.commit()
    return found
