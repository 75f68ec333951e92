"""The audience index: segment membership and each customer's contact facts, without the customer.

Why: a campaign's dry run and snapshot judge every customer of a segment. Loading each whole
customer record from the storage (a read, an unpickle of every profile part, then the
identities tree: a second record) cost ~180 µs a customer — 5.5k customers/s. What the
audience and the one contact policy need is small and changes rarely: status, segments,
consents, the email and phone addresses, four soft facts, the country, three order facts. This
module keeps that as a **card** per customer in one ``OOBTree`` (dozens of cards per bucket
record; each card a ``marshal``-ed tuple, so loading a bucket unpickles one ``bytes`` per
customer, not every value in it) and the members of each segment in an ``OOTreeSet``, so the planner reads buckets, not
customers.

**Three trees, by how often each part changes** (issue 10: the write path pays for every index
record a commit rewrites). The stored card leaves out the two parts that change often — the
segments (``None``: the member sets hold them) and the three order facts (``None``: in
:class:`OrderFacts`, small buckets, only for customers with orders). So an order rewrites an
order-facts bucket of ~40 entries, a segment change a member-set bucket, and a bucket of 120
cards is rewritten only when a consent, an address, a contact fact or the status changes. When
the whole card was in one tree, segment changes (time-driven ones like ``lapsed_visitors``) and
orders rewrote most card buckets in every group commit (§31 of docs/benchmarks.md). Readers get
whole cards back: :func:`iter_cards` fills the segments from the member sets it is told to read
and the order facts when asked; ``Customer._card`` keeps the whole card (it is what the hook
compares with). The named step ``audience-split`` moves an index built before into this shape.

**Since generation 16** a customer's memberships are a row of their own (:mod:`shopkeeper.memberships`),
and whoever writes that row patches the member sets there and then (:func:`shopkeeper.memberships.put`):
a segments-only change marks nothing for this hook and leaves the card the record remembers as it was
(its segments slot may be behind; a customer leaving the active status is taken out of the sets of
its current segments too). The ``KEPT_JOINED``/``KEPT_LEFT`` path below is for memberships still in
the records (a store without the tree).

Kept up to date by the store itself, for every writer alike: a before-commit hook that
:meth:`shopkeeper.store.Store.connect` installs on each connection's transactions recomputes the
card of every ``Customer`` the transaction marked changed in a part the card carries (the
customer's own methods and attribute sets mark it: ``shopkeeper.kept``; a page view or a
Decide offer record marks nothing, so costs nothing here) or added (``Folders.add_customer`` adds
them to the connection) and writes it only when it differs from the card the customer record itself
remembers (``Customer._card``, written with the record that changes anyway) — so an ordinary
event that moves no contact fact costs a tuple comparison, not an index write. The identities
tree is read only when it was loaded (changed) in the transaction; a ghost tree has not changed,
and its addresses are taken from the card the record remembers.

``root['audience']`` is created by the named evolve step ``audience-index``, which builds every
card of an existing store (one transaction; it leaves the customer records alone, so the first
later write of each customer reads its card from the index once); until it exists the hook writes nothing and readers
fall back to the records (:func:`cards_of` returns None).

A :class:`CardView` answers the parts of the ``Customer`` API the contact policy and the
audience conditions read (``segments``, ``consents``, ``soft`` for the preferred channel,
suppressions, bounces and time zone, ``identities_in``, ``traits['country']``, three hard
facts). What it cannot answer — caps for a customer already contacted or with queued messages,
conditions on other facts, texts that need a customer's values — the caller reads from the
record (:data:`CARD_FIELDS`, :attr:`CardView.contacted`).
"""

from __future__ import annotations

import logging
import marshal
from collections.abc import Iterable, Iterator
from typing import Any

from BTrees.OOBTree import OOBTree, OOTreeSet

from .customer import STATUS_ACTIVE, Consent, Customer, Fact
from .kept import KEPT_AUDIENCE, KEPT_LEFT, KEPT_MARKS, KEPT_SEGMENTS
from .memberships import patch

# pickle aliases too: indexes written before shopkeeper.records name these classes by this module
from .records import Cards as Cards
from .records import LaneTree
from .records import Members as Members
from .records import OrderFacts as OrderFacts
from .store.folders import counter_value
from .store.keepers import each_customer, install_before_commit

