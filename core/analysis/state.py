"""Where analysis keeps its shared state in the store (root key ``analysis``, generation 4).

=====================  ==========================================================================
``analysis[...]``      holds
=====================  ==========================================================================
``models``             ``OOBTree`` name -> dict: the model in force (``clv``, ``rfm``), with version;
                       ``name@version`` -> the same dict for every version ever fitted
``outcomes``           ``OOBTree`` (offer, segment, outcome) -> ``Length``: learned propensities
                       (shown / accepted / declined per offer × segment; segment ``*`` = everyone)
``segment_sizes``      ``OOBTree`` segment -> ``Length``: members now (updated with every entry/exit)
``segment_history``    ``OOBTree`` (day ``YYYY-MM-DD``, segment) -> size at the end of that day's run
``segment_defs``       ``OOBTree`` segment -> content hash of the definition last fully evaluated
=====================  ==========================================================================

Counters are ``BTrees.Length`` because it resolves concurrent increments instead of
raising ``ConflictError``: two hub processes learning from outcomes of the same offer
never conflict on the counter itself.
"""

from __future__ import annotations

from typing import Any

from BTrees.Length import Length
from BTrees.OOBTree import OOBTree

from ..store import register_evolve_step

FOLDERS = ("models", "outcomes", "segment_sizes", "segment_history", "segment_defs")


def create_analysis_folder(root: Any) -> OOBTree:
    """Create (or complete) ``root['analysis']``; idempotent: the named evolve step ``analysis``."""
    if "analysis" not in root:
        root["analysis"] = OOBTree()
    a = root["analysis"]
    for name in FOLDERS:
        if name not in a:
            a[name] = OOBTree()
    return a


register_evolve_step("analysis", create_analysis_folder)  # generation 4's folders, contributed by name


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


def bump(tree: OOBTree, key: Any, delta: int = 1) -> None:
    """Add ``delta`` to the ``Length`` counter at ``key`` (created on first use)."""
    c = tree.get(key)
    if c is None:
        tree[key] = c = Length(0)
    c.change(delta)


def count(tree: OOBTree | None, key: Any) -> int:
    if tree is None:
        return 0
    c = tree.get(key)
    return c() if c is not None else 0


def customer_root(customer: Any) -> Any:
    """The root of the database a persistent customer was loaded from (None if detached)."""
    jar = getattr(customer, "_p_jar", None)
    return jar.root() if jar is not None else None
