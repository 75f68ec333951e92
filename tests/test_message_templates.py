"""Channel adapters declare the templates they can render (``shopkeeper_message_templates``), and
the names rules use are checked against them by ``rules check`` and at hub start — including the
email adapter's built-in templates, which no config lists (issue 11: only adapters whose config
listed templates were seen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from shopkeeper import hookimpl
from shopkeeper.cli import main
from shopkeeper.hub.config import HubConfig
from shopkeeper.hub.server import Hub
from shopkeeper.plugins import get_plugin_manager, message_templates
from shopkeeper.rules.plugin import service_for
from shopkeeper.servers import free_port
from shopkeeper.store import Store

REPO = Path(__file__).resolve().parents[1]
RULES = """\
rules:
  - name: r
    when: {event: order}
    then:
      - send_message: {channel: email, template: %s}
      - send_message: {channel: pager, template: %s}
"""


class PagerTemplates:
    """A third-party channel plugin declaring its templates, built-in and configured."""

    @hookimpl
    def shopkeeper_message_templates(self, adapters: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
        section = adapters.get("pager") or {}
        return {"pager": ["page_oncall", *section.get("texts", {})]}


def test_hook_shopkeeper_message_templates() -> None:
    """Every implementation answers and the names of a channel are united: the email adapter's
    built-in templates without any config, its inline ones with it, and another plugin's channel."""
    pm = get_plugin_manager(load_entrypoints=False, extra=(PagerTemplates(),))
    bare = message_templates(pm)
    assert {"cart_reminder", "welcome", "summer_sale", "default"} <= bare["email"]
    assert bare["pager"] == {"page_oncall"}
    configured = message_templates(pm, {"email": {"templates": {"promo": {"subject": "s", "text": "t"},
                                                                 "subject_only": {"subject": "s"}}},
                                        "pager": {"texts": {"late_delivery": "..."}}})
    assert "promo" in configured["email"] and "subject_only" not in configured["email"]  # nothing to render
    assert configured["pager"] == {"page_oncall", "late_delivery"}


def test_rules_check_sees_the_email_adapters_built_in_templates_without_a_config(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "r.yaml").write_text(RULES.replace("      - send_message: {channel: pager, template: %s}\n", "")
                              % "cart_remnder")
    r = CliRunner().invoke(main, ["rules", "check", str(d)])
    assert r.exit_code == 1, r.output
    assert "email template 'cart_remnder' is not one the email adapter declares; did you mean 'cart_reminder'?" \
        in r.output
    (d / "r.yaml").write_text((d / "r.yaml").read_text().replace("cart_remnder", "cart_reminder"))
    r = CliRunner().invoke(main, ["rules", "check", str(d)])
    assert r.exit_code == 0, r.output


@pytest.mark.e2e  # a real hub
def test_hub_start_checks_rules_against_every_declared_template(tmp_path: Path) -> None:
    """No ``adapters:`` section at all: the built-in email templates and a plugin's channel are still checked."""
    (tmp_path / "r.yaml").write_text(RULES % ("welcom", "page_oncal"))
    cfg = HubConfig(listen=f"127.0.0.1:{free_port()}", store="memory://", rules_dir=str(tmp_path))
    hub = Hub(cfg, store=Store.open("memory://"), load_entrypoints=False, plugins=(PagerTemplates(),))
    hub.start()
    try:
        warnings = [str(w) for w in service_for(hub).current.warnings]
    finally:
        hub.stop(grace=0.5)
    assert any("email template 'welcom' is not one the email adapter declares; did you mean 'welcome'?" in w
               for w in warnings), warnings
    assert any("pager template 'page_oncal' is not one the pager adapter declares; did you mean 'page_oncall'?"
               in w for w in warnings), warnings


def test_every_template_the_shipped_rules_name_is_declared_by_its_channels_adapter() -> None:
    """The example rules must be runnable as shipped: each message names a template the installed
    adapter of its channel declares (a channel no installed adapter declares is not checked)."""
    declared = message_templates(get_plugin_manager())
    named: set[tuple[str, str]] = set()

    def walk(v: object) -> None:
        if isinstance(v, dict):
            send = v.get("send_message")
            if isinstance(send, dict):
                named.add((str(send["channel"]), str(send["template"])))
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for p in (REPO / "rules").glob("*.yaml"):
        if not p.name.endswith(".test.yaml"):
            walk(yaml.safe_load(p.read_text()))
    assert ("email", "summer_sale") in named and ("sms", "summer_sale_sms") in named
    assert {"email", "sms"} <= set(declared), "the email and SMS adapters declare their templates"
    missing = sorted((ch, t) for ch, t in named if ch in declared and t not in declared[ch])
    assert not missing, f"shipped rules name templates no installed adapter declares: {missing}"


def test_the_sms_adapter_renders_its_built_in_summer_sale_template() -> None:
    """``summer_sale_sms`` (the shipped SMS rule's template) is built into the SMS adapter; a
    configured template of the same name wins."""
    from shopkeeper.adapters.sms import SmsAdapter
    from shopkeeper.outbox import Message

    msg = Message("i1", "c1", "sms", "summer_sale_sms")
    text = SmsAdapter.from_config({}, None).render(msg, {"traits": {"first_name": "Ann"}}, "+4915112345678", "<m>")
    assert "Ann" in text and "STOP" in text and "{" not in text
    mine = SmsAdapter.from_config({"templates": {"summer_sale_sms": "Sale, {{ first_name }}!"}}, None)
    assert mine.render(msg, {"traits": {"first_name": "Bo"}}, "+4915112345678", "<m>") == "Sale, Bo!"
