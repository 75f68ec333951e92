"""The adapter base: what every touch-point adapter (built-in or third-party) is written on.

An adapter is a class with a ``name``, a ``Config`` dataclass (the validated schema of its
section in the hub config file), the ``channels`` it delivers on, and ``start``/``stop``.
It talks to the hub **only** through :class:`HubAPI`, which has two implementations:

* :class:`InProcessHub` — inside the hub process, calling the hub's writer, store and
  plugin manager directly (no serialisation, group commit shared with every caller);
* :class:`RemoteHub` — in its own process, over the gRPC API with an API key.

So the same class runs in both places (*location transparency*)::

    adapters:                      # hub config file: run it inside the hub
      email: {smtp_host: mail.example.com, from_addr: shop@example.com}

    shopkeeper adapter run email --hub hub.example.com:50051 --api-key $KEY --config email.yaml

The built-in adapter manager (this module is a built-in plugin) instantiates every adapter
named in the hub config's ``adapters:`` section on ``shopkeeper_startup``, validates its
config, registers the instance as a plugin (its methods may implement hooks such as
``shopkeeper_deliver`` or ``shopkeeper_decide``) and starts it; a bad config or a
``start()`` that raises disables that adapter only, reported by name.

Channel adapters get outbox work delivered: the base class follows the change feed
(kind ``outbox``) and scans pending intents at start, calling :meth:`Adapter.deliver` for
each intent on one of its ``channels`` — in or out of the hub, the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
import types
import typing
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, ClassVar, Protocol, runtime_checkable

from shopkeeper import hookimpl
from shopkeeper.outbox import FEED_KIND, Message, Receipt

log = logging.getLogger("shopkeeper.adapters")

CustomerRef = str | tuple[str, str]  # a customer id, or (namespace, value) such as ("email", "ann@example.com")


class AdapterConfigError(ValueError):
    """An adapter's config section is invalid; ``errors`` are ``adapter.<name>.<field>: reason``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class HubError(Exception):
    """The hub refused a request (not found, invalid, permission); the message says why."""


# -- config validation ------------------------------------------------------------------


@dataclasses.dataclass
class NoConfig:
    """An adapter without settings."""


def _check_type(value: Any, hint: Any) -> tuple[bool, Any]:
    """(ok, coerced value) for the small set of types config files use."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            if arm is type(None) and value is None:
                return True, None
            ok, v = _check_type(value, arm)
            if ok:
                return True, v
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        if args and args[0] is not Ellipsis:
            out = []
            for x in value:
                ok, v = _check_type(x, args[0])
                if not ok:
                    return False, value
                out.append(v)
            value = out
        return True, tuple(value) if (origin or hint) is tuple else list(value)
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    return True, value


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "text", dict: "a mapping"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "null" for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def validate_config(name: str, schema: type, raw: dict[str, Any] | None) -> Any:
    """Build ``schema`` (a dataclass) from ``raw``, or raise :class:`AdapterConfigError`.

    Every problem is reported, each as ``adapter.<name>.<field>: reason``.
    """
    raw = dict(raw or {})
    raw.pop("enabled", None)
    where = f"adapter.{name}"
    errors: list[str] = []
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{where}: Config must be a dataclass, not {schema!r}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for key in sorted(set(raw) - set(fields)):
        import difflib

        hint = difflib.get_close_matches(key, list(fields), n=1)
        more = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(sorted(fields)) or 'none'})"
        errors.append(f"{where}.{key}: unknown setting{more}")
    kwargs: dict[str, Any] = {}
    for fname, f in fields.items():
        if fname not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                errors.append(f"{where}.{fname}: required ({_type_name(hints[fname])})")
            continue
        ok, value = _check_type(raw[fname], hints[fname])
        if not ok:
            errors.append(f"{where}.{fname}: must be {_type_name(hints[fname])}, not {type(raw[fname]).__name__} "
                          f"{raw[fname]!r}")
            continue
        kwargs[fname] = value
    if errors:
        raise AdapterConfigError(errors)
    try:
        return schema(**kwargs)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        field_, sep, reason = text.partition(": ")
        raise AdapterConfigError([f"{where}.{field_}: {reason}" if sep and field_ in fields else f"{where}: {text}"]
                                 ) from exc


# -- the hub as an adapter sees it --------------------------------------------------------


@runtime_checkable
class HubAPI(Protocol):
    """Everything an adapter may ask of the hub. Thread-safe; every method blocks until done.

    Customers are referred to by id or by ``(namespace, value)``. Writes return only after
    they are committed. From asyncio code, call through ``asyncio.to_thread`` or use
    :class:`EventBatcher` for events.
    """

    #: "in-process" or "remote"
    mode: str

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record raw events (``type``, ``identities``, ``idempotency_key``, ``data``…); one result each:
        ``{"index", "status": applied|duplicate|rejected, "customer_id", "error", "field"}``."""

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

    def outbox_item(self, customer_id: str, intent_id: str) -> dict[str, Any] | None:
        """The current state of one outbox intent (``status``, ``message_id``…)."""

    def pending_outbox(self, channels: tuple[str, ...]) -> list[Message]:
        """Intents on these channels that are not final (for recovery at start)."""

    def close(self) -> None:
        """Release connections."""


