"""The adapter conformance suite: :class:`AdapterConformance` and :class:`ChannelConformance`.

Subclass one in a ``Test…`` class of your own test module (import it from
:mod:`shopkeeper.testing`, the pytest plugin that provides the fixtures these checks use);
pytest then runs every check against your adapter in both modes. See ``docs/plugins.md``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # shopkeeper.testing imports this module
    from shopkeeper.testing import HubHarness


class AdapterConformance:
    """Checks every Shopkeeper adapter must pass. Subclass it in a ``Test…`` class.

    Set ``adapter_class``; override ``adapter_config(tmp_path)`` (a valid config mapping)
    and ``exercise(harness, adapter, tmp_path)`` (make the touch point do something real;
    return the ``(namespace, value)`` of customers the adapter must have recorded).
    """

    adapter_class: type | None = None
    #: seconds ``start()`` + ``stop()`` may take
    lifecycle_seconds: float = 10.0

    def adapter_config(self, tmp_path: Any) -> dict[str, Any]:
        return {}

    def exercise(self, harness: HubHarness, adapter: Any, tmp_path: Any) -> list[tuple[str, str]]:
        return []

    def _cls(self) -> type:
        if self.adapter_class is None:
            pytest.skip("set adapter_class on your AdapterConformance subclass")
        return self.adapter_class

    def test_registered_through_entry_point(self) -> None:
        """Installed adapters are found by name through the ``shopkeeper`` entry-point group."""
        from shopkeeper.adapters.base import adapter_classes
        from shopkeeper.plugins import get_plugin_manager

        cls = self._cls()
        found = adapter_classes(get_plugin_manager())
        assert cls.name in found, f"{cls.name!r} is not contributed by any installed plugin's shopkeeper_adapters"
        assert found[cls.name].__qualname__ == cls.__qualname__

    def test_declares_name_and_schema(self) -> None:
        cls = self._cls()
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,31}", cls.name), f"adapter name {cls.name!r} must be a short token"
        assert dataclasses.is_dataclass(cls.Config), "Config must be a dataclass (the validated schema)"
        for ch in cls.channels:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", ch), f"channel {ch!r} must be a lower-case token"

    def test_config_errors_name_the_field(self, tmp_path: Any) -> None:
        from shopkeeper.adapters.base import AdapterConfigError, validate_config

        cls = self._cls()
        good = self.adapter_config(tmp_path)
        validate_config(cls.name, cls.Config, good)
        with pytest.raises(AdapterConfigError) as err:
            validate_config(cls.name, cls.Config, {**good, "no_such_setting_xyz": 1})
        assert f"adapter.{cls.name}.no_such_setting_xyz:" in str(err.value)

    def test_start_and_stop(self, shopkeeper_hub: HubHarness, adapter_mode: str, tmp_path: Any) -> None:
        cls = self._cls()
        t0 = time.monotonic()
        with shopkeeper_hub.run_adapter(cls, self.adapter_config(tmp_path), adapter_mode):
            pass
        assert time.monotonic() - t0 < self.lifecycle_seconds

    def test_exercise_records_customers_exactly_once(self, shopkeeper_hub: HubHarness, adapter_mode: str,
                                                     tmp_path: Any) -> None:
        """The adapter's work reaches the hub, in both modes, and replaying it changes nothing."""
        cls = self._cls()
        cfg = self.adapter_config(tmp_path)
        with shopkeeper_hub.run_adapter(cls, cfg, adapter_mode) as adapter:
            refs = self.exercise(shopkeeper_hub, adapter, tmp_path)
        if not refs:
            pytest.skip("exercise() returned no customers to check")
        counts = {}
        for ref in refs:
            view = shopkeeper_hub.customer(ref)
            assert view is not None, f"no customer {ref} after exercise()"
            counts[ref] = view["hard_facts"]["interactions"]
        with shopkeeper_hub.run_adapter(cls, cfg, adapter_mode) as adapter:  # the same work again
            self.exercise(shopkeeper_hub, adapter, tmp_path)
        for ref in refs:
            again = shopkeeper_hub.customer(ref)["hard_facts"]["interactions"]  # type: ignore[index]
            assert again == counts[ref], f"{ref}: replaying the same work added interactions (idempotency keys?)"

    def test_delivers_only_its_channels(self, shopkeeper_hub: HubHarness, tmp_path: Any) -> None:
        from shopkeeper.outbox import Message

        cls = self._cls()
        with shopkeeper_hub.run_adapter(cls, self.adapter_config(tmp_path), "in-process") as adapter:
            assert adapter.shopkeeper_deliver(Message("x", "c", "no_such_channel", "t")) is None

    def test_broken_config_disables_only_this_adapter(self, shopkeeper_hub_factory: Callable[..., HubHarness],
                                                      tmp_path: Any) -> None:
        """A hub configured with a bad section for this adapter keeps running and names it."""
        cls = self._cls()
        harness = shopkeeper_hub_factory({"adapters": {cls.name: {"no_such_setting_xyz": 1}}})
        assert f"adapter:{cls.name}" in harness.hub.disabled
        assert "no_such_setting_xyz" in harness.hub.disabled[f"adapter:{cls.name}"]
        assert harness.send({"type": "page_view", "identities": {"email": "alive@example.com"},
                             "data": {"url": "/"}})[0]["status"] == "applied"


