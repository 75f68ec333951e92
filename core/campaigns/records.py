"""The campaigns' persistent record classes: a campaign run.

**Persistent classes live here: renaming breaks pickles.** ZODB writes a record's class as
``module.name`` into the record and into every reference to it, so a class must stay at the path
its records were written with for as long as any store holds one. The logic around a run
(:mod:`.runs`, :mod:`.entries`) can be split and renamed; the class it stores is defined here
(``tests/test_records.py`` fails on a ``Persistent`` subclass defined elsewhere).

Runs written before this module existed name ``shopkeeper.campaigns.runs.Run``: that module imports
the class from here, so the old path keeps loading (:data:`OLD_PATHS`). Runs written now name this
module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from BTrees.OOBTree import OOBTree
from persistent import Persistent

if TYPE_CHECKING:
    from .model import Campaign

#: a run's states (the record holds one; :mod:`.runs` moves between them)
SNAPSHOT, RUNNING, PAUSED, CANCELLED, DONE = "snapshot", "running", "paused", "cancelled", "done"


class Run(Persistent):
    """One send of a campaign (its states and operations: :mod:`.runs`)."""

    def __init__(self, run_id: str, campaign: Campaign, at: int, by: str, trigger: str) -> None:
        self.id = run_id
        self.campaign = campaign.name
        self.version = campaign.version
        self.definition = dict(campaign.source)  # what was planned, even if the file changes later
        self.status = SNAPSHOT
        self.trigger = trigger  # manual | once | recurring | segment_entry
        self.created_at = at
        self.created_by = by
        self.snapshot_at = 0
        self.snapshot_done = False
        self.plan: OOBTree = OOBTree()  # customer id -> (channel, code, detail, deferred)
        self.cursor: str | None = None  # last customer id delivered
        self.delivered = 0  # plan entries past the cursor
        self.counts: dict[str, int] = {}
        self.updated_at = at
        self.finished_at = 0
        self.error = ""

    def campaign_def(self) -> Campaign:
        import yaml

        from .model import parse_campaign

        return parse_campaign(yaml.safe_dump(self.definition, sort_keys=False), f"run {self.id}")

    def bump(self, add: dict[str, int], at: int) -> None:
        counts = dict(self.counts)
        for k, n in add.items():
            counts[k] = counts.get(k, 0) + n
        self.counts = counts
        self.updated_at = at

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "campaign": self.campaign, "version": self.version, "status": self.status,
                "trigger": self.trigger, "created_at": self.created_at, "created_by": self.created_by,
                "snapshot_at": self.snapshot_at, "planned": len(self.plan) if self.snapshot_done else 0,
                "delivered": self.delivered, "counts": dict(self.counts), "updated_at": self.updated_at,
                "finished_at": self.finished_at, "error": self.error}


#: pickled paths of records written before this module existed -> the class's name here; the
#: module named must keep importing the class (a pickle alias)
OLD_PATHS: dict[str, str] = {
    "shopkeeper.campaigns.runs.Run": "Run",
}
