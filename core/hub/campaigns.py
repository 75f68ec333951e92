"""The ``shopkeeper.v1.Campaigns`` service: thin glue between protobuf and the campaign domain
(:mod:`shopkeeper.campaigns`). Reads (dry run, status, report) run on a pooled read connection
and write nothing; starting, pausing, resuming and cancelling a run are operations of the one
writer; the hub's campaign runner does the rest in the background, through the same writer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc

from .._proto.v1 import campaigns_pb2, campaigns_pb2_grpc
from ..campaigns import plan, report, runs, seeds
from ..campaigns.plugin import files_for, runner_for
from ..engine import operations as domain
from . import auth, convert

if TYPE_CHECKING:
    from .server import Hub


def run_pb(r: dict[str, Any]) -> Any:
    return campaigns_pb2.CampaignRun(
        id=r["id"], campaign=r["campaign"], version=r["version"], status=r["status"], trigger=r["trigger"],
        created_at=convert.ts(r["created_at"]), snapshot_at=convert.ts(r["snapshot_at"] or None),
        planned=r["planned"], delivered=r["delivered"], counts={k: int(v) for k, v in r["counts"].items()},
        error=r["error"])


class CampaignsServicer(campaigns_pb2_grpc.CampaignsServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _campaign(self, name: str) -> Any:
        files = files_for(self.hub)
        got = files()
        if not name:
            raise domain.BadArgument("campaign", "required: the campaign's name")
        if name not in got:
            raise domain.NotFound(f"no campaign {name!r} in {files.directory}/campaigns "
                                  f"(known: {', '.join(sorted(got)) or 'none'})")
        return got[name]

    def _run_op(self, context: grpc.ServicerContext, op: Any) -> Any:
        try:
            return self.hub.write(context, op)
        except runs.RunError as exc:
            raise domain.Precondition(str(exc)) from exc
        except LookupError as exc:
            raise domain.NotFound(str(exc)) from exc

    def _wake(self) -> None:
        runner = runner_for(self.hub)
        if runner is not None:
            runner.wake.set()

    def CheckCampaigns(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context):
            cs = files_for(self.hub).load()
            return campaigns_pb2.CheckCampaignsResponse(campaigns=sorted(cs.campaigns),
                                                        errors=[str(e) for e in cs.errors],
                                                        warnings=[str(w) for w in cs.warnings])

    def DryRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context):
            c = self._campaign(request.campaign)
            r = plan.dry_run(self.hub.store, c)
            return campaigns_pb2.CampaignReport(json=json.dumps(r, default=str), text=plan.render_dry_run(r))

    def StartCampaign(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context):
            c = self._campaign(request.campaign)
            rid = self._run_op(context, runs.create_run(c, by=auth.current().name))
            self._wake()
            return run_pb(runs.status(self.hub.store, rid))

    def _change(self, request: Any, context: grpc.ServicerContext, make: Any) -> Any:
        with self.hub.guard(context):
            if not request.run_id:
                raise domain.BadArgument("run_id", "required")
            got = self._run_op(context, make(request.run_id))
            if make is runs.cancel:
                runs.cancel_intents(self.hub.store, self.hub.writer.submit_op, request.run_id)
                got = runs.status(self.hub.store, request.run_id)
            self._wake()
            return run_pb(got)

    def PauseRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._change(request, context, runs.pause)

    def ResumeRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._change(request, context, runs.resume)

    def CancelRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._change(request, context, runs.cancel)

    def GetRun(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context), self.hub.read() as f:
            try:
                return run_pb(runs.get_run(f, request.run_id).as_dict())
            except LookupError as exc:
                raise domain.NotFound(str(exc)) from exc

    def ListRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context), self.hub.read() as f:
            got = sorted(runs.list_runs(f, request.campaign or None), key=lambda r: -r.created_at)
            return campaigns_pb2.ListRunsResponse(runs=[run_pb(r.as_dict()) for r in got])

    def Report(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context), self.hub.read() as f:
            if request.window_days < 0:
                raise domain.BadArgument("window_days", "must be 0 (14 days) or more")
            try:
                rep = report.run_report(f, request.run_id, window_days=request.window_days or 14.0)
            except LookupError as exc:
                raise domain.NotFound(str(exc)) from exc
            return campaigns_pb2.CampaignReport(json=json.dumps(rep, default=str), text=report.render(rep))

    def SendTest(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context):
            c = self._campaign(request.campaign)
            try:
                op = seeds.send_test(c, list(request.to), channel=request.channel, by=auth.current().name)
            except ValueError as exc:
                raise domain.BadArgument("to" if "recipient" in str(exc) else "channel", str(exc)) from exc
            try:
                rows = self.hub.write(context, op)
            except ValueError as exc:  # a malformed recipient, found in the writer: nothing was written
                raise domain.BadArgument("to", str(exc)) from exc
            return campaigns_pb2.SendTestResponse(sends=[campaigns_pb2.TestSend(**r) for r in rows])