class ChannelConformance(AdapterConformance):
    """The delivery checks every channel adapter must pass, in both modes. Subclass it like
    :class:`AdapterConformance` and implement :meth:`delivered` (what the far end received).

    ``channel`` (default: the adapter's first) is where the intents go; :meth:`identities`
    gives each test customer identities the adapter can address.
    """

    channel: str = ""
    purpose: str = "marketing"
    template: str = "default"

    def delivered(self, harness: HubHarness, adapter: Any) -> list[str]:
        """The Message-IDs (or any delivery ids) the far end has received, repeats included."""
        raise NotImplementedError("ChannelConformance subclasses implement delivered()")

    def identities(self, who: str) -> dict[str, str]:
        return {"email": f"{who}@conformance.example.com"}

    # -- helpers ----------------------------------------------------------------------------

    def _channel(self) -> str:
        return self.channel or self._cls().channels[0]

    def _customer(self, h: HubHarness, who: str, consent: bool = True) -> dict[str, Any]:
        h.send({"type": "identify", "identities": self.identities(who), "idempotency_key": f"conf-id-{who}"})
        ref = next(iter(self.identities(who).items()))
        if consent:
            h.in_process().set_consent(ref, self._channel(), self.purpose, True, "conformance")
        return h.customer(ref)  # type: ignore[return-value]

    def _enqueue(self, h: HubHarness, who: str, intent: str) -> None:
        res = h.send({"type": "message_request", "channel": self._channel(), "identities": self.identities(who),
                      "idempotency_key": f"conf-rq-{intent}",
                      "data": {"template": self.template, "intent": intent, "purpose": self.purpose}})
        assert res[0]["status"] == "applied", res

    @staticmethod
    def _status(h: HubHarness, customer_id: str, intent: str) -> str | None:
        from shopkeeper import outbox

        with h.hub.store.read() as f:
            item = outbox.get(f.customer(customer_id), intent)
            return item.status if item is not None else None

    @staticmethod
    def _watch_sends(adapter: Any, times: list[int] | None = None) -> list[Any]:
        """Record every message the adapter is handed to send (``asend`` of a ChannelAdapter,
        else ``deliver``), and in ``times`` the hub's outbox clock at each call."""
        from shopkeeper import outbox
        from shopkeeper.adapters.delivery import ChannelAdapter

        calls: list[Any] = []
        name = "asend" if isinstance(adapter, ChannelAdapter) else "deliver"
        inner = getattr(adapter, name)
        if name == "asend":
            async def spy(message: Any, *a: Any, **kw: Any) -> Any:
                calls.append(message)
                if times is not None:
                    times.append(outbox.clock())
                return await inner(message, *a, **kw)
        else:
            def spy(message: Any, *a: Any, **kw: Any) -> Any:  # type: ignore[misc]
                calls.append(message)
                if times is not None:
                    times.append(outbox.clock())
                return inner(message, *a, **kw)
        setattr(adapter, name, spy)
        return calls

    # -- the checks -------------------------------------------------------------------------

    def test_delivered_message_ends_sent(self, shopkeeper_hub: HubHarness, adapter_mode: str, tmp_path: Any) -> None:
        """A message for a customer with consent reaches the far end once and ends ``sent``."""
        h = shopkeeper_hub
        c = self._customer(h, "ann")
        with h.run_adapter(self._cls(), self.adapter_config(tmp_path), adapter_mode) as adapter:
            self._enqueue(h, "ann", "conf-ann-1")
            h.wait_for(lambda: self._status(h, c["id"], "conf-ann-1") == "sent", what="the intent to end sent")
            got = [m for m in self.delivered(h, adapter) if "conf-ann-1" in m]
        assert len(got) == 1, f"the far end received {len(got)} messages for one intent: {got}"

    def test_restart_does_not_redeliver(self, shopkeeper_hub: HubHarness, adapter_mode: str, tmp_path: Any) -> None:
        """Stopping and starting the adapter again delivers nothing already delivered."""
        h = shopkeeper_hub
        c = self._customer(h, "bob")
        cfg = self.adapter_config(tmp_path)
        with h.run_adapter(self._cls(), cfg, adapter_mode):
            self._enqueue(h, "bob", "conf-bob-1")
            h.wait_for(lambda: self._status(h, c["id"], "conf-bob-1") == "sent", what="the first intent sent")
        with h.run_adapter(self._cls(), cfg, adapter_mode) as adapter:
            self._enqueue(h, "bob", "conf-bob-2")  # sent after the restart's scan of pending intents
            h.wait_for(lambda: self._status(h, c["id"], "conf-bob-2") == "sent", what="the second intent sent")
            got = self.delivered(h, adapter)
        first = [m for m in got if "conf-bob-1" in m]
        assert len(first) == 1, f"the restart delivered intent conf-bob-1 again: {first}"

    def test_without_consent_never_handed_to_send(self, shopkeeper_hub: HubHarness, adapter_mode: str,
                                                  tmp_path: Any) -> None:
        """A message for a customer without consent ends ``suppressed`` and never reaches ``send``."""
        h = shopkeeper_hub
        c = self._customer(h, "cat", consent=False)
        with h.run_adapter(self._cls(), self.adapter_config(tmp_path), adapter_mode) as adapter:
            calls = self._watch_sends(adapter)
            self._enqueue(h, "cat", "conf-cat-1")
            h.wait_for(lambda: self._status(h, c["id"], "conf-cat-1") not in ("pending", "sending", None)
                       or calls, what="the intent without consent to be settled")
            got = [m for m in self.delivered(h, adapter) if "conf-cat-1" in m]
        assert not calls, f"a message without consent was handed to send: {calls}"
        assert not got, f"the far end received a message without consent: {got}"
        assert self._status(h, c["id"], "conf-cat-1") == "suppressed"

    def test_quiet_hours_defer_delivery_until_they_end(self, shopkeeper_hub: HubHarness, adapter_mode: str,
                                                       tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """A marketing message queued in the customer's quiet hours is neither handed to send nor
        suppressed before they end, and is delivered once after (the hub's outbox clock is moved)."""
        from datetime import UTC, datetime

        from shopkeeper import contact, outbox

        h, cls = shopkeeper_hub, self._cls()
        dan = self._customer(h, "dan")
        eve = self._customer(h, "eve")
        h.in_process().set_consent(next(iter(self.identities("eve").items())), self._channel(), "service", True, "kit")
        now = [outbox.clock()]
        monkeypatch.setattr(outbox, "clock", lambda: now[0])
        monkeypatch.setattr(cls, "sweep_seconds", 0.2, raising=False)
        saved = dict(contact._overrides)
        with h.hub.store.read() as f:
            tz, _src = contact.customer_timezone(f.customer(dan["id"]))
        local = datetime.fromtimestamp(now[0] / 1e6, tz=UTC).astimezone(tz).hour  # quiet from now, 3 hours
        outbound = sorted(contact.current().outbound_channels | {self._channel()})  # quiet hours hold outbound only
        contact.configure(overrides={**saved, "quiet_hours": [local, (local + 3) % 24], "outbound_channels": outbound})
        try:
            with h.run_adapter(cls, self.adapter_config(tmp_path), adapter_mode) as adapter:
                sent_at: list[int] = []
                calls = self._watch_sends(adapter, sent_at)
                self._enqueue(h, "dan", "conf-dan-1")
                with h.hub.store.read() as f:
                    due = outbox.get(f.customer(dan["id"]), "conf-dan-1").not_before
                assert due > now[0], "a message queued in quiet hours got no not_before"
                # a later, undeferred message: once it is sent the adapter has seen the deferred one
                h.send({"type": "message_request", "channel": self._channel(), "identities": self.identities("eve"),
                        "idempotency_key": "conf-rq-eve-1",
                        "data": {"template": self.template, "intent": "conf-eve-1", "purpose": "service"}})
                h.wait_for(lambda: self._status(h, eve["id"], "conf-eve-1") == "sent", what="the service message")
                assert self._status(h, dan["id"], "conf-dan-1") == "pending", "a deferred message was settled"
                now[0] = due  # the quiet hours are over
                h.wait_for(lambda: self._status(h, dan["id"], "conf-dan-1") in outbox.FINAL,
                           what="the deferred message to be delivered after the quiet hours")
                got = [m for m in self.delivered(h, adapter) if "conf-dan-1" in m]
        finally:
            contact.configure(overrides=saved)
        assert self._status(h, dan["id"], "conf-dan-1") == "sent"
        assert len(got) == 1, f"the far end received {len(got)} messages for one deferred intent: {got}"
        dan_sends = [t for t, m in zip(sent_at, calls, strict=True) if m.id == "conf-dan-1"]
        assert dan_sends and min(dan_sends) >= due, "a deferred message was handed to send in quiet hours"

    def test_claim_for_another_customers_intent_is_refused(self, shopkeeper_hub: HubHarness, adapter_mode: str,
                                                           tmp_path: Any) -> None:
        """Through the adapter's hub API, a claim whose identities resolve to customer M naming
        an intent of customer B is refused and changes nothing."""
        h = shopkeeper_hub
        self._customer(h, "mal")
        b = self._customer(h, "bea")
        self._enqueue(h, "bea", "conf-bea-1")
        api = h.api(adapter_mode, touchpoint=self._cls().name)
        res = api.record([{"type": "message_dispatch", "channel": self._channel(), "identities": self.identities("mal"),
                           "idempotency_key": "conf-steal-1",
                           "data": {"intent": "conf-bea-1", "message_id": "<steal@conformance>"}}])
        assert res[0]["status"] == "rejected", f"a claim for another customer's intent was accepted: {res[0]}"
        assert self._status(h, b["id"], "conf-bea-1") == "pending"

    def test_remote_hub_lacking_event_types_is_reported_at_start(self, shopkeeper_hub: HubHarness,
                                                                 tmp_path: Any) -> None:
        """Started against a hub that lacks an event type the adapter records, ``start()`` fails
        at once, naming the type (rather than every event being rejected later)."""
        cls = self._cls()
        adapter = cls.from_config(self.adapter_config(tmp_path), shopkeeper_hub.remote(cls.name))
        wanted = adapter.required_event_types()
        assert wanted, "the adapter declares no event_types it records"
        owner = getattr(shopkeeper_hub.hub, "engine", shopkeeper_hub.hub)  # who holds the vocabulary
        owner.event_types = owner.event_types.without(set(wanted))
        try:
            with pytest.raises(Exception) as err:
                adapter.start()
        finally:
            adapter.stop()
        assert wanted[0] in str(err.value), f"start() did not name the missing event type: {err.value!r}"


__all__ = ["AdapterConformance", "ChannelConformance"]
