"""Records that travel through the Ingestor, and how an import applies them.

A customer row is not an interaction: it must not add to the history nor to the hard
facts, or an export→import round trip would grow every customer's history. It travels
through the Ingestor as a :class:`CustomerRecord` (an ``Event`` subclass) that
:class:`ImportIngestor` applies with the Customer methods instead of recording it. Every
check that can fail runs before the first change (the ``check_*`` functions, also used by
strict mode's validation pass), so a refused record leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..customer import STATUS_ACTIVE, STATUS_FORGOTTEN, Consent, Customer, Fact, Interaction
from ..engine import feed
from ..engine.ingest import Applied, EventResult, Ingestor
from ..events import Event
from ..identity import IdentityConfig, IdentityError, Resolution, attach, normalize, tombstone_key
from ..store import Folders

#: ``Interaction``'s fields given all nine, in order: the tuple made without the namedtuple's Python
#: ``__new__`` (one frame per row; as ``engine.ingest`` makes its interactions)
_new_tuple = tuple.__new__


@dataclass(slots=True)
class CustomerRecord(Event):
    """A customer row, validated: applied to a customer, never recorded in its history.

    ``identities`` are already normalised; ``links`` keeps per-identity provenance
    (source, at) when the row carried it (an export does), so that eviction of the oldest
    weak identity behaves the same after a round trip.
    """

    customer_id: str | None = None
    created_at: int | None = None
    links: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    soft: dict[str, Fact] = field(default_factory=dict)
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    scores: dict[str, Fact] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # found while reading the row (placeholders)

    def apply_in(self, ingestor: Ingestor, folders: Folders, index: int) -> EventResult:
        """Applied by the Ingestor's loop (``Ingestor._apply_one``) instead of being recorded.

        Every check that can fail runs before the first change. Inside the hub (the writer's
        ingestor runs the change-feed processor) the row is published as an ``import`` change."""
        rec = self
        target, owners = check_customer_record(folders, rec)
        source = rec.touchpoint or ingestor.source
        at = rec.ts
        warnings: list[str] = list(rec.warnings)
        created = False
        merges: list[str] = []
        proposals: list[str] = []
        if rec.customer_id is not None:
            if target is None:
                target = folders.add_customer(Customer(rec.customer_id, created_at=rec.created_at or at))
                created = True
            # owners ⊆ {target}: attach what is new within the namespace limits, no merge needed
            for pair in rec.identities:
                if folders.identities.get(pair) is None:
                    ingestor.resolver._attach(folders, target, pair, source, at, warnings)
            customer = target
        else:
            res = ingestor.resolver.resolve(folders, rec.identities, source=source, at=at, normalized=True)
            customer = res.customer
            assert customer is not None
            created = res.created
            if created and rec.created_at is not None:
                customer.created_at = rec.created_at
            merges = [m.id for m in res.merges]
            proposals = [p.id for p in res.proposals]
            warnings += res.warnings
        for pair, (src, when) in rec.links.items():
            if pair in customer.identities:
                attach(folders, customer, pair, src, when)
        customer.set_traits(rec.traits)
        for name, fact in rec.soft.items():
            customer.set_soft_fact(name, fact.value, fact.source, fact.at)
        for (channel, purpose), c in rec.consents.items():
            customer.set_consent(channel, purpose, c.granted, c.source, c.at)
        for name, fact in rec.scores.items():
            customer.set_score(name, fact.value, fact.source, fact.at)
        for name, joined in rec.segments.items():
            customer.join_segment(name, joined)
        # The Ingestor counts every applied record as an interaction; this one is not.
        folders.count("interactions", -1)
        result = EventResult(index, "applied", customer_id=customer.id, created=created, merges=merges,
                             proposals=proposals, warnings=warnings)
        if feed.interaction_processor in ingestor.processors:  # the hub's writer: publish the change
            result.outputs.append(feed.append(folders, "import", customer.id, detail="customer row"))
        return result


@dataclass(slots=True)
class ImportedInteraction(Event):
    """An interaction row, validated, with what only an import knows about it.

    ``customer_id`` pins it to a Shopkeeper customer (an export says whose history it was
    in, because the identities it carried may since have moved to someone else or come in
    by a merge; re-resolving them could land it on the wrong person); when that customer
    does not exist, identities decide as usual. ``origin`` keeps the customer that first
    recorded it (what unmerge relies on). ``derived_key``: the idempotency key was made up
    from the row, so it goes into the idempotency index only and the history keeps the
    interaction exactly as it was (without a key).
    """

    customer_id: str | None = None
    origin: str = ""
    derived_key: bool = False
    historical: bool = False  # a history load through a hub: no rules or messages (offline: no processors)

    #: the Ingestor may hand it the customer the previous row of the batch resolved to (``known``)
    coalesces = True
    #: ... and, with no processor to run per row, the rest of that customer's run at once (:meth:`apply_run`)
    applies_runs = True

    def apply_in(self, ingestor: Ingestor, folders: Folders, index: int,
                 known: Resolution | None = None) -> tuple[EventResult, Resolution]:
        """``Ingestor._apply`` plus pinning, origin and derived keys (kept in step with it).

        ``known``: the previous row named the same identities and was applied to this customer
        (``engine.coalescing.Run`` says when that holds), so normalising, the tombstone check and
        resolving again are skipped — they would give the same customer and no warning.

        A ``historical`` interaction runs no processors but the change feed's: no rules, no
        messages for orders of years ago, yet a hub's ``Watch`` still sees it."""
        ev = self
        if known is not None:
            resolution, pairs, warnings = known, known.pairs, []
        else:
            pairs, warnings = ingestor.resolver.normalize_pairs(ev.identities)  # cached: hot identities recur
            check_tombstones(folders, pairs)
            target = pinned_customer(folders, ev)
            if target is not None:
                resolution = Resolution(target, pairs)
            else:
                if not pairs and ev.customer_id:
                    raise IdentityError("identities", f"required: customer {ev.customer_id!r} is not in this "
                                                      "store, so the interaction must say who it belongs to")
                if not pairs:
                    raise IdentityError("identities", "no usable identity (every value was missing or blocked)")
                resolution = ingestor.resolver.resolve(folders, pairs, source=ev.touchpoint or ingestor.source,
                                                       at=ev.ts, normalized=True)
        customer = resolution.customer
        assert customer is not None
        it = customer.add_interaction(ev.interaction(tuple(pairs), customer.id))
        if ev.traits:
            customer.set_traits(ev.traits)
        res = EventResult(index, "applied", customer_id=customer.id, interaction_key=it.key,
                          created=resolution.created, merges=[m.id for m in resolution.merges],
                          proposals=[p.id for p in resolution.proposals], warnings=warnings + resolution.warnings)
        processors = ingestor.processors
        if ev.historical:
            processors = [p for p in processors if p is feed.interaction_processor]
        if processors:
            applied = Applied(ev, customer, it, resolution, res)
            for proc in processors:
                proc(folders, applied)
        return res, resolution

    def interaction(self, pairs: tuple[tuple[str, str], ...], customer_id: str) -> Interaction:
        """The interaction this row records on customer ``customer_id``, under identities ``pairs``:
        a derived key is not stored with it (it names the row, not the event), and the row's origin
        defaults to the customer."""
        return _new_tuple(Interaction, (self.ts, self.ts, self.type, self.channel, self.touchpoint, self.data,
                                        "" if self.derived_key else self.idempotency_key, pairs,
                                        self.origin or customer_id))

    @staticmethod
    def apply_run(folders: Folders, known: Resolution, rows: list[tuple[int, ImportedInteraction]]
                  ) -> list[EventResult]:
        """The Ingestor's bulk entry (``Ingestor._apply_run``): rows of one run — same identities, no
        pin, no traits, each already judged new on its own key — recorded on ``known``'s customer in
        one ``Customer.add_interactions`` call, their keys remembered, one result per row. What
        :meth:`apply_in` with ``known`` and the loop's ``remember_key`` do row by row when no processor
        runs (``tests/test_import_runs.py`` compares the stores)."""
        customer = known.customer
        assert customer is not None
        cid = customer.id
        pairs = tuple(known.pairs)
        its = customer.add_interactions([  # :meth:`interaction` of each row, inline (a frame less per row)
            _new_tuple(Interaction, (ev.ts, ev.ts, ev.type, ev.channel, ev.touchpoint, ev.data,
                                     "" if ev.derived_key else ev.idempotency_key, pairs, ev.origin or cid))
            for _i, ev in rows])
        for _i, ev in rows:
            if ev.idempotency_key:
                customer.remember_key(ev.idempotency_key, 0 if ev.stamped else ev.ts)
        return [EventResult(i, "applied", customer_id=cid, interaction_key=it.key)
                for (i, _ev), it in zip(rows, its, strict=True)]


