"""The audience index: kept current by every commit, and what the dry run reads instead of customers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeeper import audience, contact
from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.campaigns.plan import dry_run
from shopkeeper.customer import Customer, Interaction, now_us
from shopkeeper.identity import attach
from shopkeeper.lanetree import LaneTree
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.privacy import forget
from shopkeeper.store import Store

from .helpers import CAMPAIGN, add, population, write_campaign


@pytest.fixture
def campaign(tmp_path: Path):  # type: ignore[no-untyped-def]
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: 30"))
    return load_campaigns(tmp_path).campaigns["winter_sale"]


def members(store: Store, segment: str) -> list[str]:
    with store.read() as f:
        m = audience.members_of(f.root, segment)
        return list(m) if m is not None else []


def card(store: Store, cid: str) -> Any:
    with store.read() as f:
        return audience.CardView(cid, dict(audience.iter_cards(f.root))[cid])


def test_every_commit_keeps_cards_and_segment_members_current(store: Store) -> None:
    with store.transaction() as f:
        add(f, "a", email="a@x.com", consents={"email": True}, spend=70)
        add(f, "b", consents={"sms": False}, segments=("vip", "repeat_buyers"))
    assert members(store, "repeat_buyers") == ["a", "b"] and members(store, "vip") == ["b"]
    a = card(store, "a")
    assert a.may_contact("email") and a.identities_in("email") == ["a@x.com"] and a.hard["total_spend"] == 70
    assert card(store, "b").consent("sms") is not None and not card(store, "b").may_contact("sms")

    with store.transaction() as f:  # each change in its own way: segment, consent, identity, soft fact
        b = f.customer("b")
        b.leave_segment("vip")
        b.set_consent("sms", "marketing", True, "test")
        attach(f, b, ("phone", "+4915112345678"), "test", now_us())
        f.customer("a").set_soft_fact("preferred_channel", "sms", "test")
    assert members(store, "vip") == []
    b2 = card(store, "b")
    assert b2.may_contact("sms") and b2.identities_in("phone") == ["+4915112345678"]
    assert card(store, "a").soft["preferred_channel"].value == "sms"

    with store.transaction() as f:  # an unrelated change keeps the addresses (identities not loaded);
        b = f.customer("b")       # through the record's own method: it marks the change for the index
        orders = b.hard["orders"]
        b.add_interaction(Interaction(0, now_us(), "order", "web", data={"amount": 5.0}))
    assert card(store, "b").identities_in("phone") == ["+4915112345678"]
    assert card(store, "b").hard["orders"] == orders + 1

    with store.transaction() as f:
        forget(f, f.customer("a"))
    assert members(store, "repeat_buyers") == ["b"]
    with store.read() as f:
        assert dict(audience.iter_cards(f.root))["a"] == ("forgotten",)  # no address left in the index
        assert audience.size_of(f.root) == 1  # the store counts the erased customer out


def test_a_store_without_the_index_gets_it_built_when_opened(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            add(f, "a", email="a@x.com", consents={"email": True})
            f.add_customer(Customer("z"))
        with s.transaction() as f:  # as if written before the index existed
            del f.root["audience"]
            del f.meta["steps"]["audience-index"]
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        assert members(s, "repeat_buyers") == ["a"] and card(s, "a").identities_in("email") == ["a@x.com"]
        with s.read() as f:
            assert audience.size_of(f.root) == 2


def _judge_all(file_store: Store, campaign: Any, **kw: Any) -> dict[str, Any]:
    r = dry_run(file_store, campaign, now=kw.pop("now"), **kw)
    return {k: v for k, v in r.items() if k not in ("seconds", "record_reads")}


def test_dry_run_reads_the_index_not_the_customer_records(tmp_path: Path, campaign: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        population(s, 60)
        with s.transaction() as f:  # one contacted customer: the caps need their record
            contact.record_contact(f.customer("c0000"), "email", now_us())
        with s.read() as f:
            oids = {c._p_oid for c in f.customers.values()}
    pol = contact.ContactPolicy(quiet_hours=None, max_per_week=5)
    now = now_us()
    with Store.open(uri, steps=builtin_evolve_steps()) as s:  # a cold cache: every record read comes from the file
        loaded: list[bytes] = []
        load = s.db.storage.loadBefore

        def counting_load(oid: bytes, tid: bytes) -> Any:
            loaded.append(oid)
            return load(oid, tid)

        monkeypatch.setattr(s.db.storage, "loadBefore", counting_load)
        fast = _judge_all(s, campaign, now=now, policy=pol)
        read = [o for o in loaded if o in oids]
        assert fast["audience"] == 50 and fast["recipients"] > 0
        assert len(read) == 1, f"{len(read)} customer records read"  # c0000, contacted: its caps
        monkeypatch.setattr(audience, "cards_of", lambda root: None)  # the records, as before the index
        slow = _judge_all(s, campaign, now=now, policy=pol)
    assert fast == slow


def test_conditions_outside_the_card_read_only_the_members_the_card_lets_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A score is not on the card: the planner reads records, but only of the segment's active
    members whose card passes the conditions it does answer (spend here) — not every customer."""
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: 0").replace(
        "        - customer.total_spend: {at_least: 50}",
        "        - customer.total_spend: {at_least: 50}\n        - score.churn_risk: {at_least: 0.5}"))
    c = load_campaigns(tmp_path).campaigns["winter_sale"]
    assert not audience.answers(c.fields)
    now = now_us()
    with Store.open(f"file://{tmp_path}/Data.fs", steps=builtin_evolve_steps()) as s:
        cases = population(s, 60)
        with s.transaction() as f:
            for i, cid in enumerate(cases):
                cust = f.customer(cid)
                # a quarter spent too little (assigned: a change in place would not mark it for the index)
                cust.hard = {**cust.hard, "total_spend": 100.0 if i % 4 else 10.0}
                cust.set_score("churn_risk", 0.9 if i % 3 else 0.1, "test")
        members = [cid for i, cid in enumerate(cases) if cases[cid] != "outside" and i % 4]
        pol = contact.ContactPolicy(quiet_hours=None)
        fast = dry_run(s, c, now=now, policy=pol)
        assert fast["record_reads"] == len(members) < 60, fast["record_reads"]
        monkeypatch.setattr(audience, "cards_of", lambda root: None)  # every record, as before
        slow = dry_run(s, c, now=now, policy=pol)
    assert slow["record_reads"] == 60
    assert 0 < fast["audience"] < len(members)
    drop = ("seconds", "record_reads")
    assert {k: v for k, v in fast.items() if k not in drop} == {k: v for k, v in slow.items() if k not in drop}


