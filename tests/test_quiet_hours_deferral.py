"""Quiet hours defer a message, they do not drop it (the lead's decision on issue 11): an intent
claimed or queued inside the customer's quiet window gets a "not before" time — the window's end
in the customer's time zone — is skipped by claims and pending lists until then, and is delivered
afterwards; one whose validity ends before that is suppressed ``quiet_hours_expired``.

Times are passed explicitly (the outbox's ``at``/``now`` parameters): no clock, no sleeps.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import datetime

import pytest

from shopkeeper import contact, outbox
from shopkeeper.customer import Customer
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

BERLIN = contact.zone("Europe/Berlin")


def berlin(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=BERLIN).timestamp()) * 1_000_000


@pytest.fixture
def store() -> Iterator[Store]:
    saved = (dict(contact._keys), dict(contact._overrides))
    contact.configure(keys={}, overrides={"quiet_hours": [21, 8], "default_timezone": "UTC"})
    s = Store.open("memory://", steps=builtin_evolve_steps())
    with s.transaction() as f:
        c = Customer("c1", created_at=0)
        c.set_consent("email", "marketing", True, "test", 0)
        c.set_consent("email", "service", True, "test", 0)
        c.set_soft_fact(contact.TIMEZONE, "Europe/Berlin", "test", 0)
        f.customers["c1"] = c
    yield s
    s.close()
    contact.configure(keys=saved[0], overrides=saved[1])


def claim(f: object, intent: str, at: int, mid: str = "<m@x>") -> contact.Verdict | None:
    c = f.customers["c1"]  # type: ignore[attr-defined]
    return outbox.apply_event(f, c, "message_dispatch", "email", {"intent": intent, "message_id": mid}, at=at)


def test_quiet_until_is_the_end_of_the_window_in_the_customers_zone(store: Store) -> None:
    with store.read() as f:
        c = f.customers["c1"]
        assert contact.quiet_until(c, "email", "marketing", berlin(2026, 12, 1, 22)) == berlin(2026, 12, 2, 8)
        assert contact.quiet_until(c, "email", "marketing", berlin(2026, 12, 2, 3)) == berlin(2026, 12, 2, 8)
        assert contact.quiet_until(c, "email", "marketing", berlin(2026, 12, 2, 9)) == 0  # not quiet
        assert contact.quiet_until(c, "email", "service", berlin(2026, 12, 1, 22)) == 0  # exempt purpose
        assert contact.quiet_until(c, "web", "marketing", berlin(2026, 12, 1, 22)) == 0  # not outbound
        # across the change to summer time (29 March 2026 in Berlin) the window still ends at 08:00 local
        assert contact.quiet_until(c, "email", "marketing", berlin(2026, 3, 28, 23)) == berlin(2026, 3, 29, 8)


def test_a_message_claimed_in_quiet_hours_is_deferred_then_delivered(store: Store) -> None:
    """The cart reminder claimed at 22:00 local time: not sent, not suppressed; pending until 08:00."""
    with store.transaction() as f:
        outbox.enqueue(f, f.customers["c1"], channel="email", template="cart_reminder", intent_id="i1",
                       at=berlin(2026, 12, 1, 20, 59))  # queued just before the window
    with store.transaction() as f:
        refused = claim(f, "i1", berlin(2026, 12, 1, 22))
        item = outbox.get(f.customers["c1"], "i1")
        assert refused is not None and refused.code == contact.QUIET_HOURS
        assert item.status == outbox.PENDING and item.attempts == 0
        assert item.not_before == berlin(2026, 12, 2, 8)
    with store.read() as f:
        assert [m.id for m in outbox.pending(f, ("email",), now=berlin(2026, 12, 1, 23))] == []
        got = outbox.pending(f, ("email",), now=berlin(2026, 12, 1, 23), include_deferred=True)
        assert [(m.id, m.not_before) for m in got] == [("i1", berlin(2026, 12, 2, 8))]
        assert [m.id for m in outbox.pending(f, ("email",), now=berlin(2026, 12, 2, 8))] == ["i1"]
    with store.transaction() as f:
        assert claim(f, "i1", berlin(2026, 12, 2, 7, 59)) is not None  # a claim before then: still refused
        assert outbox.get(f.customers["c1"], "i1").status == outbox.PENDING
        assert claim(f, "i1", berlin(2026, 12, 2, 8)) is None
        outbox.apply_event(f, f.customers["c1"], "email_sent", "email", {"intent": "i1", "message_id": "<m@x>"},
                           at=berlin(2026, 12, 2, 8))
        assert outbox.get(f.customers["c1"], "i1").status == outbox.SENT


def test_a_message_queued_in_quiet_hours_carries_its_not_before(store: Store) -> None:
    with store.transaction() as f:
        item = outbox.enqueue(f, f.customers["c1"], channel="email", template="t", intent_id="i2",
                              at=berlin(2026, 12, 1, 23))
        service = outbox.enqueue(f, f.customers["c1"], channel="email", template="t", purpose="service",
                                 intent_id="i3", at=berlin(2026, 12, 1, 23))
    assert item.not_before == berlin(2026, 12, 2, 8) and item.status == outbox.PENDING
    assert service.not_before == 0  # order confirmations are not held back
    assert outbox.Message.from_item("c1", item).not_before == item.not_before


def test_a_message_whose_validity_ends_in_the_window_is_suppressed_quiet_hours_expired(store: Store) -> None:
    with store.transaction() as f:
        c = f.customers["c1"]
        late = outbox.enqueue(f, c, channel="email", template="flash", intent_id="i4", at=berlin(2026, 12, 1, 22),
                              expires_at=berlin(2026, 12, 2, 6))
        outbox.enqueue(f, c, channel="email", template="flash", intent_id="i5", at=berlin(2026, 12, 1, 20),
                       expires_at=berlin(2026, 12, 1, 23))
        outbox.enqueue(f, c, channel="email", template="flash", intent_id="i6", at=berlin(2026, 12, 1, 20),
                       expires_at=berlin(2026, 12, 3, 0))
    assert late.status == outbox.SUPPRESSED and late.error.startswith(contact.QUIET_HOURS_EXPIRED)
    with store.transaction() as f:
        refused = claim(f, "i5", berlin(2026, 12, 1, 22))
        assert refused is not None and refused.code == contact.QUIET_HOURS_EXPIRED
        assert outbox.get(f.customers["c1"], "i5").status == outbox.SUPPRESSED
        assert claim(f, "i6", berlin(2026, 12, 1, 22)).code == contact.QUIET_HOURS  # valid long enough: deferred
        assert outbox.get(f.customers["c1"], "i6").status == outbox.PENDING
    with store.read() as f:
        assert [m.id for m in outbox.pending(f, ("email",), now=berlin(2026, 12, 2, 9))] == ["i6"]
        # past its validity, a message is not sent at all
    with store.transaction() as f:
        refused = claim(f, "i6", berlin(2026, 12, 3, 9))
        assert refused is not None and refused.code == contact.EXPIRED
        assert outbox.get(f.customers["c1"], "i6").status == outbox.SUPPRESSED


def test_an_intent_pickled_before_not_before_existed_reads_back_with_none() -> None:
    """OutboxItem gained fields with defaults: an item pickled with the old twelve fields still loads."""
    old = tuple(outbox.OutboxItem("i", "email", "t"))[:12]

    class Old(tuple):  # what an old pickle holds: the tuple of the fields it had
        def __reduce__(self) -> tuple:
            return (outbox.OutboxItem, tuple(self))

    item = pickle.loads(pickle.dumps(Old(old)))
    assert isinstance(item, outbox.OutboxItem) and item.not_before == 0 and item.expires_at == 0


def test_a_message_request_carries_its_validity(store: Store) -> None:
    with store.transaction() as f:
        c = f.customers["c1"]
        outbox.apply_event(f, c, "message_request", "email",
                           {"template": "flash", "intent": "r1", "valid_until": "2026-12-02T06:00:00+01:00"},
                           at=berlin(2026, 12, 1, 22))
        outbox.apply_event(f, c, "message_request", "email",
                           {"template": "flash", "intent": "r2", "valid_until": "2026-12-02T12:00:00Z"},
                           at=berlin(2026, 12, 1, 22))
        with pytest.raises(outbox.ClaimRefused, match="data.valid_until"):
            outbox.apply_event(f, c, "message_request", "email",
                               {"template": "flash", "intent": "r3", "valid_until": "tomorrow"}, at=0)
        r1, r2 = outbox.get(c, "r1"), outbox.get(c, "r2")
    assert r1.status == outbox.SUPPRESSED and r1.error.startswith(contact.QUIET_HOURS_EXPIRED)
    assert r2.status == outbox.PENDING and r2.not_before == berlin(2026, 12, 2, 8)
    assert "valid_until" not in r2.payload


def test_a_bare_scan_lists_every_intent_not_final_without_loading_a_customer(store: Store) -> None:
    """Issue 16: a channel adapter's scan of pending intents loaded every customer and its outbox,
    then its read loaded them again. ``refs_only`` lists the index alone — deferred intents too,
    final ones not — and leaves the customers unloaded; :func:`outbox.states` reads each one."""
    with store.transaction() as f:
        outbox.enqueue(f, f.customers["c1"], channel="email", template="t", intent_id="i-night",
                       at=berlin(2026, 12, 1, 23))
        outbox.enqueue(f, f.customers["c1"], channel="email", template="t", intent_id="i-day",
                       at=berlin(2026, 12, 1, 12))
        outbox.enqueue(f, f.customers["c1"], channel="sms", template="t", intent_id="i-sms",
                       at=berlin(2026, 12, 1, 12))
    with store.read() as f:
        f.customers["c1"]._p_invalidate()  # a ghost, as in a fresh connection's cache
        bare = outbox.pending(f, ("email",), refs_only=True, now=berlin(2026, 12, 1, 23, 30))
        assert [(m.id, m.customer_id, m.channel, m.status) for m in bare] == [("i-day", "c1", "email", ""),
                                                                           ("i-night", "c1", "email", "")]
        assert f.customers["c1"]._p_status == "ghost"
        full = outbox.pending(f, ("email",), now=berlin(2026, 12, 1, 23, 30))
        assert [m.id for m in full] == ["i-day"]  # the full list leaves the deferred one out
        got = outbox.states(f, [("c1", "i-night"), ("c1", "i-gone")])
        assert got[0][0].not_before == berlin(2026, 12, 2, 8) and got[0][1].id == "c1" and got[1][0] is None
