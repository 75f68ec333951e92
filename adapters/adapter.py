"""The :class:`Adapter` base class every touch-point adapter (built-in or third-party) subclasses."""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

from shopkeeper import hookimpl
from shopkeeper.outbox import FEED_KIND, FINAL, Message, Receipt

from .config import NoConfig, validate_config
from .hubapi import HubAPI


class AdapterStartError(RuntimeError):
    """The adapter cannot run against this hub (e.g. the hub lacks event types it records)."""


class Adapter:
    """Base class of every touch-point adapter. Subclass, set ``name``/``Config``/``channels``.

    Override :meth:`start` and :meth:`stop` (call ``super()``), and :meth:`deliver` if you
    own a channel (or subclass :class:`~shopkeeper.adapters.delivery.ChannelAdapter`, which
    does the claim -> send -> mark cycle for you). Use ``self.hub`` (a :class:`HubAPI`) for
    everything; never import the hub's internals, so the adapter also runs as its own
    process. Methods decorated with ``@shopkeeper.hookimpl`` are hook implementations while
    the adapter runs in the hub.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    #: channels this adapter delivers outbox messages on (empty = it delivers nothing)
    channels: ClassVar[tuple[str, ...]] = ()
    #: the change-feed kinds :meth:`on_change` wants (empty = none; a thread follows the feed)
    watch_kinds: ClassVar[tuple[str, ...]] = ()
    #: event types this adapter records; :meth:`start` refuses a hub that would not take them
    event_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, hub: HubAPI) -> None:
        self.config = config
        self.hub = hub
        self.log = logging.getLogger(f"shopkeeper.adapters.{self.name}")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.cursor = 0  # last change-feed cursor handled
        #: an intent was set aside (deferred by quiet hours, refused for now, its delivery died):
        #: the next sweep of pending intents must scan even while others are in flight
        self.rescan_due = False

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None, hub: HubAPI) -> Adapter:
        return cls(validate_config(cls.name, cls.Config, raw), hub)

    # -- lifecycle --------------------------------------------------------------------

    def required_event_types(self) -> tuple[str, ...]:
        """What :meth:`check_hub` asks the hub about: ``event_types`` plus the outbox
        bookkeeping a channel adapter records."""
        extra = ("message_dispatch", "message_failed") if self.channels else ()
        return tuple(dict.fromkeys((*self.event_types, *extra)))

    def check_hub(self) -> None:
        """Refuse to start against a hub that lacks (or would not let this API key send) an
        event type this adapter records: better one clear error at start than every event
        rejected later. Raises :class:`AdapterStartError` naming each type and why."""
        check = getattr(self.hub, "missing_event_types", None)
        missing = check(self.required_event_types()) if check is not None else {}
        if missing:
            where = getattr(self.hub, "address", "") or self.hub.mode
            raise AdapterStartError(
                f"adapter {self.name}: the hub at {where} does not take event types this adapter records: "
                + "; ".join(f"{t}: {why}" for t, why in sorted(missing.items()))
                + " (install the plugin that registers them in the hub, or allow them for this API key)")

    def start(self) -> None:
        """Start serving (non-blocking: start threads or servers here). Raise to refuse."""
        self.check_hub()
        kinds = set(self.watch_kinds) | ({FEED_KIND} if self.channels else set())
        if kinds:
            self._spawn(self._follow_feed, tuple(sorted(kinds)), name=f"{self.name}-feed")

    def stop(self) -> None:
        """Stop serving and flush; must return within a few seconds."""
        self._stop.set()
        for t in self._threads:
            t.join(5)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _spawn(self, target: Any, *args: Any, name: str) -> threading.Thread:
        t = threading.Thread(target=self._guard, args=(target, *args), name=f"shopkeeper-{name}", daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def _guard(self, target: Any, *args: Any) -> None:
        while not self._stop.is_set():
            try:
                target(*args)
                if self._stop.is_set() or getattr(self.hub, "closed", False) or not getattr(target, "restart", False):
                    return
            except Exception as exc:
                self.log.warning("%s: %s failed (%s); restarting it in 1 s", self.name, target.__name__, exc)
            self._stop.wait(1.0)

    # -- outbox and change feed ---------------------------------------------------------

    def _follow_feed(self, kinds: tuple[str, ...]) -> None:
        """Pending intents first (again after every reconnect: a hub restart may have left
        some), then the live feed from the last cursor handled."""
        if self.channels:
            found = self.pending_scan()
            if len(found) >= getattr(self, "scan_limit", 10_000):
                self.rescan_due = True  # cut at the hub's limit: the sweep lists the rest
            for msg in found:
                if self._stop.is_set():
                    return
                self._deliver_safely(msg)
        for ch in self.hub.watch(after=self.cursor, kinds=kinds, stop=self._stop, heartbeat=1.0):
            if ch["kind"] == "heartbeat":
                continue
            if ch["kind"] == FEED_KIND:
                msg = Message.from_change(ch) if ch["channel"] in self.channels else None
                # deferred (quiet hours): the hub's pending list hands it over when due
                if msg is not None and not msg.not_before and msg.status not in FINAL:
                    self._deliver_safely(msg)
                elif msg is not None and msg.not_before:
                    self.rescan_due = True
            else:
                self.on_change(ch)
            self.cursor = ch["cursor"]

    _follow_feed.restart = True  # type: ignore[attr-defined]  # the hub stopped the stream: follow it again

    def pending_scan(self) -> list[Message]:
        """The intents not yet final on ``channels`` to hand to :meth:`deliver` (at start, after a
        reconnect, on a sweep): the hub's pending list."""
        return self.hub.pending_outbox(self.channels)

    def _deliver_safely(self, msg: Message) -> None:
        try:
            self.deliver(msg)
        except Exception:
            self.rescan_due = True
            self.log.exception("%s: delivering intent %s failed", self.name, msg.id)

    def deliver(self, message: Message) -> Receipt | None:
        """Deliver one committed outbox intent on one of ``channels`` (see ``shopkeeper_deliver``)."""
        return None

    def on_change(self, change: dict[str, Any]) -> None:
        """Called for each committed change of a kind in ``watch_kinds``, in or out of the hub."""

    @hookimpl
    def shopkeeper_deliver(self, message: Message) -> Receipt | None:
        if message.channel not in self.channels:
            return None
        return self.deliver(message)


__all__ = ["Adapter", "AdapterStartError"]