def _ref(ref: CustomerRef) -> tuple[str | None, tuple[str, str] | None]:
    if isinstance(ref, tuple):
        return None, (str(ref[0]), str(ref[1]))
    return str(ref), None


class InProcessHub:
    """:class:`HubAPI` inside the hub process: the hub's writer, store and plugins, directly."""

    mode = "in-process"

    def __init__(self, hub: Any, touchpoint: str = "") -> None:
        self.hub = hub
        self.touchpoint = touchpoint

    def _writer(self) -> Any:
        # adapters start during shopkeeper_startup, a moment before the writer exists
        deadline = time.monotonic() + 30
        while getattr(self.hub, "writer", None) is None:
            if time.monotonic() > deadline:
                raise HubError("the hub's writer did not start")
            time.sleep(0.01)
        return self.hub.writer

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.record_async(events).result()

    def record_async(self, events: list[dict[str, Any]]) -> Future:
        """Like :meth:`record` but returns a future at once (for batching callers)."""
        from shopkeeper.events import EventError, validate_event

        out: list[dict[str, Any] | None] = [None] * len(events)
        good, where = [], []
        for i, raw in enumerate(events):
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
                result.set_exception(exc)

        inner.add_done_callback(done)
        return result

    def _resolve(self, folders: Any, ref: CustomerRef) -> Any:
        from shopkeeper.engine import operations as domain

        cid, ident = _ref(ref)
        try:
            return domain.resolve_ref(folders, cid, ident, self.hub.identity_config)
        except domain.NotFound:
            return None

    def customer(self, ref: CustomerRef, recent: int = 10) -> dict[str, Any] | None:
        from shopkeeper.view import customer_view

        with self.hub.store.read() as f:
            c = self._resolve(f, ref)
            return customer_view(c, recent=recent) if c is not None else None

    def decide(self, ref: CustomerRef, placement: str, context: dict[str, Any] | None = None,
               touchpoint: str = "", limit: int = 10) -> list[dict[str, Any]]:
        with self.hub.store.read() as f:
            c = self._resolve(f, ref)
            if c is None:
                raise HubError(f"no customer {ref!r}")
            return self.hub.decide(c, touchpoint or self.touchpoint, placement, dict(context or {}))[:limit]

    def set_consent(self, ref: CustomerRef, channel: str, purpose: str, granted: bool, source: str = "") -> None:
        from shopkeeper.engine import operations as domain

        def op(folders: Any, changes: Any) -> Any:
            c = self._resolve(folders, ref)
            if c is None:
                raise HubError(f"no customer {ref!r}")
            return domain.set_consent(folders, changes, c, channel, purpose or "marketing", granted,
                                      source or self.touchpoint)

        self._writer().submit_op(op).result()

    def watch(self, *, after: int = 0, from_oldest: bool = False, kinds: tuple[str, ...] = (),
              event_types: tuple[str, ...] = (), stop: threading.Event | None = None,
              heartbeat: float = 1.0) -> Iterator[dict[str, Any]]:
        from shopkeeper.engine import feed

        broker = self.hub.broker
        kinds_, types_ = set(kinds), set(event_types)
        last = after if after else (0 if from_oldest else broker.latest)
        quiet = time.monotonic()
        while not broker.closed and not (stop is not None and stop.is_set()):
            if broker.covers(last):
                batch = broker.after(last)
            else:
                with self.hub.store.read() as f:
                    batch = feed.read(f, last, 1000)
                if not batch:
                    last = max(last, broker.floor)
            for e in batch:
                last = e.cursor
                if kinds_ and e.kind not in kinds_:
                    continue
                if types_ and (e.kind != "interaction" or e.event_type not in types_):
                    continue
                quiet = time.monotonic()
                yield e.as_dict()
            if batch:
                continue
            broker.wait(last, timeout=min(heartbeat, 0.5))
            if time.monotonic() - quiet >= heartbeat:
                quiet = time.monotonic()
                yield {"kind": "heartbeat", "cursor": last}

    def outbox_item(self, customer_id: str, intent_id: str) -> dict[str, Any] | None:
        from shopkeeper import outbox

        with self.hub.store.read() as f:
            for c in (f.customers.get(customer_id), f.customer(customer_id)):
                item = outbox.get(c, intent_id) if c is not None else None
                if item is not None:
                    return item.as_dict()
        return None

    def pending_outbox(self, channels: tuple[str, ...]) -> list[Message]:
        from shopkeeper import outbox

        with self.hub.store.read() as f:
            return outbox.pending(f, channels)

    # optional fast paths (a channel adapter uses them when its hub has them)

    def outbox_batch(self, refs: list[tuple[str, str]]) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """``(outbox_item, 360° view without history)`` for each ``(customer id, intent id)``, one read."""
        from shopkeeper import outbox
        from shopkeeper.view import customer_view

        out: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
        with self.hub.store.read() as f:
            for cid, iid in refs:
                c = f.customers.get(cid)
                item = outbox.get(c, iid) if c is not None else None
                if item is None:
                    c = f.customer(cid)
                    item = outbox.get(c, iid) if c is not None else None
                c = f.customer(cid)
                out.append((item.as_dict() if item is not None else None,
                            customer_view(c, recent=0) if c is not None else None))
        return out

    def record_outbox_async(self, events: list[dict[str, Any]]) -> Future:
        """Outbox bookkeeping (claim, sent, failed) for known customers in one writer operation:
        see :func:`shopkeeper.outbox.record_transitions`. Results as :meth:`record`."""
        from shopkeeper import outbox

        tp = self.touchpoint
        evs = [e if e.get("touchpoint") or not tp else {**e, "touchpoint": tp} for e in events]
        return self._writer().submit_op(lambda f, changes: outbox.record_transitions(f, changes, evs))

    def close(self) -> None:
        pass


