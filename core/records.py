"""The domain's persistent record classes (besides ``Customer``, in :mod:`shopkeeper.customer`).

**Persistent classes live here: renaming breaks pickles.** ZODB writes a record's class as
``module.name`` into the record and into every reference to it, so a class must stay at the path
its records were written with, for as long as any store holds one. Logic modules (identity
resolution and merging, the audience index, the order and score tables) are split and renamed as
the code needs; the classes they store are defined here, in :mod:`shopkeeper.customer`
(``Customer``) and :mod:`shopkeeper.analysis.counters`, and nowhere else (``tests/test_records.py``
fails on a ``Persistent`` subclass defined elsewhere).

Records written before this module existed name the logic modules (:data:`OLD_PATHS`): those
modules import the classes from here, so the old paths keep loading (checked by the test and by
the golden stores, ``tests/test_golden_store.py``). Records written now name this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from persistent import Persistent

if TYPE_CHECKING:
    from .values import Consent, IdentityLink


# -- identity: merges and proposed merges (``root['merges']``, ``root['proposals']``) ----------


class MergeRecord(Persistent):
    """Lineage of one merge, with what is needed to undo it exactly (:mod:`shopkeeper.identity_merge`)."""

    def __init__(self, id: str, survivor_id: str, absorbed_id: str, at: int, reason: str, source: str) -> None:
        self.id = id
        self.survivor_id = survivor_id
        self.absorbed_id = absorbed_id
        self.at = at
        self.reason = reason
        self.source = source
        self.undone_at: int | None = None
        self.absorbed_identities: tuple[tuple[str, str], ...] = ()
        self.absorbed_links: dict[tuple[str, str], IdentityLink] = {}
        self.absorbed_origins: frozenset[str] = frozenset()
        self.absorbed_state: dict[str, Any] = {}
        self.survivor_consents: dict[tuple[str, str], Consent] = {}

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "survivor": self.survivor_id, "absorbed": self.absorbed_id, "at": self.at,
                "reason": self.reason, "source": self.source, "undone_at": self.undone_at}


class MergeProposal(Persistent):
    """A merge the resolver would make but policy leaves to a person."""

    def __init__(self, id: str, survivor_id: str, other_id: str, reason: str, at: int) -> None:
        self.id = id
        self.survivor_id = survivor_id
        self.other_id = other_id
        self.reason = reason
        self.at = at
        self.decided: str | None = None  # "accepted" / "rejected"


#: pickled paths of records written before this module existed -> the class's name here; the
#: module named must keep importing the class (a pickle alias)
OLD_PATHS: dict[str, str] = {
    "shopkeeper.identity.MergeRecord": "MergeRecord",
    "shopkeeper.identity.MergeProposal": "MergeProposal",
}
