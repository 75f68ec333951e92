"""SMTP pipelining (RFC 2920) to a server that advertises it: MAIL, RCPT and DATA go in one write
and the message in one more — two round trips per message where there were four (the remote
adapter's SMTP stage is where a campaign's messages wait: docs/benchmarks.md). Each refusal is
sorted as on the one-command-per-round-trip path: a 5xx recipient fails the intent and marks the
address undeliverable, a 4xx is retried, a 421 or a dropped connection is retried on a new one,
and every message is delivered once, with its body intact."""

from __future__ import annotations

from typing import Any

import pytest

from shopkeeper.adapters.email import EmailAdapter
from shopkeeper.adapters.email.smtp import SmtpPool

from .conftest import FlakySink
from .test_email import email_config, item_status

pytestmark = pytest.mark.e2e


TEMPLATES = {"dots": {"subject": "dots", "text": "Hello\n.\n..two\n.end", "html": ""}}


def test_every_refusal_is_sorted_and_every_message_delivered_once_through_command_groups(
        shopkeeper_hub: Any, flaky: FlakySink, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    groups: list[str] = []
    pipelined = SmtpPool._pipelined

    def counting(self: SmtpPool, client: Any, mail: bytes, address: str, rcpt: str) -> None:
        groups.append(address)
        pipelined(self, client, mail, address, rcpt)

    monkeypatch.setattr(SmtpPool, "_pipelined", counting)
    h = shopkeeper_hub
    flaky.pipelining, flaky.temp_failures = True, 1
    addrs = ["drop@example.com", "busy@example.com", "reject@example.com", *(f"c{i}@example.com" for i in range(6))]
    for addr in addrs:
        h.send({"type": "identify", "identities": {"email": addr}})
        h.grant(("email", addr))
    cfg = email_config(flaky, tmp_path, connections=2, retry_delays=[0.05, 0.05, 0.05], templates=TEMPLATES)
    with h.run_adapter(EmailAdapter, cfg) as adapter:
        h.send(*[{"type": "message_request", "identities": {"email": a}, "idempotency_key": f"r-{i}",
                  "data": {"template": "dots"}} for i, a in enumerate(addrs)])
        good = [a for a in addrs if a != "reject@example.com"]
        h.wait_for(lambda: all(item_status(h, a) == ["sent"] for a in good), what="every message sent")
        h.wait_for(lambda: item_status(h, "reject@example.com") == ["failed"], what="the 550 failed")
        assert adapter.stats["retried"] == 3 and adapter.stats["failed"] == 1  # drop, 421, 451; the 550
    view = h.customer(("email", "reject@example.com"))
    assert view["soft_facts"]["undeliverable"]["value"] == ["email:reject@example.com"]
    assert sorted(m["To"] for m in flaky.messages) == sorted(good)  # each once
    assert flaky.faults == [] and flaky.temp_failures == 0
    assert len(groups) >= len(addrs) and flaky.grouped >= len(addrs), (groups, flaky.grouped)
    body = flaky.messages[0].get_body(("plain",)).get_content()
    assert body.splitlines()[:4] == ["Hello", ".", "..two", ".end"], body


def test_a_server_that_does_not_advertise_it_gets_one_command_per_round_trip(
        shopkeeper_hub: Any, flaky: FlakySink, tmp_path: Any) -> None:
    flaky.pipelining, flaky.faults = False, []
    h = shopkeeper_hub
    h.send({"type": "identify", "identities": {"email": "a@example.com"}})
    h.grant(("email", "a@example.com"))
    with h.run_adapter(EmailAdapter, email_config(flaky, tmp_path)):
        h.send({"type": "message_request", "identities": {"email": "a@example.com"}, "idempotency_key": "r",
                "data": {"template": "offer"}})
        h.wait_for(lambda: item_status(h, "a@example.com") == ["sent"], what="sent")
    assert flaky.grouped == 0 and len(flaky.messages) == 1