log = logging.getLogger("shopkeeper.audience")
ROOT = "audience"
#: the key of :class:`OrderFacts` in the index (not ``root['orders']``, the order table of ``shopkeeper.ordertable``)
ORDER_FACTS = "order_facts"
#: soft facts the contact policy reads (channel of choice, suppressions, time zone)
SOFT = ("preferred_channel", "contact.suppressed", "undeliverable", "timezone")
#: hard facts a card carries for audience conditions (they change with orders only)
HARD = ("orders", "total_spend", "last_order_at")
#: condition fields (``shopkeeper.rules`` message names) a card answers; any other needs the record
CARD_FIELDS = frozenset({f"c__{h}" for h in HARD})
CARD_PREFIXES = ("g__", "i__email", "i__phone", "k__")


def card_of(c: Customer, old: tuple | None = None) -> tuple:
    """The card of ``c``: ``(status, segments, consents, emails, phones, soft, country, hard, contacted)``.

    ``old`` is the card last stored: its addresses are reused when the identities tree is a
    ghost (not loaded in this transaction, hence unchanged). ``contacted`` is set once the
    customer has an outbox or a contact log: caps then need the record."""
    if c.status != STATUS_ACTIVE:
        return (c.status,)
    tree = c.identities
    if old is not None and len(old) > 1 and tree._p_changed is None:
        emails, phones = old[3], old[4]
    else:
        emails = tuple(c.identities_in("email"))
        phones = tuple(c.identities_in("phone"))
    soft = c.soft
    sf = {k: _plain(soft[k].value) for k in SOFT if k in soft}
    traits = getattr(c, "traits", None)  # records older than traits gain them on load
    country = traits.get("country") if traits else None
    hard = c.hard
    contacted = c.outbox is not None or "contact.log" in soft
    return (STATUS_ACTIVE, tuple(sorted(c.segments)), {k: v.granted for k, v in c.consents.items()},
            emails, phones, sf, country if isinstance(country, str) else None,
            tuple(hard.get(h) for h in HARD), contacted)


def _card(packed: bytes | None) -> tuple | None:
    return marshal.loads(packed) if packed is not None else None


def _plain(v: Any) -> Any:
    """A soft fact's value as ``marshal`` stores it (a rule may set any value: others become text)."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (list, tuple, set, frozenset)):
        return tuple(_plain(x) for x in v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


#: the order facts of a customer without orders: no entry in :class:`OrderFacts`
_NO_ORDERS = (0, 0.0, None)


def _orders_part(card: tuple | None) -> tuple | None:
    """A full card's order facts as :class:`OrderFacts` keeps them (None: no entry)."""
    if card is None or len(card) == 1:
        return None
    hard = card[7]
    return None if hard is None or hard == _NO_ORDERS else hard


def _card_part(card: tuple) -> tuple:
    """A full card as :class:`Cards` keeps it: segments (in the member sets) and order facts (in
    :class:`OrderFacts`) left out, as ``None``."""
    return card if len(card) == 1 else card[:1] + (None,) + card[2:7] + (None,) + card[8:]


def _segments_of(index: Any, cid: str, among: Iterable[str] | None = None) -> tuple:
    """The segments whose member set holds ``cid`` (one bucket read per segment: for the rare
    customer whose record does not remember its card) — of ``among`` only when given: after joins
    alone (``KEPT_JOINED``) the index can hold the customer only in segments it is in now."""
    sets = index["segments"]
    if among is None:
        return tuple(sorted(s for s, m in sets.items() if cid in m))
    return tuple(sorted(s for s in among if (m := sets.get(s)) is not None and cid in m))


def _whole(card: tuple, orders: OOBTree | None, cid: str, segments: tuple | None) -> tuple:
    """A stored card made whole again: ``segments`` (None: leave the slot as it is) and the order
    facts from ``orders`` (None: not read)."""
    if len(card) == 1 or card[1] is not None:  # a status, or a card of an index not split yet
        return card
    hard = card[7]
    if orders is not None:
        packed = orders.get(cid)
        hard = marshal.loads(packed) if packed is not None else _NO_ORDERS
    return (card[0], segments, card[2], card[3], card[4], card[5], card[6], hard, *card[8:])  # one tuple: per member


