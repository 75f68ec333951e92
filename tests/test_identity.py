"""Identity resolution, merge and unmerge."""

from __future__ import annotations

import pytest

from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.identity import (
    IdentityConfig,
    IdentityError,
    MergeError,
    Resolver,
    merge,
    merge_consents,
    normalize,
    unmerge,
)
from shopkeeper.store import Store

S = 1_000_000
T0 = 1_750_000_000


def ev(type_: str, ids: dict, t: float, key: str, **data: object) -> dict:
    return {"type": type_, "identities": ids, "ts": T0 + t, "idempotency_key": key, "data": data}


def apply(store: Store, *raw: dict, config: IdentityConfig | None = None):
    with Ingestor(store, Resolver(config)) as ing:
        return ing.apply([validate_event(r) for r in raw])


def customer(store: Store, ns: str, value: str):
    with store.read() as f:
        c = f.customer_by_identity(ns, value)
        return c.id if c else None


@pytest.mark.parametrize(
    ("ns", "raw", "want"),
    [
        ("email", "  Ann.Lee@Example.ORG ", "ann.lee@example.org"),
        ("phone", "(415) 555-0132", "+14155550132"),
        ("phone", "+44 20 7946 0958", "+442079460958"),
        ("cookie", " ck-AbC ", "ck-AbC"),
    ],
)
def test_normalize(ns: str, raw: str, want: str) -> None:
    assert normalize(ns, raw, IdentityConfig()) == want


@pytest.mark.parametrize(
    ("ns", "raw", "why"),
    [
        ("email", "unknown", "blocked"),
        ("email", "TEST@example.com", "blocked"),
        ("email", "not-an-email", "not an email"),
        ("phone", "12", "phone"),
        ("fax", "123", "unknown identity namespace"),
    ],
)
def test_normalize_refuses(ns: str, raw: str, why: str) -> None:
    with pytest.raises(IdentityError) as ei:
        normalize(ns, raw, IdentityConfig())
    assert why in str(ei.value)
    assert ei.value.field == f"identities.{ns}"


def test_blocked_values_are_configurable() -> None:
    cfg = IdentityConfig.from_mapping({"blocked_values": ["nobody@shop.test"]})
    with pytest.raises(IdentityError, match="blocked"):
        normalize("email", "nobody@shop.test", cfg)
    assert normalize("email", "unknown@x.org", cfg) == "unknown@x.org"


def test_event_with_only_blocked_identities_is_rejected_and_changes_nothing(store: Store) -> None:
    [r] = apply(store, ev("page_view", {"email": "unknown"}, 0, "k1", url="/"))
    assert r.status == "rejected"
    assert r.error_field == "identities"
    with store.read() as f:
        assert f.counter("customers") == 0 and len(f.identities) == 0


def test_normalised_identities_resolve_to_one_customer(store: Store) -> None:
    apply(store, ev("page_view", {"email": "Ann@Example.org"}, 0, "k1", url="/"),
          ev("page_view", {"email": " ann@example.ORG"}, 1, "k2", url="/"),
          ev("call", {"phone": "(415) 555-0132", "email": "ann@example.org"}, 2, "k3"))
    cid = customer(store, "email", "ann@example.org")
    assert cid and customer(store, "phone", "+14155550132") == cid
    with store.read() as f:
        assert f.counter("customers") == 1
        assert f.customer(cid).hard["interactions"] == 3


def test_login_stitches_anonymous_browsing_to_the_known_customer(store: Store) -> None:
    apply(store, ev("order", {"email": "bo@example.org"}, 0, "k0", order_id="o1", amount=20.0))
    apply(store, ev("page_view", {"cookie": "ck1"}, 10, "k1", url="/a"),
          ev("page_view", {"cookie": "ck1"}, 20, "k2", url="/b"))
    anon = customer(store, "cookie", "ck1")
    known = customer(store, "email", "bo@example.org")
    assert anon != known
    [r] = apply(store, ev("identify", {"cookie": "ck1", "email": "bo@example.org"}, 30, "k3"))
    assert r.customer_id == known and len(r.merges) == 1
    with store.read() as f:
        c = f.customer(known)
        assert [i.data.get("url") for i in c.interactions()] == [None, "/a", "/b", None]
        assert c.hard["orders"] == 1 and c.hard["interactions"] == 4
        assert f.customer(anon) is c  # the absorbed id leads to the survivor
        assert f.counter("customers") == 1