class ImportIngestor(Ingestor):
    """The Ingestor an offline import uses: nothing overridden any more — the records apply
    themselves (:meth:`CustomerRecord.apply_in`, :meth:`ImportedInteraction.apply_in`), so the
    hub's writer applies them the same way (``Admin.ImportRows``). Kept as a name for callers."""


def check_tombstones(folders: Folders, pairs: Iterable[tuple[str, str]]) -> None:
    """Refuse identities of a person who asked to be forgotten (before any change)."""
    if not folders.tombstones:  # truth test: a BTree's len() walks every bucket
        return
    for pair in pairs:
        if tombstone_key(folders, pair) in folders.tombstones:
            raise IdentityError(f"identities.{pair[0]}", "belongs to a customer who asked to be forgotten")


def normalize_for_store(folders: Folders, identities: Iterable[tuple[str, str]],
                        config: IdentityConfig) -> list[tuple[str, str]]:
    """Normalised pairs (blocked placeholders dropped), refused if any is a tombstone."""
    out: list[tuple[str, str]] = []
    for ns, value in identities:
        try:
            pair = (ns, normalize(ns, value, config))
        except IdentityError as exc:
            if "blocked" in exc.reason:
                continue
            raise
        if pair not in out:
            out.append(pair)
    check_tombstones(folders, out)
    return out


