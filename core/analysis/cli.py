"""``shopkeeper models …``, ``shopkeeper segments …``, ``shopkeeper offers …`` and ``shopkeeper report …``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..cli_common import (
    HubTarget,
    find_customer_or_exit,
    hub_options,
    open_store_or_exit,
    store_option,
    teardown_not_needed,
    who_ref,
)
from .phases import mark


@click.group()
def models() -> None:
    """Fit and inspect the scoring models (CLV: BG/NBD + Gamma-Gamma; RFM)."""


def _date_us(value: str, option: str) -> int:
    """A date or ISO time (UTC unless it says otherwise) → µs."""
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date such as 1997-09-30", param_hint=option) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def _weeks(value: str, option: str) -> float:
    from .clv import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@models.command("fit")
@store_option
@hub_options
@click.option("--as-of", "as_of", default=None, metavar="DATE",
              help="Calibration end: fit on the orders up to this date and score as of it (default: now). "
                   "A date is its midnight UTC.")
@click.option("--holdout", default=None, metavar="DATE|DURATION",
              help="Validate on the orders after --as-of up to DATE (or for DURATION, e.g. 39w): actual vs "
                   "predicted repeat purchases; --chart draws the standard BG/NBD tracking chart.")
@click.option("--chart", default=None, metavar="PNG", help="With --holdout: write the validation chart here.")
@click.option("--horizon", default="52w", show_default=True, metavar="DURATION",
              help="How far clv.expected_purchases looks ahead: 52w, 12m, 1y, 90d (a bare number is weeks).")
@click.option("--clv-horizon", default=None, metavar="DURATION", help="How far CLV looks ahead (default: --horizon).")
@click.option("--discount", default=0.0, show_default=True, type=click.FloatRange(0, 10),
              help="Discount rate for CLV per --discount-per (0.1 = 10%; 0 = none).")
@click.option("--discount-per", type=click.Choice(["year", "month", "week"]), default="year", show_default=True,
              help="The period the discount rate is stated for.")
@click.option("--discount-step", type=click.Choice(["month", "week", "day"]), default="month", show_default=True,
              help="The steps CLV is discounted in (lifetimes' convention: --discount-per month --discount-step "
                   "month, a month being 4.345 weeks).")
@click.option("--batch", default=20_000, show_default=True, type=click.IntRange(1),
              help="Customers whose scores share one commit.")
@click.option("--dry-run", is_flag=True, help="Fit and print, write nothing.")
def models_fit(store_uri: str, hub: HubTarget | None, as_of: str | None, holdout: str | None, chart: str | None,
               horizon: str, clv_horizon: str | None, discount: float, discount_per: str, discount_step: str,
               batch: int, dry_run: bool) -> None:
    """Fit CLV and RFM on the store's order history and write every buyer's scores."""
    from .clv import US_PER_WEEK, describe_weeks
    from .models import fit_models

    now = _date_us(as_of, "--as-of") if as_of else None
    holdout_end = None
    if holdout:
        if now is None:
            raise click.BadParameter("a holdout needs a calibration end: give --as-of too", param_hint="--holdout")
        if holdout[:1].isdigit() and "-" in holdout:
            holdout_end = _date_us(holdout, "--holdout")
        else:
            holdout_end = now + int(_weeks(holdout, "--holdout") * US_PER_WEEK)
        if holdout_end <= now:
            raise click.BadParameter("the holdout must end after --as-of", param_hint="--holdout")
    if chart and not holdout:
        raise click.BadParameter("the validation chart needs --holdout", param_hint="--chart")
    h = _weeks(horizon, "--horizon")
    ch = _weeks(clv_horizon, "--clv-horizon") if clv_horizon else None
    if hub is not None:  # the hub fits and scores, committing through its writer
        from .._proto.v1 import admin_pb2

        req = admin_pb2.FitModelsRequest(as_of_seconds=(now or 0) / 1e6, holdout_end_seconds=(holdout_end or 0) / 1e6,
                                         horizon_weeks=h, clv_horizon_weeks=ch or 0, discount=discount,
                                         discount_per=discount_per, discount_step=discount_step, batch=batch,
                                         dry_run=dry_run)
        report = json.loads(hub.call(lambda c: c.call(c.admin.FitModels, req, timeout=3600)).json)
    else:
        store = open_store_or_exit(store_uri)
        mark("open store")
        try:
            report = fit_models(store, now=now, horizon=h, discount=discount, write=not dry_run, clv_horizon=ch,
                                discount_per=discount_per, discount_step=discount_step, holdout_end=holdout_end,
                                batch=batch)
            if not dry_run:  # segments that read scores follow the new scores now, not at the next order
                from .segments import refresh_score_segments

                report["segments_refreshed"] = refresh_score_segments(store, _segments_only(None), now=now)
                mark("refresh score segments")
        finally:
            store.close()
            mark("close store")
        teardown_not_needed()  # what is left to print needs no store: the shell's program ends without teardown
    clv = report.get("clv")
    if clv:
        b, g = clv["bgnbd"], clv["gg"]
        click.echo(f"BG/NBD  r={b['r']:.4g} alpha={b['alpha']:.4g} a={b['a']:.4g} b={b['b']:.4g}  "
                   f"({b['n']} buyers, LL {b['loglik']:.1f})")
        if g:
            click.echo(f"Gamma-Gamma  p={g['p']:.4g} q={g['q']:.4g} gamma={g['v']:.4g}  ({g['n']} repeat buyers)")
        disc = (f", discounted {discount:g} per {discount_per} in {discount_step}ly steps" if discount else "")
        click.echo(f"CLV model version {clv['version']} (expected purchases over {describe_weeks(h)}, "
                   f"CLV over {describe_weeks(ch if ch is not None else h)}{disc})")
    else:
        click.echo(f"CLV not fitted: {report.get('clv_error')}")
    click.echo(f"RFM model version {report['rfm']['version']}")
    if "holdout" in report:
        from .holdout import chart as draw
        from .holdout import render_table

        click.echo(render_table(report["holdout"]))
        if chart:
            draw(report["holdout"], chart)
            click.echo(f"validation chart written to {chart}")
    if not dry_run:
        n = report["scored"]
        per = (f" (writing: {report['write_seconds'] / n * 1e6:.1f} µs per customer, "
               f"{report['write_cpu_seconds'] / n * 1e6:.1f} µs CPU)" if n and "write_seconds" in report else "")
        click.echo(f"scored {n} customers in {report['score_seconds']} s{per}")


@models.command("chart")
@store_option
@click.argument("png")
def models_chart(store_uri: str, png: str) -> None:
    """Draw the last fit's holdout validation chart (fit with --holdout) to PNG.

    The same chart as ``models fit --chart``, from the comparison the fit keeps in the store: a
    command of its own so that the fit, which the scores wait for, does not pay matplotlib's
    import and the drawing (~1.5 s of the CDNOW walk-through's 5 s, issue 15)."""
    from .holdout import chart as draw
    from .state import folder

    store = open_store_or_exit(store_uri)
    try:
        with store.read() as f:
            m = folder(f, "models")
            h = m.get("holdout") if m is not None else None
    finally:
        store.close()
    if h is None:
        raise click.ClickException("no holdout comparison in the store: run `shopkeeper models fit --as-of DATE "
                                   "--holdout DATE` first")
    draw(h, png)
    click.echo(f"validation chart written to {png}")
    teardown_not_needed()


@models.command("show")
@store_option
def models_show(store_uri: str) -> None:
    """Print the models in force (JSON)."""
    from .state import folder

    store = open_store_or_exit(store_uri)
    try:
        with store.read() as f:
            m = folder(f, "models")
            data = {k: v for k, v in (m.items() if m is not None else []) if "@" not in k}
    finally:
        store.close()
    click.echo(json.dumps(data, indent=2, default=str))


rules_option = click.option("--rules", "rules_dir", default=None, envvar="SHOPKEEPER_RULES_DIR",
                            help="Rules directory holding segments/ and offers/ (default ./rules).")


def _state(rules_dir: str | None):  # type: ignore[no-untyped-def]
    """This command's segments and offers (an offline tool's own state; hubs keep theirs per hub)."""
    from .conditions import ConditionError
    from .plugin import AnalysisState

    state = AnalysisState(rules_dir, installs_policy=True)
    try:
        state.reload()
    except ConditionError as exc:
        raise click.ClickException(str(exc)) from exc
    return state


def _segments_only(rules_dir: str | None):  # type: ignore[no-untyped-def]
    """This command's segments alone: ``models fit`` refreshes the segments that read scores and needs
    neither the offers catalogue (nor its contact policy) nor the processor's modules that
    :func:`_state` imports (``AnalysisState``: offers, propensity, the outbox)."""
    import logging

    from .conditions import ConditionError
    from .segments import load_segments, rules_root

    try:
        segs = load_segments(rules_root(rules_dir) / "segments")
    except ConditionError as exc:
        raise click.ClickException(str(exc)) from exc
    for note in segs.warnings:
        logging.getLogger("shopkeeper.analysis.plugin").warning("%s", note)
    return segs


@click.group()
def segments() -> None:
    """Segment definitions (rules/segments/*.yaml), membership and sizes."""


@segments.command("check")
@rules_option
def segments_check(rules_dir: str | None) -> None:
    """Validate the segment and offer files."""
    st = _state(rules_dir)
    for d in st.segments.defs.values():
        kind = "time-based" if d.condition.time_based else "event-driven"
        click.echo(f"segment {d.name:<24} {kind:<12} deps={','.join(sorted(d.condition.deps))}  {d.condition.source}")
    for note in [*st.segments.warnings, *st.catalogue.warnings]:
        click.echo(note, err=True)
    click.echo(f"{len(st.segments.defs)} segments, {len(st.catalogue.offers)} offers: OK")


@segments.command("apply")
@store_option
@hub_options
@rules_option
@click.option("--all", "everything", is_flag=True, help="Re-evaluate every segment, not only changed/time-based ones.")
def segments_apply(store_uri: str, hub: HubTarget | None, rules_dir: str | None, everything: bool) -> None:
    """Re-evaluate changed definitions and time-based segments for every customer (the scheduler's run).

    With --hub the running hub does it with its definitions, committing through its writer."""
    from .segments import reevaluate, tick

    if hub is not None:
        from .._proto.v1 import admin_pb2

        got = hub.call(lambda c: c.call(c.admin.ApplySegments, admin_pb2.ApplySegmentsRequest(all=everything),
                                        timeout=3600))
        click.echo(json.dumps(json.loads(got.json), indent=2))
        return

    st = _state(rules_dir)
    store = open_store_or_exit(store_uri)
    try:
        def progress(done: int, seconds: float) -> None:
            click.echo(f"  {done:,} customers re-evaluated in {seconds:.1f} s", err=True)

        report = reevaluate(store, st.segments, progress=progress) if everything else tick(store, st.segments)
    finally:
        store.close()
    click.echo(json.dumps(report, indent=2))


@segments.command("sizes")
@store_option
def segments_sizes(store_uri: str) -> None:
    """Current segment sizes."""
    from .segments import sizes

    store = open_store_or_exit(store_uri)
    try:
        for name, n in sorted(sizes(store).items()):
            click.echo(f"{name:<28} {n}")
    finally:
        store.close()


@click.group()
def offers() -> None:
    """The offer catalogue (rules/offers/*.yaml) and next best action."""


@offers.command("decide")
@store_option
@hub_options
@rules_option
@click.argument("who")
@click.option("--touchpoint", default="web", show_default=True)
@click.option("--placement", default="home_hero", show_default=True)
@click.option("--channel", default=None, help="Channel (default: the touch point).")
@click.option("--record", is_flag=True, help="Record the chosen offer in the customer (as if shown).")
@click.option("--explain", is_flag=True, help="Say for every offer why it was chosen or excluded.")
@click.option("--json", "as_json", is_flag=True, help="With --explain: JSON for tools instead of text.")
def offers_decide(store_uri: str, hub: HubTarget | None, rules_dir: str | None, who: str, touchpoint: str,
                  placement: str, channel: str | None, record: bool, explain: bool, as_json: bool) -> None:
    """Print the next best action for WHO (customer id or NAMESPACE:VALUE).

    With --hub the running hub answers: without --explain, Decide (what the touch point would
    get, recorded as shown); with --explain, a dry run that records nothing. --record works on
    the store file only."""
    from .explain_offers import explain_decision, render_text
    from .offers import decide_and_record

    if hub is not None:
        if record:
            raise click.UsageError("--record writes to the store file; over --hub, Decide records what it "
                                   "offers itself (leave --record out)")
        if explain:
            got = hub.call(lambda c: c.explain_decide(placement=placement, touchpoint=touchpoint,
                                                      channel=channel or "", **who_ref(who)))
            click.echo(got.json if as_json else got.text)
            return
        from google.protobuf import json_format

        got = hub.call(lambda c: c.decide(placement=placement, touchpoint=touchpoint,
                                          context={"channel": channel} if channel else None, **who_ref(who)))
        click.echo(json.dumps(json_format.MessageToDict(got, preserving_proto_field_name=True).get("actions", []),
                              indent=2, ensure_ascii=False))
        return

    st = _state(rules_dir)
    ctx = {"channel": channel} if channel else {}
    store = open_store_or_exit(store_uri)
    try:
        with store.read() as f:
            c = find_customer_or_exit(f, who)
            cid = c.id
            x = explain_decision(st.catalogue, c, touchpoint, placement, ctx) if explain or not record else None
        if record:
            actions = decide_and_record(store, st.catalogue, cid, touchpoint, placement, ctx)
    finally:
        store.close()
    if not explain:
        click.echo(json.dumps(actions if record else x["actions"], indent=2, ensure_ascii=False))  # type: ignore[index]
        return
    assert x is not None
    click.echo(json.dumps(x, indent=2, ensure_ascii=False, default=str) if as_json else render_text(x))


@click.group()
def report() -> None:
    """Export to Parquet and report over it with DuckDB (tables, and PNG charts with --chart)."""


@report.command("export")
@store_option
@click.option("--out", "out", default="var/analysis", show_default=True, help="Directory for the Parquet files.")
@click.option("--batch", default=10_000, show_default=True, help="Customers per batch (bounds memory).")
@click.option("--no-interactions", is_flag=True, help="Customers only.")
def report_export(store_uri: str, out: str, batch: int, no_interactions: bool) -> None:
    """Export customers, interactions, outcomes and segment sizes to Parquet."""
    from .export import export_parquet

    store = open_store_or_exit(store_uri)
    try:
        r = export_parquet(store, out, batch=batch, interactions=not no_interactions)
    finally:
        store.close()
    click.echo(f"exported {r['customers']} customers and {r['interactions']} interactions to {out} "
               f"in {r['seconds']} s")


@report.command("scores")
@store_option
@click.option("--csv", "csv_path", default=None, metavar="PATH", help="Write the table as CSV here.")
@click.option("--parquet", "parquet_path", default=None, metavar="PATH", help="Write the table as Parquet here.")
@click.option("--id", "namespaces", multiple=True, metavar="NAMESPACE",
              help="Add a column with the customer's identities of this namespace (crm_id, email…). Repeatable.")
@click.option("--buyers-only", is_flag=True, help="Only customers with at least one order.")
def report_scores(store_uri: str, csv_path: str | None, parquet_path: str | None, namespaces: tuple[str, ...],
                  buyers_only: bool) -> None:
    """One row per customer: identities, orders, expected purchases, P(alive), CLV, RFM, segments."""
    from .scores import write_scores_table

    if not csv_path and not parquet_path:
        raise click.UsageError("say where to write the table: --csv PATH and/or --parquet PATH")
    store = open_store_or_exit(store_uri)
    mark("open store")
    try:
        for fmt, path in (("csv", csv_path), ("parquet", parquet_path)):
            if path:
                n = write_scores_table(store, path, fmt, list(namespaces), buyers_only)
                click.echo(f"{n} customers written to {path}")
    finally:
        store.close()
        mark("close store")
    teardown_not_needed()


def _report_command(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.option("--data", default="var/analysis", show_default=True, help="Directory written by `report export`.")
    @click.option("--chart", default=None, help="Also draw a PNG chart to this path.")
    @click.option("--since-days", default=0.0, help="(uplift) only customers first decided for in the last N days.")
    @click.option("--window-days", default=30.0, show_default=True,
                  help="(uplift) count orders up to N days after each customer's first decision.")
    @click.option("--json", "as_json", is_flag=True)
    def cmd(data: str, chart: str | None, since_days: float, window_days: float, as_json: bool) -> None:
        import time

        from .export import render
        from .export import report as run

        if not (Path(data) / "customers.parquet").exists():
            raise click.ClickException(f"{data}: no export there; run `shopkeeper report export --out {data}` first")
        since = int((time.time() - since_days * 86400) * 1e6) if since_days else 0
        cols, rows = run(data, name, chart, since, window_days)
        if as_json:
            click.echo(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str, indent=2))
        else:
            click.echo(render(cols, rows))
        if chart:
            click.echo(f"chart written to {chart}")

    return cmd


for _name, _help in [("segments", "Segment sizes with average spend and CLV."),
                     ("offers", "Outcomes and learned P(accept) per offer x segment."),
                     ("uplift", "Conversion and spend after each customer's first decision, treatment vs control, "
                                "overall and per offer, with the difference, its 95% interval and the sample sizes."),
                     ("clv", "CLV distribution (quantiles); --chart draws a histogram."),
                     ("channels", "Channel mix: interactions by channel and type.")]:
    report.add_command(_report_command(_name, _help))


def register(cli: click.Group) -> None:
    for group in (models, segments, offers, report):
        if group.name not in cli.commands:
            cli.add_command(group)
