"""The conformance kit is a test runner we ship: each of its channel checks must fail on an
adapter (or hub) that breaks the promise it checks. Each check is run here, directly, against
a deliberately broken adapter and must fail."""

from __future__ import annotations

from typing import Any

import pytest

from shopkeeper import outbox
from shopkeeper.adapters.base import Adapter, ChannelAdapter
from shopkeeper.outbox import transitions
from shopkeeper.testing import ChannelConformance

FAILED = (AssertionError, pytest.fail.Exception)


class NaiveChannel(Adapter):
    """Sends whatever it is handed, straight away: no claim, no consent check, never marks sent."""

    name = "naive"
    channels = ("naive",)
    far_end: list[str] = []

    def deliver(self, message: Any) -> Any:
        NaiveChannel.far_end.append(f"<{message.id}@naive>")
        return None


class UncheckedNaive(NaiveChannel):
    def check_hub(self) -> None:  # does not ask the hub whether it takes its event types
        pass


class Impatient(ChannelAdapter):
    """Drops a message deferred by quiet hours instead of delivering it later: it takes every
    intent the feed announces, deferred or not, and books one with a future ``not_before`` as
    suppressed. (The base adapter leaves a deferred
    intent for a later scan without claiming it, so an adapter that takes the claim's refusal for
    a suppression never sees one: the mistake has to be made before the claim.)"""

    name = "impatient"
    channels = ("naive",)

    def _follow_feed(self, kinds: tuple[str, ...]) -> None:
        for ch in self.hub.watch(after=self.cursor, kinds=kinds, stop=self._stop, heartbeat=1.0):
            if ch["kind"] == outbox.FEED_KIND and ch["channel"] in self.channels:
                self._deliver_safely(outbox.Message.from_change(ch))  # deferred or not

    async def _process(self, message: Any) -> None:
        item, view = await self._read(message)
        if item is not None and view is not None and int(item.get("not_before") or 0) > outbox.clock():
            await self._suppress(message, self.identity(message, view), "quiet hours")
            return
        await super()._process(message)

    def send(self, message: Any, customer: Any, address: str, message_id: str, prepared: Any = None) -> None:
        NaiveChannel.far_end.append(f"<{message.id}@naive>")

    def address(self, message: Any, customer: dict[str, Any]) -> str | None:
        return "someone"


class NaiveKit(ChannelConformance):
    adapter_class = NaiveChannel

    def delivered(self, harness: Any, adapter: Any) -> list[str]:
        return list(NaiveChannel.far_end)


@pytest.fixture(autouse=True)
def _clear() -> None:
    NaiveChannel.far_end.clear()


def test_ends_sent_fails_when_nothing_is_marked_sent(shopkeeper_hub: Any, tmp_path: Any) -> None:
    with pytest.raises(FAILED, match="sent"):
        NaiveKit().test_delivered_message_ends_sent(shopkeeper_hub, "in-process", tmp_path)


def test_restart_check_fails_when_a_restart_redelivers(shopkeeper_hub: Any, tmp_path: Any) -> None:
    with pytest.raises(FAILED):
        NaiveKit().test_restart_does_not_redeliver(shopkeeper_hub, "in-process", tmp_path)


def test_consent_check_fails_when_a_message_without_consent_is_sent(shopkeeper_hub: Any, tmp_path: Any) -> None:
    with pytest.raises(FAILED, match="without consent"):
        NaiveKit().test_without_consent_never_handed_to_send(shopkeeper_hub, "in-process", tmp_path)


def test_claim_check_fails_on_a_hub_that_lets_anyone_claim(shopkeeper_hub: Any, tmp_path: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def permissive(folders: Any, customer: Any, intent_id: str, channel: str) -> Any:
        cid = outbox.index(folders)[(channel, intent_id)]
        owner = folders.customer(cid)
        return owner, outbox.get(owner, intent_id)

    monkeypatch.setattr(transitions, "_find", permissive)
    with pytest.raises(FAILED, match="another customer"):
        NaiveKit().test_claim_for_another_customers_intent_is_refused(shopkeeper_hub, "remote", tmp_path)


def test_quiet_hours_check_fails_when_a_deferred_message_is_dropped(shopkeeper_hub: Any, tmp_path: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    kit = NaiveKit()
    kit.adapter_class = Impatient
    with pytest.raises(FAILED, match="deferred message was settled"):
        kit.test_quiet_hours_defer_delivery_until_they_end(shopkeeper_hub, "in-process", tmp_path, monkeypatch)


def test_event_type_check_fails_when_start_does_not_ask_the_hub(shopkeeper_hub: Any, tmp_path: Any) -> None:
    kit = NaiveKit()
    kit.adapter_class = UncheckedNaive
    with pytest.raises(FAILED):
        kit.test_remote_hub_lacking_event_types_is_reported_at_start(shopkeeper_hub, tmp_path)


def test_the_checks_pass_on_the_adapter_base(shopkeeper_hub: Any, tmp_path: Any) -> None:
    """The same kit on the real start-up check: a hub lacking message_dispatch is named at start."""
    NaiveKit().test_remote_hub_lacking_event_types_is_reported_at_start(shopkeeper_hub, tmp_path)
