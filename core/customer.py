"""The living customer object: profile, facts, consents, scores, rules and history.

One ``Customer`` is one ZODB record holding the small, hot parts as plain attributes — packed
into one ``bytes`` value when pickled (``shopkeeper.packedrecord``) — together with a bounded
window of the newest interactions and idempotency keys; the parts that grow without bound
(interaction history, identities, older keys) live in BTrees of their own, into which the
windows spill in chunks. So an event rewrites one record, the customer's, nearly always.

The values it holds (``Interaction``, ``Fact``, ``Consent``, ``IdentityLink``, the per-day
aggregates) are in :mod:`shopkeeper.values`, imported here under their old names: stored
records name them ``shopkeeper.customer.*``, and still do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from marshal import loads as _loads
from typing import Any

from BTrees.LOBTree import LOBTree
from BTrees.OOBTree import OOBTree
from persistent import Persistent

from . import memberships
from .hardfacts import count_interaction, take_back_daily
from .history import History, reverse_keys, stored
from .identitymap import IdentityMap, linked, unlinked
from .kept import KEPT_ATTRS, KEPT_AUDIENCE, KEPT_JOINED, KEPT_LEFT, KEPT_ORDERS, mark, mark_soft
from .keylog import KEY_WINDOW, ExactlyOnce  # noqa: F401 - KEY_WINDOW: its old path
from .packedrecord import _HOT, _REFERENCES, CUSTOMER_SCHEMA, PackedRecord  # noqa: F401 - old paths
from .recent import RecentWindow
from .scoretable import ScoreView
from .values import (  # noqa: F401 - re-exported: pickles and callers name them shopkeeper.customer.*
    _PICKLE4,
    DAILY_KEEP_DAYS,
    HARD_FACT_DEFAULTS,
    SPEND,
    US_PER_DAY,
    Consent,
    Daily,
    Fact,
    IdentityLink,
    Interaction,
    _pack_fields,
    _unpack_daily,
    _unpack_interaction,
    now_us,
)

STATUS_ACTIVE = "active"
STATUS_MERGED = "merged"  # absorbed into another customer; ``merged_into`` says which
STATUS_FORGOTTEN = "forgotten"  # erased on request; only a tombstone is left


#: Interactions a customer keeps in their own record before they spill, together, into the history
#: ``LOBTree`` (``Customer.history`` reads both as one). One bucket write per chunk instead of per event.
HISTORY_CHUNK = 16



class _Kept:
    """A part the kept indexes carry (``shopkeeper.kept.KEPT_ATTRS``), as a class attribute of
    ``Customer`` that marks the customer when the part is *set whole* (merge, unmerge, erasure).

    Why a descriptor with ``__set__`` and no ``__get__``: a Python ``__setattr__`` on the class ran
    for every assignment — ZODB's own ``_p_serial``/``_p_changed`` on every load and store, and each
    ``self._p_changed = True`` of the apply loop: ~4 Python calls per event (docs/benchmarks.md §84).
    Without ``__get__`` a read finds the value in the instance ``__dict__`` at C speed, so every
    instance must hold each of these attributes: ``__init__`` and ``__setstate__`` see to it (else a
    read would return this descriptor)."""

    __slots__ = ("name", "bits")

    def __init__(self, name: str, bits: int) -> None:
        self.name, self.bits = name, bits

    def __set__(self, c: Customer, value: Any) -> None:
        # Persistent's setattr has registered the change already; this stores and marks
        c.__dict__[self.name] = value
        mark(c, self.bits)

    def __delete__(self, c: Customer) -> None:
        del c.__dict__[self.name]
        mark(c, self.bits)


class Customer(ExactlyOnce, PackedRecord, Persistent):
    """One person as the business knows them, across every channel.

    Mutating methods take care of ``_p_changed`` for the plain dicts they touch; code
    outside this class should call them rather than edit the dicts directly.
    """

    #: set by erasure: {"at": µs, "reason": text}; a class default keeps old records valid
    forgotten: dict[str, Any] | None = None
    #: messages to send, created on first use: ``OOBTree`` intent id -> ``shopkeeper.outbox.OutboxItem``
    #: (None until then; a kept attribute: see the end of the class)
    outbox: OOBTree | None
    #: per-day aggregates, maintained with the hard facts: UTC day number (``ts // US_PER_DAY``)
    #: -> {event type: count, ``SPEND``: order amounts}; complete for days >= max(daily) -
    #: ``DAILY_KEEP_DAYS``. None on records written before it existed (readers fall back to the
    #: history; ``recompute_hard_facts`` builds it)
    daily: dict[int, dict[str, Any]] | None = None
    #: event type -> latest timestamp of that type (None on old records, like ``daily``)
    last_at: dict[str, int] | None = None
    # the idempotency keys (``recent_keys``, ``key_log``…) and their methods: ``shopkeeper.keylog.ExactlyOnce``;
    # the stored form (``__getstate__``/``__setstate__``): ``shopkeeper.packedrecord``
    #: the customer's card in the audience index as last written (``shopkeeper.audience``): the
    #: before-commit hook compares with it instead of reading the index; None until first written
    _card: tuple | None = None

    def __init__(self, id: str, created_at: int | None = None) -> None:
        # One ``__dict__`` update instead of 22 assignments through ``__setattr__`` (the kept marks'
        # check and ``Persistent.__setattr__`` each): a new customer has no connection yet, so there is
        # nothing to mark and no change to register (``Folders.add_customer`` adds it). An import
        # creates one per new person (docs/benchmarks.md, the import section of the ninth session).
        self.__dict__.update({
            "id": id,
            "schema": CUSTOMER_SCHEMA,
            "status": STATUS_ACTIVE,
            "merged_into": None,
            "created_at": created_at if created_at is not None else now_us(),
            "identities": IdentityMap(),  # (namespace, value) -> IdentityLink; inline while few (gen 10)
            "_tree": None,  # spilled history, created on the first spill (see ``history``)
            "_recent": RecentWindow(),  # newest interactions, in this record until spilled
            "hard": dict(HARD_FACT_DEFAULTS),
            "type_counts": {},
            "soft": {},  # name -> Fact
            "traits": {},  # profile attributes from the touch points (name, city…)
            "consents": {},  # (channel, purpose) -> Consent
            "_scores": {},  # own scores; model scores live in ``ScoreTable``s
            # segments: kept apart from the record (``shopkeeper.memberships``; the property below)
            "rules": {},  # this customer's own rules, by name (rules issue)
            "rule_state": {},  # persisted rule-evaluation state (rules issue)
            "merged_from": (),  # ids of merge records that folded others in
            "daily": Daily(),
            "last_at": {},
            "recent_keys": {},
            "outbox": None,  # a kept attribute (``_Kept``): every instance holds it
        })

    def __repr__(self) -> str:
        return f"<Customer {self.id} {self.status}>"

    # -- identities ---------------------------------------------------------------------

    def identity_pairs(self) -> list[tuple[str, str]]:
        return list(self.identities.keys())

    def identities_in(self, namespace: str) -> list[str]:
        return [v for (_ns, v) in self.identities.keys(min=(namespace, ""), max=(namespace, "\U0010ffff"))]

    def link_identity(self, pair: tuple[str, str], link: IdentityLink) -> None:
        """Record identity ``pair``. The record is marked changed although only its identities tree
        is written: keepers (the audience index's addresses) look at the changed customers."""
        self.identities = linked(self.identities, pair, link)  # inline while few (``identitymap``)

    def unlink_identity(self, pair: tuple[str, str]) -> IdentityLink | None:
        """Remove identity ``pair``; return its link, or None when the customer did not have it."""
        identities, link = unlinked(self.identities, pair)
        if link is not None:
            self.identities = identities
        return link

    # -- history ------------------------------------------------------------------------

    #: spilled history (``LOBTree`` key -> Interaction); None until the first spill (a kept attribute)
    _tree: LOBTree | None
    #: the newest interactions, kept in the customer's own record (written with every event anyway)
    #: until ``HISTORY_CHUNK`` of them spill into ``_tree`` together: one bucket write per chunk.
    #: Stored as each one's packed bytes and left packed until read (``shopkeeper.recent``)
    _recent: RecentWindow | None = None

    @property
    def history(self) -> History:
        """Every interaction, key -> ``Interaction``: the spilled BTree and the recent ones in one
        sorted, BTree-like view (``keys/values/items(min, max)``, ``len``, ``in``, ``[key]``, ``pop``)."""
        return History(self)

    @history.setter
    def history(self, tree: LOBTree) -> None:
        """Replace the whole history (merge, unmerge, erasure hand over a new ``LOBTree``)."""
        self._tree = tree
        self._recent = RecentWindow()

    def pop_interaction(self, key: int, *default: Any) -> Any:
        """Remove and return the interaction at ``key`` (a rule's rolled-back ``emit``), or
        ``default`` when given; ``KeyError`` otherwise. What ``history.pop`` does."""
        recent = self._recent
        if recent and key in recent:
            value = recent.pop(key)
            self._p_changed = True
            return value
        if self._tree is not None and key in self._tree:
            return stored(self._tree.pop(key))
        if default:
            return default[0]
        raise KeyError(key)

    def _spill_history(self) -> None:
        tree = self._tree
        if tree is None:
            tree = self._tree = LOBTree()
        tree.update(self._recent.packed())  # as packed bytes (generation 7, ``shopkeeper.history``)
        self._recent = RecentWindow()

    def add_interaction(self, interaction: Interaction) -> Interaction:
        """Store ``interaction`` under a free key at or after its timestamp and update facts."""
        return self.add_interactions((interaction,))[0]

    def add_interactions(self, interactions: Sequence[Interaction]) -> list[Interaction]:
        """Store each of ``interactions``, in order, under a free key at or after its timestamp and
        count it into the facts; returns them as stored (keys set). Exactly what as many
        :meth:`add_interaction` calls do — the same keys, spills and facts — with the record marked
        once: an import applies a customer's run of rows in one call (``ImportedInteraction``)."""
        recent = self._recent
        if recent is None:
            recent = self._recent = RecentWindow()
        tree = self._tree
        hard, counts, last_at, daily = self.hard, self.type_counts, self.last_at, self.daily
        orders = False
        out = []
        for it in interactions:
            it, size = recent.add(it, tree)
            if size >= HISTORY_CHUNK:
                self._spill_history()
                recent, tree = self._recent, self._tree
            if count_interaction(hard, counts, last_at, daily, it):
                orders = True
            out.append(it)
        if orders:
            mark(self, KEPT_ORDERS)
        self._p_changed = True
        return out

    def interactions(
        self,
        since: int | None = None,
        until: int | None = None,
        channel: str | None = None,
        type: str | None = None,
        newest_first: bool = False,
    ) -> Iterator[Interaction]:
        """Interactions in ``[since, until)`` filtered by channel and type."""
        hi = None if until is None else until - 1
        history = self.history  # one view for the walk (the property builds one per access)
        keys = history.keys(min=since, max=hi)
        if newest_first:
            small = self.hard.get("interactions", 0) < 4096
            keys = reversed(list(keys)) if small else reverse_keys(history, since, hi)
        for k in keys:
            it = history[k]
            if channel is not None and it.channel != channel:
                continue
            if type is not None and it.type != type:
                continue
            yield it

    def recent(self, n: int = 10) -> list[Interaction]:
        """The ``n`` newest interactions, newest first (``History.newest``: the window and the spilled
        tree's newest buckets, not every key of the history)."""
        return self.history.newest(n)

    def _apply_hard_facts(self, it: Interaction) -> None:
        if count_interaction(self.hard, self.type_counts, self.last_at, self.daily, it):
            mark(self, KEPT_ORDERS)
        self._p_changed = True

    def take_back_daily(self, it: Interaction) -> None:
        """Undo the per-day count of ``it``, an interaction taken out of the history again (a rule
        that emitted it failed): windowed conditions read these aggregates, the event's day included."""
        if take_back_daily(self.daily, it):
            self._p_changed = True

    def recompute_hard_facts(self) -> None:
        """Rebuild every hard fact from the history (after merge, unmerge or erasure)."""
        self.hard = dict(HARD_FACT_DEFAULTS)
        self.type_counts = {}
        self.daily = Daily()
        self.last_at = {}
        for it in self.history.values():
            self._apply_hard_facts(it)

    # -- soft facts, traits, scores, segments -------------------------------------------

    def set_soft_fact(self, name: str, value: Any, source: str, at: int | None = None) -> None:
        self.soft[name] = Fact(value, source, at if at is not None else now_us())
        self._p_changed = mark_soft(self, name)

    def clear_soft_fact(self, name: str) -> None:
        if self.soft.pop(name, None) is not None:
            self._p_changed = mark_soft(self, name)

    def set_traits(self, traits: dict[str, Any]) -> None:
        if traits:
            self.traits.update(traits)
            self._p_changed = mark(self)

    @property
    def scores(self) -> ScoreView:
        """Every score: this record's own (rules, per-event re-scores, imports) and the customer's
        rows in the model score tables (batch fits), the newer ``at`` winning per name. Read-only:
        write with :meth:`set_score` (or a ``ScoreTable`` for a batch)."""
        return ScoreView(self)

    @scores.setter
    def scores(self, value: Mapping[str, Fact]) -> None:
        """Replace the record's own scores (merge, unmerge, erasure); table rows are not touched."""
        self._scores = dict(value)

    def set_score(self, name: str, value: float, source: str, at: int | None = None) -> None:
        self._scores[name] = Fact(float(value), source, at if at is not None else now_us())
        self._p_changed = True

    # Segment memberships live apart from the record since generation 16 (``shopkeeper.memberships``: a
    # segments-only change rewrites a small row, not this record). A record written before keeps them in
    # its state (``__dict__['segments']``) until they next change; a customer in no store keeps them there.

    @property
    def segments(self) -> dict[str, int]:
        """segment name -> joined at (µs). Read-only as returned (a fresh mapping read from the
        memberships row): change it with :meth:`join_segment`, :meth:`leave_segment`, an assignment of
        the whole mapping, or in place on :meth:`edit_segments`' mapping then :meth:`segments_changed`."""
        self._p_activate()
        d = self.__dict__
        work = d.get("_v_segs")
        if work is not None and work[0] is memberships.current_txn(self._p_jar):
            return work[1]
        own = d.get("segments")
        if own:  # in the record: written before generation 16, or no memberships tree
            return own
        jar = self._p_jar
        got = jar.__dict__.get(memberships.CACHED) if jar is not None else None  # (inlined: read per event)
        tree = got[0] if got is not None else memberships.tree_of(jar)
        if tree is None:
            if own is None:
                own = d["segments"] = {}
            return own
        packed = tree.get(self.id)
        return _loads(packed) if packed is not None else {}

    @segments.setter
    def segments(self, value: Mapping[str, int]) -> None:
        """Replace the memberships whole (merge, unmerge, erasure)."""
        before = tuple(self.segments)
        self._store_segments(dict(value), before, KEPT_AUDIENCE)

    def edit_segments(self, segs: dict[str, int] | None = None) -> dict[str, int]:
        """The live memberships to change in place (a later ``segments`` read in this transaction sees
        the change); call :meth:`segments_changed` after changing them. ``segs``: the mapping a
        ``segments`` read just gave, to be the live one (it is not read again)."""
        self._p_activate()
        d = self.__dict__
        own = d.get("segments")
        jar = self._p_jar
        if own is not None and (own or memberships.tree_of(jar) is None):
            return own
        work = d.get("_v_segs")
        txn = memberships.current_txn(jar)
        if work is not None and work[0] is txn:
            return work[1]
        if segs is None:
            segs = self.segments
        self._v_segs = (txn, segs)
        return segs

    def _store_segments(self, new: dict[str, int], before: Any, bits: int) -> None:
        """Make ``new`` the memberships (``before``: the segments the customer was in): in the
        memberships row, or in the record without a tree. A record that still holds memberships from
        before generation 16 is rewritten once, without them."""
        d = self.__dict__
        jar = self._p_jar
        if memberships.tree_of(jar) is None:
            d["segments"] = new
            self._p_changed = mark(self, bits)
            return
        memberships.put(jar, self.id, before, new)
        if d.get("segments") is not None:
            del d["segments"]
            self._p_changed = True
        self._v_segs = (memberships.current_txn(jar), new)

    def join_segment(self, name: str, at: int | None = None) -> bool:
        segs = self.segments
        if name in segs:
            return False
        new = dict(segs)
        new[name] = at if at is not None else now_us()
        self._store_segments(new, segs, KEPT_JOINED)
        return True

    def leave_segment(self, name: str) -> bool:
        segs = self.segments
        if name not in segs:
            return False
        new = dict(segs)
        del new[name]
        self._store_segments(new, segs, KEPT_LEFT)
        return True

    def segments_changed(self, joined: bool, left: bool, before: Any = ()) -> None:
        """:meth:`edit_segments`' mapping was changed in place, name by name, by a caller judging many
        segments at once (a full re-evaluation's ``rejudge``, docs/benchmarks.md §81): stored once, the
        kept indexes marked once as ``join_segment``/``leave_segment`` mark per name. ``before``: the
        segments the customer was in when the edit began (for the member sets)."""
        bits = (KEPT_JOINED if joined else 0) | (KEPT_LEFT if left else 0)
        d = self.__dict__
        own = d.get("segments")
        if own is not None and (own or memberships.tree_of(self._p_jar) is None):
            if memberships.tree_of(self._p_jar) is None:  # in the record, changed in place
                self._p_changed = mark(self, bits)
                return
            self._store_segments(dict(own), before, bits)  # a record from before: the memberships move out
            return
        self._store_segments(self.segments, before, bits)

    # -- consents -----------------------------------------------------------------------

    def set_consent(self, channel: str, purpose: str, granted: bool, source: str, at: int | None = None) -> None:
        self.consents[(channel, purpose)] = Consent(bool(granted), source, at if at is not None else now_us())
        self._p_changed = mark(self)

    def consent(self, channel: str, purpose: str = "marketing") -> Consent | None:
        return self.consents.get((channel, purpose))

    def may_contact(self, channel: str, purpose: str = "marketing") -> bool:
        """True only on an explicit, current grant: no record means no contact."""
        c = self.consents.get((channel, purpose))
        return bool(c and c.granted)

    # -- rule state and own rules (shopkeeper.rules writes them only through these) -------
    # ``rule_state`` and ``rules`` are plain dicts inside the record: a change to them is only
    # saved when the record is marked changed, which is why nobody outside this class does it.

    def put_rule_state(self, part: str, key: str, value: Any) -> None:
        """Set ``rule_state[part][key]`` (parts: ``tags``, ``provenance``, ``proposals``,
        ``timers``, ``fired``)."""
        self.rule_state.setdefault(part, {})[key] = value
        self._p_changed = True

    def pop_rule_state(self, part: str, key: str) -> Any:
        """Remove ``rule_state[part][key]`` and return it (None when there was none)."""
        got = (self.rule_state.get(part) or {}).pop(key, None)
        if got is not None:
            self._p_changed = True
        return got

    def set_rule_state(self, part: str, value: Any) -> None:
        """Replace ``rule_state[part]`` whole (the failures kept, a list)."""
        self.rule_state[part] = value
        self._p_changed = True

    def restore_rule_state(self, state: dict[str, Any]) -> None:
        """Put back a copy taken before a failing rule ran (its actions are undone)."""
        self.rule_state = state
        self._p_changed = True

    def set_own_rule(self, name: str, entry: dict[str, Any]) -> None:
        """Add or replace this customer's own rule ``name`` (``shopkeeper.rules.customer_rules``)."""
        self.rules[name] = entry
        self._p_changed = True

    def drop_own_rule(self, name: str) -> bool:
        """Remove this customer's own rule ``name``; False when it had none by that name."""
        if self.rules.pop(name, None) is None:
            return False
        self._p_changed = True
        return True


for _name, _bits in KEPT_ATTRS.items():  # after the class body: the annotations above name them too
    if _name != "segments":  # a property: it marks (or writes the memberships row) itself
        setattr(Customer, _name, _Kept(_name, _bits))
del _name, _bits

