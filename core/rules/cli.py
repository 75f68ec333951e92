"""``shopkeeper rules …``: check, test, explain, reload, and per-customer rules from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..cli_common import (
    HubTarget,
    adapter_templates,
    find_customer_or_exit,
    hub_options,
    open_store_or_exit,
    store_option,
    who_ref,
)

dir_argument = click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))


def _vocabulary() -> tuple[Any, Any]:
    """The action vocabulary and event types with every installed plugin's contributions."""
    from ..plugins import get_plugin_manager
    from .actions import Vocabulary
    from .runtime import _event_types_with_rules

    extra: list[Any] = []
    types = _event_types_with_rules()
    try:
        pm = get_plugin_manager()
        extra = [a for got in pm.hook.shopkeeper_rule_actions() for a in (got or ())]
        for got in pm.hook.shopkeeper_event_types():
            for et in got or ():
                types.register(et)
    except Exception as exc:  # a broken plugin must not stop a rule author
        click.echo(f"warning: plugins not loaded: {exc}", err=True)
    return Vocabulary.builtin(extra), types


def _service(directory: Path | None, config_file: str | None = None) -> Any:
    """A rules service for a command: loads the directory once and logs nothing (the command prints)."""
    from .runtime import RulesConfig, RulesService

    cfg = RulesConfig(watch=False, log_problems=False, templates=adapter_templates(config_file))
    if directory is not None:
        cfg.directory = directory
    vocab, types = _vocabulary()
    return RulesService(cfg, vocabulary=vocab, event_types=types)


config_option = click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
                             envvar="SHOPKEEPER_CONFIG",
                             help="Hub config file: message templates are checked against what its adapters declare "
                                  "(without it: the installed adapters' built-in templates).")


@click.group("rules")
def rules() -> None:
    """Business rules: check, test, explain and reload them; per-customer rules."""


@rules.command()
@dir_argument
@config_option
@click.option("--allow-warnings", is_flag=True, help="Exit 0 when there are warnings but no errors.")
@click.option("--strict", is_flag=True, hidden=True, help="The default; kept for old scripts.")
def check(directory: Path | None, config_file: str | None, allow_warnings: bool, strict: bool) -> None:
    """Validate every rule file in DIRECTORY (default ./rules or $SHOPKEEPER_RULES_DIR).

    Prints file:line:col: message for each problem, once; exit status 1 on errors and, unless
    --allow-warnings, on warnings (CI-friendly). Campaign files (DIRECTORY/campaigns) are checked
    too, as strictly. Offer ids are checked against DIRECTORY/offers, message templates against
    those the installed channel adapters declare for the hub config (--config; without it, their
    built-in templates). Nothing is reloaded.
    """
    from .loader import load_directory
    from .runtime import RulesConfig

    vocab, types = _vocabulary()
    d = directory if directory is not None else RulesConfig().directory
    from ..campaigns.model import load_campaigns
    from ..customer import now_us

    templates = adapter_templates(config_file)
    rs = load_directory(d, vocab, types, now_us=now_us(), templates=templates)
    cs = load_campaigns(d, vocabulary=vocab, event_types=types, templates=templates, rule_segments=rs.segments)
    errors, warnings = rs.errors + cs.errors, rs.warnings + cs.warnings
    for diag in errors + warnings:
        click.echo(str(diag))
    bad = bool(errors) or (not allow_warnings and bool(warnings))
    summary = (f"{len(rs.rules)} rules in {len(rs.files)} files, version {rs.version}; "
               f"{len(cs.campaigns)} campaigns in {len(cs.files)} files: "
               f"{len(errors)} errors, {len(warnings)} warnings")
    click.echo(summary, err=True)
    sys.exit(1 if bad else 0)


