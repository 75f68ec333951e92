"""Manifests of a store — counts and one digest per customer — to prove a restore or copy.

A digest covers what the customer *is* to the product, independent of the storage that holds it:
the customer's export record and every interaction's (:mod:`shopkeeper.exporter`, the lines
``export`` writes and ``import`` reads back), or for a merged or forgotten customer its status and
where it went. Two stores with equal manifests hold the same customers, customer by customer,
whatever their storage or object ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..customer import STATUS_ACTIVE
from ..store import Folders

#: trim the connection cache every this many customers (reading only: nothing is dirty)
GC_EVERY = 1000
SHOWN = 10


def customer_digest(c: Any) -> str:
    from ..exporter import customer_record, dump_line, interaction_record

    h = hashlib.sha256()
    if c.status == STATUS_ACTIVE:
        h.update(dump_line(customer_record(c)).encode())
        for it in c.history.values():
            h.update(b"\n")
            h.update(dump_line(interaction_record(c, it)).encode())
    else:
        h.update(json.dumps({"id": c.id, "status": c.status, "merged_into": c.merged_into}).encode())
    return h.hexdigest()


def manifest(f: Folders, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Counts and per-customer digests of the store as ``f`` sees it (one snapshot)."""
    counts = {name: f.counter(name) for name in sorted(f.counters.keys())}
    counts["records.customers"] = len(f.customers)
    counts["records.identities"] = len(f.identities)
    counts["records.merges"] = len(f.merges)
    counts["records.tombstones"] = len(f.tombstones) if f.tombstones is not None else 0
    changes = f.root.get("changes")
    counts["records.changes"] = len(changes) if changes is not None else 0
    digests: dict[str, str] = {}
    for n, (cid, c) in enumerate(f.customers.items(), 1):
        digests[cid] = customer_digest(c)
        if n % GC_EVERY == 0:
            f.conn.cacheGC()
            if on_progress is not None:
                on_progress(n)
    return {"generation": int(f.meta.get("generation", 0)), "counts": counts, "customers": digests}


@dataclass
class Comparison:
    """How a store differs from a manifest: counts, then customer by customer."""

    customers: int = 0
    counts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.counts or self.missing or self.extra or self.different)

    def lines(self) -> list[str]:
        out = [f"count {c}" for c in self.counts]
        for what, ids in (("missing", self.missing), ("not in the backup", self.extra),
                          ("different", self.different)):
            if ids:
                shown = ", ".join(ids[:SHOWN]) + (" …" if len(ids) > SHOWN else "")
                out.append(f"{len(ids)} customer(s) {what}: {shown}")
        return out


def compare(expected: dict[str, Any], got: dict[str, Any]) -> Comparison:
    cmp = Comparison(customers=len(expected["customers"]))
    for name in sorted(set(expected["counts"]) | set(got["counts"])):
        a, b = expected["counts"].get(name), got["counts"].get(name)
        if a != b:
            cmp.counts.append(f"{name}: expected {a}, found {b}")
    want, have = expected["customers"], got["customers"]
    cmp.missing = sorted(set(want) - set(have))
    cmp.extra = sorted(set(have) - set(want))
    cmp.different = sorted(cid for cid in set(want) & set(have) if want[cid] != have[cid])
    return cmp
