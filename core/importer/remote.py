"""Importing through a running hub: the importer's batches go to ``Admin.ImportRows``.

:class:`HubIngestor` has the methods the importer's passes use — ``apply(batch)`` -> one result
per record with ``status``, ``index``, ``created``, ``warnings``, ``error_field`` and ``error``,
and ``check(batch)`` -> the refused ones (``--strict``'s first pass, nothing written) — so
reading, mapping, per-row errors (``FILE:LINE: FIELD: REASON``), progress and the summary are
the importer's own, whether the rows go into a store file or to a hub.

Each record the importer prepared travels as one JSON row in the shape ``shopkeeper export``
writes (:func:`record_to_row`): customer rows, interactions pinned to a customer id, keys the
importer derived from a row's content (flagged, so the history keeps the row as it was) and
orders it numbered. The hub prepares each row again with its own vocabulary — it trusts no
client — and applies it through its one writer exactly as an offline import applies it to a
store file, except that interaction rows run its rules unless ``--historical``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..events import Event
from ..exporter import iso_us
from .records import CustomerRecord, ImportedInteraction

#: the hub's default ``limits.max_batch_events``: larger importer batches go out in pieces
MAX_EVENTS_PER_MESSAGE = 1000


@dataclass
class RemoteResult:
    index: int
    status: str  # applied | duplicate | rejected | checked (validate_only)
    created: bool = False
    warnings: list[str] = field(default_factory=list)
    error_field: str | None = None
    error: str | None = None


def _facts(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: {"value": f.value, "source": f.source, "at": iso_us(f.at)} for k, f in facts.items()}


def record_to_row(rec: Event) -> dict[str, Any]:
    """One prepared record as the import row that prepares back to it (the export's shape)."""
    if isinstance(rec, CustomerRecord):
        row: dict[str, Any] = {"identities": [
            {"namespace": ns, "value": v, "source": rec.links[(ns, v)][0], "at": iso_us(rec.links[(ns, v)][1])}
            if (ns, v) in rec.links else [ns, v] for ns, v in rec.identities]}
        if rec.idempotency_key:
            row["idempotency_key"] = rec.idempotency_key
        if rec.customer_id is not None:
            row["id"] = rec.customer_id
        if rec.created_at is not None:
            row["created_at"] = iso_us(rec.created_at)
        if rec.traits:
            row["traits"] = rec.traits
        if rec.soft:
            row["soft"] = _facts(rec.soft)
        if rec.scores:
            row["scores"] = _facts(rec.scores)
        if rec.consents:
            consent: dict[str, dict[str, Any]] = {}
            for (channel, purpose), c in rec.consents.items():
                consent.setdefault(channel, {})[purpose] = {"granted": c.granted, "source": c.source,
                                                            "at": iso_us(c.at)}
            row["consent"] = consent
        if rec.segments:
            row["segments"] = {k: iso_us(v) for k, v in rec.segments.items()}
        return row
    row = {"type": rec.type, "channel": rec.channel, "ts": iso_us(rec.ts),
           "identities": [[ns, v] for ns, v in rec.identities], "idempotency_key": rec.idempotency_key}
    if rec.data:
        row["data"] = rec.data
    if rec.traits:
        row["traits"] = rec.traits
    if rec.touchpoint:
        row["touchpoint"] = rec.touchpoint
    if isinstance(rec, ImportedInteraction):
        if rec.customer_id:
            row["customer"] = rec.customer_id
        if rec.origin:
            row["origin"] = rec.origin
    return row


class HubIngestor:
    """Applies the importer's batches through a hub (``client``: :class:`shopkeeper.client.Client`)."""

    def __init__(self, client: Any, *, historical: bool = False, source: str = "import") -> None:
        self.client = client
        self.historical = historical
        self.source = source

    def __enter__(self) -> HubIngestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _send(self, batch: list[Event], note: str, validate_only: bool) -> list[RemoteResult]:
        out: list[RemoteResult] = []
        for start in range(0, len(batch), MAX_EVENTS_PER_MESSAGE):
            part = batch[start:start + MAX_EVENTS_PER_MESSAGE]
            rows = [json.dumps(record_to_row(r), ensure_ascii=False) for r in part]
            derived = [i for i, r in enumerate(part) if isinstance(r, ImportedInteraction) and r.derived_key]
            ack = self.client.import_rows(rows, derived_keys=derived, historical=self.historical,
                                          validate_only=validate_only, source=self.source,
                                          batch_id=note or "import")
            for st in ack.statuses:
                i = start + st.index
                if st.outcome == st.APPLIED:
                    warnings = list(getattr(batch[i], "warnings", None) or ()) + list(st.warnings)
                    out.append(RemoteResult(i, "applied", created=st.created, warnings=warnings))
                elif st.outcome == st.DUPLICATE:
                    out.append(RemoteResult(i, "duplicate"))
                elif st.outcome == st.REJECTED:
                    out.append(RemoteResult(i, "rejected", error_field=st.field or "row", error=st.reason))
                else:  # validate_only: checked, nothing written
                    out.append(RemoteResult(i, "checked"))
        out.sort(key=lambda r: r.index)
        return out

    def apply(self, batch: list[Event], note: str = "") -> list[RemoteResult]:
        return self._send(batch, note, validate_only=False)

    def check(self, batch: list[Event]) -> list[RemoteResult]:
        """The records the hub would refuse (read-only checks against its store), in order."""
        return [r for r in self._send(batch, "strict", validate_only=True) if r.status == "rejected"]
