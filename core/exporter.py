"""Export customers and their interaction history to JSON Lines that ``import`` reads back.

The lines are exactly the shapes :mod:`shopkeeper.importer` accepts, so that
``export`` → ``import`` into an empty store gives the same customers (ids kept), identities
(with their source and time), traits, soft facts, consents, scores, segments and
interaction history — and therefore the same hard facts, which are derived from it.

* a **customer** line has no ``type`` (that is how import tells the kinds apart)::

    {"id": "…", "created_at": "…Z", "identities": [{"namespace": "email", "value": "…",
     "source": "web", "at": "…Z"}], "traits": {…}, "soft": {"name": {"value": …,
     "source": …, "at": …}}, "consent": {"email": {"marketing": {"granted": true, …}}},
     "scores": {…}, "segments": {"vip": "…Z"}}

* an **interaction** line is an event plus ``customer`` (the id it belongs to, because the
  identities it carried may since have moved to someone else) and ``origin``.

Times are ISO 8601 with microseconds computed in integers, so they parse back to the same
microsecond. With ``all``, every customer line comes before the first interaction line,
so an import creates customers before it files history under them.

Not exported: merged-away shells and merge lineage (a new store cannot unmerge them),
erased customers and their tombstones (tombstones are keyed with the store's secret, which
must not leave the store), rule definitions and rule state (owned by the rules issue).

The whole export reads one MVCC snapshot, streams line by line and trims the object cache
as it goes, so memory stays flat and the file is consistent even while the hub writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Literal

from .customer import STATUS_ACTIVE, Customer, Interaction
from .store import Folders, Store

ExportKind = Literal["customers", "interactions", "all"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: trim the connection cache every this many customers (read-only: nothing is dirty)
GC_EVERY = 1000


def iso_us(us: int) -> str:
    """Exact ISO 8601 (UTC, microseconds) for a µs timestamp; no float on the way."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def customer_record(c: Customer) -> dict[str, Any]:
    """One customer as an import row (without history)."""
    rec: dict[str, Any] = {
        "id": c.id,
        "created_at": iso_us(c.created_at),
        "identities": [{"namespace": ns, "value": v, "source": link.source, "at": iso_us(link.at)}
                       for (ns, v), link in c.identities.items()],
    }
    if c.traits:
        rec["traits"] = dict(c.traits)
    if c.soft:
        rec["soft"] = {k: {"value": f.value, "source": f.source, "at": iso_us(f.at)} for k, f in c.soft.items()}
    if c.consents:
        consent: dict[str, dict[str, Any]] = {}
        for (channel, purpose), cs in sorted(c.consents.items()):
            consent.setdefault(channel, {})[purpose] = {"granted": cs.granted, "source": cs.source,
                                                        "at": iso_us(cs.at)}
        rec["consent"] = consent
    if c.scores:
        rec["scores"] = {k: {"value": f.value, "source": f.source, "at": iso_us(f.at)} for k, f in c.scores.items()}
    if c.segments:
        rec["segments"] = {k: iso_us(v) for k, v in c.segments.items()}
    return rec


def interaction_record(c: Customer, it: Interaction) -> dict[str, Any]:
    """One interaction as an import row, pinned to its customer."""
    ids: dict[str, Any] = {}
    for ns, v in it.identities:
        have = ids.get(ns)
        ids[ns] = v if have is None else ([*have, v] if isinstance(have, list) else [have, v])
    rec: dict[str, Any] = {"type": it.type, "channel": it.channel, "ts": iso_us(it.ts), "identities": ids,
                           "data": dict(it.data), "customer": c.id}
    if it.touchpoint:
        rec["touchpoint"] = it.touchpoint
    if it.idempotency_key:
        rec["idempotency_key"] = it.idempotency_key
    if it.origin and it.origin != c.id:
        rec["origin"] = it.origin
    return rec


def _active(folders: Folders) -> Iterator[Customer]:
    conn = folders.conn
    for n, c in enumerate(folders.customers.values(), 1):
        if c.status == STATUS_ACTIVE:
            yield c
        if n % GC_EVERY == 0:
            conn.cacheGC()


def iter_records(folders: Folders, kind: ExportKind = "all") -> Iterator[dict[str, Any]]:
    """Export lines as dicts: customers first, then interactions (one pass each)."""
    if kind in ("customers", "all"):
        for c in _active(folders):
            yield customer_record(c)
    if kind in ("interactions", "all"):
        for c in _active(folders):
            for it in c.history.values():
                yield interaction_record(c, it)


@dataclass
class ExportSummary:
    customers: int = 0
    interactions: int = 0
    seconds: float = 0.0

    def render(self) -> str:
        lines = self.customers + self.interactions
        rate = lines / self.seconds if self.seconds > 0 else 0.0
        return (f"exported {self.customers} customers and {self.interactions} interactions "
                f"in {self.seconds:.1f} s ({rate:,.0f} lines/s)")


def dump_line(rec: dict[str, Any]) -> str:
    """One export record as its JSON line (without the newline), as :func:`export` writes it."""
    return _DUMPS(rec)


def export(store: Store, out: IO[str], kind: ExportKind = "all", on_progress: Any = None) -> ExportSummary:
    """Write the export to ``out`` line by line; ``on_progress(n)`` is told every 1,000 lines."""
    summary = ExportSummary()
    t0 = time.perf_counter()
    dumps = _DUMPS
    write = out.write
    with store.read() as folders:
        for n, rec in enumerate(iter_records(folders, kind), 1):
            write(dumps(rec))
            write("\n")
            if "type" in rec:
                summary.interactions += 1
            else:
                summary.customers += 1
            if on_progress is not None and n % 1000 == 0:
                on_progress(1000)
        if on_progress is not None:
            on_progress((summary.customers + summary.interactions) % 1000)
    summary.seconds = time.perf_counter() - t0
    return summary


def _json_default(value: Any) -> Any:
    """Soft facts set by rules or models may hold sets or other non-JSON values."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default).encode


def export_from_hub(client: Any, out: IO[str], kind: str, on_progress: Any) -> ExportSummary:
    """Write the lines a hub streams (``Admin.Export``) to ``out``; count them as :func:`export` does."""
    from ._proto.v1 import admin_pb2

    summary = ExportSummary()
    t0 = time.perf_counter()
    for chunk in client.admin.Export(admin_pb2.ExportRequest(kind=kind), metadata=client.metadata):
        for line in chunk.lines:
            out.write(line)
            out.write("\n")
            if line.startswith('{"type":'):  # interaction lines start with their type; customer lines have none
                summary.interactions += 1
            else:
                summary.customers += 1
        if on_progress is not None:
            on_progress(len(chunk.lines))
    summary.seconds = time.perf_counter() - t0
    return summary


__all__ = ["export", "export_from_hub", "iter_records", "customer_record", "interaction_record", "iso_us",
           "ExportSummary"]