def test_a_text_placeholder_without_default_reads_the_recipients_records(tmp_path: Path,
                                                                          campaign: Any) -> None:
    write_campaign(tmp_path, CAMPAIGN.replace("{trait.first_name|there}", "{trait.first_name}")
                   .replace("holdout: 10", "holdout: 0"))
    c = load_campaigns(tmp_path).campaigns["winter_sale"]
    with Store.open(f"file://{tmp_path}/Data.fs", steps=builtin_evolve_steps()) as s:
        population(s, 12)  # the sms_pref customers have a first name, the sms_only ones have not
        r = dry_run(s, c, policy=contact.ContactPolicy(quiet_hours=None))
    assert r["by_channel"]["sms"] == 2 and r["excluded"]["render_failed"] == 2, r


def test_a_soft_fact_marshal_cannot_store_is_kept_as_text_and_the_commit_stands(store: Store) -> None:
    from datetime import UTC, datetime

    with store.transaction() as f:
        c = add(f, "a", email="a@x.com", consents={"email": True})
        c.set_soft_fact("timezone", datetime(2026, 12, 1, tzinfo=UTC), "a rule")  # not a zone name
    assert card(store, "a").soft["timezone"].value.startswith("2026-12-01")


def _last_txn_records(store: Store) -> dict[bytes, int]:
    """oid -> pickle size of every record the store's newest transaction wrote."""
    storage = store.db.storage
    last = storage.lastTransaction()
    txn = next(iter(storage.iterator(start=last)))
    return {rec.oid: len(rec.data or b"") for rec in txn}


