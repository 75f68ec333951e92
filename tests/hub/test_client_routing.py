"""shopkeeper.client.Hubs: several hub addresses, each customer's events to one hub (issue 17)."""

from __future__ import annotations

import collections

import pytest

from shopkeeper.client import Client, Hubs, common_pb2, route_key
from shopkeeper.client.routing import pick

from .conftest import start_hub

KEYS = [f"email:c{i}@example.com" for i in range(3000)]


def test_route_key_prefers_the_email_lower_cased_else_the_first_identity_by_namespace() -> None:
    assert route_key({"type": "x", "identities": {"phone": "+47", "email": "Ann@Example.com"}}) == \
        "email:ann@example.com"
    assert route_key({"type": "x", "identities": [("web", "w1"), ("phone", "+47")]}) == "phone:+47"
    assert route_key({"type": "x"}) == ""


def test_pick_spreads_keys_and_ignores_the_order_the_hubs_are_listed_in() -> None:
    hubs = ["a:1", "b:1", "c:1"]
    got = [pick(k, hubs) for k in KEYS]
    assert sorted(collections.Counter(got).values())[0] > 850  # of 1,000 each on average
    assert [hubs[i] for i in got] == [hubs[::-1][pick(k, hubs[::-1])] for k in KEYS]


def test_removing_a_hub_moves_only_that_hubs_customers() -> None:
    three, two = ["a:1", "b:1", "c:1"], ["a:1", "c:1"]
    before = {k: three[pick(k, three)] for k in KEYS}
    after = {k: two[pick(k, two)] for k in KEYS}
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved and moved == {k for k in KEYS if before[k] == "b:1"}


def test_hubs_refuses_no_address_or_a_repeated_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Hubs([])
    with pytest.raises(ValueError, match="repeat"):
        Hubs(["a:1", "a:1"])


@pytest.mark.e2e
def test_each_customers_events_reach_one_hub_and_reads_find_them_there() -> None:
    """Two hubs (each its own store here, so where an event landed is visible): 240 events of 24
    customers through the routed sender; every customer's events are all on the hub ``pick``
    names, and ``for_customer`` reads it there."""
    a, b = start_hub(), start_hub()
    try:
        targets = [a.target, b.target]
        emails = [f"c{i}@example.com" for i in range(24)]
        with Hubs(targets, api_key="sk_admin_test") as hubs:
            with hubs.sender(batch_size=50) as send:
                futs = [send({"type": "page_view", "identities": {"email": e}, "data": {"url": f"/{n}"},
                              "idempotency_key": f"k{i}-{n}"}) for n in range(10) for i, e in enumerate(emails)]
            outcomes = collections.Counter(common_pb2.EventStatus.Outcome.Name(f.result(10).outcome) for f in futs)
            assert outcomes == {"APPLIED": 240}, [f.result() for f in futs][:2]
            on = [Client(t, api_key="sk_admin_test") for t in targets]
            assert sum(c.stats().interactions for c in on) == 240
            for e in emails:
                home = pick(f"email:{e}", targets)
                assert hubs.for_customer(email=e.upper()).target == targets[home]
                assert hubs.for_customer(email=e).get_customer(email=e).hard_facts is not None
                assert len(list(on[home].list_interactions(email=e))) == 10
                with pytest.raises(Exception, match="NOT_FOUND|not found"):
                    on[1 - home].get_customer(email=e)
            assert {pick(f"email:{e}", targets) for e in emails} == {0, 1}  # both hubs took some
            for c in on:
                c.close()
    finally:
        a.hub.stop(grace=0.5)
        b.hub.stop(grace=0.5)
