"""The 360° view as a message: what ``GetCustomer`` answers, built in place (no server needed)."""

from __future__ import annotations

from shopkeeper.customer import Customer, IdentityLink, Interaction
from shopkeeper.hub import convert


def _customer() -> Customer:
    c = Customer("c1", created_at=0)  # 1970-01-01T00:00:00Z: a Timestamp of zeros must still be present
    c.identities[("email", "a@example.com")] = IdentityLink("crm", 0)
    c.add_interaction(Interaction(0, 0, "page_view", "web", "", {}, "", (), "c1"))
    c.add_interaction(Interaction(1_500_000, 1_500_000, "order", "web", "shop", {
        "amount": 3, "price": 2.5, "gift": False, "note": None, "items": [1, "a", {"z": True}],
        "address": {"city": "Oslo"}, 7: "seven"}, "k1", (), "c1"))
    c.set_consent("email", "marketing", True, "web", 0)
    c.set_soft_fact("risk", None, "agent", 0)
    c.set_score("clv", 1, "model", 0)
    c.join_segment("vip", 0)
    c.set_traits({"name": "Ada", "age": 36})
    return c


def test_timestamps_at_the_epoch_are_present_not_unset() -> None:
    m = convert.customer(_customer())
    assert m.HasField("created_at") and m.created_at.seconds == 0
    assert m.identities[0].HasField("added_at")
    assert m.consents[0].HasField("at")
    assert m.hard_facts.HasField("first_seen") and m.hard_facts.first_seen.ToMicroseconds() == 0
    assert m.soft_facts["risk"].HasField("at") and m.soft_facts["risk"].value.HasField("null_value")
    assert m.scores["clv"].HasField("at") and m.segments["vip"].ToMicroseconds() == 0
    assert [it.HasField("ts") for it in m.recent_interactions] == [True, True]


def test_values_keep_their_kinds_and_the_newest_interaction_comes_first() -> None:
    m = convert.customer(_customer())
    newest, oldest = m.recent_interactions
    assert (newest.type, newest.ts.ToMicroseconds(), newest.touchpoint, newest.idempotency_key) == (
        "order", 1_500_000, "shop", "k1")
    assert newest.ts.nanos == 500_000_000
    assert convert.struct_to_dict(newest.data) == {
        "amount": 3, "price": 2.5, "gift": False, "note": None, "items": [1, "a", {"z": True}],
        "address": {"city": "Oslo"}, "7": "seven"}
    assert newest.data.fields["gift"].HasField("bool_value")
    assert newest.data.fields["amount"].HasField("number_value")
    assert not oldest.HasField("data")
    assert convert.struct_to_dict(m.traits) == {"name": "Ada", "age": 36}
    assert (m.hard_facts.orders, m.hard_facts.interactions, m.hard_facts.last_channel) == (1, 2, "web")
    assert dict(m.interaction_counts) == {"page_view": 1, "order": 1}
    assert [(cs.channel, cs.purpose, cs.granted) for cs in m.consents] == [("email", "marketing", True)]
    assert len(convert.customer(_customer(), recent=1).recent_interactions) == 1
    assert len(convert.customer(_customer(), recent=0).recent_interactions) == 0


def test_an_empty_customer_has_hard_facts_but_no_optional_timestamps() -> None:
    m = convert.customer(Customer("c2", created_at=5))
    assert m.HasField("hard_facts") and m.hard_facts.orders == 0
    assert not m.hard_facts.HasField("first_seen") and not m.hard_facts.HasField("last_order_at")
    assert not m.HasField("traits") and list(m.recent_interactions) == []
