"""The adapter API over gRPC: :class:`RemoteHub`, an adapter in a process of its own.

It is :class:`shopkeeper.client.Client` — TLS, mutual TLS, API keys, retries with backoff,
stream reconnection — plus the dict-shaped :class:`~shopkeeper.adapters.hubapi.HubAPI`
adapters are written against. It holds no second gRPC client: every call goes through the
``Client``'s stubs and its retry loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc

from shopkeeper.client import Client
from shopkeeper.outbox import Message

from .hubapi import CustomerRef, HubError, HubUnavailable, split_ref

_OUTCOMES = {1: "applied", 2: "duplicate", 3: "rejected"}


def _status(st: Any) -> dict[str, Any]:
    return {"index": st.index, "status": _OUTCOMES.get(st.outcome, "rejected"), "customer_id": st.customer_id or None,
            "error": (f"{st.field}: {st.reason}" if st.field else st.reason) or None, "field": st.field or None}


def _refused(exc: grpc.RpcError) -> HubError:
    """UNAVAILABLE (a stopping hub, or none listening) is :class:`HubUnavailable`: resend later."""
    cls = HubUnavailable if exc.code() == grpc.StatusCode.UNAVAILABLE else HubError
    return cls(f"{exc.code().name}: {exc.details()}")


class RemoteHub:
    """:class:`~shopkeeper.adapters.hubapi.HubAPI` over gRPC, authenticated by an API key.

    ``RemoteHub("hub.example.com:50051", api_key, tls=True, root_certificates=ca)``; the TLS
    arguments are those of :class:`shopkeeper.client.Client` (``private_key`` and
    ``certificate_chain`` for mutual TLS), or pass a ready ``client=``.
    """

    mode = "remote"

    def __init__(self, address: str = "", api_key: str | None = None, touchpoint: str = "", timeout: float = 30.0,
                 *, client: Client | None = None, **client_options: Any) -> None:
        self.client = client if client is not None else Client(address, api_key, timeout=timeout, **client_options)
        self.address = address or self.client.target
        self.touchpoint = touchpoint
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._no_get_intents = False  # the hub answered UNIMPLEMENTED to Outbox.GetIntents (older hub)

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """``fn`` (a Client method); NOT_FOUND -> None, any other refusal -> :class:`HubError`."""
        try:
            return fn(*args, **kw)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _refused(exc) from exc

    def _background(self, fn: Any, *args: Any) -> Future:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(8, thread_name_prefix="shopkeeper-remote-hub")
        return self._pool.submit(fn, *args)

    @staticmethod
    def _ref(ref: CustomerRef) -> dict[str, Any]:
        cid, ident = split_ref(ref)
        return {"id": cid} if cid is not None else {"identity": ident}

    # -- events -------------------------------------------------------------------------

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tp = self.touchpoint
        evs = [e if e.get("touchpoint") or not tp else {**e, "touchpoint": tp} for e in events]
        ack = self._call(self.client.record_batch, evs)
        return [_status(st) for st in ack.statuses]

    def record_async(self, events: list[dict[str, Any]]) -> Future:
        return self._background(self.record, events)

    def missing_event_types(self, types: tuple[str, ...]) -> dict[str, str]:
        """Asks the hub to validate one probe event per type with a channel no event may carry:
        a known type the key may send is refused on ``channel``, anything else on ``type`` with
        the hub's reason. Nothing is recorded, and no ``admin`` scope is needed."""
        if not types:
            return {}
        probes = [{"type": t, "channel": "-probe-", "identities": [("email", "probe@invalid")],
                   "idempotency_key": "probe"} for t in types]
        ack = self._call(self.client.record_batch, probes)
        return {t: st.reason for t, st in zip(types, ack.statuses, strict=True) if st.field == "type"}

    # -- customers ----------------------------------------------------------------------

    def customer(self, ref: CustomerRef, recent: int = 10) -> dict[str, Any] | None:
        c = self._call(self.client.get_customer, **self._ref(ref), recent=recent or -1)
        return proto_customer_view(c) if c is not None else None

    def decide(self, ref: CustomerRef, placement: str, context: dict[str, Any] | None = None,
               touchpoint: str = "", limit: int = 10) -> list[dict[str, Any]]:
        from shopkeeper.engine.decisions import Decision
        from shopkeeper.hub import convert

        resp = self._call(self.client.decide, **self._ref(ref), placement=placement,
                          touchpoint=touchpoint or self.touchpoint, context=dict(context or {}), limit=limit)
        if resp is None:
            raise HubError(f"no customer {ref!r}")
        out = Decision({"kind": a.kind, "id": a.id, "score": a.score, "reason": a.reason,
                        "payload": convert.struct_to_dict(a.payload), "plugin": a.plugin} for a in resp.actions)
        out.no_offer_reason, out.no_offer_detail = resp.no_offer_reason, resp.no_offer_detail
        return out

    def set_consent(self, ref: CustomerRef, channel: str, purpose: str, granted: bool, source: str = "") -> None:
        got = self._call(self.client.set_consent, channel, granted, **self._ref(ref), purpose=purpose,
                         source=source or self.touchpoint)
        if got is None:
            raise HubError(f"no customer {ref!r}")

    # -- the change feed ----------------------------------------------------------------

    def watch(self, *, after: int = 0, from_oldest: bool = False, kinds: tuple[str, ...] = (),
              event_types: tuple[str, ...] = (), stop: threading.Event | None = None,
              heartbeat: float = 1.0) -> Iterator[dict[str, Any]]:
        try:
            for ch in self.client.watch(after, from_oldest=from_oldest, kinds=kinds, event_types=event_types,
                                        heartbeat_seconds=max(1, int(heartbeat)), stop=stop):
                yield {"cursor": ch.cursor, "kind": ch.kind, "customer_id": ch.customer_id,
                       "event_type": ch.event_type, "channel": ch.channel,
                       "at": ch.at.seconds * 1_000_000 + ch.at.nanos // 1000, "interaction_key": ch.interaction_key,
                       "segments": list(ch.segments), "detail": ch.detail}
        except grpc.RpcError as exc:
            raise _refused(exc) from exc

    # -- the outbox -----------------------------------------------------------------------

    def pending_outbox(self, channels: tuple[str, ...]) -> list[Message]:
        from shopkeeper.hub import convert

        got = self._call(self.client.pending_intents, channels) or []
        return [Message(i.id, i.customer_id, i.channel, i.template, i.purpose or "marketing",
                        convert.struct_to_dict(i.payload), i.status, i.message_id,
                        not_before=_us(i, "not_before"), expires_at=_us(i, "expires_at")) for i in got]

    def pending_refs(self, channels: tuple[str, ...]) -> list[Message]:
        """Every intent not yet final on ``channels``, id, customer id and channel only
        (``PendingIntents`` with ``refs_only``: the hub loads no customer); a hub older than that
        flag answers in full, which serves as well."""
        got = self._call(self.client.pending_intents, channels, refs_only=True) or []
        return [Message(i.id, i.customer_id, i.channel, i.template, status=i.status) for i in got]

    #: :meth:`outbox_batch` can ask for the contact part of each customer alone (``contact_only``)
    reads_contact_views = True

    def outbox_batch(self, refs: list[tuple[str, str]], contact_only: bool = False,
                     ) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """``(intent as it stands, 360° view without history)`` for each ``(customer id, intent id)``:
        one ``Outbox.GetIntents`` call per 1,000 (what :class:`~shopkeeper.adapters.hubapi.InProcessHub`
        reads in one transaction), instead of a ``GetCustomer`` per message. A hub older than that
        RPC answers UNIMPLEMENTED: then one ``GetCustomer`` each, the intent left unknown (None).
        ``contact_only``: the customer as :func:`shopkeeper.outbox.contact_view` (a hub older than
        that flag answers with the whole view, taken as it is)."""
        from shopkeeper.hub import convert

        if self._no_get_intents:
            return [(None, self.customer(cid, recent=-1)) for cid, _ in refs]
        out: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
        for lo in range(0, len(refs), 1000):
            try:
                got = self.client.get_intents(refs[lo:lo + 1000], contact_only=contact_only)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self._no_get_intents = True
                    return self.outbox_batch(refs)
                raise _refused(exc) from exc
            for st in got:
                item = None
                if st.HasField("intent"):
                    i = st.intent
                    item = {"id": i.id, "channel": i.channel, "template": i.template, "purpose": i.purpose,
                            "payload": convert.struct_to_dict(i.payload), "status": i.status,
                            "message_id": i.message_id, "not_before": _us(i, "not_before"),
                            "expires_at": _us(i, "expires_at")}
                if not st.HasField("customer"):
                    out.append((item, None))
                elif contact_only and not st.customer.HasField("created_at"):  # the contact part alone
                    out.append((item, proto_contact_view(st.customer)))
                else:
                    out.append((item, proto_customer_view(st.customer)))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.client.close()


def _us(msg: Any, field: str) -> int:
    """A Timestamp field as µs, 0 when unset."""
    return msg.__getattribute__(field).ToMicroseconds() if msg.HasField(field) else 0


def proto_contact_view(c: Any) -> dict[str, Any]:
    """A ``Customer`` message holding the contact part alone (``GetIntents`` with ``contact_only``) in
    the shape of :func:`shopkeeper.outbox.contact_view`: read field by field, not through
    ``MessageToDict`` (pure-Python reflection, most of the remote adapter's read per message)."""
    from shopkeeper.hub import convert
    from shopkeeper.view import iso

    return {"view": "contact", "id": c.id, "status": c.status,
            "identities": [{"namespace": i.namespace, "value": i.value} for i in c.identities],
            "traits": convert.struct_to_dict(c.traits),
            "soft_facts": {k: {"value": convert.value_to_py(f.value), "source": f.source,
                               "at": iso(f.at.ToMicroseconds()) if f.HasField("at") else None}
                           for k, f in c.soft_facts.items()}}


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


__all__ = ["RemoteHub", "proto_customer_view", "proto_contact_view"]