def pinned_customer(folders: Folders, ev: ImportedInteraction) -> Customer | None:
    """The active customer an interaction row is pinned to, if any; refuses an erased one."""
    if not ev.customer_id:
        return None
    pinned = folders.customers.get(ev.customer_id)
    if pinned is None:
        return None
    if pinned.status == STATUS_FORGOTTEN:
        raise IdentityError("customer", f"customer {ev.customer_id!r} was erased on request; "
                                        "their interactions cannot be imported again")
    target = folders.customer(ev.customer_id)
    return target if target is not None and target.status == STATUS_ACTIVE else None


def check_customer_record(folders: Folders, rec: CustomerRecord) -> tuple[Customer | None, list[str]]:
    """Read-only checks of a customer row against the store; raises ``IdentityError``.

    Returns the customer the row's ``id`` names (if it exists) and the ids of the customers
    its identities already belong to. A row with an ``id`` must not touch anyone else: if
    its identities belong to another customer, an automatic merge would silently drop one
    of the two ids, so the row is refused and the message says how to proceed.
    """
    if rec.customer_id is not None:
        existing = folders.customers.get(rec.customer_id)
        if existing is not None and existing.status == STATUS_FORGOTTEN:
            raise IdentityError("id", f"customer {rec.customer_id!r} was erased on request and cannot be "
                                      "imported again")
    check_tombstones(folders, rec.identities)
    owners: list[str] = []
    owner_of: dict[str, tuple[str, str]] = {}
    for pair in rec.identities:
        cid = folders.identities.get(pair)
        if cid is not None:
            c = folders.customer(cid)
            if c is not None and c.id not in owner_of:
                owner_of[c.id] = pair
                owners.append(c.id)
    if rec.customer_id is None:
        return None, owners
    existing = folders.customers.get(rec.customer_id)
    target = folders.customer(rec.customer_id) if existing is not None else None
    if existing is not None and (target is None or target.status != STATUS_ACTIVE):
        raise IdentityError("id", f"customer {rec.customer_id!r} exists but is {existing.status} and its merge "
                                  "chain leads to no active customer")
    for cid in owners:
        if target is None or cid != target.id:
            ns, value = owner_of[cid]
            what = (f"the row's id {rec.customer_id!r} is a different customer" if target is not None
                    else f"a new customer {rec.customer_id!r} cannot share it")
            raise IdentityError(f"identities.{ns}", f"{value!r} already belongs to customer {cid}; {what} "
                                                    "(to merge by identity instead, import the id as one: "
                                                    "--map id=crm_id)")
    return target, owners


def check_record(folders: Folders, rec: Event, config: IdentityConfig) -> None:
    """Every read-only check of one prepared record against the store (``--strict``'s first
    pass, offline and through a hub); raises ``IdentityError``/``EventError``."""
    if isinstance(rec, CustomerRecord):
        check_customer_record(folders, rec)
        return
    if rec.identities:
        normalize_for_store(folders, rec.identities, config)
    if isinstance(rec, ImportedInteraction):
        pinned_customer(folders, rec)


def customer_order(records: list[Event]) -> list[int]:
    """The order in which an import applies one batch: the rows of each identity set together.

    The apply loop resolves adjacent rows naming the same identities once (``engine.coalescing.Run``:
    no second normalising, exactly-once probe of each candidate, index walk or customer lookup),
    but a file rarely lists one customer's rows one after another (a shop's log interleaves its
    customers). So within a batch each interaction row joins the first earlier row that named
    exactly the same identities (and pin); groups keep the order of their first rows, rows their
    file order within a group. Why that changes nothing: a row only moves up to a row with the same
    identities, which resolved to the customer it would resolve to itself — or, if a later row
    merged that customer away, to the one the merge folds into the survivor with its history (the
    history is keyed by time, the hard facts are sums and maxima). What does depend on order ends
    the grouping so far and is not moved: a row with traits (the last value wins) and a customer
    row. Returns the batch's indexes in the order to apply them.
    """
    out: list[int] = []
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(records):
        if type(rec) is not ImportedInteraction or rec.traits:
            for rows in groups.values():
                out.extend(rows)
            groups.clear()
            out.append(i)
            continue
        key = (rec.customer_id, tuple(rec.identities))
        rows = groups.get(key)
        if rows is None:
            groups[key] = [i]
        else:
            rows.append(i)
    for rows in groups.values():
        out.extend(rows)
    return out
