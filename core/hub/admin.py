"""The ``shopkeeper.v1.Admin`` service: stats, plugins, rule reload, pack."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import grpc

from .. import __version__
from .._proto.v1 import admin_pb2, admin_pb2_grpc, common_pb2
from ..engine import feed
from ..engine.writer import PackRunning
from ..plugins import plugin_versions
from . import auth, errors

if TYPE_CHECKING:
    from .server import Hub


#: ``Pack(days)`` keeps revisions newer than ``days`` ago: more than ~100 years is a mistake
#: (and past ~20,000 days the pack time falls before 1970, which ZODB cannot represent).
MAX_PACK_DAYS = 36_500.0


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def GetStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        with hub.read() as f:
            return admin_pb2.Stats(
                store=hub.store.description, generation=int(f.meta.get("generation", 0)),
                customers=f.counter("customers"), interactions=f.counter("interactions"),
                duplicates=f.counter("duplicates"), forgotten=f.counter("forgotten"),
                storage_bytes=hub.store.storage_size(), events_committed=hub.writer.events_committed,
                conflicts=hub.writer.conflicts, queue_depth=hub.writer.queue_depth, open_streams=hub.open_streams,
                watchers=hub.broker.watchers, uptime_seconds=time.monotonic() - hub.started_at,
                last_cursor=feed.latest_cursor(f), event_types=hub.event_types.names(), version=__version__)

    def ListPlugins(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        plugins = [admin_pb2.Plugin(name=n, version=v) for n, v in plugin_versions(hub.pm)]
        plugins += [admin_pb2.Plugin(name=n, disabled=True, error=e) for n, e in sorted(hub.disabled.items())]
        # components serving in a reduced way (health NOT_SERVING): the reason is here
        plugins += [admin_pb2.Plugin(name=f"component:{n}", error=why)
                    for n, why in sorted(hub.components.items()) if why]
        return admin_pb2.ListPluginsResponse(plugins=plugins)

    def ReloadRules(self, request: Any, context: grpc.ServicerContext) -> Any:
        by = {"who": auth.current().name, "from": context.peer() or ""}
        report = self.hub.pm.hook.shopkeeper_reload_rules(hub=self.hub, requested_by=by)
        if not report:
            return admin_pb2.ReloadRulesResponse(messages=["no rules plugin installed: nothing to reload"])
        msgs = [f"ok={report.get('ok')} version={report.get('version', '')} rules={report.get('rules', 0)}"]
        msgs += [str(e) for e in report.get("errors") or ()]
        if not report.get("ok", True):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "; ".join(msgs))
        return admin_pb2.ReloadRulesResponse(messages=msgs)

    def Pack(self, request: Any, context: grpc.ServicerContext) -> Any:
        days = request.days
        if not 0.0 <= days <= MAX_PACK_DAYS:  # NaN fails too
            errors.invalid(context, f"days {days!r}: keep revisions of the last 0..{MAX_PACK_DAYS} days "
                                    "(limits, docs/api.md)", "days")
        # through the writer: packed as of after every change submitted before this call committed
        from ZODB.POSException import POSError

        try:
            with self.hub.guard(context):  # the hub shutting down: UNAVAILABLE
                before, after = self.hub.result(context, self.hub.engine.pack(days))
        except PackRunning as exc:
            errors.abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except POSError as exc:  # e.g. another hub packs the shared storage ("Already packing")
            errors.abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"the storage refused the pack: {exc}")
        return admin_pb2.PackResponse(bytes_before=before, bytes_after=after)

    def ApplySegments(self, request: Any, context: grpc.ServicerContext) -> Any:
        from ..analysis.plugin import state_for
        from ..analysis.segments import reevaluate, tick

        hub = self.hub
        submit = hub.writer.submit_op  # every batch is an operation of the one writer
        segments = state_for(hub).segments
        report = (reevaluate(hub.store, segments, submit=submit) if request.all
                  else tick(hub.store, segments, submit=submit))
        return admin_pb2.JsonReport(json=json.dumps(report, default=str))

    def FitModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        from ..analysis.models import fit_models

        hub = self.hub
        r = request
        problem = _fit_problem(r)
        if problem is not None:
            errors.invalid(context, f"{problem[0]}: {problem[1]}", field=problem[0])
        as_of = int(r.as_of_seconds * 1e6) if r.as_of_seconds else None
        holdout = int(r.holdout_end_seconds * 1e6) if r.holdout_end_seconds else None
        try:
            report = fit_models(hub.store, now=as_of, horizon=r.horizon_weeks or 52.0, discount=r.discount,
                                write=not r.dry_run, clv_horizon=r.clv_horizon_weeks or None,
                                discount_per=r.discount_per or "year", discount_step=r.discount_step or "month",
                                holdout_end=holdout, batch=r.batch or 20_000, submit=hub.writer.submit_op)
            if not r.dry_run:  # segments that read scores follow the new scores now, not at the next order
                from ..analysis.plugin import state_for
                from ..analysis.segments import refresh_score_segments

                report["segments_refreshed"] = refresh_score_segments(hub.store, state_for(hub).segments, now=as_of,
                                                                      submit=hub.writer.submit_op)
        except (ValueError, ArithmeticError) as exc:
            errors.invalid(context, str(exc))
        return admin_pb2.JsonReport(json=json.dumps(report, default=str))

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        from ..exporter import dump_line, iter_records

        kind = request.kind or "all"
        if kind not in ("customers", "interactions", "all"):
            errors.invalid(context, f"kind {kind!r}: customers, interactions or all", field="kind")
        hub = self.hub
        with hub.stream_slot(context), hub.store.read() as f:  # one snapshot, however long the export takes
            lines: list[str] = []
            for n, rec in enumerate(iter_records(f, kind), 1):  # type: ignore[arg-type]
                lines.append(dump_line(rec))
                if len(lines) >= 500:
                    yield admin_pb2.ExportChunk(lines=lines)
                    lines = []
                if n % 1000 == 0:
                    f.conn.cacheGC()
            if lines:
                yield admin_pb2.ExportChunk(lines=lines)

    def ImportRows(self, request: Any, context: grpc.ServicerContext) -> Any:
        """``shopkeeper import --hub``: each row prepared again here (this hub's vocabulary, its
        limits; no client is trusted to have validated), then applied through the writer like
        any event — customer rows and pinned interactions apply themselves in the Ingestor's loop
        (:mod:`shopkeeper.importer.records`)."""
        from ..events import EventError
        from ..identity import IdentityError
        from ..importer.mapping import MapOptions, RowMapper
        from ..importer.records import ImportedInteraction, check_record
        from .interactions import batch_ack

        hub = self.hub
        limit = hub.config.limits.max_batch_events
        if len(request.rows) > limit:
            errors.invalid(context, f"{len(request.rows)} rows: at most {limit} per request "
                                    "(limits.max_batch_events)", "rows")
        mapper = RowMapper(MapOptions("auto", [], [], request.source or "import", None, None, request.historical),
                           hub.event_types, hub.identity_config)
        derived = set(request.derived_keys)
        statuses: list[Any] = [None] * len(request.rows)
        records: list[Any] = []
        where: list[int] = []
        for i, line in enumerate(request.rows):
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise EventError("row", f"must be a JSON object, not {type(row).__name__}")
                rec = mapper.prepare(row)
            except ValueError as exc:  # JSONDecodeError
                statuses[i] = _rejected(i, "row", f"not JSON: {exc}")
                continue
            except (EventError, IdentityError) as exc:
                statuses[i] = _rejected(i, exc.field, exc.reason)
                continue
            if isinstance(rec, ImportedInteraction):
                rec.derived_key = i in derived
                rec.historical = request.historical
            records.append(rec)
            where.append(i)
        if request.validate_only:
            with hub.read() as f:
                for rec, i in zip(records, where, strict=True):
                    try:
                        check_record(f, rec, hub.identity_config)
                        statuses[i] = common_pb2.EventStatus(index=i)  # checked: outcome unspecified
                    except (EventError, IdentityError) as exc:
                        statuses[i] = _rejected(i, exc.field, exc.reason)
            ack = batch_ack(request.batch_id, statuses, None, where)
            ack.rejected = sum(st.outcome == st.REJECTED for st in ack.statuses)
            return ack
        with hub.guard(context):
            results = hub.result(context, hub.writer.submit_events(records, hub.deadline(context))) if records else []
        return batch_ack(request.batch_id, statuses, results, where)


def _rejected(index: int, field: str, reason: str) -> Any:
    return common_pb2.EventStatus(index=index, outcome=common_pb2.EventStatus.REJECTED, field=field, reason=reason,
                                  code=errors.code_number(grpc.StatusCode.INVALID_ARGUMENT))


#: seconds since 1970 a calibration end or holdout may name (2000-01-01 .. 2200-01-01)
_TIME_RANGE = (946_684_800.0, 7_258_118_400.0)


def _fit_problem(r: Any) -> tuple[str, str] | None:
    """(field, reason) of the first FitModelsRequest value fit_models cannot take; None when all fit."""
    import math

    for name in ("as_of_seconds", "holdout_end_seconds"):
        v = getattr(r, name)
        if v and not (math.isfinite(v) and _TIME_RANGE[0] <= v <= _TIME_RANGE[1]):
            return name, "a time between 2000 and 2200 (seconds since 1970), or 0"
    for name in ("horizon_weeks", "clv_horizon_weeks"):
        v = getattr(r, name)
        if v and not (math.isfinite(v) and 0 < v <= 520):
            return name, "between 0 and 520 weeks (0 = the default)"
    if not (math.isfinite(r.discount) and 0 <= r.discount <= 10):
        return "discount", "between 0 and 10"
    if r.discount_per not in ("", "year", "month", "week"):
        return "discount_per", "year, month or week"
    if r.discount_step not in ("", "month", "week", "day"):
        return "discount_step", "month, week or day"
    if not 0 <= r.batch <= 1_000_000:
        return "batch", "between 1 and 1,000,000 customers (0 = 20,000)"
    if r.holdout_end_seconds and r.holdout_end_seconds <= (r.as_of_seconds or 0):
        return "holdout_end_seconds", "after as_of_seconds (a holdout needs a calibration end)"
    if r.holdout_end_seconds and not r.as_of_seconds:
        return "holdout_end_seconds", "needs as_of_seconds too"
    return None
