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

Kept up to date by the store itself, for every writer alike: a before-commit hook that
:meth:`shopkeeper.store.Store.connect` installs on each connection's transactions recomputes the
card of every ``Customer`` the transaction changed (or added: ``Folders.add_customer`` adds them
to the connection) and writes it only when it differs from the card the customer record itself
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
from collections.abc import Iterator
from typing import Any

from BTrees.OOBTree import OOBTree, OOTreeSet

from .customer import STATUS_ACTIVE, Consent, Customer, Fact

log = logging.getLogger("shopkeeper.audience")
ROOT = "audience"
#: soft facts the contact policy reads (channel of choice, suppressions, time zone)
SOFT = ("preferred_channel", "contact.suppressed", "undeliverable", "timezone")
#: hard facts a card carries for audience conditions (they change with orders only)
HARD = ("orders", "total_spend", "last_order_at")
#: condition fields (``shopkeeper.rules`` message names) a card answers; any other needs the record
CARD_FIELDS = frozenset({f"c__{h}" for h in HARD})
CARD_PREFIXES = ("g__", "i__email", "i__phone", "k__")


class Cards(OOBTree):
    """customer id -> card (``marshal`` bytes). Buckets of up to 120 cards (OOBTree's are 30):
    the planner reads every bucket of a segment, and each record read costs far more than its
    size; a card change rewrites ~10 KB instead of ~3 KB. Persistent class: keep its path."""

    max_leaf_size = 120
    max_internal_size = 500


class Members(OOTreeSet):
    """The customer ids of one segment; buckets of 500 ids (a few KB). Persistent class: keep its path."""

    max_leaf_size = 500
    max_internal_size = 500


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


def cards_of(root: Any) -> OOBTree | None:
    a = root.get(ROOT)
    return a["cards"] if a is not None else None


def members_of(root: Any, segment: str) -> OOTreeSet | None:
    a = root.get(ROOT)
    return a["segments"].get(segment) if a is not None else None


def size_of(root: Any) -> int:
    """Customers in the store (every record of ``customers``: the store's own counter, which
    ``Folders.add_customer`` keeps)."""
    c = root["counters"].get("customers")
    return c() if c is not None else len(root["customers"])


def _put(index: OOBTree, cid: str, old: tuple | None, new: tuple) -> None:
    packed = marshal.dumps(new)  # first: a value marshal refuses changes nothing
    cards, members = index["cards"], index["segments"]
    before = set(old[1]) if old is not None and len(old) > 1 else set()
    after = set(new[1]) if len(new) > 1 else set()
    for s in before - after:
        m = members.get(s)
        if m is not None and cid in m:
            m.remove(cid)
    for s in after - before:
        m = members.get(s)
        if m is None:
            m = members[s] = Members()
        m.add(cid)
    cards[cid] = packed


def refresh(conn: Any) -> None:
    """Before commit: bring the cards of the customers this transaction changed up to date."""
    changed = [o for o in conn._registered_objects if type(o) is Customer]
    added = getattr(conn, "_added", None)
    if added:
        changed.extend(o for o in added.values() if type(o) is Customer)
    if not changed:
        return
    index = conn.root().get(ROOT)
    if index is None:
        return
    cards = index["cards"]
    for c in changed:
        mine = c._card
        old = mine if mine is not None else _card(cards.get(c.id))
        try:
            new = card_of(c, old)
            if new != old:
                _put(index, c.id, old, new)
        except Exception:  # a record this code cannot read must not stop the commit: keep its old card
            log.exception("audience index: cannot compute the card of customer %s", getattr(c, "id", "?"))
            continue
        if new != mine:
            c._card = new


class _Synch:
    """Transaction synchroniser adding :func:`refresh` as a before-commit hook to each transaction."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def newTransaction(self, txn: Any) -> None:  # noqa: N802 - the transaction package's interface
        txn.addBeforeCommitHook(refresh, (self.conn,))

    def beforeCompletion(self, txn: Any) -> None:  # noqa: N802
        pass

    def afterCompletion(self, txn: Any) -> None:  # noqa: N802
        pass


def install(conn: Any, tm: Any) -> None:
    """Keep the index current for every transaction of ``tm`` on ``conn`` (the manager holds
    synchronisers weakly: the synchroniser lives as long as the manager)."""
    s = _Synch(conn)
    tm._shopkeeper_audience = s
    tm.registerSynch(s)


def build(root: Any) -> None:
    """Named evolve step ``audience-index``: the index of every customer (idempotent)."""
    if ROOT not in root:
        root[ROOT] = OOBTree({"cards": Cards(), "segments": OOBTree()})
    index = root[ROOT]
    for cid, c in root["customers"].items():
        new = card_of(c)
        old = _card(index["cards"].get(cid))
        if new != old:
            _put(index, cid, old, new)


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
    """Whether a card answers every condition field in ``fields`` (else the record is read)."""
    return all(f in CARD_FIELDS or f.startswith(CARD_PREFIXES) or f == "ev" for f in fields)


def iter_cards(root: Any, segment: str = "") -> Iterator[tuple[str, tuple]]:
    """(customer id, card) of a segment's members (every customer without ``segment``), in id order."""
    cards = cards_of(root)
    if cards is None:
        return
    if not segment:
        loads = marshal.loads
        for cid, card in cards.items():
            yield cid, loads(card)
        return
    members = members_of(root, segment)
    if members is None:
        return
    loads = marshal.loads
    wanted = set(members)
    if len(wanted) * 6 > size_of(root):  # a large part of everyone: walk the buckets once
        for cid, card in cards.items():
            if cid in wanted:
                yield cid, loads(card)
        return
    get = cards.get
    for cid in sorted(wanted):
        card = get(cid)
        if card is not None:
            yield cid, loads(card)


__all__ = ["CardView", "answers", "build", "card_of", "cards_of", "install", "iter_cards", "members_of",
           "refresh", "size_of", "CARD_FIELDS"]
