"""Merging two customers and undoing it: what moves, what is kept to undo, and the undo.

The merge record classes (:class:`~shopkeeper.records.MergeRecord`,
:class:`~shopkeeper.records.MergeProposal`) live in :mod:`shopkeeper.records`, their stable
pickle path (``shopkeeper.identity`` keeps their old one); this module holds the logic that
writes and reads them. ``shopkeeper.identity``
still offers ``merge``, ``unmerge`` and ``merge_consents`` by those names.
"""

from __future__ import annotations

import secrets
from typing import Any

from BTrees.LOBTree import LOBTree

from .customer import STATUS_ACTIVE, STATUS_MERGED, Consent, Customer, Fact, now_us
from .identity import (
    _UNKNOWN,
    IdentityConfig,
    MergeError,
)
from .offerlog import fold as fold_offers
from .records import MergeRecord
from .store import Folders
from .values import _pack_fields

_STATE_PARTS = ("soft", "traits", "consents", "scores", "segments", "rules", "rule_state")


def merge(folders: Folders, survivor: Customer, absorbed: Customer, *, reason: str, source: str,
          at: int | None = None) -> MergeRecord:
    """Fold ``absorbed`` into ``survivor``, recording what ``unmerge`` needs to undo it."""
    if survivor.id == absorbed.id:
        raise MergeError(f"cannot merge customer {survivor.id} with itself")
    for c in (survivor, absorbed):
        if c.status != STATUS_ACTIVE:
            raise MergeError(f"customer {c.id} is {c.status}, only active customers can be merged")
    at = at if at is not None else now_us()
    for c in (survivor, absorbed):  # Decide's offer records join their records first, then follow them
        fold_offers(c)
    rec = MergeRecord("m_" + secrets.token_hex(8), survivor.id, absorbed.id, at, reason, source)
    rec.absorbed_identities = tuple(absorbed.identities.keys())
    rec.absorbed_links = dict(absorbed.identities.items())
    rec.absorbed_origins = frozenset({absorbed.id} | {it.origin for it in absorbed.history.values() if it.origin})
    rec.absorbed_state = {name: dict(getattr(absorbed, name)) for name in _STATE_PARTS}
    rec.survivor_consents = dict(survivor.consents)

    for pair, link in list(absorbed.identities.items()):
        survivor.link_identity(pair, link)
        absorbed.unlink_identity(pair)
        folders.identities[pair] = survivor.id
    for it in absorbed.history.values():
        survivor.add_interaction(it if it.origin else it._replace(origin=absorbed.id))
    absorbed.history = LOBTree()
    absorbed.hard = dict(absorbed.hard)
    absorbed.recompute_hard_facts()

    survivor.soft = _newest(survivor.soft, absorbed.soft)
    survivor.scores = _newest(survivor.scores, absorbed.scores)
    survivor.traits = {**absorbed.traits, **survivor.traits}
    survivor.segments = {**absorbed.segments, **survivor.segments}
    survivor.rules = {**absorbed.rules, **survivor.rules}
    survivor.consents = merge_consents(survivor.consents, absorbed.consents)
    survivor.merged_from = (*survivor.merged_from, rec.id)
    survivor.remember_keys_of(absorbed)  # a redelivery now resolves to the survivor

    absorbed.status = STATUS_MERGED
    absorbed.merged_into = survivor.id
    for name in _STATE_PARTS:
        setattr(absorbed, name, {})
    folders.merges[rec.id] = rec
    folders.count("customers", -1)
    return rec


ConsentMap = dict[tuple[str, str], Consent]


def merge_consents(a: ConsentMap, b: ConsentMap) -> ConsentMap:
    """Most restrictive wins: any refusal beats any grant; among equals the later one."""
    out = dict(a)
    for key, cb in b.items():
        ca = out.get(key)
        if ca is None:
            out[key] = cb
        elif ca.granted != cb.granted:
            out[key] = ca if not ca.granted else cb
        elif cb.at > ca.at:
            out[key] = cb
    return out


def _newest(a: dict[str, Fact], b: dict[str, Fact]) -> dict[str, Fact]:
    out = dict(a)
    for name, fb in b.items():
        fa = out.get(name)
        if fa is None or fb.at > fa.at:
            out[name] = fb
    return out


def unmerge(folders: Folders, merge_id: str, *, config: IdentityConfig | None = None,
            at: int | None = None) -> MergeRecord:
    """Undo merge ``merge_id``: identities, pre-merge history and profile go back to the
    absorbed customer; interactions recorded since go to whichever customer owns the
    highest-priority identity they carried."""
    config = config or IdentityConfig()
    rec = folders.merges.get(merge_id)
    if rec is None:
        raise MergeError(f"no merge with id {merge_id!r}")
    if rec.undone_at is not None:
        raise MergeError(f"merge {merge_id} was already undone")
    survivor = folders.customers.get(rec.survivor_id)
    absorbed = folders.customers.get(rec.absorbed_id)
    if survivor is None or absorbed is None:
        raise MergeError(f"merge {merge_id}: a customer it joined no longer exists (forgotten?)")
    if survivor.status != STATUS_ACTIVE:
        raise MergeError(
            f"merge {merge_id}: survivor {survivor.id} is now {survivor.status} "
            f"(into {survivor.merged_into}); undo that later merge first"
        )
    at = at if at is not None else now_us()
    for c in (survivor, absorbed):  # Decide's offer records since the merge go back with the history
        fold_offers(c)
    absorbed_pairs = set(rec.absorbed_identities)
    for pair in rec.absorbed_identities:
        if pair in survivor.identities:
            absorbed.link_identity(pair, survivor.unlink_identity(pair))
            folders.identities[pair] = absorbed.id

    def owner(it: Any) -> Customer:
        if it.origin in rec.absorbed_origins:
            return absorbed
        if it.origin and it.origin != survivor.id and it.ts < rec.at:
            return survivor
        if it.ts >= rec.at and it.identities:
            ranked = sorted(it.identities, key=lambda p: -config.namespaces.get(p[0], _UNKNOWN).priority)
            for pair in ranked:
                if pair in absorbed_pairs:
                    return absorbed
                if pair in survivor.identities:
                    return survivor
        return survivor

    keep = LOBTree()
    moved: list[Any] = []
    for key, it in survivor.history.items():
        if owner(it) is absorbed:
            moved.append(it)
        else:
            keep[key] = _pack_fields(it)  # as a spill stores it (generation 7: packed bytes)
    survivor.history = keep
    absorbed.history = LOBTree()
    for it in moved:
        absorbed.add_interaction(it)
    survivor.recompute_hard_facts()
    absorbed.recompute_hard_facts()

    for name in _STATE_PARTS:
        setattr(absorbed, name, dict(rec.absorbed_state.get(name, {})))
    restored = {}
    for key, c in survivor.consents.items():
        if c.at >= rec.at:
            restored[key] = c  # changed since the merge: the customer's latest word stands
        elif key in rec.survivor_consents:
            restored[key] = rec.survivor_consents[key]
    survivor.consents = restored
    survivor.merged_from = tuple(m for m in survivor.merged_from if m != rec.id)
    absorbed.remember_keys_of(survivor)  # events recorded while merged may now resolve to either
    absorbed.status = STATUS_ACTIVE
    absorbed.merged_into = None
    rec.undone_at = at
    folders.count("customers", 1)
    return rec