def test_weak_identity_of_a_known_customer_moves_instead_of_merging(store: Store) -> None:
    apply(store, ev("identify", {"email": "a@example.org", "cookie": "shared-pc"}, 0, "k1"),
          ev("identify", {"email": "b@example.org"}, 1, "k2"))
    [r] = apply(store, ev("identify", {"email": "b@example.org", "cookie": "shared-pc"}, 2, "k3"))
    assert r.merges == [] and any("moved" in w for w in r.warnings)
    assert customer(store, "cookie", "shared-pc") == customer(store, "email", "b@example.org")
    assert customer(store, "email", "a@example.org") != customer(store, "email", "b@example.org")


def test_two_known_customers_merge_on_a_shared_strong_identity(store: Store) -> None:
    apply(store, ev("order", {"email": "c@example.org"}, 0, "k1", order_id="1", amount=5.0),
          ev("call", {"phone": "+14155550100"}, 1, "k2"))
    [r] = apply(store, ev("identify", {"email": "c@example.org", "phone": "+14155550100"}, 2, "k3"))
    assert len(r.merges) == 1
    assert customer(store, "email", "c@example.org") == customer(store, "phone", "+14155550100")


def test_namespace_priority_picks_the_survivor(store: Store) -> None:
    apply(store, ev("identify", {"email": "d@example.org"}, 0, "k1"),
          ev("identify", {"crm_id": "CRM-9"}, 1, "k2"))
    crm = customer(store, "crm_id", "CRM-9")
    [r] = apply(store, ev("identify", {"email": "d@example.org", "crm_id": "CRM-9"}, 2, "k3"))
    assert r.customer_id == crm  # crm_id outranks email even though the email customer is older


def test_different_crm_ids_are_never_auto_merged(store: Store) -> None:
    apply(store, ev("identify", {"crm_id": "A", "email": "e1@example.org"}, 0, "k1"),
          ev("identify", {"crm_id": "B", "email": "e2@example.org"}, 1, "k2"))
    [r] = apply(store, ev("identify", {"email": "e1@example.org", "phone": "+14155550111"}, 2, "k3"),
                ev("identify", {"email": "e2@example.org", "phone": "+14155550111"}, 3, "k4"))[1:]
    assert r.merges == [] and len(r.proposals) == 1
    with store.read() as f:
        assert "crm_id" in f.proposals[r.proposals[0]].reason
    assert customer(store, "crm_id", "A") != customer(store, "crm_id", "B")


def test_propose_mode_records_a_proposal_instead_of_merging(store: Store) -> None:
    cfg = IdentityConfig(merge_mode="propose")
    apply(store, ev("identify", {"email": "f@example.org"}, 0, "k1"),
          ev("identify", {"phone": "+14155550122"}, 1, "k2"),
          config=cfg)
    [r] = apply(store, ev("identify", {"email": "f@example.org", "phone": "+14155550122"}, 2, "k3"), config=cfg)
    assert r.merges == [] and len(r.proposals) == 1
    with store.read() as f:
        assert len(f.proposals) == 1
        assert f.counter("customers") == 2


def test_consents_merge_most_restrictive_wins() -> None:
    from shopkeeper.customer import Consent

    a = {("email", "marketing"): Consent(True, "web", 10), ("sms", "marketing"): Consent(True, "web", 10),
         ("phone", "service"): Consent(True, "x", 10)}
    b = {("email", "marketing"): Consent(False, "unsub", 5), ("sms", "marketing"): Consent(True, "app", 20),
         ("post", "marketing"): Consent(True, "paper", 1)}
    m = merge_consents(a, b)
    assert m[("email", "marketing")].granted is False  # an older refusal still beats a newer grant
    assert m[("sms", "marketing")].source == "app"  # two grants: the later one
    assert m[("phone", "service")].granted and m[("post", "marketing")].granted


def _setup_pair(store: Store) -> tuple[str, str]:
    apply(store,
          ev("order", {"email": "g@example.org"}, 0, "g1", order_id="g-o1", amount=100.0),
          ev("page_view", {"email": "g@example.org"}, 2, "g2", url="/g"),
          ev("order", {"phone": "+14155550199"}, 1, "h1", order_id="h-o1", amount=7.0),
          ev("page_view", {"phone": "+14155550199"}, 3, "h2", url="/h"))
    g, h = customer(store, "email", "g@example.org"), customer(store, "phone", "+14155550199")
    with store.transaction() as f:
        f.customer(g).set_consent("email", "marketing", True, "g-form", at=(T0 + 1) * S)
        f.customer(h).set_consent("email", "marketing", False, "h-unsub", at=(T0 + 2) * S)
        f.customer(h).set_soft_fact("price_sensitivity", "high", "agent", at=(T0 + 3) * S)
        f.customer(h).join_segment("bargain-hunters", at=(T0 + 3) * S)
    return g, h


