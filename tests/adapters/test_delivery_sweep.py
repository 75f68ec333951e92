"""The delivery helper's sweep of pending intents: skipped while busy, never when something was set aside.

A scan lists every intent not yet final — those in flight too — and the hub loads each one's
customer to list it: rescanning every ``sweep_seconds`` while thousands are in flight was most
of the hub's CPU per message for a remote adapter. These tests drive :class:`ChannelAdapter`'s
scheduling against a small in-memory :class:`HubAPI` (no server: the scheduling is the adapter's
own logic; the end-to-end behaviour — quiet hours brought back by the sweep, crash recovery —
is covered by the conformance kit and the crash tests against real hubs and servers).
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from shopkeeper.adapters.delivery import ChannelAdapter
from shopkeeper.outbox import Message
from shopkeeper.testing import wait_for


class MemoryHub:
    """Just enough of :class:`~shopkeeper.adapters.hubapi.HubAPI`: every claim and report applied,
    a scriptable change feed, and a count of pending scans."""

    mode = "in-process"

    def __init__(self, pending: list[Message]) -> None:
        self.pending = list(pending)
        self.scans = 0
        self.feed: queue.Queue = queue.Queue()
        self.events: list[dict[str, Any]] = []

    def missing_event_types(self, types: tuple[str, ...]) -> dict[str, str]:
        return {}

    def pending_outbox(self, channels: tuple[str, ...]) -> list[Message]:
        self.scans += 1
        return list(self.pending)

    def watch(self, *, after: int = 0, stop: threading.Event | None = None, **kw: Any) -> Any:
        while stop is None or not stop.is_set():
            try:
                yield self.feed.get(timeout=0.05)
            except queue.Empty:
                yield {"kind": "heartbeat", "cursor": after}

    def customer(self, ref: str, recent: int = 10) -> dict[str, Any]:
        return {"id": ref, "identities": [{"namespace": "desk", "value": f"{ref}@desk"}], "soft_facts": {}}

    def record_async(self, events: list[dict[str, Any]]) -> Future:
        self.events.extend(events)
        f: Future = Future()
        f.set_result([{"index": i, "status": "applied", "customer_id": "c1", "error": None, "field": None}
                      for i in range(len(events))])
        return f

    def close(self) -> None:
        pass


class DeskAdapter(ChannelAdapter):
    name = "desk"
    channels = ("desk",)
    sweep_seconds = 0.05

    def __init__(self, config: Any, hub: Any) -> None:
        super().__init__(config, hub)
        self.release = threading.Event()
        self.sending: list[str] = []

    def send(self, message: Message, customer: dict[str, Any], address: str, message_id: str,
             prepared: Any = None) -> None:
        self.sending.append(message.id)
        if message.id == "busy":
            self.release.wait(20)


def test_a_busy_adapter_skips_the_sweep_until_an_intent_is_set_aside_and_scans_when_idle() -> None:
    hub = MemoryHub([Message("busy", "c1", "desk", "t")])
    adapter = DeskAdapter(SimpleNamespace(journal=None, retry_delays=[], max_in_flight=8), hub)
    adapter.start()
    try:
        wait_for(lambda: "busy" in adapter.sending, what="the first intent in flight")
        wait_for(lambda: adapter.sweeps["skipped"] >= 3, what="sweeps skipped while busy")
        assert hub.scans == 1  # the scan at start only: nothing was set aside

        # a deferred intent (quiet hours) reaches the adapter through the feed: set aside, so the
        # next sweep scans although "busy" is still in flight, and delivers it once it is due
        later = {"id": "later", "channel": "desk", "template": "t", "not_before": 1}
        hub.feed.put({"kind": "outbox", "customer_id": "c1", "channel": "desk", "cursor": 2,
                      "detail": json.dumps(later)})
        hub.pending.append(Message("later", "c1", "desk", "t"))
        wait_for(lambda: "later" in adapter.sending, what="the deferred intent found by the next scan")
        assert hub.scans == 2
        assert "busy" in adapter._inflight

        adapter.release.set()  # idle again: the sweep scans every interval
        wait_for(lambda: not adapter._inflight, what="deliveries finished")
        scans = hub.scans
        wait_for(lambda: hub.scans >= scans + 2, what="sweeps scanning while idle")
    finally:
        adapter.release.set()
        adapter.stop()


def test_a_busy_adapter_still_scans_every_busy_sweep_every_intervals() -> None:
    hub = MemoryHub([Message("busy", "c1", "desk", "t")])
    adapter = DeskAdapter(SimpleNamespace(journal=None, retry_delays=[], max_in_flight=8), hub)
    adapter.busy_sweep_every = 4
    adapter.start()
    try:
        wait_for(lambda: hub.scans >= 3, what="safety scans while busy")
        assert adapter._inflight == {"busy"}
        assert adapter.sweeps["skipped"] >= 3
    finally:
        adapter.release.set()
        adapter.stop()


class BareHub(MemoryHub):
    """A hub that lists bare refs (``pending_refs``) and reads intents in batches (``outbox_batch``),
    as both real hub APIs do; ``deferred`` intents read back with a ``not_before`` far ahead."""

    def __init__(self, pending: list[Message], deferred: tuple[str, ...] = ()) -> None:
        super().__init__(pending)
        self.bare = 0
        self.deferred = deferred

    def pending_refs(self, channels: tuple[str, ...]) -> list[Message]:
        self.bare += 1
        return [Message(m.id, m.customer_id, m.channel, "", status="") for m in self.pending]

    def outbox_batch(self, refs: list[tuple[str, str]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [({"id": iid, "channel": "desk", "template": "t", "status": "pending", "payload": {"n": iid},
                  "not_before": 4_000_000_000_000_000 if iid in self.deferred else 0}, self.customer(cid))
                for cid, iid in refs]


def test_a_scan_lists_bare_refs_filled_in_by_the_read_and_a_deferred_one_is_not_claimed() -> None:
    """Issue 16: the scan of pending intents loaded every customer, then the read loaded them
    again. An adapter that reads in batches scans bare refs; the read fills each intent in, and a
    deferred one (bare refs list those too) is left for a later scan without a claim."""
    hub = BareHub([Message("now", "c1", "desk", "t"), Message("night", "c1", "desk", "t")], deferred=("night",))
    adapter = DeskAdapter(SimpleNamespace(journal=None, retry_delays=[], max_in_flight=8), hub)
    adapter.start()
    try:
        wait_for(lambda: adapter.stats["sent"] == 1 and adapter.stats["deferred"] >= 1, what="one sent, one deferred")
        assert hub.bare >= 1 and hub.scans == 0  # bare refs only: no full pending list
        assert adapter.sending == ["now"]
        claims = [e for e in hub.events if e.type == "message_dispatch"]  # in-process: Events
        assert [e.data["intent"] for e in claims] == ["now"]
    finally:
        adapter.stop()


def test_a_bare_scan_cut_at_the_limit_falls_back_to_the_full_list() -> None:
    """Bare refs list deferred intents too: a backlog of them at the scan limit could hide due
    intents behind the cut, so a cut bare scan asks for the full list, which leaves them out."""
    from shopkeeper.adapters.batching import ReadBatcher

    hub = BareHub([Message(f"i{i}", "c1", "desk", "t") for i in range(3)])
    adapter = DeskAdapter(SimpleNamespace(journal=None, retry_delays=[], max_in_flight=8), hub)
    adapter.reader = ReadBatcher(hub.outbox_batch)
    adapter.scan_limit = 4
    assert [m.status for m in adapter.pending_scan()] == ["", "", ""] and hub.scans == 0
    adapter.scan_limit = 3
    assert [m.status for m in adapter.pending_scan()] == ["pending"] * 3 and (hub.bare, hub.scans) == (2, 1)