def _stored(index: Any, cid: str, among: Iterable[str] | None = None) -> tuple | None:
    """The full card of ``cid`` as the index has it (None: no card); ``among``: :func:`_segments_of`'s."""
    card = _card(index["cards"].get(cid))
    if card is None or len(card) == 1 or card[1] is not None:
        return card
    return _whole(card, index[ORDER_FACTS], cid, _segments_of(index, cid, among))


class _Walk:
    """The order facts of ascending customer ids by walking :class:`OrderFacts` once beside the
    cards — a merge of two trees in key order — instead of a descent from the root per customer:
    what :func:`iter_cards` uses when it walks every card bucket. ``get`` as the tree's, for ids
    asked in ascending order only."""

    __slots__ = ("_next", "_key", "_value")

    def __init__(self, tree: OOBTree) -> None:
        self._next = iter(tree.items()).__next__
        self._key, self._value = self._step()

    def _step(self) -> tuple[Any, Any]:
        try:
            return self._next()
        except StopIteration:
            return None, None

    def get(self, cid: str) -> bytes | None:
        key = self._key
        while key is not None and key < cid:
            key, self._value = self._step()
        self._key = key
        return self._value if key == cid else None


def cards_of(root: Any) -> LaneTree | OOBTree | None:
    a = root.get(ROOT)
    return a["cards"] if a is not None else None


def members_of(root: Any, segment: str) -> OOTreeSet | None:
    a = root.get(ROOT)
    return a["segments"].get(segment) if a is not None else None


def size_of(root: Any) -> int:
    """Customers in the store (every record of ``customers``: the store's own counter, which
    ``Folders.add_customer`` keeps)."""
    return counter_value(root["counters"], "customers") if "customers" in root["counters"] else len(root["customers"])


def _put(index: OOBTree, cid: str, old: tuple | None, new: tuple) -> None:
    """Write the parts of ``new`` (a full card) that differ from ``old``: segment member sets, the
    order facts (:class:`OrderFacts`) and the rest of the card (:class:`Cards`) — each only when it
    changed, so an order rewrites a small order-facts bucket and a segment change a member-set
    bucket, not a bucket of 120 cards. Before the ``audience-split`` step split an index (no
    ``order_facts``), the whole card goes to :class:`Cards`."""
    orders = index.get(ORDER_FACTS)
    part = new if orders is None else _card_part(new)
    packed = marshal.dumps(part)  # first: a value marshal refuses changes nothing
    if orders is not None:
        hard = _orders_part(new)
        if hard != _orders_part(old):
            if hard is None:
                if cid in orders:
                    del orders[cid]
            else:
                orders[cid] = marshal.dumps(hard)
    _members(index["segments"], cid, old[1] if old is not None and len(old) > 1 else (),
             new[1] if len(new) > 1 else ())
    if orders is None or old is None or _card_part(old) != part:
        index["cards"][cid] = packed


#: the member sets' patch (``shopkeeper.memberships.patch``, where memberships are written since generation 16)
_members = patch


def refresh(conn: Any) -> None:
    """Before commit: bring the cards of the customers this transaction changed up to date — those
    marked changed in a part a card carries (``shopkeeper.kept``: a page view or an offer
    record marks none) and those added.

    A customer marked for segments only (``KEPT_JOINED``/``KEPT_LEFT``: a re-evaluation, a
    scheduler's tick) whose record remembers its card gets the card's segments slot and the member
    sets patched — no card recomputed, compared or packed (the stored card leaves segments out)."""
    marks = getattr(conn, KEPT_MARKS, None)
    # id -> (customer, bits), each once: a customer added in this transaction is usually marked changed too
    if marks is None:  # no keeper's synchroniser on the connection: every changed customer
        changed = {id(o): (o, KEPT_AUDIENCE) for o in conn._registered_objects if type(o) is Customer}
    else:  # registered or not: a savepoint rolled back unregisters the records it reloads
        changed = {id(o): (o, bits) for o, bits in marks.items() if bits & _CARD_BITS}
    added = getattr(conn, "_added", None)
    if added:
        changed.update((id(o), (o, KEPT_AUDIENCE)) for o in added.values() if type(o) is Customer)
    if not changed:
        return
    index = conn.root().get(ROOT)
    if index is None:
        return
    split = index.get(ORDER_FACTS) is not None  # else the stored card holds the segments: recompute it
    for c, bits in changed.values():
        mine = c._card
        if split and not bits & KEPT_AUDIENCE:  # segments only
            if mine is not None and len(mine) > 1:
                segs = tuple(sorted(c.segments))
                if segs != mine[1]:
                    _members(index["segments"], c.id, mine[1], segs)
                    c._card = (mine[0], segs, *mine[2:])
                continue
            # after joins alone, only the member sets of the customer's segments can hold it
            old = mine if mine is not None else _stored(index, c.id, None if bits & KEPT_LEFT else c.segments)
        else:
            old = mine if mine is not None else _stored(index, c.id)
        try:
            new = card_of(c, old)
            if new != old:
                if len(new) == 1 and old is not None and len(old) > 1:
                    # no longer active (merged, erased): out of every set it is in. Since generation 16 a
                    # segments-only change patches the sets where it is written and leaves the card as it
                    # was, so the card remembered may name fewer segments than the customer is in
                    old = (old[0], tuple(set(old[1] or ()) | set(c.segments)), *old[2:])
                _put(index, c.id, old, new)
        except Exception:  # a record this code cannot read must not stop the commit: keep its old card
            log.exception("audience index: cannot compute the card of customer %s", getattr(c, "id", "?"))
            continue
        if new != mine:
            c._card = new


