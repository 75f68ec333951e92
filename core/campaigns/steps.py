"""The campaigns plugin's evolve step, in a module of its own: a store's open runs every plugin's
steps, and importing :mod:`.runs` for one ``OOBTree`` would bring the campaign planner, the rules'
actions and numpy into every offline command (``shopkeeper import`` needs none of them)."""

from __future__ import annotations

from typing import Any

from BTrees.OOBTree import OOBTree

#: the root folder of campaign runs (run id -> :class:`~shopkeeper.campaigns.records.Run`)
ROOT = "campaign_runs"


def create_runs(root: Any) -> None:
    """The named evolve step ``campaign-runs`` (the campaigns plugin's ``shopkeeper_evolve_steps``)."""
    if ROOT not in root:
        root[ROOT] = OOBTree()
