"""Data-subject rights: access (everything held about a person) and erasure.

Erasure replaces the customer with an empty shell (status ``forgotten``), removes every
identity from the index and leaves a *tombstone* per identity: a keyed hash, so that a
re-import or a late event carrying the same email is refused instead of resurrecting the
person, while the store itself no longer holds the email. Merge records and proposals that
mention the person are deleted too (they hold identity snapshots). The old revisions stay
in the storage file until ``Store.pack()``; FileStorage is opened with ``pack_keep_old=False``
so packing leaves no ``Data.fs.old`` copy behind.
"""

from __future__ import annotations

from typing import Any

from BTrees.LOBTree import LOBTree

from .customer import HARD_FACT_DEFAULTS, STATUS_FORGOTTEN, Customer, now_us
from .identity import tombstone_key
from .identitymap import IdentityMap
from .offerlog import drop as drop_offers
from .scoretable import forget as forget_scores
from .store import Folders
from .view import customer_view, interaction_view


def export_customer(folders: Folders, customer: Customer) -> dict[str, Any]:
    """Everything held about this person (right of access), as JSON-ready data."""
    view = customer_view(customer, recent=0)
    view["rules"] = {name: rule for name, rule in customer.rules.items()}
    view["rule_state"] = dict(customer.rule_state)
    view["interactions"] = [interaction_view(it) for it in customer.history.values()]
    view["merges"] = [folders.merges[m].as_dict() for m in customer.merged_from if m in folders.merges]
    view["outbox"] = [it.as_dict() for it in (customer.outbox.values() if customer.outbox is not None else ())]
    del view["recent_interactions"]
    return view


def forget(folders: Folders, customer: Customer, *, reason: str = "erasure request", at: int | None = None) -> int:
    """Erase ``customer``'s personal data; returns how many identities were tombstoned."""
    at = at if at is not None else now_us()
    pairs = list(customer.identities.keys())
    for pair in pairs:
        folders.tombstones[tombstone_key(folders, pair)] = at
        if folders.identities.get(pair) == customer.id:
            del folders.identities[pair]
    # merged-away customers that point here carry no data (merge moved it), but their
    # merge records hold identity snapshots: drop both the records and the shells' links
    doomed = {m for m in customer.merged_from}
    doomed |= {mid for mid, rec in folders.merges.items() if customer.id in (rec.absorbed_id, rec.survivor_id)}
    for mid in doomed:
        rec = folders.merges.get(mid)
        if rec is None:
            continue
        shell = folders.customers.get(rec.absorbed_id)
        if shell is not None and shell is not customer and shell.merged_into == customer.id:
            _blank(shell, at, reason)
        del folders.merges[mid]
    for pid, p in list(folders.proposals.items()):
        if customer.id in (p.survivor_id, p.other_id):
            del folders.proposals[pid]
    was_active = customer.status == "active"
    _blank(customer, at, reason)
    if was_active:
        folders.count("customers", -1)
    folders.count("forgotten", 1)
    return len(pairs)


def _blank(c: Customer, at: int, reason: str) -> None:
    drop_offers(c)  # Decide's offer records not folded into the record yet
    c.identities = IdentityMap()  # the empty inline form (generation 10): no record of its own
    c.history = LOBTree()
    c.hard = dict(HARD_FACT_DEFAULTS)
    c.type_counts = {}
    c.daily, c.last_at = {}, {}  # per-day activity is personal data too
    c.soft, c.traits, c.consents, c.scores, c.segments = {}, {}, {}, {}, {}
    if c._p_jar is not None:  # and the customer's rows in the model score tables
        forget_scores(c._p_jar.root(), c.id)
    c.rules, c.rule_state = {}, {}
    c.merged_from = ()
    c.forget_keys()
    if c.outbox is not None:  # nothing may be sent to a forgotten person
        idx = c._p_jar.root().get("outbox") if c._p_jar is not None else None
        for item in c.outbox.values():
            if idx is not None:
                idx.pop((item.channel, item.id), None)
        c.outbox = None
    c.status = STATUS_FORGOTTEN
    c.merged_into = None
    c.forgotten = {"at": at, "reason": reason}
