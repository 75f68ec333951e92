"""The ``shopkeeper.v1.Interactions`` service: recording events and asking for decisions."""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

import grpc

from .._proto.v1 import common_pb2, interactions_pb2, interactions_pb2_grpc
from ..engine import operations as domain
from ..engine.ingest import EventResult
from ..engine.writer import STOPPING, WriterStopped
from ..events import Event, EventError
from . import auth, convert, errors
from .customers import ref_args
from .decode import UndecodableRequest

if TYPE_CHECKING:
    from .server import Hub

log = logging.getLogger(__name__)

_OUTCOME = {"applied": common_pb2.EventStatus.APPLIED, "duplicate": common_pb2.EventStatus.DUPLICATE,
            "rejected": common_pb2.EventStatus.REJECTED}
_INVALID = errors.code_number(grpc.StatusCode.INVALID_ARGUMENT)
_DENIED = errors.code_number(grpc.StatusCode.PERMISSION_DENIED)
_END = ("end",)
_PRECONDITION = errors.code_number(grpc.StatusCode.FAILED_PRECONDITION)
#: EventResult.error_code -> google.rpc code of a rejection (None: the event is invalid)
_CODES = {None: _INVALID, "failed_precondition": _PRECONDITION}
_GRPC_CODES = {_DENIED: grpc.StatusCode.PERMISSION_DENIED, _PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION}


def prepare(hub: Hub, who: auth.Principal, events: Any,
            violations: dict[int, list[tuple[str, str]]] | None = None) -> tuple[list[Any], list[Event], list[int]]:
    """Check every event; return (statuses with rejections filled in, valid events, their indexes).

    A status has room for one field and reason; ``violations``, if given, receives every
    (field, reason) of each refused event, by index."""
    statuses: list[Any] = [None] * len(events)
    valid: list[Event] = []
    where: list[int] = []
    for i, pe in enumerate(events):
        if not who.may_send(pe.type):
            statuses[i] = common_pb2.EventStatus(
                index=i, outcome=common_pb2.EventStatus.REJECTED, code=_DENIED, field="type",
                reason=f"API key {who.name!r} may not send {pe.type!r} events")
            continue
        try:
            ev = convert.event_from_proto(pe, hub.event_types, i)
        except EventError as exc:
            statuses[i] = common_pb2.EventStatus(index=i, outcome=common_pb2.EventStatus.REJECTED, code=_INVALID,
                                                 field=exc.field, reason=exc.reason)
            if violations is not None:
                violations[i] = exc.violations
            continue
        if not ev.touchpoint:
            ev.touchpoint = who.name
        valid.append(ev)
        where.append(i)
    return statuses, valid, where


def fill(statuses: list[Any], results: list[Any], where: list[int], *, trace: bool = False) -> None:
    for r, i in zip(results, where, strict=True):
        st = common_pb2.EventStatus(index=i, outcome=_OUTCOME[r.status], customer_id=r.customer_id or "",
                                    interaction_key=r.interaction_key or 0, created=r.created,
                                    merges=r.merges, warnings=r.warnings)
        if r.status == "rejected":
            st.code = _CODES.get(r.error_code, _INVALID)
            st.field = r.error_field or ""
            st.reason = reason_only(r.error_field, r.error)
        if trace:
            found = rules_trace(r)
            if found is not None:
                st.trace.CopyFrom(convert.dict_to_struct(found))
        statuses[i] = st


def reason_only(field: str | None, error: str | None) -> str:
    """The writer's error text is ``"field: reason"`` (``str()`` of the exception): the status
    has its own field, so the reason is given without repeating it."""
    error = error or ""
    if field and error.startswith(field + ": "):
        return error[len(field) + 2:]
    return error


def rules_trace(result: EventResult) -> dict[str, Any] | None:
    """The rules engine's trace among a result's outputs (the dict carrying ``rules_version``),
    made JSON-safe (tuples, sets and other values become lists and text)."""
    for out in result.outputs:
        if isinstance(out, dict) and "rules_version" in out:
            return json.loads(json.dumps(out, default=lambda v: list(v) if isinstance(v, (set, tuple)) else str(v)))
    return None


_APPLIED, _DUPLICATE, _REJECTED = (common_pb2.EventStatus.APPLIED, common_pb2.EventStatus.DUPLICATE,
                                   common_pb2.EventStatus.REJECTED)


def batch_ack(batch_id: str, statuses: list[Any], results: list[Any] | None, where: list[int]) -> Any:
    """The BatchAck of one batch, built in place (no intermediate status messages to copy):
    ``statuses`` holds the rejections :func:`prepare` filled in, ``results`` the writer's
    results for the events at indexes ``where``."""
    ack = interactions_pb2.BatchAck(batch_id=batch_id)
    add = ack.statuses.add
    applied = dups = 0
    if results is not None:
        for r, i in zip(results, where, strict=True):
            statuses[i] = r
    for i, st in enumerate(statuses):
        if type(st) is EventResult:
            status = st.status
            if status == "applied":
                applied += 1
                if st.merges or st.warnings:
                    add(index=i, outcome=_APPLIED, customer_id=st.customer_id or "",
                        interaction_key=st.interaction_key or 0, created=st.created, merges=st.merges,
                        warnings=st.warnings)
                else:
                    add(index=i, outcome=_APPLIED, customer_id=st.customer_id or "",
                        interaction_key=st.interaction_key or 0, created=st.created)
            elif status == "duplicate":
                dups += 1
                add(index=i, outcome=_DUPLICATE, customer_id=st.customer_id or "")
            else:
                add(index=i, outcome=_REJECTED, customer_id=st.customer_id or "",
                    code=_CODES.get(st.error_code, _INVALID), field=st.error_field or "",
                    reason=reason_only(st.error_field, st.error), warnings=st.warnings)
        else:
            ack.statuses.append(st)
    ack.applied = applied
    ack.duplicates = dups
    ack.rejected = len(statuses) - applied - dups
    return ack


