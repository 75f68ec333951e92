"""Manifests of a store — counts and one digest per customer — to prove a restore or copy.

A digest covers what the customer *is* to the product, independent of the storage that holds it:
the customer's export record and every interaction's (:mod:`shopkeeper.exporter`, the lines
``export`` writes and ``import`` reads back), or for a merged or forgotten customer its status and
where it went. Two stores with equal manifests hold the same customers, customer by customer,
whatever their storage or object ids.

Digest versions (a manifest names its own, ``digest``; verifying computes the same version):

1. the export record (identities, traits, soft facts, consents, own scores, segments) and every
   interaction's record;
2. (default) also what the export leaves out and a customer carries: the hard facts and type
   counts, the daily aggregates, the customer's own rules and rule state (timers, failures), every
   score including the model score tables' rows, the outbox with each message's state, and the
   idempotency keys — a restore that lost an outbox transition or a rule's timer now fails
   verification (the issue: "verified customer by customer").
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from persistent import Persistent

from ..customer import STATUS_ACTIVE
from ..store import Folders

#: customers loaded together: one bulk read (RelStorage's ``prefetch``: one query for the chunk
#: instead of one round trip per customer), digested, then the connection cache trimmed
CHUNK = 1000
SHOWN = 10


#: the digest version new manifests use
DIGEST = 2


def plain(v: Any, depth: int = 0) -> Any:
    """``v`` as JSON-able data that depends only on its value: mappings (dicts, BTrees) as sorted
    pairs, sets sorted, objects as their class name and state — never an object id or address."""
    if depth > 40:
        raise ValueError("state nested more than 40 deep")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    d = depth + 1
    as_dict = getattr(v, "as_dict", None)
    if callable(as_dict):
        return plain(as_dict(), d)
    items = getattr(v, "items", None)
    if callable(items):
        return {"map": sorted(([plain(k, d), plain(x, d)] for k, x in items()), key=repr)}
    if isinstance(v, (list, tuple)):
        return [plain(x, d) for x in v]
    if isinstance(v, (set, frozenset)) or (hasattr(v, "keys") and hasattr(v, "insert")):  # TreeSets
        return {"set": sorted((plain(x, d) for x in (v.keys() if hasattr(v, "keys") else v)), key=repr)}
    state = v.__getstate__() if isinstance(v, Persistent) else getattr(v, "__dict__", None)
    if state is None:
        state = v.__getstate__()
    if isinstance(state, dict):
        state = {k: x for k, x in state.items() if not k.startswith(("_p_", "_v_"))}
    return {type(v).__qualname__: plain(state, d)}


def _stored_state(c: Any) -> dict[str, Any]:
    """Digest 2's additions: what a customer carries beyond its export record."""
    log = getattr(c, "key_log", None)
    return {"hard": plain(c.hard), "type_counts": plain(c.type_counts), "daily": plain(c.daily),
            "last_at": plain(c.last_at), "rules": plain(c.rules), "rule_state": plain(c.rule_state),
            "scores": plain(c.scores.as_dict()), "outbox": plain(c.outbox),
            "keys": plain(getattr(c, "recent_keys", None)), "key_log": plain(log),
            "merged_from": plain(c.merged_from),
            # the log before ``key_log`` (generation 11's pruning): only when there is one, so the
            # digest of every customer without it is the one older manifests hold
            **({"key_log_old": plain(c.key_log_old)} if getattr(c, "key_log_old", None) is not None else {}),
            # the logs' fingerprints (generation 13: a key-only lookup misses a key whose one is lost)
            **({"key_fp": plain(c.key_fp), "key_fp_old": plain(c.key_fp_old)}
               if getattr(c, "key_fp", None) is not None else {})}


def customer_digest(c: Any, version: int = DIGEST) -> str:
    from ..exporter import customer_record, dump_line, interaction_record

    h = hashlib.sha256()
    if c.status == STATUS_ACTIVE:
        h.update(dump_line(customer_record(c)).encode())
        for it in c.history.values():
            h.update(b"\n")
            h.update(dump_line(interaction_record(c, it)).encode())
        if version >= 2:
            h.update(b"\n")
            h.update(json.dumps(_stored_state(c), sort_keys=True, default=repr).encode())
    else:
        h.update(json.dumps({"id": c.id, "status": c.status, "merged_into": c.merged_into}).encode())
    return h.hexdigest()