#: the marks a card's parts carry
_CARD_BITS = KEPT_AUDIENCE | KEPT_SEGMENTS


def install(conn: Any, tm: Any) -> None:
    """Keep the index current for every transaction of ``tm`` on ``conn`` (a step's ``keep``)."""
    install_before_commit(conn, tm, refresh, "_shopkeeper_audience")


def build(root: Any) -> None:
    """Named evolve step ``audience-index``: the index of every customer (idempotent)."""
    if ROOT not in root:
        root[ROOT] = OOBTree({"cards": LaneTree(Cards), "segments": OOBTree(), ORDER_FACTS: LaneTree(OrderFacts)})
    index = root[ROOT]
    for cid, c in each_customer(root, "audience-index"):
        new = card_of(c)
        old = _stored(index, cid)
        if new != old:
            _put(index, cid, old, new)


def split(root: Any) -> None:
    """Named evolve step ``audience-split``: take every card's segments (the member sets have them)
    and order facts (into :class:`OrderFacts`) out of :class:`Cards`, for an index built before they
    moved out. Idempotent: an index that has ``order_facts`` is left alone. Member sets keep their
    buckets, which split to the new size as they grow."""
    index = root.get(ROOT)
    if index is None or index.get(ORDER_FACTS) is not None:
        return
    cards, orders = index["cards"], LaneTree(OrderFacts)
    for cid, packed in list(cards.items()):
        card = marshal.loads(packed)
        hard = _orders_part(card)
        if hard is not None:
            orders[cid] = marshal.dumps(hard)
        if len(card) > 1:
            cards[cid] = marshal.dumps(_card_part(card))
    index[ORDER_FACTS] = orders


_EMPTY: tuple = ("", (), {}, (), (), {}, None, (None,) * len(HARD), False)


class CardView:
    """The ``Customer`` API of one card: what the contact policy and audience conditions read.
    Built for every audience member, so it copies nothing it does not have to."""

    __slots__ = ("id", "status", "segments", "_consents", "_emails", "_phones", "soft", "traits", "_hard",
                 "contacted")

    def __init__(self, cid: str, card: tuple) -> None:
        self.id = cid
        self.status = card[0]
        if len(card) == 1:
            card = _EMPTY
        self.segments = card[1]  # a sorted tuple: ``in`` is all the readers ask
        self._consents = card[2]  # (channel, purpose) -> granted
        self._emails, self._phones = card[3], card[4]
        sf = card[5]
        self.soft = {k: Fact(v, "", 0) for k, v in sf.items()} if sf else {}
        self.traits = {"country": card[6]} if card[6] else {}
        self._hard = card[7]
        self.contacted = card[8]

    @property
    def hard(self) -> dict[str, Any]:
        if self._hard is None:  # a programming error: :func:`iter_cards` was told no condition needs them
            raise LookupError(f"the card of {self.id} was read without its order facts")
        return dict(zip(HARD, self._hard, strict=True))

    @property
    def consents(self) -> dict[tuple[str, str], Consent]:
        return {k: Consent(g, "", 0) for k, g in self._consents.items()}

    def identities_in(self, namespace: str) -> list[str]:
        if namespace == "email":
            return list(self._emails)
        if namespace == "phone":
            return list(self._phones)
        return []

    def consent(self, channel: str, purpose: str = "marketing") -> Consent | None:
        g = self._consents.get((channel, purpose))
        return Consent(g, "", 0) if g is not None else None

    def may_contact(self, channel: str, purpose: str = "marketing") -> bool:
        return self._consents.get((channel, purpose)) is True


