"""The dry run's counts stay exact when it reads the audience index fast: cards walked beside the
order facts (a merge of two trees in key order), over many buckets, with customers without orders
(no order-facts entry) in between — for a large segment, a small one and no segment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from BTrees.OOBTree import OOBTree

from shopkeeper import audience, contact
from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.campaigns.plan import dry_run, in_holdout
from shopkeeper.customer import Customer, now_us
from shopkeeper.identity import attach
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

N = 1500  # > 12 buckets of cards and of order facts

CAMPAIGNS = """\
campaigns:
  - name: big
    audience:
      segment: target
      conditions:
        - customer.orders: {at_least: 2}
    messages:
      - {channel: sms, text: "Hi {trait.first_name|there}: 20% off"}
      - {channel: email, template: default}
    holdout: 10
  - name: small
    audience:
      segment: small
      conditions:
        - customer.orders: {at_least: 1}
    messages:
      - {channel: email, template: default}
    holdout: 10
  - name: everyone
    audience:
      conditions:
        - customer.orders: {at_most: 1}
    messages:
      - {channel: email, template: default}
      - {channel: sms, text: "Hi"}
"""


def orders_of(i: int) -> int:
    return 0 if i % 4 == 1 else (i // 3) % 3 + 1  # a quarter without orders: no entry in OrderFacts


def build(uri: str) -> None:
    now = now_us()
    with Store.open(uri, steps=builtin_evolve_steps()) as s:
        with s.transaction() as f:
            for i in range(N):
                c = f.add_customer(Customer(f"d{i:05d}", created_at=now))
                if i % 5 != 4:
                    attach(f, c, ("email", f"d{i}@example.com"), "test", now)
                if i % 7 == 3:
                    attach(f, c, ("phone", f"+49151{i:07d}"), "test", now)
                    c.set_consent("sms", "marketing", True, "test")
                c.set_consent("email", "marketing", i % 11 != 0, "test")
                if orders_of(i):
                    c.hard["orders"] = orders_of(i)
                if i % 3 == 0:
                    c.join_segment("target", now)
                if i % 40 == 0:
                    c.join_segment("small", now)


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    u = f"file://{tmp_path_factory.mktemp('dry')}/Data.fs"
    build(u)
    return u


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rules = tmp_path_factory.mktemp("rules")
    (rules / "campaigns").mkdir()
    (rules / "campaigns" / "c.yaml").write_text(CAMPAIGNS)
    return load_campaigns(Path(rules)).campaigns


def expected(name: str) -> dict[str, Any]:
    """The counts worked out from how :func:`build` made each customer, not by the planner."""
    inside = {"big": lambda i: i % 3 == 0 and orders_of(i) >= 2,
              "small": lambda i: i % 40 == 0 and orders_of(i) >= 1,
              "everyone": lambda i: orders_of(i) <= 1}[name]
    channels = {"big": ("sms", "email"), "small": ("email",), "everyone": ("email", "sms")}[name]
    holdout = {"big": 10, "small": 10, "everyone": 0}[name]
    by: dict[str, int] = {}
    excluded: dict[str, int] = {}
    audience_n = 0
    for i in range(N):
        if not inside(i):
            continue
        audience_n += 1
        ok = {"email": i % 5 != 4 and i % 11 != 0, "sms": i % 7 == 3}
        ch = next((c for c in channels if ok[c]), "")
        if not ch:
            first = channels[0]
            has = i % 5 != 4 if first == "email" else i % 7 == 3
            code = contact.NO_CONSENT if has else contact.UNDELIVERABLE
        elif in_holdout(name, f"d{i:05d}", holdout):
            code = "holdout"
        else:
            by[ch] = by.get(ch, 0) + 1
            continue
        excluded[code] = excluded.get(code, 0) + 1
    return {"evaluated": N, "audience": audience_n, "by_channel": by, "excluded": excluded, "record_reads": 0}


@pytest.mark.parametrize("name", ["big", "small", "everyone"])
def test_dry_run_counts_are_exact_over_many_buckets(uri: str, campaigns: dict[str, Any], name: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pol = contact.ContactPolicy(quiet_hours=None)
    now = now_us()
    want = expected(name)
    assert want["audience"] > 20 and want["by_channel"]  # the case is not empty
    with Store.open(uri, steps=builtin_evolve_steps()) as s:  # a cold cache: buckets come from the file
        got = dry_run(s, campaigns[name], now=now, policy=pol)
        assert {k: got[k] for k in want} == want
        monkeypatch.setattr(audience, "cards_of", lambda root: None)  # the records: the reference path
        slow = dry_run(s, campaigns[name], now=now, policy=pol)
    for k in ("evaluated", "audience", "recipients", "by_channel", "excluded", "deferred"):
        assert got[k] == slow[k], k


def test_iter_cards_gives_every_card_its_own_order_facts(uri: str) -> None:
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.read() as f:
        for segment in ("target", "small", ""):
            cards = dict(audience.iter_cards(f.root, segment, True, ()))
            inside = {"target": lambda i: i % 3 == 0, "small": lambda i: i % 40 == 0, "": lambda i: True}[segment]
            assert sorted(cards) == [f"d{i:05d}" for i in range(N) if inside(i)]
            for cid, card in cards.items():
                c = f.customer(cid)
                assert card[7][0] == orders_of(int(cid[1:])), cid
                assert card[2:] == audience.card_of(c)[2:], cid  # segments: only those asked for are filled


def test_the_order_facts_walk_answers_ascending_ids_like_the_tree() -> None:
    tree = OOBTree({f"k{i:03d}": f"v{i}" for i in range(0, 300, 3)})
    walk = audience._Walk(tree)
    asked = [f"k{i:03d}" for i in range(0, 320, 2)]  # ids with and without entries, and past the last
    assert [walk.get(k) for k in asked] == [tree.get(k) for k in asked]
    assert audience._Walk(OOBTree()).get("a") is None
