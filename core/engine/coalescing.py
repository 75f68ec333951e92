"""Per-customer coalescing for the one apply loop (:mod:`.ingest`): a run of adjacent events of a
batch naming the same identities is resolved once.

Apart from the loop because it is its own job (when a resolution may be shared, and the copy it
shares), and ``ingest.py`` is kept under the module size limit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..customer import STATUS_ACTIVE
from ..events import Event
from ..identity import Resolution

if TYPE_CHECKING:
    from ..store import Folders
    from .ingest import EventResult


class Run:
    """Per-customer coalescing in the one apply loop: adjacent events of a batch that name the same
    identities (an import's rows of one customer, a touch point's burst) are resolved once.

    Only the resolution and the exactly-once lookup are shared, and only while that is exactly what
    doing them again would give: the previous event was applied (not pinned to a customer id), it
    left no warning, proposal or merge, its customer is still active and every one of its normalised
    identities is indexed to that customer (so resolving again would take the resolver's fast path
    to the same customer, and ``_key_holder`` would probe that customer alone). Everything else —
    recording, traits, processors, the result — runs per event as before; ``created`` is True for the
    first event only, as resolving again would say."""

    __slots__ = ("identities", "resolution", "cls", "copied")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.identities: Any = None
        self.resolution: Resolution | None = None
        self.cls: type | None = None
        self.copied = False

    def follow(self, ev: Event, res: EventResult, resolution: Resolution | None) -> None:
        if (resolution is None or res.status != "applied" or res.warnings or res.proposals or res.merges
                or (type(ev) is not Event and getattr(ev, "customer_id", None))):  # (a plain Event has none)
            self.clear()
            return
        self.identities, self.cls = ev.identities, type(ev)
        self.copied = self.copied and resolution is self.resolution  # the run's copy again: keep it
        self.resolution = resolution  # copied when reused (``resolution_for``): most runs are one event long

    def resolution_for(self, folders: Folders, ev: Event) -> Resolution | None:
        r = self.resolution
        if (r is None or type(ev) is not self.cls or ev.identities != self.identities
                or getattr(ev, "customer_id", None)):
            return None
        if not self.copied:  # the next events of a run share a copy that created and attached nothing
            r = self.resolution = Resolution(r.customer, list(r.pairs))
            self.copied = True
        c = r.customer
        if c is None or c.status != STATUS_ACTIVE:
            return None
        index = folders.identities
        cid = c.id
        for pair in r.pairs:
            if index.get(pair) != cid:
                return None
        return r


def take_run(events: Sequence[Event], indexes: list[int], pos: int, known: Resolution,
             seen: dict[str, str | None], results: list[EventResult], cids: dict[int, str | None]
             ) -> tuple[int, list[tuple[int, Event]], int]:
    """The run the loop's bulk entry (``Ingestor._apply_run``) applies in one call: the event at
    ``pos`` (resolved to ``known``'s customer, as :meth:`Run.resolution_for` gave it) and the next
    ones of the same record class, with the same identities, none pinned to a customer id and none
    carrying traits (the last value wins: those go one by one). Each is judged exactly once on its
    own key, in order, as the per-event path judges it with a known customer: a key earlier in the
    batch (``seen``) or already the customer's is a duplicate (its result appended to ``results``).
    Returns (events taken, the rows to apply as (index, event), duplicates)."""
    from .ingest import EventResult

    first = events[indexes[pos]]
    cls, ids = type(first), first.identities
    c = known.customer
    assert c is not None
    cid = c.id
    rows: list[tuple[int, Event]] = []
    dups = n = 0
    for j in range(pos, len(indexes)):  # not a slice: a batch's rest, copied for each run, was O(batch) a run
        i = indexes[j]
        ev = events[i]
        if n and (type(ev) is not cls or ev.identities != ids or getattr(ev, "customer_id", None) or ev.traits):
            break
        n += 1
        key = ev.idempotency_key
        if key and (key in seen or c.has_key(key, 0 if ev.stamped else ev.ts)):
            holder = seen[key] if key in seen else cid
            results.append(EventResult(i, "duplicate", customer_id=holder))
            cids[i] = holder
            dups += 1
            continue
        if key:
            seen[key] = cid
        rows.append((i, ev))
        cids[i] = cid
    return n, rows, dups
