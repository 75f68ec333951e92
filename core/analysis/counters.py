"""Many named counters in one record that merges concurrent increments: ``Counters``.

Why: the analysis processor counts outcomes (offer × segment × shown/accepted/declined, e-mail
campaigns) and segment sizes on nearly every event. As one ``BTrees.Length`` per key, a group
commit of 500 events rewrote ~56 of them — a third of all its records. One ``Counters`` record
per kind is written once per group commit, whatever the number of keys touched.

The record holds every key of its kind (hundreds to a few thousand: offers × learning segments ×
3 outcomes, e-mail campaigns × 2): tens of KB at most, rewritten once per group commit that
counts something. The class lives in :mod:`shopkeeper.records` since the store's own counters are
one too (generation 9); records written before name this module, which must keep importing it.
"""

from __future__ import annotations

from ..records import Counters

__all__ = ["Counters"]
