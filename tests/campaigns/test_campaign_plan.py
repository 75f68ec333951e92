"""Channel of choice (the one contact policy, extended) and the dry run (writes nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopkeeper import contact
from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.campaigns.plan import decide, dry_run, in_holdout, intent_of
from shopkeeper.customer import Customer, now_us
from shopkeeper.store import Store

from .helpers import CAMPAIGN, add, population, write_campaign

NO_QUIET = contact.ContactPolicy(quiet_hours=None)


@pytest.fixture
def campaign(tmp_path: Path):  # type: ignore[no-untyped-def]
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: 0"))
    return load_campaigns(tmp_path).campaigns["winter_sale"]


def test_preferred_consented_channel_first_then_fallbacks(store: Store) -> None:
    with store.transaction() as f:
        both = add(f, "a", email="a@x.com", phone="+4915112345678", consents={"email": True, "sms": True},
                   preferred="sms")
        no_sms = add(f, "b", email="b@x.com", phone="+4915112345679", consents={"email": True, "sms": False},
                     preferred="sms")
        no_phone = add(f, "c", email="c@x.com", consents={"email": False, "sms": True}, preferred="sms")
        ch = contact.choose_channel(both, ["email", "sms"], now=now_us(), policy=NO_QUIET)
        assert ch.channel == "sms" and ch.ok
        ch = contact.choose_channel(no_sms, ["email", "sms"], now=now_us(), policy=NO_QUIET)
        assert ch.channel == "email" and [c for c, _ in ch.passed_over] == ["sms"]
        assert ch.passed_over[0][1].code == contact.NO_CONSENT
        ch = contact.choose_channel(no_phone, ["email", "sms"], now=now_us(), policy=NO_QUIET)
        assert ch.channel == "" and ch.verdict.code == contact.UNDELIVERABLE  # sms preferred: its reason
        assert [v.code for _, v in ch.passed_over] == [contact.UNDELIVERABLE, contact.NO_CONSENT]


def test_caps_count_claimed_and_queued_marketing_across_campaigns_and_rules(store: Store, campaign) -> None:  # type: ignore[no-untyped-def]
    from shopkeeper import outbox

    pol = contact.ContactPolicy(quiet_hours=None, max_per_week=2)
    now = now_us()
    with store.transaction() as f:
        c = add(f, "a", email="a@x.com", consents={"email": True})
        assert decide(campaign, c, now, pol).sends
        contact.record_contact(c, "email", now - 3600 * 1_000_000)  # one sent by a rule yesterday
        assert decide(campaign, c, now, pol).sends
        outbox.enqueue(f, c, channel="email", template="rule_message")  # a lower priority: its slot is not held
        assert decide(campaign, c, now, pol).sends
        outbox.enqueue(f, c, channel="email", template="other_campaign",
                       payload={"campaign": "other", "priority": campaign.priority})  # queued, as important
        d = decide(campaign, c, now, pol)
        assert not d.sends and d.code == contact.CAPPED, d


def test_quiet_hours_defer_and_holdout_is_stable(store: Store, campaign) -> None:  # type: ignore[no-untyped-def]
    night = contact.ContactPolicy(quiet_hours=(0, 24 - 1))  # 00:00-23:00 UTC: almost always night
    with store.transaction() as f:
        c = add(f, "a", email="a@x.com", consents={"email": True})
        c.set_soft_fact("timezone", "UTC", "test")
        d = decide(campaign, c, now_us(), night)
        from datetime import UTC, datetime
        if datetime.now(UTC).hour != 23:
            assert d.sends and d.deferred == contact.QUIET_HOURS, d
    inside = [i for i in range(2000) if in_holdout("winter_sale", f"c{i}", 10)]
    assert 120 <= len(inside) <= 280  # about 10%
    assert inside == [i for i in range(2000) if in_holdout("winter_sale", f"c{i}", 10)]


def test_sms_text_is_rendered_per_customer(store: Store, campaign) -> None:  # type: ignore[no-untyped-def]
    with store.transaction() as f:
        c = add(f, "a", phone="+4915112345678", consents={"sms": True}, traits={"first_name": "Kim"})
        tpl, payload = intent_of(campaign, campaign.message("sms"), c, "r1")
        assert payload["text"].startswith("Hi Kim: 20% off") and payload["campaign"] == "winter_sale"
        assert payload["run"] == "r1" and payload["message"] == "sms:text" and payload["offer"] == "winback_20"
        c2 = add(f, "b", phone="+4915112345679", consents={"sms": True})
        assert intent_of(campaign, campaign.message("sms"), c2, "r1")[1]["text"].startswith("Hi there:")


def test_dry_run_counts_channels_and_reasons_and_writes_nothing(file_store: Store, campaign) -> None:  # type: ignore[no-untyped-def]
    cases = population(file_store, 36)
    size = file_store.db.storage.getSize()
    last = file_store.db.lastTransaction()
    saved = contact.configure(overrides={"quiet_hours": None})
    try:
        r = dry_run(file_store, campaign)
    finally:
        contact.configure(overrides={})
    assert saved is not None
    assert file_store.db.lastTransaction() == last and file_store.db.storage.getSize() == size
    n = {k: sum(1 for v in cases.values() if v == k) for k in set(cases.values())}
    assert r["evaluated"] == 36 and r["audience"] == 36 - n["outside"]
    assert r["by_channel"] == {"email": n["email"], "sms": n["sms_pref"] + n["sms_only"]}
    assert r["excluded"] == {contact.NO_CONSENT: n["no_consent"], contact.UNDELIVERABLE: n["no_address"]}
    assert r["examples"][contact.UNDELIVERABLE][0]["detail"].startswith("email: no email address")


def test_customer_outside_the_conditions_is_not_in_the_audience(store: Store, campaign) -> None:  # type: ignore[no-untyped-def]
    from shopkeeper.campaigns.plan import in_audience

    with store.transaction() as f:
        rich = add(f, "a", email="a@x.com", consents={"email": True}, spend=80)
        poor = add(f, "b", email="b@x.com", consents={"email": True}, spend=20)
        bare = f.add_customer(Customer("c"))
        assert in_audience(campaign, rich, now_us()) and not in_audience(campaign, poor, now_us())
        assert not in_audience(campaign, bare, now_us())
