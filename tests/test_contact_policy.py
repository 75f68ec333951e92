"""The one contact policy, property-based: whatever the order of consent changes, time passing,
Decide calls and sends, no offer or message reaches a person on a channel whose consent is
withdrawn at that moment, none in quiet hours (their local time), none over a cap. A message
held back by quiet hours is deferred to their end, not dropped: an adapter's sweep claims it
once it is due.

Hypothesis (the ``test`` extra) generates the sequences and shrinks a failure to the shortest
one: hand-written cases only cover the orders someone thought of, and issue 11's reproduction 1
(consent withdrawn *between* two Decide calls) was exactly an order nobody had written down.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopkeeper import contact, outbox
from shopkeeper.analysis import offers as nba
from shopkeeper.customer import Customer
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

HOUR_US = 3600 * 1_000_000
START = int(datetime(2026, 6, 1, 6, 0, tzinfo=UTC).timestamp() * 1_000_000)
POLICY = {"control_percent": 0, "quiet_hours": [21, 8], "max_offers_per_week": 3, "follow_up_days": 7,
          "max_messages_per_day": 2, "max_messages_per_week": 4, "default_timezone": "Europe/Berlin"}

step = st.one_of(
    st.tuples(st.just("consent"), st.booleans()),
    st.tuples(st.just("wait"), st.integers(min_value=1, max_value=30)),
    st.tuples(st.just("decide"), st.sampled_from(["email", "web"])),
    st.tuples(st.just("send"), st.sampled_from(["marketing", "service"])),
)


def local_hour(now: int) -> int:
    return datetime.fromtimestamp(now / 1e6, tz=UTC).astimezone(contact.zone("Europe/Berlin")).hour


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=40))
def test_no_contact_against_consent_in_quiet_hours_or_over_a_cap(steps: list[tuple[str, Any]]) -> None:
    cat = nba.Catalogue(policy=POLICY)
    cat.add({"id": "winback", "channels": ["email", "web"], "value": 10})
    saved = (dict(contact._keys), dict(contact._overrides))
    pol = contact.configure(keys=POLICY, overrides={})  # the outbox claim asks the installed policy
    assert pol == cat.contact
    store = Store.open("memory://", steps=builtin_evolve_steps())
    try:
        with store.transaction() as f:
            f.customers["c1"] = Customer("c1", created_at=START)
        now = START
        offers_shown: list[int] = []  # when an offer went out on email
        claims: list[int] = []  # when a marketing message was claimed for sending
        n = 0
        for kind, arg in steps:
            n += 1
            with store.transaction() as f:
                c = f.customers["c1"]
                granted = c.may_contact("email", "marketing")
                hour = local_hour(now)
                quiet = pol.in_quiet_hours(hour)
                if kind == "consent":
                    c.set_consent("email", "marketing", arg, "test", now)
                    c.set_consent("email", "service", arg, "test", now)
                elif kind == "wait":
                    now += arg * HOUR_US
                elif kind == "decide":
                    got = [a for a in nba.decide(cat, c, arg, "p", {"channel": arg}, now=now) if a["kind"] == "offer"]
                    if arg == "email" and got:
                        week = [t for t in offers_shown if now - t < 7 * 24 * HOUR_US]
                        assert granted, "an email offer without consent"
                        assert not quiet, f"an email offer at {hour}:00 local time"
                        assert len(week) < POLICY["max_offers_per_week"], "an email offer over the weekly cap"
                        offers_shown.append(now)
                    for a in got:
                        if a.get("record"):
                            nba.remember_outcome(c, a["id"], "shown", now, arg, "p")
                else:
                    item = outbox.enqueue(f, c, channel="email", template="t", purpose=arg, intent_id=f"i{n}", at=now)
                    if item.not_before:  # queued in quiet hours: deferred to their end, not dropped
                        assert quiet and arg == "marketing", f"a {arg} message deferred at {hour}:00"
                        assert local_hour(item.not_before) == POLICY["quiet_hours"][1]
                if kind in ("send", "wait"):  # an adapter's sweep: claim every intent that is due now
                    hour = local_hour(now)
                    quiet = pol.in_quiet_hours(hour)
                    for m in outbox.pending(f, ("email",), now=now):
                        purpose = m.purpose
                        refused = outbox.apply_event(f, c, "message_dispatch", "email",
                                                     {"intent": m.id, "message_id": f"<{m.id}@x>"}, at=now)
                        after = outbox.get(c, m.id)
                        assert after.not_before <= now or refused is not None
                        if refused is None:
                            assert after.status == outbox.SENDING
                            assert c.may_contact("email", purpose), "a message claimed without consent"
                            if purpose == "marketing":
                                day = [t for t in claims if now - t < 24 * HOUR_US]
                                week = [t for t in claims if now - t < 7 * 24 * HOUR_US]
                                assert not quiet, f"a marketing message claimed at {hour}:00 local time"
                                assert len(day) < POLICY["max_messages_per_day"], "over the daily cap"
                                assert len(week) < POLICY["max_messages_per_week"], "over the weekly cap"
                                claims.append(now)
                            outbox.apply_event(f, c, "email_sent", "email", {"intent": m.id}, at=now)
                        elif after.status == outbox.PENDING:  # deferred by quiet hours, kept for later
                            assert quiet and refused.code == contact.QUIET_HOURS and after.not_before > now
                        else:  # refused: the intent ended suppressed, with the reason code
                            assert after.status == outbox.SUPPRESSED and refused.code in contact.REASONS
                            assert after.error.startswith(refused.code)
        # never lost: a day later, at noon local time, every deferred message has been claimed
        later = now + 24 * HOUR_US
        later += (12 - local_hour(later)) % 24 * HOUR_US
        with store.transaction() as f:
            c = f.customers["c1"]
            for m in outbox.pending(f, ("email",), now=later):
                outbox.apply_event(f, c, "message_dispatch", "email", {"intent": m.id, "message_id": f"<{m.id}@x>"},
                                   at=later)
            left = [(it.id, it.status, it.not_before) for it in outbox.items(c) if it.status == outbox.PENDING]
            assert not left, f"deferred messages never claimed: {left}"
    finally:
        store.close()
        contact.configure(keys=saved[0], overrides=saved[1])
