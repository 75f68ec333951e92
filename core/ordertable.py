"""The order table: every active buyer's orders as (time, amount) pairs, beside the customers.

Why: the models (``shopkeeper models fit``: BG/NBD and Gamma-Gamma with a calibration date and a
holdout) need each buyer's order times and amounts, nothing else. Reading them from the
customer records loaded and unpickled every record (the whole packed profile, every recent
interaction): ~4 of CDNOW's ~11 s of ``models fit``. Here they are one ``bytes`` value per
customer (``array('q')`` of times in µs, then ``array('d')`` of amounts), ~100 per bucket, so
reading every buyer is a few bucket loads per thousand customers.

What it holds, exactly: for each customer whose status is active and who has at least one
order, the ``order`` interactions of ``Customer.interactions(type="order")`` in that order
(history key order), the amount as ``float(data.get("amount", 0.0))`` — the rows the
record-reading path (``shopkeeper.analysis.models.read_orders``) produced, so a fit from the
table equals a fit from the records.

Kept up to date like the audience index (``shopkeeper.audience``), for every writer alike: a
before-commit hook that :meth:`shopkeeper.store.Store.connect` installs (the ``keep`` of the analysis
plugin's named step ``order-table``, recorded in the store by name) looks at every
``Customer`` the transaction added or marked changed in its orders (an order applied; the status,
the hard facts or the history assigned by a merge, an unmerge or an erasure:
``shopkeeper.kept``) and compares its order facts (status, the ``orders`` count and
``last_order_at``) with the row it has; only a customer whose orders changed is re-read from its
history and rewritten, or removed when no longer an active buyer. An event that is not an order
costs nothing here (it read the row's bucket, often cold, before the marks). An import of
history writes each customer's row once per commit however many of its rows the batch holds.

``root['orders']`` is created by the named evolve step ``order-table``, which builds every row
of an existing store (one transaction); until it exists the hook writes nothing and readers
fall back to the records (:func:`rows_of` returns None). The record class (``OrderRows``) lives
in :mod:`shopkeeper.records`; this module keeps its old pickled path.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterator
from typing import Any

from BTrees.OOBTree import OOBTree

from .customer import STATUS_ACTIVE, Customer
from .kept import KEPT_MARKS, KEPT_ORDERS, KEPT_REREAD
from .records import LaneTree

# a pickle alias too: tables written before shopkeeper.records name shopkeeper.ordertable.OrderRows
from .records import OrderRows as OrderRows
from .store.keepers import each_customer, install_before_commit

log = logging.getLogger("shopkeeper.ordertable")
ROOT = "orders"


def pack(ts: list[int], amounts: list[float]) -> bytes:
    return array("q", ts).tobytes() + array("d", amounts).tobytes()


def unpack(packed: bytes) -> tuple[array, array]:
    """(times in µs, amounts), index for index."""
    n = len(packed) // 16
    ts, amounts = array("q"), array("d")
    ts.frombytes(packed[:8 * n])
    amounts.frombytes(packed[8 * n:])
    return ts, amounts


def orders_of(c: Customer) -> tuple[list[int], list[float]]:
    """The customer's orders read from its history (what a row holds): the ``order`` interactions of
    ``Customer.interactions(type="order")``, in key order, read as ``History.field_rows`` gives them
    (each interaction's fields as a plain tuple: ``key, ts, type, channel, touchpoint, data, ...``) —
    without the view's key listing and one lookup per key: a new customer's orders are read once per
    commit that creates them (an import: every customer), ~30% of this hook's CPU."""
    ts: list[int] = []
    amounts: list[float] = []
    if c.status == STATUS_ACTIVE and c.hard.get("orders"):
        for f in c.history.field_rows():
            if f[2] == "order":
                ts.append(f[1])
                amounts.append(float(f[5].get("amount", 0.0)))
    return ts, amounts


def _up_to_date(c: Customer, packed: bytes | None) -> bool:
    """Whether the row agrees with the record's order facts (status, count, newest time)."""
    n = c.hard.get("orders") or 0 if c.status == STATUS_ACTIVE else 0
    if packed is None:
        return n == 0
    if len(packed) != 16 * n:
        return False
    ts, _ = unpack(packed)
    return max(ts) == c.hard.get("last_order_at")


def _appended(c: Customer, old: bytes | None) -> bytes | None:
    """The row with the customer's new orders appended, when that is provably what
    :func:`orders_of` would read — or None (read the history). For a customer whose orders were
    only *added* to since the row was written (no part set whole this transaction: ``KEPT_REREAD``):
    the orders at keys above the row's newest time are new if each is later than that time (a key
    is never below its interaction's time), and they are all that was added if the row's count plus
    theirs is the record's count; the row's orders are then exactly those at lower keys, already in
    key order. A hot buyer's order otherwise re-read its whole history (~700 calls per order, cold
    buckets included); this reads the interactions since its previous order, mostly in its record."""
    n = c.hard.get("orders") or 0 if c.status == STATUS_ACTIVE else 0
    if not n or old is None:
        return None
    ts, amounts = unpack(old)
    newest = max(ts)
    new_ts: list[int] = []
    new_amounts: list[float] = []
    for it in c.interactions(since=newest + 1, type="order"):
        if it.ts <= newest:
            return None  # an order the row may hold already (its key moved up past a neighbour's)
        new_ts.append(it.ts)
        new_amounts.append(float(it.data.get("amount", 0.0)))
    if len(ts) + len(new_ts) != n:
        return None  # an order added below the row's newest (a late one), or one gone: read them all
    return pack([*ts, *new_ts], [*amounts, *new_amounts])


#: how :func:`update` may bring a row in line: compare the row with the record's order facts first
#: (``CHECK``), append the new orders (``ADDED``: only added to, see :func:`_appended`), or read the
#: history whatever the facts say (``REREAD``: orders moved — an unmerge and an order at the row's
#: newest instant in one commit leave count and newest time as the row has them, yet not its rows)
CHECK, ADDED, REREAD = 0, 1, 2


def update(rows: OOBTree, c: Customer, how: int = CHECK) -> None:
    """Bring one customer's row in line with the record (no write when it already is)."""
    old = rows.get(c.id)
    if how != REREAD and _up_to_date(c, old):
        return
    if how == ADDED:
        row = _appended(c, old)
        if row is not None:
            rows[c.id] = row
            return
    ts, amounts = orders_of(c)
    if ts:
        row = pack(ts, amounts)
        if row != old:
            rows[c.id] = row
    elif old is not None:
        del rows[c.id]


def refresh(conn: Any) -> None:
    """Before commit: the rows of the customers this transaction added or marked changed in their
    orders (``shopkeeper.kept``: an order, a merge, an erasure; not a page view)."""
    marks = getattr(conn, KEPT_MARKS, None)
    # id -> (customer, how): the append needs the marks' word that nothing was set whole
    if marks is None:  # no keeper's synchroniser on the connection: every changed customer
        changed = {id(o): (o, CHECK) for o in conn._registered_objects if type(o) is Customer}
    else:  # registered or not: a savepoint rolled back unregisters the records it reloads
        changed = {id(o): (o, REREAD if bits & KEPT_REREAD else ADDED) for o, bits in marks.items()
                   if bits & KEPT_ORDERS == KEPT_ORDERS}
    added = getattr(conn, "_added", None)
    if added:  # a customer added in this transaction may be registered too: once each
        changed.update((id(o), (o, CHECK)) for o in added.values() if type(o) is Customer)
    if not changed:
        return
    rows = conn.root().get(ROOT)
    if rows is None:
        return
    for c, how in changed.values():
        try:
            update(rows, c, how)
        except Exception:  # a record this code cannot read must not stop the commit: keep its old row
            log.exception("order table: cannot read the orders of customer %s", getattr(c, "id", "?"))


def install(conn: Any, tm: Any) -> None:
    """Keep the table current for every transaction of ``tm`` on ``conn`` (a step's ``keep``)."""
    install_before_commit(conn, tm, refresh, "_shopkeeper_ordertable")


def build(root: Any) -> None:
    """Named evolve step ``order-table``: the row of every active buyer (idempotent)."""
    if ROOT not in root:
        root[ROOT] = LaneTree(OrderRows)  # one tree per customer-id lane: hubs write apart (shopkeeper.lanetree)
    rows = root[ROOT]
    for _cid, c in each_customer(root, "order-table"):
        update(rows, c)


def rows_of(root: Any) -> OOBTree | None:
    """The table, or None on a store whose ``order-table`` step has not run (read the records)."""
    return root.get(ROOT)


def iter_rows(root: Any) -> Iterator[tuple[str, array, array]]:
    """(customer id, times, amounts) of every active buyer, in id order."""
    rows = root[ROOT]
    for cid, packed in rows.items():
        ts, amounts = unpack(packed)
        yield cid, ts, amounts