def _chunks(f: Folders, part: int = 0, parts: int = 1) -> Iterator[list[tuple[str, Any]]]:
    """The customers in chunks of :data:`CHUNK`, in key order; with ``parts`` > 1 only every
    ``parts``-th chunk from ``part`` (the others' customers stay ghosts: skipping them costs only
    the BTree buckets' keys)."""
    items = iter(f.customers.items())
    for n in itertools.count():
        chunk = list(itertools.islice(items, CHUNK))
        if not chunk:
            return
        if n % parts == part:
            yield chunk


def _parts_of(customers: list[Any]) -> list[Any]:
    """The customers' own persistent sub-objects (their identities tree; a spilled history) that
    are still ghosts, once the customers themselves are loaded: the second bulk read of a chunk."""
    out = []
    for c in customers:
        c._p_activate()
        out.extend(v for v in vars(c).values() if isinstance(v, Persistent) and v._p_changed is None)
    return out


def counts_of(f: Folders) -> dict[str, int]:
    counts = {name: f.counter(name) for name in sorted(f.counters.keys())}
    counts["records.customers"] = len(f.customers)
    counts["records.identities"] = len(f.identities)
    counts["records.merges"] = len(f.merges)
    counts["records.tombstones"] = len(f.tombstones) if f.tombstones is not None else 0
    changes = f.root.get("changes")
    counts["records.changes"] = len(changes) if changes is not None else 0
    return counts


def digests(f: Folders, part: int = 0, parts: int = 1,
            on_progress: Callable[[int], None] | None = None, version: int = DIGEST) -> dict[str, str]:
    """Per-customer digests of the customers of chunks ``part`` mod ``parts``. Each chunk's
    records are fetched in one bulk read before they are unpickled: on PostgreSQL the manifest
    cost 1.5 ms per customer, half of it one load round trip per customer (docs/benchmarks.md §30)."""
    out: dict[str, str] = {}
    for chunk in _chunks(f, part, parts):
        f.conn.prefetch([c for _, c in chunk])
        f.conn.prefetch(_parts_of([c for _, c in chunk]))
        for cid, c in chunk:
            out[cid] = customer_digest(c, version)
        f.conn.cacheGC()
        if on_progress is not None:
            on_progress(len(out))
    return out


def manifest(f: Folders, on_progress: Callable[[int], None] | None = None, version: int = DIGEST) -> dict[str, Any]:
    """Counts and per-customer digests of the store as ``f`` sees it (one snapshot)."""
    return {"generation": int(f.meta.get("generation", 0)), "digest": version, "counts": counts_of(f),
            "customers": digests(f, on_progress=on_progress, version=version)}


def _part(uri: str, at: bytes | None, part: int, parts: int, version: int = DIGEST,
          progress: Any = None) -> dict[str, str]:
    """A worker's share of :func:`manifest_of_uri` (a process of its own: the digests are
    pure-Python CPU, so threads would share one core)."""
    import ZODB

    from .copy import open_storage

    storage, _ = open_storage(uri, read_only=True)
    db = ZODB.DB(storage)
    try:
        conn = db.open(at=at) if at is not None else db.open()
        try:
            return digests(Folders(conn), part, parts, version=version,
                           on_progress=(lambda n: progress.put((part, n))) if progress is not None else None)
        finally:
            conn.close()
    finally:
        db.close()


def manifest_of_uri(uri: str, at: bytes | None, workers: int, f: Folders, version: int = DIGEST,
                    on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The manifest of the store at ``uri`` as of transaction ``at`` (None: the latest, for a
    store nobody writes), the digests computed by ``workers`` processes over interleaved chunks
    of customers; ``f`` (the same store, same snapshot) gives the counts. Only for storages that
    can open a past transaction or are quiescent: a PostgreSQL backup's manifest must be read in
    the dump's own snapshot, in one process (:mod:`.pg`)."""
    if workers <= 1:
        return manifest(f, on_progress, version)
    ctx = mp.get_context("spawn")
    with ctx.Manager() if on_progress is not None else _no_manager() as mgr, ctx.Pool(workers) as pool:
        queue = mgr.Queue() if mgr is not None else None
        pending = pool.starmap_async(_part, [(uri, at, i, workers, version, queue) for i in range(workers)])
        done = [0] * workers
        while not pending.ready():
            pending.wait(1.0)
            while queue is not None and not queue.empty():
                part, n = queue.get()
                done[part] = n
                on_progress(sum(done))  # type: ignore[misc]
        parts = pending.get()
    out: dict[str, str] = {}
    for part in parts:
        out.update(part)
    return {"generation": int(f.meta.get("generation", 0)), "digest": version, "counts": counts_of(f),
            "customers": dict(sorted(out.items()))}


@contextlib.contextmanager
def _no_manager() -> Iterator[None]:
    yield None


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
