"""``shopkeeper campaign …``: check, test, dry-run, start, pause, resume, cancel, status, report.

Every command works against a running hub with ``--hub`` (the Campaigns RPCs; the hub's own
campaign files and writer) and against the store file when no hub holds it (an offline
``start`` runs the whole send in this process, one transaction per batch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..cli_common import HubTarget, hub_options, open_store_or_exit, store_option

rules_option = click.option("--rules", "rules_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            envvar="SHOPKEEPER_RULES_DIR",
                            help="Rules directory whose campaigns/ holds the campaign files (default ./rules).")


def _dir(rules_dir: Path | None) -> Path:
    from ..rules.runtime import RulesConfig

    return rules_dir if rules_dir is not None else RulesConfig().directory


def _campaign(rules_dir: Path | None, name: str) -> Any:
    from .model import load_campaigns

    cs = load_campaigns(_dir(rules_dir))
    if cs.errors:
        raise click.ClickException("the campaign files have errors (shopkeeper campaign check):\n"
                                   + "\n".join(map(str, cs.errors)))
    if name not in cs.campaigns:
        raise click.ClickException(f"no campaign {name!r} in {_dir(rules_dir)}/campaigns "
                                   f"(known: {', '.join(sorted(cs.campaigns)) or 'none'})")
    return cs.campaigns[name]


def _read_only() -> Any:
    from ..store import StoreOptions

    return StoreOptions(read_only=True)


def _run_dict(pb: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(pb, preserving_proto_field_name=True)


def _show_run(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(r, default=str))
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted((r.get("counts") or {}).items()))
    click.echo(f"{r['id']}  {r['campaign']}  {r['status']}  planned {r.get('planned', 0)}  "
               f"handled {r.get('delivered', 0)}" + (f"  ({counts})" if counts else "")
               + (f"  error: {r['error']}" if r.get("error") else ""))


@click.group("campaign")
def campaign() -> None:
    """Campaigns: broadcast to a segment on each customer's channel of choice (docs/campaigns.md)."""


@campaign.command()
@rules_option
@hub_options
@click.option("--allow-warnings", is_flag=True, help="Exit 0 when there are warnings but no errors.")
def check(rules_dir: Path | None, hub: HubTarget | None, allow_warnings: bool) -> None:
    """Check the campaign files: file:line:col: message for each problem; exit 1 on problems."""
    if hub is not None:
        got = hub.call(lambda c: c.check_campaigns())
        errors, warnings, names = list(got.errors), list(got.warnings), list(got.campaigns)
    else:
        from ..cli_common import adapter_templates
        from .model import load_campaigns

        cs = load_campaigns(_dir(rules_dir), templates=adapter_templates(None))
        errors, warnings, names = [str(e) for e in cs.errors], [str(w) for w in cs.warnings], sorted(cs.campaigns)
    for line in errors + warnings:
        click.echo(line)
    click.echo(f"{len(names)} campaigns: {len(errors)} errors, {len(warnings)} warnings", err=True)
    sys.exit(1 if errors or (warnings and not allow_warnings) else 0)


@campaign.command("test")
@click.argument("name", required=False)
@click.option("--to", "to", multiple=True, help="A test recipient (email:ADDRESS, phone:+E164, customer:ID); "
              "repeat for a seed list. Sends NAME's message to them through a hub (--hub).")
@click.option("--channel", default="", help="With --to: this channel instead of each one's channel of choice.")
@rules_option
@hub_options
def test_cmd(name: str | None, to: tuple[str, ...], channel: str, rules_dir: Path | None,
             hub: HubTarget | None) -> None:
    """Run the campaign tests (campaigns/*.test.yaml): who gets what, on which channel, or why not.

    With NAME and --to: send NAME's message to those test recipients now (through the hub's
    outbox and contact policy, part of no run: no report counts it)."""
    if to or name:
        if not (name and to):
            raise click.UsageError("a test send needs the campaign NAME and at least one --to")
        if hub is None:
            raise click.UsageError("a test send goes through a running hub: give --hub (or SHOPKEEPER_HUB)")
        got = hub.call(lambda c: c.campaign_send_test(name, list(to), channel))
        for r in got.sends:
            click.echo(f"{r.to}: {r.error}" if r.error else f"{r.to}: {r.channel} to customer {r.customer_id}, "
                                                             f"intent {r.intent}")
        sys.exit(1 if any(r.error for r in got.sends) else 0)
    from .model import load_campaigns
    from .testing import run_test_file, test_files

    d = _dir(rules_dir)
    cs = load_campaigns(d)
    if cs.errors:
        for e in cs.errors:
            click.echo(str(e))
        raise click.ClickException("the campaign files have errors; fix them first (shopkeeper campaign check)")
    results = [r for p in test_files(d) for r in run_test_file(p, cs)]
    for r in results:
        click.echo(str(r))
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed", err=True)
    sys.exit(1 if failed or not results else 0)


