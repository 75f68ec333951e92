"""The root folders as one connection sees them (:class:`Folders`)."""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from typing import Any

from BTrees.OOBTree import OOBTree
from ZODB.Connection import Connection

from ..customer import STATUS_MERGED, Customer
from ..records import Counters
from .errors import StoreError


def counter_value(counters: Any, name: str) -> int:
    """Counter ``name`` of a store's ``root['counters']``: one ``Counters`` record since generation 9,
    an ``OOBTree`` of ``BTrees.Length`` before (a store opened read-only is not evolved); 0 if absent."""
    c = counters.get(name)
    if c is None:
        return 0
    return c if type(c) is int else c()


_id_lock = threading.Lock()
_last_stamp = 0
#: each open database's lane of customer ids (``new_customer_id``): 3 random hex digits, drawn on first use
_lanes: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def lane_of(db: Any) -> str:
    """The lane of the database ``db`` (a ``ZODB.DB``) in this process: a hub is one database, so two
    hubs (two processes, or two in a test's process) draw two lanes."""
    with _id_lock:
        lane = _lanes.get(db)
        if lane is None:
            taken = set(_lanes.values())  # two databases open here never share one
            lane = secrets.token_hex(2)[:3]
            while lane in taken:
                lane = secrets.token_hex(2)[:3]
            _lanes[db] = lane
    return lane


def _next_stamp() -> int:
    """A number above every earlier one in this process: the wall clock in µs, or the last one + 1."""
    global _last_stamp
    with _id_lock:
        stamp = _last_stamp = max(time.time_ns() // 1000, _last_stamp + 1)
    return stamp


class Folders:
    """The root folders as seen through one connection (one thread)."""

    __slots__ = ("conn", "root", "customers", "identities", "idempotency", "merges", "proposals",
                 "tombstones", "counters", "meta")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        root = self.root = conn.root()
        #: a ``LaneTree`` of ``OOBTree`` since generation 17 (hubs create customers apart), an ``OOBTree`` before
        self.customers: Any = root["customers"]
        self.identities: OOBTree = root["identities"]
        self.idempotency: OOBTree = root["idempotency"]
        self.merges: OOBTree = root["merges"]
        # folders added by later generations are None on a store that is not evolved yet
        self.proposals: OOBTree = root.get("proposals")
        self.tombstones: OOBTree = root.get("tombstones")
        self.counters: Counters = root["counters"]  # an OOBTree of Length before generation 9
        self.meta: OOBTree = root["meta"]

    def count(self, name: str, delta: int = 1) -> None:
        counters = self.counters
        if type(counters) is Counters:
            counters.change(name, delta)
        else:  # a store before generation 9 (an old store opened read-only is never written)
            counters[name].change(delta)

    def counter(self, name: str) -> int:
        return counter_value(self.counters, name)

    def customer(self, customer_id: str, follow_merges: bool = True) -> Customer | None:
        """The customer with this id; an absorbed id leads to the survivor."""
        c = self.customers.get(customer_id)
        hops = 0
        while follow_merges and c is not None and c.status == STATUS_MERGED and c.merged_into and hops < 64:
            c = self.customers.get(c.merged_into)
            hops += 1
        return c

    def customer_by_identity(self, namespace: str, value: str) -> Customer | None:
        cid = self.identities.get((namespace, value))
        return self.customer(cid) if cid is not None else None

    def new_customer_id(self) -> str:
        """16 hex digits: this database's lane (``lane_of``) then a stamp that only grows (µs; 13 digits last
        to 2112). Within a lane ids append, so the customer-keyed trees (customers, the audience index,
        the order table, score tables) take a batch of new customers in their last buckets instead of a
        random bucket each: a 23,570-customer import rewrote 2,963 customer buckets over 4 commits with
        random ids (docs/benchmarks.md §90). Lanes keep hubs creating customers at once in
        different buckets, as random ids did (issue 17: a shared last bucket would conflict on its
        splits). Older stores hold random 16-hex ids; both kinds are opaque strings, and the membership
        check below covers a clash."""
        lane = lane_of(self.conn.db())
        while True:
            cid = f"{lane}{_next_stamp() & 0xFFFFFFFFFFFFF:013x}"
            if cid not in self.customers:
                return cid

    def add_customer(self, customer: Customer) -> Customer:
        if customer.id in self.customers:
            raise StoreError(f"customer id {customer.id!r} already exists")
        self.customers[customer.id] = customer
        self.conn.add(customer)  # a new customer is in the transaction's added objects (audience index)
        self.count("customers")
        return customer
