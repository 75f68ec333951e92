"""shopkeeper.client: sync and asyncio helpers, retries on UNAVAILABLE, the batching sender."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from shopkeeper.client import AsyncClient, Client
from shopkeeper.hub.server import Hub

from .conftest import free_port, make_config

pytestmark = pytest.mark.e2e


def test_sync_client_helpers(running) -> None:
    with Client(running.target, api_key="sk_admin_test") as hub:
        st = hub.record({"type": "order", "identities": {"email": "ann@example.com"},
                         "data": {"order_id": "o1", "amount": 42.5, "items": 2}, "ts": time.time() - 60})
        assert st.outcome == st.APPLIED
        assert hub.identify({"email": "ann@example.com"}, {"city": "Oslo"}).customer.traits["city"] == "Oslo"
        c = hub.get_customer(email="ann@example.com")
        assert c.hard_facts.orders == 1 and c.hard_facts.total_spend == 42.5
        assert hub.set_consent("email", True, email="ann@example.com").granted
        # newest first, paging one at a time; the consent change is on the timeline too
        assert [i.type for i in hub.list_interactions(email="ann@example.com", page_size=1)] == ["consent", "order"]
        assert [x.id for x in hub.find_customers(facts=[("orders", "GE", 1)])] == [c.id]
        assert hub.export_customer(c.id)["id"] == c.id
        assert hub.stats().interactions == 1
        # last: Decide queues the offer_shown records of the built-in analysis plugin's offers
        # without waiting, so reads after it may or may not see them yet
        assert hub.decide(email="ann@example.com", placement="home").actions[0].id == "loyal-10"


def test_sender_batches_with_back_pressure(running) -> None:
    with Client(running.target, api_key="sk_admin_test") as hub:
        with hub.sender(batch_size=100, max_pending_batches=2) as send:
            futs = [send({"type": "page_view", "identities": {"email": f"p{i % 50}@example.com"},
                          "data": {"url": "/"}, "idempotency_key": f"snd-{i}"}) for i in range(1050)]
            futs.append(send({"type": "page_view", "identities": {"email": "p3@example.com"},
                              "data": {"url": "/"}, "idempotency_key": "snd-3"}))  # a replay of event 3
        outcomes = [f.result(5).outcome for f in futs]
        assert outcomes.count(futs[0].result().APPLIED) == 1050 and outcomes[-1] == futs[0].result().DUPLICATE
        assert hub.stats().interactions == 1050


def test_retries_unavailable_until_the_hub_is_up() -> None:
    port = free_port()
    hub = Hub(make_config(port), load_entrypoints=False)
    timer = threading.Timer(0.6, hub.start)
    timer.start()
    try:
        with Client(f"127.0.0.1:{port}", api_key="sk_admin_test", backoff=0.1, retries=10) as c:
            assert c.record({"type": "page_view", "identities": {"email": "r@example.com"},
                             "data": {"url": "/"}}).outcome == 1
    finally:
        timer.join()
        hub.stop(grace=0.5)


def test_async_client(running) -> None:
    async def main() -> None:
        async with AsyncClient(running.target, api_key="sk_admin_test") as hub:
            await hub.record({"type": "page_view", "identities": {"email": "a@example.com"}, "data": {"url": "/"}})
            acks = [a async for a in hub.stream([[{"type": "page_view", "identities": {"email": "a@example.com"},
                                                   "data": {"url": f"/{i}"}} for i in range(10)]] * 1)]
            assert acks[0].applied == 10
            c = await hub.get_customer(email="a@example.com")
            assert c.hard_facts.interactions == 11
            results = await asyncio.gather(*[hub.decide(email="a@example.com") for _ in range(20)])
            assert all(r.actions[0].id == "welcome" for r in results)
            assert (await hub.stats()).customers == 1

    asyncio.run(main())