class RemoteHub:
    """:class:`HubAPI` over gRPC: an adapter in its own process, authenticated by an API key."""

    mode = "remote"

    def __init__(self, address: str, api_key: str | None = None, touchpoint: str = "",
                 timeout: float = 30.0) -> None:
        import grpc

        from shopkeeper._proto.v1 import (
            customers_pb2_grpc,
            interactions_pb2_grpc,
            watch_pb2_grpc,
        )

        self.address = address
        self.touchpoint = touchpoint
        self.timeout = timeout
        self.metadata = (("x-api-key", api_key),) if api_key else ()
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 4 << 20)])
        self.customers = customers_pb2_grpc.CustomersStub(self.channel)
        self.interactions = interactions_pb2_grpc.InteractionsStub(self.channel)
        self.watcher = watch_pb2_grpc.WatchStub(self.channel)

    def _call(self, method: Any, request: Any) -> Any:
        import grpc

        try:
            return method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise HubError(f"{exc.code().name}: {exc.details()}") from exc

    def _customer_ref(self, ref: CustomerRef) -> Any:
        from shopkeeper._proto.v1 import common_pb2

        cid, ident = _ref(ref)
        if cid is not None:
            return common_pb2.CustomerRef(id=cid)
        assert ident is not None
        return common_pb2.CustomerRef(identity=common_pb2.Identity(namespace=ident[0], value=ident[1]))

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from shopkeeper._proto.v1 import common_pb2, interactions_pb2
        from shopkeeper.hub import convert

        batch = interactions_pb2.EventBatch(batch_id="b")
        for raw in events:
            ids = raw.get("identities") or {}
            pairs = list(ids.items()) if isinstance(ids, dict) else [tuple(p) for p in ids]
            ev = common_pb2.Event(type=raw.get("type", ""), channel=raw.get("channel") or "",
                                  idempotency_key=raw.get("idempotency_key") or "",
                                  touchpoint=raw.get("touchpoint") or self.touchpoint,
                                  identities=[common_pb2.Identity(namespace=n, value=str(v)) for n, v in pairs])
            if raw.get("data"):
                ev.data.CopyFrom(convert.dict_to_struct(raw["data"]))
            if raw.get("traits"):
                ev.traits.CopyFrom(convert.dict_to_struct(raw["traits"]))
            if raw.get("ts"):
                ev.ts.FromMicroseconds(int(float(raw["ts"]) * 1_000_000))
            batch.events.append(ev)
        import grpc

        try:
            acks = list(self.interactions.StreamInteractions(iter([batch]), metadata=self.metadata,
                                                             timeout=self.timeout))
        except grpc.RpcError as exc:
            raise HubError(f"{exc.code().name}: {exc.details()}") from exc
        names = {1: "applied", 2: "duplicate", 3: "rejected"}
        out = []
        for st in acks[0].statuses:
            out.append({"index": st.index, "status": names.get(st.outcome, "rejected"),
                        "customer_id": st.customer_id or None,
                        "error": (f"{st.field}: {st.reason}" if st.field else st.reason) or None,
                        "field": st.field or None})
        return out

    def customer(self, ref: CustomerRef, recent: int = 10) -> dict[str, Any] | None:
        from shopkeeper._proto.v1 import customers_pb2

        c = self._call(self.customers.GetCustomer,
                       customers_pb2.GetCustomerRequest(customer=self._customer_ref(ref), recent=recent or -1))
        return proto_customer_view(c) if c is not None else None

    def decide(self, ref: CustomerRef, placement: str, context: dict[str, Any] | None = None,
               touchpoint: str = "", limit: int = 10) -> list[dict[str, Any]]:
        from shopkeeper._proto.v1 import interactions_pb2
        from shopkeeper.hub import convert

        req = interactions_pb2.DecideRequest(customer=self._customer_ref(ref), placement=placement,
                                             touchpoint=touchpoint or self.touchpoint, limit=limit,
                                             context=convert.dict_to_struct(dict(context or {})))
        resp = self._call(self.interactions.Decide, req)
        if resp is None:
            raise HubError(f"no customer {ref!r}")
        return [{"kind": a.kind, "id": a.id, "score": a.score, "reason": a.reason,
                 "payload": convert.struct_to_dict(a.payload), "plugin": a.plugin} for a in resp.actions]

    def set_consent(self, ref: CustomerRef, channel: str, purpose: str, granted: bool, source: str = "") -> None:
        from shopkeeper._proto.v1 import customers_pb2

        got = self._call(self.customers.SetConsent, customers_pb2.SetConsentRequest(
            customer=self._customer_ref(ref), channel=channel, purpose=purpose, granted=granted,
            source=source or self.touchpoint))
        if got is None:
            raise HubError(f"no customer {ref!r}")

    def watch(self, *, after: int = 0, from_oldest: bool = False, kinds: tuple[str, ...] = (),
              event_types: tuple[str, ...] = (), stop: threading.Event | None = None,
              heartbeat: float = 1.0) -> Iterator[dict[str, Any]]:
        import grpc

        from shopkeeper._proto.v1 import watch_pb2

        req = watch_pb2.WatchRequest(after_cursor=after, from_oldest=from_oldest, kinds=list(kinds),
                                     event_types=list(event_types), heartbeat_seconds=max(1, int(heartbeat)))
        call = self.watcher.Watch(req, metadata=self.metadata)
        stopper = None
        if stop is not None:
            def cancel() -> None:
                stop.wait()
                call.cancel()

            stopper = threading.Thread(target=cancel, daemon=True, name="shopkeeper-watch-cancel")
            stopper.start()
        try:
            for ch in call:
                yield {"cursor": ch.cursor, "kind": ch.kind, "customer_id": ch.customer_id,
                       "event_type": ch.event_type, "channel": ch.channel,
                       "at": ch.at.seconds * 1_000_000 + ch.at.nanos // 1000, "interaction_key": ch.interaction_key,
                       "segments": list(ch.segments), "detail": ch.detail}
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise HubError(f"{exc.code().name}: {exc.details()}") from exc

    def outbox_item(self, customer_id: str, intent_id: str) -> dict[str, Any] | None:
        """Rebuilt from the customer's history: the outbox events carry ``data.intent``."""
        from shopkeeper import outbox
        from shopkeeper._proto.v1 import common_pb2, customers_pb2
        from shopkeeper.hub import convert

        status, mid, seen = outbox.PENDING, "", False
        token = ""
        for _page in range(20):
            resp = self._call(self.customers.ListInteractions, customers_pb2.ListInteractionsRequest(
                customer=common_pb2.CustomerRef(id=customer_id), oldest_first=True, page_size=1000,
                page_token=token))
            if resp is None:
                return None
            for it in resp.interactions:
                if it.type not in outbox.OUTBOX_EVENT_TYPES:
                    continue
                data = convert.struct_to_dict(it.data)
                if data.get("intent") != intent_id:
                    continue
                seen = True
                if it.type == "message_dispatch" and status not in outbox.FINAL:
                    status, mid = outbox.SENDING, data.get("message_id", "")
                elif it.type in outbox.SENT_TYPES:
                    status, mid = outbox.SENT, data.get("message_id", mid)
                elif it.type == "message_failed" and status not in outbox.FINAL:
                    status = outbox.SUPPRESSED if data.get("status") == outbox.SUPPRESSED else outbox.FAILED
                elif it.type == "email_bounce" and str(data.get("kind")) in ("hard", "permanent"):
                    status = outbox.FAILED
            token = resp.next_page_token
            if not token:
                break
        return {"id": intent_id, "status": status, "message_id": mid, "known": seen}

    def pending_outbox(self, channels: tuple[str, ...]) -> list[Message]:
        """Replays the retained change feed's ``outbox`` entries; final ones are skipped by the caller."""
        out = []
        for ch in self.watch(from_oldest=True, kinds=(FEED_KIND,), heartbeat=1.0):
            if ch["kind"] == "heartbeat":
                break
            if ch["channel"] in channels:
                out.append(Message.from_change(ch))
        return out

    def close(self) -> None:
        self.channel.close()


