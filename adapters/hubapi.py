"""The hub as an adapter sees it: one protocol, :class:`HubAPI`, and its in-process implementation.

An adapter talks to the hub only through a :class:`HubAPI`, so the same class runs inside
the hub (:class:`InProcessHub`) or as its own process (:class:`~shopkeeper.adapters.remote.RemoteHub`,
which is :class:`shopkeeper.client.Client` plus what adapters need). Both call the same engine
functions the gRPC servicers call — resolving a customer (``engine.operations.resolve_ref``),
consent (``operations.set_consent``), the change feed (``engine.feed.follow``), the outbox
(``outbox.pending``; claims and delivery reports are ordinary events) — and every read goes through the hub's
bounded reads (``Hub.read``), so an in-process adapter cannot starve the gRPC callers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable

from shopkeeper.outbox import Message

CustomerRef = str | tuple[str, str]  # a customer id, or (namespace, value) such as ("email", "ann@example.com")


class HubError(Exception):
    """The hub refused a request (not found, invalid, permission); the message says why."""


class HubUnavailable(HubError):
    """The hub cannot take the request now (it is stopping): nothing was applied; resend it, with
    the same idempotency keys, after ``retry_after`` seconds (an HTTP adapter answers 503 with
    ``Retry-After``)."""

    retry_after = 1


def _unavailable(exc: BaseException) -> BaseException:
    """The writer's refusal of a stopping hub as :class:`HubUnavailable` (what adapters catch);
    anything else as it is."""
    from shopkeeper.engine.refusals import WriterStopped

    return HubUnavailable(str(exc)) if isinstance(exc, WriterStopped) else exc


@runtime_checkable
class HubAPI(Protocol):
    """Everything an adapter may ask of the hub. Thread-safe; every method blocks until done.

    Customers are referred to by id or by ``(namespace, value)``. Writes return only after
    they are committed. From asyncio code, call through ``asyncio.to_thread`` or use
    :class:`~shopkeeper.adapters.batching.EventBatcher` for events.
    """

    #: "in-process" or "remote"
    mode: str

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record raw events (``type``, ``identities``, ``idempotency_key``, ``data``…); one result each:
        ``{"index", "status": applied|duplicate|rejected, "customer_id", "error", "field"}``."""

    def record_async(self, events: list[dict[str, Any]]) -> Future:
        """Like :meth:`record` but returns a future at once (for batching callers)."""

    def customer(self, ref: CustomerRef, recent: int = 10) -> dict[str, Any] | None:
        """The 360° view (``shopkeeper.view.customer_view`` shape), or ``None`` if unknown."""

    def decide(self, ref: CustomerRef, placement: str, context: dict[str, Any] | None = None,
               touchpoint: str = "", limit: int = 10) -> list[dict[str, Any]]:
        """Ranked actions (``kind``, ``id``, ``score``, ``reason``, ``payload``, ``plugin``)."""

    def set_consent(self, ref: CustomerRef, channel: str, purpose: str, granted: bool, source: str = "") -> None:
        """Grant or revoke consent for (channel, purpose)."""

    def watch(self, *, after: int = 0, from_oldest: bool = False, kinds: tuple[str, ...] = (),
              event_types: tuple[str, ...] = (), stop: threading.Event | None = None,
              heartbeat: float = 1.0) -> Iterator[dict[str, Any]]:
        """Committed changes (``cursor``, ``kind``, ``customer_id``, ``event_type``, ``channel``,
        ``detail``…), then live; a ``{"kind": "heartbeat", "cursor": …}`` after ``heartbeat``
        quiet seconds. Ends when ``stop`` is set or the hub stops."""

    def pending_outbox(self, channels: tuple[str, ...]) -> list[Message]:
        """Intents on these channels that are not final (pending, or ``sending`` with the
        Message-ID of their claim after a crash) and due: one deferred by quiet hours is listed
        from its ``not_before`` on."""

    def missing_event_types(self, types: tuple[str, ...]) -> dict[str, str]:
        """The event types among ``types`` this hub would refuse from this adapter, with why
        (unknown to the hub, or not allowed for the API key); empty when all are fine."""

    def close(self) -> None:
        """Release connections."""


