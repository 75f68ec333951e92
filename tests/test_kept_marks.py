"""The kept indexes (audience cards, order table) look only at customers marked changed in what they
carry: a page view writes neither, and no real change is dropped by the skip.

Why: their before-commit hooks read a cold bucket for every changed customer (docs/benchmarks.md §36,
§45), though most events (page views, Decide's offer records) change nothing either index carries.
``shopkeeper.kept`` marks the parts that matter; these tests compare both indexes with what a
build from the records gives after every kind of change, each committed in its own transaction on a
cold cache (the records loaded afresh, as the writer meets them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopkeeper import audience, contact, ordertable
from shopkeeper.customer import Customer, Interaction, now_us
from shopkeeper.identity import attach
from shopkeeper.identity_merge import merge, unmerge
from shopkeeper.kept import KEPT_SOFT
from shopkeeper.lanetree import LaneTree
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.privacy import forget
from shopkeeper.store import Store


def _indexes(s: Store) -> tuple[dict[str, Any], dict[str, bytes]]:
    with s.read() as f:
        index = f.root[audience.ROOT]
        cards = {cid: audience._stored(index, cid) for cid in index["cards"].keys()}
        return cards, dict(f.root[ordertable.ROOT].items())


def _from_records(s: Store) -> tuple[dict[str, Any], dict[str, bytes]]:
    with s.read() as f:
        cards, rows = {}, {}
        for cid, c in f.customers.items():
            cards[cid] = audience.card_of(c)
            ts, am = ordertable.orders_of(c)
            if ts:
                rows[cid] = ordertable.pack(ts, am)
        return cards, rows


def _last_txn_oids(s: Store) -> set[bytes]:
    storage = s.db.storage
    return {rec.oid for rec in next(iter(storage.iterator(start=storage.lastTransaction())))}


def _index_oids(s: Store) -> set[bytes]:
    """Every record of both indexes: their trees and the trees' buckets."""
    out: set[bytes] = set()
    with s.read() as f:
        index = f.root[audience.ROOT]
        trees = []
        for t in (index, index["cards"], index["segments"], index[audience.ORDER_FACTS],
                  *index["segments"].values(), f.root[ordertable.ROOT]):
            if isinstance(t, LaneTree):  # one tree per customer-id lane, and the tree from before
                out.add(t._p_oid)
                trees += t.trees()
            else:
                trees.append(t)
        for t in trees:
            out.add(t._p_oid)
            b = t._firstbucket
            while b is not None:
                out.add(b._p_oid)
                b = b._next
    return out


def _order(ts: int, amount: float) -> Interaction:
    return Interaction(0, ts, "order", "web", data={"amount": amount})


def test_every_kind_of_change_reaches_both_indexes_and_a_page_view_writes_neither(tmp_path: Path) -> None:
    now = now_us()
    uri = f"file://{tmp_path}/Data.fs"

    def step(change: Any) -> None:
        """``change(folders)`` in a transaction of its own, on a store opened afresh (cold cache:
        every customer loaded from the file, as the writer meets a customer it has not seen)."""
        with Store.open(uri, steps=builtin_evolve_steps()) as s:
            with s.transaction() as f:
                change(f)
            assert _indexes(s) == _from_records(s), change.__name__

    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.transaction() as f:
        for cid in ("a", "b", "c"):
            c = f.add_customer(Customer(cid, created_at=now))
            attach(f, c, ("email", f"{cid}@x.org"), "test", now)
            c.add_interaction(_order(now - 10, 5.0))

    def page_view(f: Any) -> None:
        f.customer("a").add_interaction(Interaction(0, now, "page_view", "web", data={"url": "/"}))

    def offer_record(f: Any) -> None:  # what Decide's recording sets (shopkeeper.analysis.offers)
        f.customer("b").set_soft_fact("offer.current", {"offer": "x", "channel": "web"}, "analysis")

    for change in (page_view, offer_record):
        step(change)
        with Store.open(uri, steps=builtin_evolve_steps()) as s:
            assert not _last_txn_oids(s) & _index_oids(s), f"{change.__name__} rewrote a record of the kept indexes"

    def order(f: Any) -> None:
        f.customer("a").add_interaction(_order(now, 12.5))

    def consent(f: Any) -> None:
        f.customer("a").set_consent("email", "marketing", True, "test")

    def soft_fact(f: Any) -> None:
        f.customer("b").set_soft_fact("preferred_channel", "email", "test")

    def soft_fact_cleared(f: Any) -> None:
        f.customer("b").clear_soft_fact("preferred_channel")

    def country(f: Any) -> None:
        f.customer("b").set_traits({"country": "DE"})

    def segment(f: Any) -> None:
        f.customer("c").join_segment("vip", now)

    def segment_left(f: Any) -> None:
        f.customer("c").leave_segment("vip")

    def identity(f: Any) -> None:
        attach(f, f.customer("c"), ("phone", "+4915112345678"), "test", now)

    def outbox(f: Any) -> None:
        from BTrees.OOBTree import OOBTree
        f.customer("c").outbox = OOBTree()

    def facts_assigned(f: Any) -> None:  # an attribute set whole (what merge, unmerge and erasure do)
        c = f.customer("c")
        c.hard = {**c.hard, "total_spend": 99.0}

    def merged(f: Any) -> None:
        merge(f, f.customer("a"), f.customer("b"), reason="test", source="test")

    def unmerged(f: Any) -> None:
        unmerge(f, next(iter(f.merges.keys())))

    def erased(f: Any) -> None:
        forget(f, f.customer("c"))

    for change in (order, consent, soft_fact, soft_fact_cleared, country, segment, segment_left, identity,
                   outbox, facts_assigned, merged, unmerged, erased):
        step(change)


def test_a_change_before_a_savepoint_rolled_back_is_not_dropped(store: Store) -> None:
    """A savepoint's rollback reloads the record (its volatile state gone): the mark must outlive it."""
    now = now_us()
    with store.transaction() as f:
        f.add_customer(Customer("a", created_at=now))
    with store.transaction() as f:
        c = f.customer("a")
        c.add_interaction(_order(now, 3.0))
        c.join_segment("vip", now)
        sp = f.root._p_jar.transaction_manager.get().savepoint()
        c.set_consent("sms", "marketing", True, "test")
        sp.rollback()
    assert _indexes(store) == _from_records(store)
    with store.read() as f:
        assert f.root[audience.ROOT]["segments"]["vip"].has_key("a")  # noqa: W601 - a BTree's own method


def test_the_soft_facts_that_mark_are_the_ones_the_card_carries() -> None:
    assert set(audience.SOFT) | {contact.CONTACT_LOG} == KEPT_SOFT