def proto_customer_view(c: Any) -> dict[str, Any]:
    """A ``Customer`` message in the shape of :func:`shopkeeper.view.customer_view`."""
    from google.protobuf.json_format import MessageToDict

    d = MessageToDict(c, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    hard = d.get("hard_facts", {})
    for k in ("orders", "interactions"):
        hard[k] = int(hard.get(k, 0))
    d["hard_facts"] = hard
    d["interaction_counts"] = {k: int(v) for k, v in d.get("interaction_counts", {}).items()}
    d["identities"] = [{"namespace": i["namespace"], "value": i["value"], "source": i.get("source", ""),
                        "added_at": i.get("added_at")} for i in d.get("identities", [])]
    for it in d.get("recent_interactions", []):
        it["key"] = int(it.get("key", 0))
        it["at"] = it.pop("ts", None)
    return d


def may_contact(view: dict[str, Any], channel: str, purpose: str = "marketing") -> bool:
    """``Customer.may_contact`` on a 360° view: True only on an explicit, current grant."""
    return any(c["channel"] == channel and c["purpose"] == purpose and c["granted"] for c in view.get("consents", ()))


# -- the adapter base class -------------------------------------------------------------


class Adapter:
    """Base class of every touch-point adapter. Subclass, set ``name``/``Config``/``channels``.

    Override :meth:`start` and :meth:`stop` (call ``super()``), and :meth:`deliver` if you
    own a channel. Use ``self.hub`` (a :class:`HubAPI`) for everything; never import the
    hub's internals, so the adapter also runs as its own process. Methods decorated with
    ``@shopkeeper.hookimpl`` are hook implementations while the adapter runs in the hub.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    #: channels this adapter delivers outbox messages on (empty = it delivers nothing)
    channels: ClassVar[tuple[str, ...]] = ()
    #: the change-feed kinds :meth:`on_change` wants (empty = none; a thread follows the feed)
    watch_kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, hub: HubAPI) -> None:
        self.config = config
        self.hub = hub
        self.log = logging.getLogger(f"shopkeeper.adapters.{self.name}")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.cursor = 0  # last change-feed cursor handled

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None, hub: HubAPI) -> Adapter:
        return cls(validate_config(cls.name, cls.Config, raw), hub)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start serving (non-blocking: start threads or servers here). Raise to refuse."""
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
                return
            except Exception:
                self.log.exception("%s: %s failed; restarting it in 1 s", self.name, target.__name__)
                self._stop.wait(1.0)

    # -- outbox and change feed ---------------------------------------------------------

    def _follow_feed(self, kinds: tuple[str, ...]) -> None:
        if self.channels and not self.cursor:
            for msg in self.hub.pending_outbox(self.channels):
                if self._stop.is_set():
                    return
                self._deliver_safely(msg)
        for ch in self.hub.watch(after=self.cursor, kinds=kinds, stop=self._stop, heartbeat=1.0):
            if ch["kind"] == "heartbeat":
                continue
            if ch["kind"] == FEED_KIND:
                if ch["channel"] in self.channels:
                    self._deliver_safely(Message.from_change(ch))
            else:
                self.on_change(ch)
            self.cursor = ch["cursor"]

    def _deliver_safely(self, msg: Message) -> None:
        try:
            self.deliver(msg)
        except Exception:
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


# -- configuration helpers ---------------------------------------------------------------


class ListenAddress:
    """For adapter ``Config`` dataclasses that serve HTTP: a ``listen: host:port`` setting,
    checked by ``check_listen()`` (call it from ``__post_init__``) and split by ``host``/``port``."""

    listen: str

    def check_listen(self) -> None:
        _host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"listen: {self.listen!r} must be host:port")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