@rules.command("test")
@dir_argument
@config_option
@click.option("-k", "pattern", default=None, help="Run only tests whose name contains this text.")
@click.option("--coverage", is_flag=True, help="Report rules no test fired and conditions no test saw hold or fail.")
@click.option("--json", "as_json", is_flag=True, help="With --coverage: the coverage report as JSON.")
def test_cmd(directory: Path | None, config_file: str | None, pattern: str | None, coverage: bool,
             as_json: bool) -> None:
    """Run the rule tests (*.test.yaml beside the rule files); exit status 1 if any fails."""
    from .testing import Coverage, render_coverage, run_test_file

    svc = _service(directory, config_file)
    if svc.last_errors:
        for e in svc.last_errors:
            click.echo(e)
        raise click.ClickException("the rules have errors; fix them first (shopkeeper rules check)")
    cov = Coverage() if coverage else None
    results = []
    for p in svc.current.tests:
        for r in run_test_file(p, svc, cov):
            if pattern and pattern not in r.name:
                continue
            results.append(r)
            click.echo(str(r))
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed", err=True)
    if cov is not None:
        rep = cov.report(svc.current.rules)
        click.echo(json.dumps(rep, indent=2) if as_json else render_coverage(rep))
    sys.exit(1 if failed or not results else 0)


@rules.command()
@store_option
@hub_options
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Rules directory (default ./rules or $SHOPKEEPER_RULES_DIR); with --hub, the hub's rules.")
@click.option("--event", "event_key", default=None,
              help="Explain one of WHO's recorded interactions (its key or idempotency key) instead of EVENT_FILE.")
@click.option("--json", "as_json", is_flag=True, help="JSON for tools instead of text.")
@click.option("--all", "show_all", is_flag=True, help="List rules for other event types one by one too.")
@click.argument("who")
@click.argument("event_file", type=click.File("r"), required=False)
def explain(store_uri: str, hub: HubTarget | None, directory: Path | None, event_key: str | None, as_json: bool,
            show_all: bool, who: str, event_file: Any) -> None:
    """Why each rule did or did not act for WHO and an event (a dry run: nothing is changed).

    EVENT_FILE is a hypothetical event as JSON ({"type": "order", "data": {...}}, "-" for
    stdin; identities default to the customer's own); --event KEY explains a recorded one.
    Every central rule and every rule of the customer is listed: fired (with its effects), or
    the first condition that failed and the value it saw, or once/cooldown/timer state.
    """
    from .explain import ExplainError, explain_customer, render_text

    if (event_file is None) == (event_key is None):
        raise click.UsageError("give EVENT_FILE (a hypothetical event) or --event KEY (a recorded one)")
    raw = None
    if event_file is not None:
        try:
            raw = json.load(event_file)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{event_file.name}: not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise click.ClickException(f"{event_file.name}: must hold one event, a JSON object")
    if hub is not None:
        if raw is not None and "type" not in raw:
            raise click.ClickException(f"{event_file.name}: the event needs a `type`")
        resp = hub.call(lambda c: c.explain(event=raw, event_key=event_key or "", **who_ref(who)))
        if as_json:
            click.echo(json.dumps(json.loads(resp.json), indent=2, ensure_ascii=False))
        elif show_all:
            from .explain import render_text

            click.echo(render_text(json.loads(resp.json), show_all=True))
        else:
            click.echo(resp.text)
        return
    svc = _service(directory)
    store = open_store_or_exit(store_uri)
    try:
        with store.read() as f:  # everything done here is thrown away at the end
            c = find_customer_or_exit(f, who)
            try:
                x = explain_customer(svc, f, c, event=raw, event_key=event_key)
            except ExplainError as exc:
                raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    text = json.dumps(x, indent=2, default=str, ensure_ascii=False) if as_json else render_text(x, show_all=show_all)
    click.echo(text)


@rules.command()
@click.option("--hub", default=None, envvar="SHOPKEEPER_HUB",
              help="HOST:PORT of a running hub: ask it to reload (Admin.ReloadRules); env SHOPKEEPER_HUB.")
@click.option("--api-key", envvar="SHOPKEEPER_API_KEY", default=None)
@dir_argument
def reload(hub: str | None, api_key: str | None, directory: Path | None) -> None:
    """Validate and compile the rules as a reload would; with --hub, make a running hub reload them."""
    if hub:
        import grpc

        from .._proto.v1 import admin_pb2, admin_pb2_grpc

        with grpc.insecure_channel(hub) as ch:
            md = [("authorization", f"Bearer {api_key}")] if api_key else None
            try:
                resp = admin_pb2_grpc.AdminStub(ch).ReloadRules(admin_pb2.ReloadRulesRequest(), metadata=md)
            except grpc.RpcError as exc:
                raise click.ClickException(f"reload refused: {exc.details()}") from exc
        for m in resp.messages:
            click.echo(m)
        return
    svc = _service(directory)
    r = svc.last_reload
    click.echo(f"ok={r['ok']} version={r['version']} rules={r['rules']} ({r['seconds'] * 1000:.0f} ms)")
    for e in r["errors"]:
        click.echo(e)
    sys.exit(0 if r["ok"] else 1)


