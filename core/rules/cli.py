"""``shopkeeper rules …``: check, test, explain, reload, and per-customer rules from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..cli import find_customer_or_exit, open_store_or_exit, store_option

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


def _templates(config_file: str | None) -> dict[str, set[str]] | None:
    """Template names of the hub config's adapters (None without a config: not cross-checked)."""
    if not config_file:
        return None
    import yaml

    from .loader import templates_from_adapters

    try:
        data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{config_file}: cannot read the hub config: {exc}") from exc
    return templates_from_adapters(data.get("adapters") or {} if isinstance(data, dict) else {})


def _service(directory: Path | None, config_file: str | None = None) -> Any:
    """A rules service for a command: loads the directory once and logs nothing (the command prints)."""
    from .runtime import RulesConfig, RulesService

    cfg = RulesConfig(watch=False, log_problems=False, templates=_templates(config_file))
    if directory is not None:
        cfg.directory = directory
    vocab, types = _vocabulary()
    return RulesService(cfg, vocabulary=vocab, event_types=types)


config_option = click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
                             envvar="SHOPKEEPER_CONFIG",
                             help="Hub config file: message templates are checked against its adapters' templates.")


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
    --allow-warnings, on warnings (CI-friendly). Offer ids are checked against DIRECTORY/offers,
    message templates against the hub config (--config). Nothing is reloaded.
    """
    from .loader import load_directory
    from .runtime import RulesConfig

    vocab, types = _vocabulary()
    d = directory if directory is not None else RulesConfig().directory
    from ..customer import now_us

    rs = load_directory(d, vocab, types, now_us=now_us(), templates=_templates(config_file))
    for diag in rs.errors + rs.warnings:
        click.echo(str(diag))
    bad = bool(rs.errors) or (not allow_warnings and bool(rs.warnings))
    summary = (f"{len(rs.rules)} rules in {len(rs.files)} files, version {rs.version}: "
               f"{len(rs.errors)} errors, {len(rs.warnings)} warnings")
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
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Rules directory (default ./rules or $SHOPKEEPER_RULES_DIR).")
@click.option("--event", "event_key", default=None,
              help="Explain one of WHO's recorded interactions (its key or idempotency key) instead of EVENT_FILE.")
@click.option("--json", "as_json", is_flag=True, help="JSON for tools instead of text.")
@click.option("--all", "show_all", is_flag=True, help="List rules for other event types one by one too.")
@click.argument("who")
@click.argument("event_file", type=click.File("r"), required=False)
def explain(store_uri: str, directory: Path | None, event_key: str | None, as_json: bool, show_all: bool,
            who: str, event_file: Any) -> None:
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
@click.option("--hub", default=None, help="HOST:PORT of a running hub: ask it to reload (Admin.ReloadRules).")
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
@click.option("--max", "max_rules", type=int, default=None, help="Cap per customer (default 5).")
@click.option("--by", "added_by", default="cli", show_default=True, help="Who adds it (kept with the rule).")
@click.argument("who")
@click.argument("rule_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def add_customer_rule_cmd(store_uri: str, max_rules: int | None, added_by: str, who: str, rule_file: Path) -> None:
    """Attach the rule(s) in RULE_FILE to customer WHO (id or namespace:value)."""
    from .customer_rules import CustomerRuleError, add_customer_rule

    svc = _service(None) if Path("rules").is_dir() else None
    store = open_store_or_exit(store_uri)
    try:
        with store.transaction(note=f"shopkeeper rules: add customer rule from {rule_file.name}") as f:
            c = find_customer_or_exit(f, who)
            try:
                names = add_customer_rule(f, c, rule_file.read_text(encoding="utf-8"), name=str(rule_file),
                                          added_by=added_by, max_rules=max_rules,
                                          vocabulary=svc.vocabulary if svc else None,
                                          event_types=svc.event_types if svc else None)
            except CustomerRuleError as exc:
                raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"customer {c.id}: added {', '.join(names)}")


@rules.command("remove-customer-rule")
@store_option
@click.argument("who")
@click.argument("name")
def remove_customer_rule_cmd(store_uri: str, who: str, name: str) -> None:
    """Remove customer WHO's rule NAME."""
    from .customer_rules import remove_customer_rule

    store = open_store_or_exit(store_uri)
    try:
        with store.transaction(note=f"shopkeeper rules: remove customer rule {name}") as f:
            c = find_customer_or_exit(f, who)
            if not remove_customer_rule(f, c, name):
                raise click.ClickException(f"customer {c.id} has no rule {name!r} "
                                           f"(has: {', '.join(sorted(c.rules)) or 'none'})")
    finally:
        store.close()
    click.echo(f"customer {c.id}: removed {name}")
