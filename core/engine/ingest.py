"""Group commit: apply many validated events in one ZODB transaction, exactly once each.

FileStorage fsyncs every commit (~2k commits/s on a small machine), so throughput comes
from putting hundreds of events in one transaction. The writer guarantees:

* **exactly once** — an event whose idempotency key one of the customers it names already
  holds (``Customer.has_key``; see docs/data-model.md for the exact guarantee), or that came
  earlier in the same batch, is reported ``duplicate`` and not applied again;
* **isolation of bad events** — validation happens before any change; if applying an event
  still fails unexpectedly, the transaction is thrown away and the batch is re-applied
  without that event, so one bad event never costs the others nor corrupts a customer;
* **conflict retry per customer** — on ``ConflictError`` naming a customer record of the batch
  (another writer changed the same customer: another hub, or an offline tool), the batch's other
  events are applied again without that customer's, and that customer's events are retried on
  their own; a conflict on anything else (a shared index node, a storage lock) retries the batch —
  cut in chunks, as the next batches for a while, if asked (:mod:`.narrowing`) — then in halves down to one.
  So a hot customer delays only its own events and no update is lost (:meth:`Ingestor._apply_split`);
* **durable acknowledgement** — results are returned only after ``commit()`` returned;
* **per-customer coalescing** — adjacent events of a batch naming the same identities (an
  import's rows of one customer) are resolved once (:class:`~.coalescing.Run`, only while resolving again
  would give the same customer); each is still recorded, counted and processed one by one, and
  ZODB pickles the customer once per commit however many of the batch's events it took.

Processors (the rules engine, segment updates) run inside the same transaction, after
each event is recorded, so an event and its consequences commit together or not at all.
A processor refuses an event by raising (an exception with ``field`` names it; one with
``code = "failed_precondition"`` says the event was valid but the state forbids it); the
batch is re-applied without it, so it changes nothing. One case keeps a consequence: a
processor may set its result to ``rejected`` itself (an outbox claim the contact policy
forbids: the caller must not send, and the intent ends suppressed) — the event then stays
in the history but its idempotency key is not kept.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import transaction
import transaction.interfaces
from ZODB.POSException import ConflictError

from ..customer import STATUS_MERGED, Customer, Interaction
from ..events import Event, EventError
from ..identity import IdentityConfig, IdentityError, Resolution, Resolver
from ..store import Folders, Store
from .coalescing import Run, take_run
from .narrowing import Narrowing
from .results import Applied, EventResult, IngestStats, Processor, Status, _Poisoned  # noqa: F401 - old paths

log = logging.getLogger(__name__)

_INDEX = operator.attrgetter("index")  # results' order (a C key: no Python call per event)
#: an ``Interaction`` from its nine fields in order, without the named tuple's Python ``__new__``
_new_tuple = tuple.__new__

#: an event's identities normalised: (pairs, warnings), as ``Resolver.normalize_pairs`` gives them
_Normalized = tuple[list[tuple[str, str]], list[str]]


class Ingestor:
    """Applies event batches to a store through one connection; use from one thread."""

    def __init__(
        self,
        store: Store,
        resolver: Resolver | None = None,
        processors: Sequence[Processor] = (),
        *,
        source: str = "ingest",
        max_conflict_retries: int = 12,
        on_commit: Callable[[Sequence[Event], list[EventResult]], None] | None = None,
    ) -> None:
        self.store = store
        self.resolver = resolver or Resolver(IdentityConfig())
        self.processors = list(processors)
        self.source = source
        self.max_conflict_retries = max_conflict_retries
        self.on_commit = on_commit
        self.stats = IngestStats()
        self.conn, self.tm = store.connect()
        self._fast_types = frozenset(t for p in self.processors for t in (getattr(p, "fast_paths", None) or ()))
        self._before: Callable[[Folders], None] | None = None  # see apply()
        #: the last attempt's events by customer, for a conflict's retry (:meth:`_conflicting`):
        #: customer record oid -> customer id, and event index -> customer id (None: none) of
        #: every event the attempt got through
        self._owners: dict[bytes, str] = {}
        self._cids: dict[int, str | None] = {}
        self.narrowing = Narrowing()  # smaller groups for a while after a conflict naming no customer

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(transaction.interfaces.NoTransaction):
                self.tm.abort()  # explicit mode: there may be no live transaction
            self.conn.close()
            self.conn = None  # type: ignore[assignment]

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public -------------------------------------------------------------------------

    def apply(self, events: Sequence[Event], note: str | None = None,
              before: Callable[[Folders], None] | None = None) -> list[EventResult]:
        """Apply ``events`` durably; returns one result per event, in order.

        ``before(folders)``: more work for the same transaction, run before the events (the
        writer's lingering ops, :meth:`~.writer.Writer.submit_op`); run again if a conflict
        aborts the attempt, and once only when a conflict splits the batch (in the first part
        that commits). It commits even with no events."""
        self.stats.batches += 1
        self.stats.events += len(events)
        self._before = before
        try:
            results = self._apply_split(list(range(len(events))), events, note)
        finally:
            self._before = None
        ordered = sorted(results, key=_INDEX)
        for r in ordered:
            if r.status == "applied":
                self.stats.applied += 1
            elif r.status == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.rejected += 1
        if self.on_commit is not None:
            self.on_commit(events, ordered)
        return ordered

    # -- internals ----------------------------------------------------------------------

    def _apply_split(
        self, indexes: list[int], events: Sequence[Event], note: str | None
    ) -> list[EventResult]:
        poisoned: dict[int, EventResult] = {}
        attempt = 0
        if (chunks := self.narrowing.split(indexes)) is not None:  # after a conflict naming no customer
            return [r for part in chunks for r in self._apply_split(part, events, note)]
        while True:
            live = [i for i in indexes if i not in poisoned]
            try:
                done = self._attempt(live, events, note)
                return done + list(poisoned.values())
            except _Poisoned as p:
                exc = p.exc
                field_ = getattr(exc, "field", None)
                log.warning("event %d rejected while applying: %s", p.index, exc)
                poisoned[p.index] = EventResult(p.index, "rejected", error=str(exc) if field_ else
                                                f"internal error while applying: {type(exc).__name__}: {exc}",
                                                error_field=field_, error_code=getattr(exc, "code", None))
            except ConflictError as exc:
                self.stats.conflicts += 1
                attempt += 1
                mine = self._conflicting(exc, live)
                if mine and len(mine) < len(live):
                    # the conflict names one customer: the others once more (the abort undid them),
                    # then that customer's events alone, with their own retries
                    theirs = set(mine)
                    rest = self._apply_split([i for i in live if i not in theirs], events, note)
                    return rest + self._apply_split(mine, events, note) + list(poisoned.values())
                if not mine:  # a shared node or a storage lock: this group again, and the next ones, in chunks
                    self.narrowing.conflicted()
                    if (chunks := self.narrowing.split(live)) is not None:
                        return [r for part in chunks for r in self._apply_split(part, events, note)] + list(
                            poisoned.values())
                if attempt <= 2 or len(live) == 1 or mine:
                    if attempt > self.max_conflict_retries:
                        raise
                    # full jitter, growing: two hubs retrying the same hot customer in lock step
                    # would collide again every time (seen on PostgreSQL with 8 equal waits)
                    time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
                    continue
                mid = len(live) // 2
                left = self._apply_split(live[:mid], events, note)
                right = self._apply_split(live[mid:], events, note)
                return left + right + list(poisoned.values())

    def _attempt(self, indexes: list[int], events: Sequence[Event], note: str | None) -> list[EventResult]:
        tm = self.tm
        tm.begin()
        owners, cids = self._owners, self._cids
        owners.clear()
        cids.clear()
        try:
            folders = Folders(self.conn)
            before = self._before
            if before is not None:
                before(folders)
            seen: dict[str, str | None] = {}  # keys applied in this batch -> customer id
            results: list[EventResult] = []
            applied = dups = fast_n = 0
            run = Run()  # the previous event's customer, for the next naming the same identities
            skip = 0  # events after this one that a run (below) applied already
            for pos, i in enumerate(indexes):
                if skip:
                    skip -= 1
                    continue
                ev = events[i]
                key = ev.idempotency_key
                fast = self._fast_path(ev.type) if ev.type in self._fast_types else None
                if fast is not None:
                    try:
                        got = fast(folders, self.resolver, ev)
                    except ConflictError:
                        raise
                    except Exception as exc:
                        raise _Poisoned(i, exc) from exc
                    if got is not None:
                        status, cid, outputs = got
                        cids[i] = cid
                        results.append(EventResult(i, status, customer_id=cid, outputs=outputs))
                        if status == "duplicate":
                            dups += 1
                        else:
                            applied += 1
                            fast_n += 1
                            if key:
                                seen[key] = cid
                        continue
                rid = getattr(ev, "resolved_id", None) if type(ev) is not Event else None  # (Decide's offers)
                if rid:
                    known = self.resolver.resolve_known(folders, rid, ev.identities)
                elif run.resolution is not None and ev.identities == run.identities:  # (most events: no run)
                    known = run.resolution_for(folders, ev)
                else:
                    known = None
                if known is not None and not self.processors and getattr(ev, "applies_runs", False) and not ev.traits:
                    skip, n_applied, n_dups = self._apply_run(folders, indexes, pos, events, known, seen, results)
                    applied += n_applied
                    dups += n_dups
                    continue
                normalized = None  # the event's identities as _key_holder normalised them, for resolve
                if key:
                    if key in seen:
                        holder_id = seen[key]
                    elif known is not None:  # the candidates _key_holder would probe: this one customer
                        c = known.customer
                        holder_id = c.id if c.has_key(key, 0 if ev.stamped else ev.ts) else None
                    else:
                        holder, normalized, known = self._key_holder(folders, ev)
                        holder_id = holder.id if holder is not None else None
                    if holder_id is not None or key in seen:
                        cids[i] = holder_id
                        results.append(EventResult(i, "duplicate", customer_id=holder_id))
                        dups += 1
                        continue
                try:
                    res, resolution = self._apply(folders, i, ev, known, normalized)
                except (IdentityError, EventError) as exc:
                    # raised before any change (resolution validates first)
                    results.append(EventResult(i, "rejected", error=str(exc), error_field=exc.field))
                    cids[i] = None
                    run.clear()
                    continue
                except ConflictError:
                    raise
                except Exception as exc:
                    raise _Poisoned(i, exc) from exc
                run.follow(ev, res, resolution)
                cids[i] = res.customer_id
                if resolution is not None and resolution.customer is not None:
                    oid = resolution.customer._p_oid
                    if oid is not None:  # a customer this attempt created has none yet: no conflict on it
                        owners[oid] = resolution.customer.id
                if res.status == "rejected":  # a processor refused it but kept a consequence
                    results.append(res)  # (a claim the contact policy turned into a suppression)
                    applied += 1
                    continue
                if key:
                    seen[key] = res.customer_id
                    if res.customer_id is not None:  # the customer just resolved, unless an apply_in row
                        holder = resolution.customer if resolution is not None else None
                        if holder is None or holder.id != res.customer_id:
                            holder = folders.customers[res.customer_id]
                        dropped = holder.remember_key(key, 0 if ev.stamped else ev.ts, True)
                        if dropped:  # (rare) keys logged before then were pruned
                            self._pruned(folders, holder, res, dropped)
                applied += 1
                results.append(res)
            if applied or dups or before is not None:  # a batch of replays still commits its duplicates count
                if applied > fast_n:  # a fast-path event is no interaction (see Processor)
                    folders.count("interactions", applied - fast_n)
                if dups:
                    folders.count("duplicates", dups)
                txn = tm.get()
                txn.note(note or f"shopkeeper: {applied} events ({dups} duplicates) from {self.source}")
                t0 = time.perf_counter()
                tm.commit()
                self.stats.commit_seconds += time.perf_counter() - t0
                self._before = None  # committed: a split's later parts do not run it again
            else:
                tm.abort()
            return results
        except BaseException:
            tm.abort()
            raise

    def _apply_run(self, folders: Folders, indexes: list[int], pos: int, events: Sequence[Event],
                   known: Resolution, seen: dict[str, str | None], results: list[EventResult]) -> tuple[int, int, int]:
        """The bulk entry of the loop: the event at ``pos`` and the next ones of its run applied to
        ``known``'s customer in one call (``apply_run``: an import's rows; :func:`~.coalescing.take_run`
        judges each on its own key first). Returns (events after ``pos`` taken, applied, duplicates)."""
        n, rows, dups = take_run(events, indexes, pos, known, seen, results, self._cids)
        if rows:
            try:
                results.extend(rows[0][1].apply_run(folders, known, rows))  # type: ignore[attr-defined]
            except ConflictError:
                raise
            except Exception as exc:
                raise _Poisoned(rows[0][0], exc) from exc
            c = known.customer
            if c is not None and c._p_oid is not None:
                self._owners[c._p_oid] = c.id
        return n - 1, len(rows), dups

    def _pruned(self, folders: Folders, customer: Customer, res: EventResult, before: int) -> None:
        """Logging ``res``'s key dropped ``customer``'s keys logged before ``before`` (µs; more than the
        replay window ago, ``shopkeeper.keylog``). In the hub's writer (the feed's processor installed)
        a ``keys_pruned`` entry publishes it with the event, ``detail`` that time in µs."""
        from . import feed  # (rare; feed imports this module)

        if feed.interaction_processor in self.processors:
            res.outputs.append(feed.append(folders, "keys_pruned", customer.id, detail=str(before)))

    def _conflicting(self, exc: ConflictError, live: list[int]) -> list[int] | None:
        """The events of ``live`` whose customer the conflict ``exc`` names, in order — when the
        conflicting record is the record of a customer the failed attempt applied events to, and
        the attempt got through every event (else a later event of that customer might be
        unknown, and retrying the others first could apply it before the earlier ones). None
        when the conflict is on anything else: a shared index node, a counter, a storage lock
        (RelStorage's lock errors name no object)."""
        oid = getattr(exc, "oid", None)
        cid = self._owners.get(oid) if oid is not None else None
        if cid is None or len(self._cids) < len(live):
            return None
        cids = self._cids
        return [i for i in live if cids.get(i) == cid]

    def _fast_path(self, etype: str) -> Callable[..., Any] | None:
        """The fast-path handler for ``etype`` (see :data:`Processor`), when no other processor
        declares the type: a rule or segment that names it gets it through this loop."""
        handler = owner = None
        for proc in self.processors:
            paths = getattr(proc, "fast_paths", None)
            if paths and etype in paths:
                handler, owner = paths[etype], proc
                break
        if handler is None:
            return None
        for proc in self.processors:
            if proc is owner or getattr(proc, "covered_by_fast_paths", False):
                continue
            wanted = getattr(proc, "event_types", None)
            if (wanted is None or etype in wanted) and not (hasattr(proc, "waives") and proc.waives(etype)):
                return None
        return handler

    def _key_holder(self, folders: Folders, ev: Event
                    ) -> tuple[Customer | None, _Normalized | None, Resolution | None]:
        """The customer who already has ``ev``'s idempotency key, or None; the event's identities
        normalised (pairs, warnings), which :meth:`_apply` hands to the resolver instead of normalising
        them a second time (None when they do not normalise: resolving reports why); and, for an event
        no one holds whose identities all point at one customer, the resolution the resolver's fast
        path would give, from the index entries read here (``Resolver.resolve_indexed``), else None.

        Keys live in the customers' own records (``Customer.has_key``), so the candidates are
        the customers the event's identities point at now (merges followed) — looked up without
        resolving, so a redelivery never merges, attaches or creates anything — and the customer an
        import pins it to. An erased person is no candidate: the tombstones refuse the event."""
        try:
            pairs, warnings = self.resolver.normalize_pairs(ev.identities)
        except IdentityError:
            return None, None, None  # _apply reports it, with field and reason
        normalized = (pairs, warnings)
        key, ts = ev.idempotency_key, 0 if ev.stamped else ev.ts
        index, customers = folders.identities, folders.customers
        cids = []
        checked: list[str] = []  # an email and a cookie of one customer: look them up and probe once
        probed = None  # the first customer probed: the fast-path resolution's, when it is the only one
        for pair in pairs:
            cid = index.get(pair)
            cids.append(cid)
            if cid is not None and cid not in checked:
                checked.append(cid)
                c = customers.get(cid)
                if c is not None and c.status == STATUS_MERGED:  # (rare: the call only then)
                    c = folders.customer(cid)
                if c is not None and c.has_key(key, ts):
                    return c, normalized, None
                if probed is None:
                    probed = c
        pinned = getattr(ev, "customer_id", None) if type(ev) is not Event else None
        if pinned and pinned not in checked:
            c = folders.customer(pinned)
            if c is not None and c.has_key(key, ts):
                return c, normalized, None
        if type(ev) is not Event or len(checked) != 1:  # a record applied its own way; none or several
            return None, normalized, None
        return None, normalized, self.resolver.resolve_indexed(folders, pairs, warnings, cids, probed)

    def _apply_one(self, folders: Folders, index: int, ev: Event) -> EventResult:
        return self._apply(folders, index, ev, None)[0]

    def _apply(self, folders: Folders, index: int, ev: Event, known: Resolution | None,
               normalized: _Normalized | None = None) -> tuple[EventResult, Resolution | None]:
        """Apply one event; ``known``: its customer, already resolved for the previous event of the
        batch that named the same identities (:class:`~.coalescing.Run`), so it is not resolved again;
        ``normalized``: its identities as :meth:`_key_holder` normalised them (same pairs, same
        warnings as resolving would find)."""
        if type(ev) is not Event:  # a record that knows how it is applied (an import's rows)
            apply_in = getattr(ev, "apply_in", None)
            if apply_in is not None:
                if getattr(ev, "coalesces", False):
                    return apply_in(self, folders, index, known)
                return apply_in(self, folders, index), None
        if known is None and normalized is not None:
            resolution = self.resolver.resolve(folders, normalized[0], source=ev.touchpoint or self.source,
                                               at=ev.ts, normalized=True)
            if normalized[1]:  # the warnings normalising gave, first, as resolve would have put them
                resolution.warnings[:0] = normalized[1]
        elif known is None:
            resolution = self.resolver.resolve(folders, ev.identities, source=ev.touchpoint or self.source,
                                               at=ev.ts)
        else:
            resolution = known
        customer = resolution.customer
        assert customer is not None
        ts = ev.ts
        it = customer.add_interactions((_new_tuple(Interaction, (
            ts, ts, ev.type, ev.channel, ev.touchpoint, ev.data, ev.idempotency_key, tuple(resolution.pairs),
            customer.id)),))[0]
        if ev.traits:
            customer.set_traits(ev.traits)
        merges, proposals = resolution.merges, resolution.proposals
        res = EventResult(index, "applied", customer.id, it.key, resolution.created,
                          merges=[m.id for m in merges] if merges else [],
                          proposals=[p.id for p in proposals] if proposals else [],
                          warnings=resolution.warnings)
        if self.processors:
            applied = Applied(ev, customer, it, resolution, res)
            etype = ev.type
            for proc in self.processors:
                wanted = getattr(proc, "event_types", None)  # see Processor: None = every event
                if wanted is None or etype in wanted:
                    proc(folders, applied)
        return res, resolution


__all__ = ["Ingestor", "EventResult", "Applied", "Processor", "IngestStats"]