def test_merge_then_more_events_then_unmerge(store: Store) -> None:
    g, h = _setup_pair(store)
    [r] = apply(store, ev("identify", {"email": "g@example.org", "phone": "+14155550199"}, 10, "m1"))
    [mid] = r.merges
    with store.read() as f:
        c = f.customer(g)
        assert c.id == g  # email outranks phone
        assert c.hard["orders"] == 2 and c.hard["total_spend"] == 107.0
        order = [i.data.get("url") or i.data.get("order_id") for i in c.interactions()]
        assert order[:4] == ["g-o1", "h-o1", "/g", "/h"]
        assert not c.may_contact("email")  # most restrictive wins
        assert c.soft["price_sensitivity"].value == "high" and "bargain-hunters" in c.segments
        assert f.merges[mid].survivor_id == g and f.merges[mid].absorbed_id == h

    # events after the merge, carried by each side's identity
    apply(store, ev("order", {"phone": "+14155550199"}, 20, "after-h", order_id="h-o2", amount=3.0),
          ev("order", {"email": "g@example.org"}, 21, "after-g", order_id="g-o2", amount=50.0))
    with store.transaction() as f:
        unmerge(f, mid)
    with store.read() as f:
        cg, ch = f.customer(g), f.customer(h)
        assert cg is not ch and ch.status == "active"
        assert {i.data.get("order_id") for i in cg.interactions(type="order")} == {"g-o1", "g-o2"}
        assert {i.data.get("order_id") for i in ch.interactions(type="order")} == {"h-o1", "h-o2"}
        assert cg.hard["total_spend"] == 150.0 and ch.hard["total_spend"] == 10.0
        assert f.customer_by_identity("phone", "+14155550199") is ch
        assert cg.may_contact("email") and not ch.may_contact("email")
        assert "price_sensitivity" in ch.soft and "bargain-hunters" in ch.segments
        assert f.merges[mid].undone_at is not None
        assert f.counter("customers") == 2
        # the survivor's rebuilt history is stored in generation 7's form: each entry its packed bytes
        assert cg._tree is not None and all(type(v) is bytes for v in cg._tree.values())
    # the lineage is kept and a second unmerge is refused
    with pytest.raises(MergeError, match="already undone"), store.transaction() as f:
        unmerge(f, mid)


def test_unmerge_refuses_when_the_survivor_was_merged_later(store: Store) -> None:
    g, h = _setup_pair(store)
    with store.transaction() as f:
        rec = merge(f, f.customer(g), f.customer(h), reason="test", source="test")
        apply_id = rec.id
    apply(store, ev("identify", {"crm_id": "Z1"}, 30, "z"))
    with store.transaction() as f:
        merge(f, f.customer_by_identity("crm_id", "Z1"), f.customer(g), reason="test", source="test")
    with pytest.raises(MergeError, match="undo that later merge first"), store.transaction() as f:
        unmerge(f, apply_id)


def test_merge_refuses_self_and_inactive(store: Store) -> None:
    g, h = _setup_pair(store)
    with pytest.raises(MergeError, match="itself"), store.transaction() as f:
        merge(f, f.customer(g), f.customer(g), reason="x", source="x")
    with store.transaction() as f:
        merge(f, f.customer(g), f.customers[h], reason="x", source="x")
    with pytest.raises(MergeError, match="merged"), store.transaction() as f:
        merge(f, f.customer(g), f.customers[h], reason="x", source="x")


def test_identity_changes_go_through_the_customer_and_mark_its_record_changed(store: Store) -> None:
    """``attach`` and the merges change identities through ``Customer.link_identity`` /
    ``unlink_identity`` (issue 19: no ``_p_changed`` outside the class); the record itself is marked
    changed, though only the identities tree is written, so the audience index sees the new address."""
    from shopkeeper import audience
    from shopkeeper.customer import Customer
    from shopkeeper.identity import attach

    with store.transaction() as f:
        f.add_customer(Customer("c1", created_at=1))
    with store.transaction() as f:
        c = f.customers["c1"]
        c._p_activate()
        assert not c._p_changed
        attach(f, c, ("email", "ann@example.com"), "test", 2)
        assert c._p_changed and f.customer_by_identity("email", "ann@example.com") is c
        assert c.unlink_identity(("phone", "+14155550100")) is None
    with store.read() as f:
        assert dict(audience.iter_cards(f.root))["c1"][3] == ("ann@example.com",)
    with store.transaction() as f:
        c = f.customers["c1"]
        c._p_activate()
        link = c.unlink_identity(("email", "ann@example.com"))
        assert link.source == "test" and c._p_changed
    with store.read() as f:
        assert dict(audience.iter_cards(f.root))["c1"][3] == ()