# -- batching writes from asyncio code --------------------------------------------------


class MicroBatcher:
    """Gather items that many coroutines submit into one hand-over, at most ``max_items`` at a
    time and at most ``max_delay`` seconds late; each submitter awaits its own result.

    Subclasses implement ``_dispatch(buf)``: settle every future in ``buf`` (a list of
    ``(item, future)``), from the event loop or through ``loop.call_soon_threadsafe``.
    """

    def __init__(self, max_items: int, max_delay: float) -> None:
        self.max_items = max_items
        self.max_delay = max_delay
        self._buf: list[tuple[Any, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def _submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._buf.append((item, fut))
        if len(self._buf) >= self.max_items:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        buf, self._buf = self._buf, []
        if buf:
            self._dispatch(buf)

    def _dispatch(self, buf: list[tuple[Any, asyncio.Future]]) -> None:
        raise NotImplementedError


class EventBatcher(MicroBatcher):
    """Gather events recorded by many coroutines into one ``HubAPI.record`` call.

    ``await batcher.record(event)`` returns that event's result after the commit. Events
    wait at most ``max_delay`` seconds or until ``max_events`` are gathered: this is what
    lets a busy adapter ride the hub's group commit instead of paying one commit each.
    """

    def __init__(self, hub: HubAPI, max_events: int = 500, max_delay: float = 0.002, outbox: bool = False) -> None:
        super().__init__(max_events, max_delay)
        self.hub = hub
        #: outbox bookkeeping with ``customer_id``: one writer operation when the hub offers it
        self.outbox_fast = getattr(hub, "record_outbox_async", None) if outbox else None

    async def record(self, event: dict[str, Any]) -> dict[str, Any]:
        return await self._submit(event)

    def _dispatch(self, buf: list[tuple[Any, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        events = [e for e, _ in buf]
        submit = getattr(self.hub, "record_async", None)
        if self.outbox_fast is not None:
            cf = self.outbox_fast(events)
        else:
            events = [{k: v for k, v in e.items() if k != "customer_id"} for e in events]
            if submit is not None:
                cf = submit(events)
            else:
                cf = loop.run_in_executor(None, self.hub.record, events)

        def settle(results: list[dict[str, Any]] | None, exc: BaseException | None) -> None:
            for i, (_e, f) in enumerate(buf):
                if f.done():
                    continue
                if exc is not None:
                    f.set_exception(exc)
                else:
                    f.set_result(results[i])  # type: ignore[index]

        def done(f: Any) -> None:
            try:
                res, err = f.result(), None
            except BaseException as e:  # noqa: BLE001
                res, err = None, e
            loop.call_soon_threadsafe(settle, res, err)

        cf.add_done_callback(done)


# -- finding adapters and the in-hub manager ----------------------------------------------


def adapter_classes(pm: Any) -> dict[str, type[Adapter]]:
    """Every adapter class contributed through ``shopkeeper_adapters``, by name."""
    out: dict[str, type[Adapter]] = {}
    for classes in pm.hook.shopkeeper_adapters():
        for cls in classes or ():
            if not cls.name:
                raise TypeError(f"adapter class {cls.__qualname__} has no name")
            out[cls.name] = cls
    return out


class AdapterManager:
    """Starts the adapters named in the hub config (``adapters:``) and stops them again.

    Running adapters are kept on the hub object as ``hub.adapters`` (name -> instance).
    """

    def start_all(self, hub: Any) -> None:
        hub.adapters = running = {}
        sections = dict(getattr(hub.config, "adapters", None) or {})
        if not sections:
            return
        classes = adapter_classes(hub.pm)
        disabled = getattr(hub, "disabled", {})
        for name, raw in sections.items():
            key = f"adapter:{name}"
            raw = raw or {}
            if raw.get("enabled") is False:
                continue
            cls = classes.get(name)
            if cls is None:
                disabled[key] = f"adapter.{name}: no installed adapter has this name (known: {sorted(classes)})"
                log.error("%s", disabled[key])
                continue
            try:
                adapter = cls.from_config(raw, InProcessHub(hub, touchpoint=name))
                hub.pm.register(adapter, name=key)
                adapter.start()
            except Exception as exc:
                log.exception("adapter %s failed to start; disabled (the hub keeps running)", name)
                disabled[key] = f"start: {type(exc).__name__}: {exc}"
                if hub.pm.has_plugin(key):
                    hub.pm.unregister(name=key)
                continue
            running[name] = adapter
            log.info("adapter %s started in-process", name)

    def stop_all(self, hub: Any) -> None:
        running = getattr(hub, "adapters", None) or {}
        for name, adapter in list(running.items()):
            try:
                adapter.stop()
            except Exception:
                log.exception("adapter %s failed to stop cleanly", name)
            running.pop(name, None)


_manager = AdapterManager()


@hookimpl
def shopkeeper_startup(hub: Any) -> None:
    _manager.start_all(hub)


@hookimpl
def shopkeeper_shutdown(hub: Any) -> None:
    _manager.stop_all(hub)


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import adapter_group

    cli.add_command(adapter_group)


def load_config_file(path: str | None, name: str) -> dict[str, Any]:
    """The ``adapters.<name>`` section of a hub config file, or the whole file if it has none."""
    if not path:
        return {}
    import yaml

    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if isinstance(data.get("adapters"), dict):
        return dict(data["adapters"].get(name) or {})
    return dict(data)


def run_adapter(cls: type[Adapter], raw: dict[str, Any], hub: HubAPI, stop: threading.Event) -> Adapter:
    """Run ``cls`` until ``stop`` is set (the body of ``shopkeeper adapter run``)."""
    adapter = cls.from_config(raw, hub)
    adapter.start()
    try:
        stop.wait()
    finally:
        adapter.stop()
        hub.close()
    return adapter


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, indent=2)


__all__ = ["Adapter", "HubAPI", "ListenAddress", "MicroBatcher",
           "InProcessHub", "RemoteHub", "EventBatcher", "AdapterConfigError", "HubError",
           "validate_config", "adapter_classes", "may_contact", "NoConfig", "run_adapter"]