def test_an_order_or_a_segment_change_rewrites_a_small_bucket_not_a_card_bucket(file_store: Store) -> None:
    """Why: every order changes the order facts, segments change with orders and time, and a card
    bucket holds ~120 cards (~9 KB)."""
    with file_store.transaction() as f:
        for i in range(600):
            add(f, f"c{i:04d}", email=f"c{i:04d}@x.com", consents={"email": True})
    with file_store.read() as f:
        index = f.root["audience"]
        trees = (index["cards"], index.get("order_facts"), index["segments"]["repeat_buyers"])
        audience_oids = {b._p_oid for t in trees if t is not None for b in _buckets(t)}
    with file_store.transaction() as f:  # an order: the order facts change, nothing else on the card
        c = f.customer("c0300")
        c.hard = {**c.hard, "orders": c.hard["orders"] + 1, "total_spend": c.hard["total_spend"] + 20.0}
    written = _last_txn_records(file_store)
    index_written = {o: n for o, n in written.items() if o in audience_oids}
    # a card bucket: 6.3 KB; an order-facts bucket ~2 KB — here ~3.3 KB: these ids ("c0300") make lanes of
    # 100 ("c03", shopkeeper.lanetree), each a tree of one bucket kept inline, not split in two
    assert len(index_written) == 1 and max(index_written.values()) < 4_000, index_written
    assert card(file_store, "c0300").hard == {"orders": 3, "total_spend": 120.0, "last_order_at": None}

    with file_store.transaction() as f:  # joining a segment of 600 members rewrites a small bucket
        for i in range(600):
            if i != 300:
                f.customer(f"c{i:04d}").join_segment("big", now_us())
    with file_store.transaction() as f:
        f.customer("c0300").join_segment("big", now_us())
    with file_store.read() as f:
        member_oids = {b._p_oid for b in _buckets(f.root["audience"]["segments"]["big"])}
        card_oids = {b._p_oid for b in _buckets(f.root["audience"]["cards"])}
    written = _last_txn_records(file_store)
    sizes = [n for o, n in written.items() if o in member_oids]
    assert sizes and max(sizes) < 2_500, sizes
    assert not card_oids & set(written), "a segment change rewrote a bucket of cards"
    assert "big" in card(file_store, "c0300").segments
    assert "c0300" in members(file_store, "big") and len(members(file_store, "big")) == 600


def _buckets(tree: Any) -> list[Any]:
    """The tree itself and each of its buckets (a tree of one bucket keeps it inline)."""
    out = [tree]
    if isinstance(tree, LaneTree):  # one tree per customer-id lane (shopkeeper.lanetree)
        return out + [b for t in tree.trees() for b in _buckets(t)]
    b = tree._firstbucket
    while b is not None:
        out.append(b)
        b = b._next
    return out


def test_an_index_built_with_order_facts_in_the_cards_is_split_when_opened(tmp_path: Path) -> None:
    import marshal

    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            add(f, "a", email="a@x.com", consents={"email": True}, spend=70)
            add(f, "b", consents={"sms": False}, segments=("vip",))
            f.customer("b").hard["orders"] = 0
            f.customer("b").hard["total_spend"] = 0.0
        with s.read() as f:
            before = dict(audience.iter_cards(f.root))
        with s.transaction() as f:  # as the index was before the order facts moved out
            index = f.root["audience"]
            for cid, full in before.items():
                index["cards"][cid] = marshal.dumps(full)
            del index["order_facts"]
            del f.meta["steps"]["audience-split"]
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.read() as f:
            index = f.root["audience"]
            assert all(marshal.loads(p)[1] is None and marshal.loads(p)[7] is None for p in index["cards"].values())
            assert list(index["order_facts"].keys()) == ["a"]  # b has no orders: no entry
            assert dict(audience.iter_cards(f.root)) == before
            assert all(card[7] is None for _cid, card in audience.iter_cards(f.root, orders=False))
        with s.transaction() as f:
            b = f.customer("b")
            b.hard = {**b.hard, "orders": 1}  # assigned: marks the change for the index
        assert card(s, "b").hard["orders"] == 1 and card(s, "a").hard["total_spend"] == 70
        assert card(s, "b").segments == ("vip",) and members(s, "vip") == ["b"]


def test_a_customer_added_and_changed_in_one_transaction_gets_its_card_computed_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new customer is both added and marked changed (its segments, consents, identities): the
    commit computed its card twice, the second time to find it equal (47,142 cards for CDNOW's 23,570
    new customers in a cProfile of the walk-through's import)."""
    computed: list[str] = []
    real = audience.card_of

    def counting(c: Customer, old: Any = None) -> tuple:
        computed.append(c.id)
        return real(c, old)

    monkeypatch.setattr(audience, "card_of", counting)
    with store.transaction() as f:
        add(f, "a", email="a@x.com", consents={"email": True})
        add(f, "b", segments=("vip",))
    assert sorted(computed) == ["a", "b"]
    assert members(store, "vip") == ["b"] and card(store, "a").may_contact("email")