@campaign.command("dry-run")
@click.argument("name")
@rules_option
@store_option
@hub_options
@click.option("--json", "as_json", is_flag=True)
def dry_run_cmd(name: str, rules_dir: Path | None, store_uri: str, hub: HubTarget | None, as_json: bool) -> None:
    """Who would receive NAME on which channel, and why the others are excluded. Writes nothing."""
    if hub is not None:
        got = hub.call(lambda c: c.campaign_dry_run(name))
        click.echo(got.json if as_json else got.text)
        return
    from .plan import dry_run, render_dry_run

    c = _campaign(rules_dir, name)
    store = open_store_or_exit(store_uri, options=_read_only())
    try:
        r = dry_run(store, c)
    finally:
        store.close()
    click.echo(json.dumps(r, default=str) if as_json else render_dry_run(r))


@campaign.command()
@click.argument("name")
@rules_option
@store_option
@hub_options
@click.option("--batch", default=2000, show_default=True, help="Recipients per transaction (offline).")
@click.option("--json", "as_json", is_flag=True)
def start(name: str, rules_dir: Path | None, store_uri: str, hub: HubTarget | None, batch: int,
          as_json: bool) -> None:
    """Start a run of NAME now. With --hub the hub sends it in the background (see `status`);
    offline the whole run is written here, on a store no hub holds."""
    if hub is not None:
        _show_run(_run_dict(hub.call(lambda c: c.start_campaign(name))), as_json)
        return
    from ..analysis.models import commit_op
    from . import runs

    c = _campaign(rules_dir, name)
    store = open_store_or_exit(store_uri)
    try:
        try:
            rid = commit_op(store, None, runs.create_run(c, by="cli"), "shopkeeper: campaign start")
        except runs.RunError as exc:
            raise click.ClickException(str(exc)) from exc
        runs.drive(store, None, rid, batch=batch)
        _show_run(runs.status(store, rid), as_json)
    finally:
        store.close()


def _change(action: str) -> Any:
    @click.argument("run_id")
    @store_option
    @hub_options
    @click.option("--json", "as_json", is_flag=True)
    def cmd(run_id: str, store_uri: str, hub: HubTarget | None, as_json: bool) -> None:
        if hub is not None:
            _show_run(_run_dict(hub.call(lambda c: c.campaign_run(run_id, action))), as_json)
            return
        from ..analysis.models import commit_op
        from . import runs

        store = open_store_or_exit(store_uri)
        try:
            try:
                commit_op(store, None, getattr(runs, action)(run_id), f"shopkeeper: campaign {action}")
            except (runs.RunError, LookupError) as exc:
                raise click.ClickException(exc.args[0] if exc.args else str(exc)) from exc
            if action == "cancel":
                runs.cancel_intents(store, None, run_id)
            elif action == "resume":
                runs.drive(store, None, run_id)
            _show_run(runs.status(store, run_id), as_json)
        finally:
            store.close()

    cmd.__doc__ = {"pause": "Pause RUN_ID between two batches (intents written stay queued).",
                   "resume": "Resume a paused RUN_ID (offline: finish it here).",
                   "cancel": "Cancel RUN_ID and the intents of it no adapter has claimed yet."}[action]
    return campaign.command(action)(cmd)


for _action in ("pause", "resume", "cancel"):
    _change(_action)


@campaign.command()
@click.argument("run_id", required=False)
@click.option("--campaign", "campaign_name", default=None, help="Only the runs of this campaign.")
@store_option
@hub_options
@click.option("--json", "as_json", is_flag=True)
def status(run_id: str | None, campaign_name: str | None, store_uri: str, hub: HubTarget | None,
           as_json: bool) -> None:
    """One run's state and counts, or every run (newest first)."""
    if hub is not None:
        got = [hub.call(lambda c: c.campaign_run(run_id))] if run_id else \
            hub.call(lambda c: list(c.campaign_runs(campaign_name or "").runs))
        for pb in got:
            _show_run(_run_dict(pb), as_json)
        return
    from . import runs

    store = open_store_or_exit(store_uri, options=_read_only())
    try:
        with store.read() as f:
            try:
                got = [runs.get_run(f, run_id)] if run_id else sorted(runs.list_runs(f, campaign_name),
                                                                     key=lambda r: -r.created_at)
            except LookupError as exc:
                raise click.ClickException(exc.args[0] if exc.args else str(exc)) from exc
            for r in got:
                _show_run(r.as_dict(), as_json)
    finally:
        store.close()


@campaign.command("report")
@click.argument("run_id")
@click.option("--window-days", default=14.0, show_default=True, help="Responses within this many days of the send.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the uplift with its 95% interval to this PNG.")
@store_option
@hub_options
@click.option("--json", "as_json", is_flag=True)
def report_cmd(run_id: str, window_days: float, chart_path: str | None, store_uri: str, hub: HubTarget | None,
               as_json: bool) -> None:
    """The funnel per channel and the uplift against the holdout (95% interval, sample sizes)."""
    from . import report

    if hub is not None:
        got = hub.call(lambda c: c.campaign_report(run_id, window_days))
        rep, text = json.loads(got.json), got.text
    else:
        store = open_store_or_exit(store_uri, options=_read_only())
        try:
            with store.read() as f:
                try:
                    rep = report.run_report(f, run_id, window_days=window_days)
                except LookupError as exc:
                    raise click.ClickException(exc.args[0] if exc.args else str(exc)) from exc
        finally:
            store.close()
        text = report.render(rep)
    click.echo(json.dumps(rep, default=str) if as_json else text)
    if chart_path:
        report.chart(rep, chart_path)
        click.echo(f"chart: {chart_path}", err=True)