@rules.command("list")
@dir_argument
def list_cmd(directory: Path | None) -> None:
    """List the rules in force, by priority."""
    svc = _service(directory)
    for e in svc.last_errors:
        click.echo(e, err=True)
    for r in svc.current.rules:
        flag = "" if r.enabled else " (disabled)"
        click.echo(f"{r.priority:>5}  {r.name:<32} {'/'.join(r.events):<24} {r.file}:{r.line}{flag}")


@rules.command("add-customer-rule")
@store_option
@hub_options
@click.option("--max", "max_rules", type=int, default=None, help="Cap per customer (default 5; a hub uses its own).")
@click.option("--by", "added_by", default=None, help="Who adds it, kept with the rule (default: cli, or the API key).")
@click.argument("who")
@click.argument("rule_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def add_customer_rule_cmd(store_uri: str, hub: HubTarget | None, max_rules: int | None, added_by: str | None,
                          who: str, rule_file: Path) -> None:
    """Attach the rule(s) in RULE_FILE to customer WHO (id or namespace:value)."""
    from .customer_rules import CustomerRuleError, add_customer_rule

    text = rule_file.read_text(encoding="utf-8")
    if hub is not None:
        got = hub.call(lambda c: c.add_customer_rule(text, name=str(rule_file), added_by=added_by or "",
                                                     **who_ref(who)))
        click.echo(f"customer {got.customer_id}: added {', '.join(got.changed)}")
        return
    from ..engine.offline import OfflineWriter

    svc = _service(None) if Path("rules").is_dir() else None

    def add(f: Any, _changes: Any) -> tuple[str, list[str]]:
        c = find_customer_or_exit(f, who)
        try:
            return c.id, add_customer_rule(f, c, text, name=str(rule_file), added_by=added_by or "cli",
                                           max_rules=max_rules, vocabulary=svc.vocabulary if svc else None,
                                           event_types=svc.event_types if svc else None)
        except CustomerRuleError as exc:
            raise click.ClickException(str(exc)) from exc

    store = open_store_or_exit(store_uri)
    try:
        cid, names = OfflineWriter(store).apply(add, note=f"shopkeeper rules: add customer rule from {rule_file.name}")
    finally:
        store.close()
    click.echo(f"customer {cid}: added {', '.join(names)}")


@rules.command("remove-customer-rule")
@store_option
@hub_options
@click.argument("who")
@click.argument("name")
def remove_customer_rule_cmd(store_uri: str, hub: HubTarget | None, who: str, name: str) -> None:
    """Remove customer WHO's rule NAME."""
    from .customer_rules import remove_customer_rule

    if hub is not None:
        got = hub.call(lambda c: c.remove_customer_rule(name, **who_ref(who)))
        click.echo(f"customer {got.customer_id}: removed {name}")
        return
    from ..engine.offline import OfflineWriter

    def remove(f: Any, _changes: Any) -> str:
        c = find_customer_or_exit(f, who)
        if not remove_customer_rule(f, c, name):
            raise click.ClickException(f"customer {c.id} has no rule {name!r} "
                                       f"(has: {', '.join(sorted(c.rules)) or 'none'})")
        return c.id

    store = open_store_or_exit(store_uri)
    try:
        cid = OfflineWriter(store).apply(remove, note=f"shopkeeper rules: remove customer rule {name}")
    finally:
        store.close()
    click.echo(f"customer {cid}: removed {name}")


