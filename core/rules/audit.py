"""Who reloaded the central rules, when, from where and what changed: a record per reload.

A reload is an admin act that changes what every later event does, so the console's rules page
shows its history. Each reload after the hub started (``Admin.ReloadRules`` — ``shopkeeper rules
reload`` — or the directory watcher) is written through the hub's one writer into the store's
``rule_reloads`` folder (an ``LOBTree`` keyed by µs, created by the first write, like the leases)
and published on the change feed as a store-wide ``admin`` entry (``event_type`` ``rules_reload``,
``detail`` the new version): a reload changes what every later event does, so a ``Watch``
subscriber auditing the hub must hear of it. Only the newest :data:`KEPT` records are kept.
"""

from __future__ import annotations

from typing import Any

from BTrees.LOBTree import LOBTree

from ..customer import now_us
from ..store import StoreError

FOLDER = "rule_reloads"
#: reload records kept (the oldest go first)
KEPT = 500


def diff(old: Any, new: Any) -> dict[str, list[str]]:
    """Rule names added, removed and changed (their canonical source differs) from ``old`` to ``new``."""
    before = {r.name: r.source for r in old.rules}
    after = {r.name: r.source for r in new.rules}
    return {"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(n for n in set(after) & set(before) if after[n] != before[n])}


def entry(report: dict[str, Any], by: dict[str, str] | None, previous_version: str) -> dict[str, Any]:
    """The record of one reload, from its report (``RulesService.reload``) and who asked."""
    by = by or {}
    return {"at": now_us(), "who": by.get("who") or "unknown", "from": by.get("from") or "",
            "ok": bool(report.get("ok")), "version": report.get("version", ""), "previous_version": previous_version,
            "rules": report.get("rules", 0), "changes": report.get("changes") or {"added": [], "removed": [],
                                                                                  "changed": []},
            "errors": list(report.get("errors") or ())[:20]}


def create_folder(root: Any) -> None:
    """The named evolve step ``rule-reloads`` (the rules plugin's ``shopkeeper_evolve_steps``)."""
    if FOLDER not in root:
        root[FOLDER] = LOBTree()


def record(folders: Any, changes: Any, item: dict[str, Any]) -> int:
    """Write ``item`` (a writer op: ``submit_op(lambda f, ch: record(f, ch, item))``) and publish it
    (``changes``: the writer's; None offline); its key."""
    tree = folders.root.get(FOLDER)
    if tree is None:
        raise StoreError(f"the store has no {FOLDER!r} folder: it was opened without the rules plugin's "
                         "evolve step 'rule-reloads' (open it with steps=shopkeeper.plugins.evolve_steps(pm))")
    key = int(item["at"])
    while key in tree:
        key += 1
    tree[key] = dict(item)
    while len(tree) > KEPT:
        del tree[tree.minKey()]
    if changes is not None:
        changes.add("admin", "", event_type="rules_reload", detail=str(item.get("version") or ""))
    return key


def recent(folders: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` reload records, newest first."""
    tree = folders.root.get(FOLDER)
    if tree is None:
        return []
    out = []
    for key in reversed(tree.keys()):
        out.append(tree[key])
        if len(out) >= limit:
            break
    return out
