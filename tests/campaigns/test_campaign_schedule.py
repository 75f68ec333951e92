"""Scheduled campaigns in a running hub: a campaign due at a time past starts one run by itself,
and an on-segment-entry campaign sends to each customer once, when they enter the segment —
everything committed by the hub's writer (the CommitGuard fixture fails the test otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeeper import outbox
from shopkeeper.campaigns import runs

pytestmark = pytest.mark.e2e

FILES = """\
campaigns:
  - name: welcome_buyers
    audience:
      segment: buyers
    schedule: {on_segment_entry: true}
    messages:
      - {channel: email, template: welcome}
  - name: past_sale
    audience:
      conditions:
        - consent.email: true
    schedule: {at: 2026-01-01T09:00:00Z}
    messages:
      - {channel: email, template: summer_sale}
"""


def intents(h: Any, campaign: str) -> dict[str, list[Any]]:
    with h.hub.store.read() as f:
        out: dict[str, list[Any]] = {}
        for cid, c in f.customers.items():
            got = [it for it in outbox.items(c) if it.payload.get("campaign") == campaign]
            if got:
                out[cid] = got
        return out


def run_ids(h: Any) -> dict[str, Any]:
    with h.hub.store.read() as f:
        return {r.id: r.as_dict() for r in runs.list_runs(f)}


def test_at_a_time_and_on_segment_entry(shopkeeper_hub_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "buyers.yaml").write_text("segments:\n  - name: buyers\n    when: hard.orders >= 1\n")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "c.yaml").write_text(FILES)
    h = shopkeeper_hub_factory({"rules_dir": str(tmp_path)})
    h.wait_for(lambda: "welcome_buyers-entry" in run_ids(h), what="the standing run of the entry campaign")
    h.wait_for(lambda: run_ids(h).get("past_sale-at-1767258000", {}).get("status") == runs.DONE,
               what="the campaign due in the past to run once")
    assert [r for r in run_ids(h) if r.startswith("past_sale")] == ["past_sale-at-1767258000"]

    emails = [f"e{i}@example.com" for i in range(5)]
    h.send(*({"type": "identify", "identities": {"email": e}} for e in emails))
    for e in emails[:4]:
        h.grant(("email", e))
    for i, e in enumerate(emails):
        h.event("order", e, order_id=f"o{i}", amount=10.0)
    got = h.wait_for(lambda: len(intents(h, "welcome_buyers")) == 4 and intents(h, "welcome_buyers"),
                     what="an intent for each consenting customer who entered the segment")
    assert all(len(v) == 1 and v[0].template == "welcome" for v in got.values())
    h.wait_for(lambda: run_ids(h)["welcome_buyers-entry"]["counts"].get("no_consent") == 1,
               what="the customer without consent recorded")
    for i, e in enumerate(emails):  # a second order: already in the segment, no second message
        h.event("order", e, order_id=f"again{i}", amount=10.0)
    h.event("identify", "late@example.com")
    h.grant(("email", "late@example.com"))
    h.event("order", "late@example.com", order_id="late", amount=10.0)
    h.wait_for(lambda: len(intents(h, "welcome_buyers")) == 5, what="the late customer's intent")
    assert all(len(v) == 1 for v in intents(h, "welcome_buyers").values())
