"""The ``shopkeeper.v1.Admin`` service: stats, plugins, rule reload, pack."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import grpc

from .. import __version__
from .._proto.v1 import admin_pb2, admin_pb2_grpc
from ..engine import feed
from ..plugins import plugin_versions
from . import errors

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
        report = self.hub.pm.hook.shopkeeper_reload_rules(hub=self.hub)
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
        store = self.hub.store
        before = store.storage_size()
        store.pack(days=days)
        return admin_pb2.PackResponse(bytes_before=before, bytes_after=store.storage_size())

    def ApplySegments(self, request: Any, context: grpc.ServicerContext) -> Any:
        from ..analysis.plugin import STATE
        from ..analysis.segments import reevaluate, tick

        hub = self.hub
        submit = hub.writer.submit_op  # every batch is an operation of the one writer
        report = (reevaluate(hub.store, STATE.segments, submit=submit) if request.all
                  else tick(hub.store, STATE.segments, submit=submit))
        return admin_pb2.JsonReport(json=json.dumps(report, default=str))

    def FitModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        from ..analysis.models import fit_models

        hub = self.hub
        as_of = int(request.as_of_seconds * 1e6) if request.as_of_seconds else None
        holdout = int(request.holdout_end_seconds * 1e6) if request.holdout_end_seconds else None
        horizon = request.horizon_weeks or 52.0
        try:
            report = fit_models(hub.store, now=as_of, horizon=horizon, discount=request.discount,
                                write=not request.dry_run, clv_horizon=request.clv_horizon_weeks or None,
                                discount_per=request.discount_per or "year",
                                discount_step=request.discount_step or "month", holdout_end=holdout,
                                batch=request.batch or 20_000, submit=hub.writer.submit_op)
        except ValueError as exc:
            errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
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