def split_ref(ref: CustomerRef) -> tuple[str | None, tuple[str, str] | None]:
    """(customer id, None) or (None, (namespace, value)) for a :data:`CustomerRef`."""
    if isinstance(ref, tuple):
        return None, (str(ref[0]), str(ref[1]))
    return str(ref), None


def may_contact(view: dict[str, Any], channel: str, purpose: str = "marketing") -> bool:
    """``Customer.may_contact`` on a 360° view: True only on an explicit, current grant.

    Advisory only (to skip work early): the authoritative check is the hub's, at claim time."""
    return any(c["channel"] == channel and c["purpose"] == purpose and c["granted"] for c in view.get("consents", ()))


class InProcessHub:
    """:class:`HubAPI` inside the hub process: the engine functions the servicers call, directly.

    No serialisation and group commit shared with every caller, but the same reads (through
    ``hub.read()``, bounded like a gRPC read), the same writer, the same checks.
    """

    mode = "in-process"

    def __init__(self, hub: Any, touchpoint: str = "") -> None:
        self.hub = hub
        self.touchpoint = touchpoint

    def _writer(self) -> Any:
        """The hub's one writer (its engine's), waiting a moment if the adapter runs before it starts."""
        deadline = time.monotonic() + 30
        while True:
            engine = getattr(self.hub, "engine", None)
            writer = engine.writer if engine is not None else getattr(self.hub, "writer", None)
            if writer is not None:
                return writer
            if time.monotonic() > deadline:
                raise HubError("the hub's writer did not start")
            time.sleep(0.01)

    def _read(self) -> Any:
        return self.hub.read()

    @property
    def closed(self) -> bool:
        """The hub is stopping: its change feed has ended for good."""
        broker = getattr(self.hub, "broker", None)
        return bool(broker is not None and broker.closed)

    # -- events -------------------------------------------------------------------------

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.record_async(events).result()

    def record_async(self, events: list[Any]) -> Future:
        """Each event a raw dict, validated here with the hub's vocabulary, or an ``Event`` an
        adapter in this process already validated with it (taken as it is: no second check)."""
        from shopkeeper.events import Event, EventError, validate_event

        out: list[dict[str, Any] | None] = [None] * len(events)
        good, where = [], []
        for i, raw in enumerate(events):
            if isinstance(raw, Event):
                if self.touchpoint and not raw.touchpoint:
                    raw.touchpoint = self.touchpoint
                good.append(raw)
                where.append(i)
                continue
            if self.touchpoint and not raw.get("touchpoint"):
                raw = {**raw, "touchpoint": self.touchpoint}
            try:
                good.append(validate_event(raw, self.hub.event_types, index=i))
                where.append(i)
            except EventError as exc:
                out[i] = {"index": i, "status": "rejected", "customer_id": None, "error": str(exc),
                          "field": exc.field}
        result: Future = Future()
        if not good:
            result.set_result(out)
            return result
        inner = self._writer().submit_events(good)

        def done(f: Future) -> None:
            try:
                for i, r in zip(where, f.result(), strict=True):
                    out[i] = {"index": i, "status": r.status, "customer_id": r.customer_id, "error": r.error,
                              "field": r.error_field}
                result.set_result(out)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result.set_exception(_unavailable(exc))

        inner.add_done_callback(done)
        return result

    def missing_event_types(self, types: tuple[str, ...]) -> dict[str, str]:
        known = set(self.hub.event_types.names())
        return {t: f"unknown event type {t!r} (no plugin of this hub registers it)" for t in types if t not in known}

    # -- customers ----------------------------------------------------------------------

    def _resolve(self, folders: Any, ref: CustomerRef) -> Any:
        from shopkeeper.engine import operations as domain

        cid, ident = split_ref(ref)
        try:
            return domain.resolve_ref(folders, cid, ident, self.hub.identity_config)
        except domain.NotFound:
            return None
        except domain.BadArgument as exc:
            raise HubError(str(exc)) from exc

    def customer(self, ref: CustomerRef, recent: int = 10) -> dict[str, Any] | None:
        from shopkeeper.view import customer_view

        with self._read() as f:
            c = self._resolve(f, ref)
            return customer_view(c, recent=recent) if c is not None else None

    def decide(self, ref: CustomerRef, placement: str, context: dict[str, Any] | None = None,
               touchpoint: str = "", limit: int = 10) -> list[dict[str, Any]]:
        with self._read() as f:
            c = self._resolve(f, ref)
            if c is None:
                raise HubError(f"no customer {ref!r}")
            return self.hub.decide(c, touchpoint or self.touchpoint, placement, dict(context or {}), limit=limit)

    def set_consent(self, ref: CustomerRef, channel: str, purpose: str, granted: bool, source: str = "") -> None:
        from shopkeeper.engine import operations as domain

        def op(folders: Any, changes: Any) -> Any:
            c = self._resolve(folders, ref)
            if c is None:
                raise HubError(f"no customer {ref!r}")
            return domain.set_consent(folders, changes, c, channel, purpose or "marketing", granted,
                                      source or self.touchpoint)

        from shopkeeper.engine.refusals import WriterStopped

        try:
            self._writer().submit_op(op).result()
        except domain.BadArgument as exc:
            raise HubError(str(exc)) from exc
        except WriterStopped as exc:
            raise _unavailable(exc) from exc

    # -- the change feed ----------------------------------------------------------------

    def watch(self, *, after: int = 0, from_oldest: bool = False, kinds: tuple[str, ...] = (),
              event_types: tuple[str, ...] = (), stop: threading.Event | None = None,
              heartbeat: float = 1.0) -> Iterator[dict[str, Any]]:
        from shopkeeper.engine import feed

        broker = self.hub.broker
        kinds_, types_ = set(kinds), set(event_types)

        def wanted(e: Any) -> bool:
            if kinds_ and e.kind not in kinds_:
                return False
            return not (types_ and (e.kind != "interaction" or e.event_type not in types_))

        def active() -> bool:
            return stop is None or not stop.is_set()

        with broker.following():  # a shared hub follows the store's feed only while someone does
            last = after if after else (0 if from_oldest else broker.latest)
            for e in feed.follow(broker, self._read, last, wanted, active, heartbeat=heartbeat):
                yield {"kind": "heartbeat", "cursor": e[1]} if type(e) is tuple else e.as_dict()

    # -- the outbox -----------------------------------------------------------------------

    def outbox_item(self, customer_id: str, intent_id: str) -> dict[str, Any] | None:
        """The current state of one outbox intent (``status``, ``message_id``…), or None."""
        from shopkeeper import outbox

        with self._read() as f:
            for c in (f.customers.get(customer_id), f.customer(customer_id)):
                item = outbox.get(c, intent_id) if c is not None else None
                if item is not None:
                    return item.as_dict()
        return None

    def pending_outbox(self, channels: tuple[str, ...]) -> list[Message]:
        from shopkeeper import outbox

        with self._read() as f:
            return outbox.pending(f, channels)

    def pending_refs(self, channels: tuple[str, ...]) -> list[Message]:
        """Every intent not yet final on ``channels`` as id, customer id and channel only (deferred
        ones too; nothing else is read): what a channel adapter that reads each intent with
        :meth:`outbox_batch` scans (an optional fast path, like ``outbox_batch``)."""
        from shopkeeper import outbox

        with self._read() as f:
            return outbox.pending(f, channels, refs_only=True)

    #: :meth:`outbox_batch` can read the contact part of each customer alone (``contact_only``)
    reads_contact_views = True

    def outbox_batch(self, refs: list[tuple[str, str]], contact_only: bool = False,
                     ) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """``(outbox_item, 360° view without history)`` for each ``(customer id, intent id)``, one read
        (an optional fast path: a channel adapter uses it when its hub has it). ``contact_only``:
        the customer as :func:`shopkeeper.outbox.contact_view` (what addressing needs), not the view."""
        from shopkeeper import outbox
        from shopkeeper.view import customer_view

        make = outbox.contact_view if contact_only else lambda c: customer_view(c, recent=0)
        with self._read() as f:
            return [(item.as_dict() if item is not None else None, make(c) if c is not None else None)
                    for item, c in outbox.states(f, refs)]

    def close(self) -> None:
        pass


__all__ = ["HubAPI", "HubError", "InProcessHub", "CustomerRef", "may_contact", "split_ref"]