def answers(fields: set[str]) -> bool:
    """Whether a card answers every condition field in ``fields`` (else the record is read).

    Fields only: :func:`shopkeeper.conditions.fields` reports none for an aggregate call, so for
    a condition tree ask :func:`answers_condition` — ``answers(fields(tree))`` says yes for
    ``days_since('page_view') > 3``, which reads the record's last-seen times."""
    return all(f in CARD_FIELDS or f.startswith(CARD_PREFIXES) or f == "ev" for f in fields)


#: the aggregate calls (``Call(fn, args)`` of :mod:`shopkeeper.conditions.tree`) a card answers:
#: both read only the card's order facts (``last_order_at``, ``total_spend``), exactly as the
#: record's evaluation does (``shopkeeper.analysis.conditions.Env``); every other aggregate reads
#: history, per-day aggregates, type counts or last-seen times, which only the record has
CARD_CALLS = frozenset({("days_since", ("order",)), ("spend", (None,))})


def answers_condition(tree: Any) -> bool:
    """Whether a card answers the whole condition ``tree``: every field it reads
    (:func:`answers`) and every aggregate it computes (:data:`CARD_CALLS`)."""
    from .conditions import Call, fields
    from .conditions.analysis import walk

    if tree is None:
        return False
    for node in walk(tree):
        if isinstance(node, Call) and (node.fn, tuple(node.args)) not in CARD_CALLS:
            return False
    return answers(fields(tree))


def needs_orders(tree: Any) -> bool:
    """Whether ``tree`` reads a card's order facts (a field of :data:`CARD_FIELDS` or a call of
    :data:`CARD_CALLS`): :func:`iter_cards` is then told to read them."""
    from .conditions import Call, Field
    from .conditions.analysis import walk

    return any((isinstance(n, Field) and n.key in CARD_FIELDS)
               or (isinstance(n, Call) and (n.fn, tuple(n.args)) in CARD_CALLS) for n in walk(tree))


def iter_cards(root: Any, segment: str = "", orders: bool = True,
               segments: Iterable[str] | None = None) -> Iterator[tuple[str, tuple]]:
    """(customer id, card) of a segment's members (every customer without ``segment``), in id order.

    A card's segments come from the member sets: only those of ``segments`` (and ``segment``) are
    read, ``None`` reads every set. ``orders=False`` leaves the order facts out (``None`` in the
    card) for a caller whose conditions name none: :class:`OrderFacts` is then not read at all."""
    cards = cards_of(root)
    if cards is None:
        return
    index = root[ROOT]
    otree = index.get(ORDER_FACTS) if orders else None
    names = set(index["segments"].keys()) if segments is None else set(segments)
    if segment:
        names.add(segment)
    sets = {}
    for name in sorted(names):
        m = index["segments"].get(name)
        if m is not None:
            sets[name] = set(m)
    member_sets = tuple(sets.items())
    raw = marshal.loads

    def loads(packed: bytes, cid: str) -> tuple:
        card = raw(packed)
        if len(card) == 1 or card[1] is not None:  # a status, or a card of an index not split yet
            return card
        return _whole(card, otree, cid, tuple([n for n, m in member_sets if cid in m]))

    if not segment:
        otree = _Walk(otree) if otree is not None else None
        for cid, card in cards.items():
            yield cid, loads(card, cid)
        return
    wanted = sets.get(segment)
    if wanted is None:
        return
    if len(wanted) * 6 > size_of(root):  # a large part of everyone: walk the buckets once (and the order facts')
        otree = _Walk(otree) if otree is not None else None
        for cid, card in cards.items():
            if cid in wanted:
                yield cid, loads(card, cid)
        return
    get = cards.get
    for cid in sorted(wanted):
        card = get(cid)
        if card is not None:
            yield cid, loads(card, cid)


__all__ = ["CardView", "OrderFacts", "answers", "answers_condition", "build", "card_of", "cards_of", "install",
           "iter_cards", "members_of", "needs_orders", "refresh", "size_of", "split", "CARD_CALLS", "CARD_FIELDS"]