class InteractionsServicer(interactions_pb2_grpc.InteractionsServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def RecordInteraction(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        who = auth.current()
        with hub.guard(context):
            found: dict[int, list[tuple[str, str]]] = {}
            statuses, valid, where = prepare(hub, who, [request.event], found)
            if valid:
                fill(statuses, hub.result(context, hub.writer.submit_events(valid, hub.deadline(context))), where,
                     trace=request.trace)
            st = statuses[0]
            if st.outcome == common_pb2.EventStatus.REJECTED:
                code = _GRPC_CODES.get(st.code, grpc.StatusCode.INVALID_ARGUMENT)
                every = found.get(0) or [(st.field, st.reason)]
                more = f" (and {len(every) - 1} more: see the BadRequest details)" if len(every) > 1 else ""
                errors.abort(context, code, f"event 0: {st.field}: {st.reason}{more}",
                             [(f"event.{f}" if f else "event", r) for f, r in every])
            return st

    def StreamInteractions(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        who = auth.current()
        limits = hub.config.limits
        with hub.stream_slot(context):
            pending: queue.Queue = queue.Queue(maxsize=max(1, limits.max_inflight_batches))
            done = threading.Event()  # set by the reader however it ends: never lost to a full queue

            def put(item: Any) -> bool:
                while not done.is_set():
                    try:
                        pending.put(item, timeout=0.5)
                        return True
                    except queue.Full:
                        if not context.is_active():
                            return False
                return False

            def reader() -> None:
                try:
                    for batch in request_iterator:
                        if hub.stopping:  # this batch and the next ones go to another hub or after restart
                            put(("unavailable", STOPPING))
                            return
                        if len(batch.events) > limits.max_batch_events:
                            put(("too_big", batch.batch_id, len(batch.events)))
                            return
                        statuses, valid, where = prepare(hub, who, batch.events)
                        fut = hub.writer.submit_events(valid) if valid else None
                        if not put((batch.batch_id, statuses, fut, where)):
                            return
                except UndecodableRequest as exc:
                    put(("undecodable", str(exc)))
                except WriterStopped as exc:
                    put(("unavailable", str(exc)))
                except grpc.RpcError as exc:  # the client went away or the stream broke
                    log.debug("stream reader ended: %s", exc)
                except Exception:  # a bug: say so, never end the stream as if all went well
                    if context.is_active():
                        log.exception("reading a StreamInteractions request failed")
                        put(("failed", "internal error while reading the stream"))
                finally:
                    put(_END)  # gives up only when the call is over (full queue, inactive context)
                    done.set()

            t = threading.Thread(target=reader, name="shopkeeper-stream-reader", daemon=True)
            t.start()
            while True:
                try:
                    item = pending.get(timeout=0.5)
                except queue.Empty:
                    if (done.is_set() and pending.empty()) or not context.is_active():
                        break
                    continue
                if item is _END:
                    break
                if item[0] == "too_big":
                    errors.abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"batch {item[1]!r} has {item[2]} events; at most {limits.max_batch_events} "
                                 "per EventBatch (limits.max_batch_events)")
                if item[0] == "unavailable":
                    errors.abort(context, grpc.StatusCode.UNAVAILABLE, f"{item[1]}; resend what was not acknowledged")
                if item[0] == "failed":
                    errors.abort(context, grpc.StatusCode.INTERNAL,
                                 f"{item[1]}; the batches before it were acknowledged")
                if item[0] == "undecodable":
                    errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                                 f"{item[1]}; the batches before it were acknowledged", [("batch", item[1])])
                batch_id, statuses, fut, where = item
                results = None
                if fut is not None:
                    with hub.guard(context):
                        results = hub.result(context, fut)
                yield batch_ack(batch_id, statuses, results, where)

    def Decide(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        who = auth.current()
        limit = request.limit or 10
        ctx = convert.struct_to_dict(request.context) if request.HasField("context") else {}
        if not ctx.get("channel") and who.channel:
            ctx["channel"] = who.channel  # the touch point's configured channel (api_keys[].channel)
        cid, ident = ref_args(request.customer)
        with hub.guard(context), hub.read(cid or ident) as f:
            c = domain.resolve_ref(f, cid, ident, hub.identity_config)
            # the identity it was named by addresses the offer records: no load of its identities
            actions = hub.decide(c, request.touchpoint or who.name, request.placement, ctx, limit=limit,
                                 identity=ident)
            return interactions_pb2.DecideResponse(
                customer_id=c.id, no_offer_reason=getattr(actions, "no_offer_reason", ""),
                no_offer_detail=getattr(actions, "no_offer_detail", ""), actions=[
                interactions_pb2.Action(kind=str(a.get("kind", "action")), id=str(a.get("id", "")),
                                        score=float(a.get("score", 0.0)), reason=str(a.get("reason", "")),
                                        payload=convert.dict_to_struct(a["payload"]) if a.get("payload") else None,
                                        plugin=a.get("plugin", ""))
                for a in actions])
