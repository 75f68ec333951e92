"""Where analysis keeps its shared state in the store (root key ``analysis``, generation 4).

=====================  ==========================================================================
``analysis[...]``      holds
=====================  ==========================================================================
``models``             ``OOBTree`` name -> dict: the model in force (``clv``, ``rfm``), with version;
                       ``name@version`` -> the same dict for every version ever fitted
``outcomes``           ``Counters`` (offer, segment, outcome) -> count: learned propensities
                       (shown / accepted / declined per offer × segment; segment ``*`` = everyone)
``segment_sizes``      ``Counters`` segment -> members now (updated with every entry/exit)
``segment_history``    ``OOBTree`` (day ``YYYY-MM-DD``, segment) -> size at the end of that day's run
``segment_defs``       ``OOBTree`` segment -> content hash of the definition last fully evaluated
=====================  ==========================================================================

Counters are one :class:`~.counters.Counters` record per kind (they were one ``BTrees.Length``
per key until the named step ``analysis-counters`` converted them: ~56 records per group commit
became 2). Like ``Length`` it resolves concurrent increments instead of raising
``ConflictError``: two hub processes learning from outcomes of the same offer never conflict on
the counters. :func:`bump`, :func:`count`, :func:`set_count` and :func:`all_counts` read and write
both shapes (a store opened before the step ran).
"""

from __future__ import annotations

from typing import Any

from BTrees.Length import Length
from BTrees.OOBTree import OOBTree

from .. import offerlog, ordertable, scoretable
from ..scoretable import create_score_tables
from ..store import EvolveStep
from .counters import Counters

FOLDERS = ("models", "outcomes", "segment_sizes", "segment_history", "segment_defs")
#: the folders that are counters: one ``Counters`` record each
COUNTER_FOLDERS = ("outcomes", "segment_sizes")


def create_analysis_folder(root: Any) -> OOBTree:
    """Create (or complete) ``root['analysis']``; idempotent: the named evolve step ``analysis``."""
    if "analysis" not in root:
        root["analysis"] = OOBTree()
    a = root["analysis"]
    for name in FOLDERS:
        if name not in a:
            a[name] = Counters() if name in COUNTER_FOLDERS else OOBTree()
    return a


def counters_in_one_record(root: Any) -> None:
    """The named evolve step ``analysis-counters``: each ``OOBTree`` of ``Length`` counters becomes
    one ``Counters`` record with the same values (idempotent)."""
    a = root.get("analysis")
    if a is None:
        return
    for name in COUNTER_FOLDERS:
        tree = a.get(name)
        if tree is not None and not isinstance(tree, Counters):
            a[name] = Counters({k: v() for k, v in tree.items()})


#: the analysis plugin's named evolve steps (its ``shopkeeper_evolve_steps``): generation 4's
#: folders, contributed by name; the counters packed into one record each; batch model scores
#: beside the customers (``shopkeeper.scoretable``): ``root['scores']``. Scores already inside
#: customer records stay readable there (``Customer.scores`` merges both, newer wins) and are
#: superseded by the next fit, so no customer needs rewriting.
EVOLVE_STEPS = (EvolveStep("analysis", create_analysis_folder),
                EvolveStep("analysis-counters", counters_in_one_record),
                EvolveStep("score-tables", create_score_tables),
                # every buyer's orders for the models, kept current on every write (shopkeeper.ordertable)
                EvolveStep("order-table", ordertable.build, keep=ordertable.install),
                # who holds own scores of table names, so `report scores` reads only their records
                EvolveStep("score-owners", scoretable.create_owners, keep=scoretable.install_owners),
                # Decide's offer records beside the customers until folded in (shopkeeper.offerlog)
                EvolveStep("offer-logs", offerlog.create_logs))


def analysis(root_or_folders: Any) -> OOBTree | None:
    """The analysis folder of a store (``Folders``, a root mapping or a connection)."""
    root = getattr(root_or_folders, "root", root_or_folders)
    if callable(root):  # a ZODB Connection's root()
        root = root()
    try:
        return root.get("analysis")
    except AttributeError:
        return None


def folder(root_or_folders: Any, name: str) -> OOBTree | None:
    a = analysis(root_or_folders)
    return a.get(name) if a is not None else None


def bump(tree: Counters | OOBTree, key: Any, delta: int = 1) -> None:
    """Add ``delta`` to the counter at ``key`` (created on first use)."""
    if isinstance(tree, Counters):
        tree.change(key, delta)
        return
    c = tree.get(key)
    if c is None:
        tree[key] = c = Length(0)
    c.change(delta)


def count(tree: Counters | OOBTree | None, key: Any) -> int:
    if tree is None:
        return 0
    c = tree.get(key)
    if c is None:
        return 0
    return c if isinstance(c, int) else c()


def set_count(tree: Counters | OOBTree, key: Any, value: int) -> None:
    """Set the counter at ``key`` to ``value`` (a full re-evaluation's exact size)."""
    if isinstance(tree, Counters):
        tree.set(key, value)
        return
    bump(tree, key, 0)
    tree[key].set(value)


def all_counts(tree: Counters | OOBTree | None) -> dict[Any, int]:
    if tree is None:
        return {}
    return {k: (v if isinstance(v, int) else v()) for k, v in tree.items()}


def customer_root(customer: Any) -> Any:
    """The root of the database a persistent customer was loaded from (None if detached)."""
    jar = getattr(customer, "_p_jar", None)
    return jar.root() if jar is not None else None