@rules.command("list-customer-rules")
@store_option
@hub_options
@click.option("--json", "as_json", is_flag=True)
@click.argument("who")
def list_customer_rules_cmd(store_uri: str, hub: HubTarget | None, as_json: bool, who: str) -> None:
    """The rules customer WHO carries, with who added them and when."""
    import yaml

    if hub is not None:
        got = hub.call(lambda c: c.customer_rules(**who_ref(who)))
        cid = got.customer_id
        rules_ = [{"name": r.name, "version": r.version, "added_by": r.added_by,
                   "added_at": r.added_at.ToJsonString() if r.HasField("added_at") else None,
                   "rule": yaml.safe_load(r.yaml)} for r in got.rules]
    else:
        from ..view import iso
        from .customer_rules import list_customer_rules

        store = open_store_or_exit(store_uri)
        try:
            with store.read() as f:
                c = find_customer_or_exit(f, who)
                cid = c.id
                rules_ = [{"name": r["name"], "version": r.get("version", ""), "added_by": r.get("added_by", ""),
                           "added_at": iso(r.get("added_at")), "rule": r.get("rule")}
                          for r in list_customer_rules(c)]
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"customer_id": cid, "rules": rules_}, indent=2, default=str))
        return
    click.echo(f"customer {cid}: {len(rules_)} rule(s)")
    for r in rules_:
        click.echo(f"  {r['name']} (@{r['version']}, added by {r['added_by']} at {r['added_at']})")
        click.echo("    " + yaml.safe_dump(r["rule"], sort_keys=False).rstrip().replace("\n", "\n    "))


@click.group("outbox")
def outbox_group() -> None:
    """A customer's outbox: messages and agent alerts queued by rules and campaigns."""


@outbox_group.command("list")
@store_option
@hub_options
@click.option("--status", default="pending", show_default=True, help="pending, sent, suppressed, failed or all.")
@click.option("--json", "as_json", is_flag=True)
@click.argument("who")
def outbox_list(store_uri: str, hub: HubTarget | None, status: str, as_json: bool, who: str) -> None:
    """List the messages queued for WHO (channel agent = alerts on the agents' screens)."""
    if hub is not None:
        from google.protobuf import json_format

        got = hub.call(lambda c: c.customer_outbox(status=status, **who_ref(who)))
        cid = got.customer_id
        items = [json_format.MessageToDict(i, preserving_proto_field_name=True) for i in got.items]
    else:
        from .customer_rules import intents

        store = open_store_or_exit(store_uri)
        try:
            with store.read() as f:
                c = find_customer_or_exit(f, who)
                cid = c.id
                items = intents(c, None if status == "all" else status)
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"customer_id": cid, "items": items}, indent=2, default=str))
        return
    click.echo(f"customer {cid}: {len(items)} {status if status != 'all' else ''} message(s)".replace("  ", " "))
    for i in items:
        click.echo(f"  {i.get('status', ''):<10} {i.get('channel', ''):<6} {i.get('template', ''):<24} "
                   f"{json.dumps(i.get('payload') or {}, default=str, ensure_ascii=False)}")


@click.group("timers")
def timers_group() -> None:
    """Rule timers ("no order within 24 hours") pending for a customer."""


@timers_group.command("list")
@store_option
@hub_options
@click.option("--json", "as_json", is_flag=True)
@click.argument("who")
def timers_list(store_uri: str, hub: HubTarget | None, as_json: bool, who: str) -> None:
    """List WHO's pending absence timers, soonest first."""
    from ..view import iso

    if hub is not None:
        got = hub.call(lambda c: c.timers(**who_ref(who)))
        cid = got.customer_id
        timers = [{"id": t.id, "rule": t.rule, "scope": t.scope, "due": t.due.ToJsonString(),
                   "cancelled_by": list(t.cancelled_by), "event_type": t.event_type} for t in got.timers]
    else:
        from .customer_rules import pending_timers

        store = open_store_or_exit(store_uri)
        try:
            with store.read() as f:
                c = find_customer_or_exit(f, who)
                cid = c.id
                timers = [{**t, "due": iso(t["due"])} for t in pending_timers(c)]
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"customer_id": cid, "timers": timers}, indent=2, default=str))
        return
    click.echo(f"customer {cid}: {len(timers)} pending timer(s)")
    for t in timers:
        click.echo(f"  {t['rule']} ({t['scope']}, armed by {t['event_type']}): acts at {t['due']} unless "
                   f"{' or '.join(t['cancelled_by'])} arrives")
