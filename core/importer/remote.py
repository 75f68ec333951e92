"""Importing through a running hub: the importer's batches go out on ``StreamInteractions``.

:class:`HubIngestor` has the one method the importer's apply pass uses — ``apply(batch)`` ->
one result per event with ``status``, ``index``, ``created``, ``warnings``, ``error_field`` and
``error`` — so reading, mapping, per-row errors (``FILE:LINE: FIELD: REASON``), progress and the
summary are the importer's own, whether the rows go into a store file or to a hub. The hub
validates and applies each event exactly as it would a touch point's (its rules run, its writer
commits, acknowledgements come after the commit).

Customer rows and rows pinned to a customer id need the store-side record logic
(:mod:`.records`) and are refused row by row with the reason; ``--historical`` and ``--strict``
are refused by the command before any row is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..events import Event
from .records import CustomerRecord, ImportedInteraction

#: the hub's default ``limits.max_batch_events``: larger importer batches go out in pieces
MAX_EVENTS_PER_MESSAGE = 1000


@dataclass
class RemoteResult:
    index: int
    status: str  # applied | duplicate | rejected
    created: bool = False
    warnings: list[str] = field(default_factory=list)
    error_field: str | None = None
    error: str | None = None


def _as_mapping(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"type": ev.type, "channel": ev.channel, "ts": ev.ts / 1e6,
                           "identities": list(ev.identities), "idempotency_key": ev.idempotency_key,
                           "data": ev.data, "traits": ev.traits}
    if ev.touchpoint:
        out["touchpoint"] = ev.touchpoint
    return out


class HubIngestor:
    """Applies the importer's batches through a hub (``client``: :class:`shopkeeper.client.Client`)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __enter__(self) -> HubIngestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def apply(self, batch: list[Event], note: str = "") -> list[RemoteResult]:
        from .._proto.v1 import interactions_pb2
        from ..client import make_event

        out: list[RemoteResult] = []
        sendable: list[int] = []
        for i, ev in enumerate(batch):
            if isinstance(ev, CustomerRecord):
                out.append(RemoteResult(i, "rejected", error_field="row", error=(
                    "customer rows are not imported through a hub yet: stop the hub and import into the "
                    "store file, or send them as identify events")))
            elif isinstance(ev, ImportedInteraction) and ev.customer_id:
                out.append(RemoteResult(i, "rejected", error_field="customer_id", error=(
                    "an interaction pinned to a customer id is not imported through a hub (the hub resolves "
                    "customers by identities); drop the customer_id column or import into the store file")))
            else:
                sendable.append(i)
        for start in range(0, len(sendable), MAX_EVENTS_PER_MESSAGE):
            part = sendable[start:start + MAX_EVENTS_PER_MESSAGE]
            msg = interactions_pb2.EventBatch(batch_id=note or "import",
                                              events=[make_event(_as_mapping(batch[i])) for i in part])
            (ack,) = list(self.client.interactions.StreamInteractions(iter([msg]), metadata=self.client.metadata))
            for st in ack.statuses:
                i = part[st.index]
                if st.outcome == st.APPLIED:
                    out.append(RemoteResult(i, "applied", created=st.created, warnings=list(st.warnings)))
                elif st.outcome == st.DUPLICATE:
                    out.append(RemoteResult(i, "duplicate"))
                else:
                    out.append(RemoteResult(i, "rejected", error_field=st.field or "row", error=st.reason))
        out.sort(key=lambda r: r.index)
        return out
