"""What the apply loop reports and hands around: an event's result, what a processor sees, the
processor protocol, the loop's statistics.

Split out of ``shopkeeper.engine.ingest`` (a module at the layout cap) by job: these are the loop's
types, that module the loop itself; every name is still importable from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..customer import Customer, Interaction
from ..events import Event
from ..identity import Resolution
from ..store import Folders

Status = Literal["applied", "duplicate", "rejected"]


@dataclass(slots=True)
class EventResult:
    index: int
    status: Status
    customer_id: str | None = None
    interaction_key: int | None = None
    created: bool = False
    error: str | None = None
    error_field: str | None = None
    #: for a rejection: None = the event is invalid (INVALID_ARGUMENT); "failed_precondition" =
    #: valid, but the state does not allow it (an outbox claim of another customer's intent)
    error_code: str | None = None
    merges: list[str] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)  # merge proposals left for a person
    warnings: list[str] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)  # what processors reported (actions, traces)


@dataclass(slots=True)
class Applied:
    """What a processor sees for one applied event."""

    event: Event
    customer: Customer
    interaction: Interaction
    resolution: Resolution
    result: EventResult


#: A processor runs inside the transaction after an event is recorded. It may change the
#: customer; raising rejects this event only (the batch is re-applied without it).
#:
#: A processor may declare the event types it cares about in an ``event_types`` attribute: a
#: container asked ``event_type in processor.event_types`` for every event (it may be a live view
#: that follows a reload); the processor is not called for the others. Without the attribute (or
#: None) it runs for every event. This is the fast path for outbox bookkeeping
#: (``shopkeeper.outbox.BOOKKEEPING_TYPES``: claims and delivery reports): they are recorded,
#: counted and published like any event, but the rules and segments that do not name them do not run.
#:
#: A processor may also offer ``fast_paths``: event type -> ``handler(folders, resolver, event)``.
#: An event of such a type that no other processor declares in its ``event_types`` is first
#: handed to the handler, which either applies it itself and returns ``(status, customer id,
#: change-feed entries)`` — no interaction, no hard facts, no key in the customer record: the
#: outbox claim's fast path, ``shopkeeper.outbox.fastpath``, which changes the outbox tree only —
#: or returns None having changed nothing, and the event takes this loop as usual. Processors
#: marked ``covered_by_fast_paths`` (the feed's interaction entry) leave it to the handler; one whose
#: ``waives(event_type)`` says True stands aside too (the rules, when no central rule reacts to the
#: type: the handler checks the customer's own rules and timers itself).
Processor = Callable[[Folders, Applied], None]


@dataclass
class IngestStats:
    batches: int = 0
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    conflicts: int = 0
    commit_seconds: float = 0.0


class _Poisoned(Exception):
    def __init__(self, index: int, exc: BaseException) -> None:
        self.index = index
        self.exc = exc
