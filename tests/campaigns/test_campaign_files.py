"""Campaign files (``rules/campaigns/*.yaml``): loaded and checked like rule files, every
problem as ``file:line:col``, and part of ``shopkeeper rules check``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from shopkeeper.campaigns.model import load_campaigns
from shopkeeper.cli import main

from .helpers import CAMPAIGN, write_campaign

REPO = Path(__file__).resolve().parents[2]


def test_a_good_file_gives_the_model(tmp_path: Path) -> None:
    write_campaign(tmp_path)
    cs = load_campaigns(tmp_path)
    assert not cs.errors and not cs.warnings, cs.errors + cs.warnings
    c = cs.campaigns["winter_sale"]
    assert c.segment == "repeat_buyers" and c.priority == 10 and c.holdout == 10.0
    assert [m.channel for m in c.messages] == ["email", "sms"]
    assert c.messages[0].template == "summer_sale" and "STOP" in c.messages[1].text
    assert c.schedule.kind == "once" and c.schedule.at is not None
    assert c.offer == "winback_20" and c.start is not None and c.end is not None and c.start < c.end
    assert c.file.endswith("winter.yaml") and c.line == 2


def test_errors_name_file_line_and_column(tmp_path: Path) -> None:
    bad = (CAMPAIGN.replace("holdout: 10", "holdout: 150")
           .replace("customer.total_spend", "customer.total_spnd")
           .replace("channel: sms", "channel: sms\n        template: x\n        colour: red")
           .replace("schedule: {at: 2026-12-05T10:00:00Z}", "schedule: {every: 7}")
           .replace("priority: 10", "priorty: 10"))
    p = write_campaign(tmp_path, bad)
    cs = load_campaigns(tmp_path)
    text = "\n".join(map(str, cs.errors))
    assert f"{p}:8:11: unknown customer fact 'total_spnd'; did you mean 'total_spend'?" in text, text
    assert f"{p}:4:5: unknown campaign key 'priorty'; did you mean 'priority'?" in text, text
    assert f"{p}:18:14: `holdout` must be a percentage from 0 to 99" in text, text
    assert "unknown message key 'colour'" in text and "`every`: 7 has no unit" in text, text
    assert "an sms message takes `text`" in text, text


def test_no_event_in_an_audience_and_duplicates_across_files(tmp_path: Path) -> None:
    write_campaign(tmp_path)
    write_campaign(tmp_path, CAMPAIGN, "copy.yaml")
    p2 = write_campaign(tmp_path, CAMPAIGN.replace("customer.total_spend: {at_least: 50}", "event.amount: {above: 5}")
                        .replace("winter_sale", "other"), "again.yaml")
    cs = load_campaigns(tmp_path)
    text = "\n".join(map(str, cs.errors))
    assert f"{p2}:8:11: a campaign audience has no event" in text, text
    assert "duplicate campaign name 'winter_sale'" in text, text


def test_text_templates_and_message_channels_are_checked(tmp_path: Path) -> None:
    write_campaign(tmp_path, CAMPAIGN.replace("{trait.first_name|there}", "{event.name}")
                   .replace("template: summer_sale", "template: summer_sale\n        text: also"))
    cs = load_campaigns(tmp_path)
    text = "\n".join(map(str, cs.errors))
    assert "{event.name}: a campaign has no event" in text, text
    assert "an email message takes `template`, not `text`" in text, text


def test_rules_check_includes_campaigns_and_fails_on_them(tmp_path: Path) -> None:
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: -1"))
    res = CliRunner().invoke(main, ["rules", "check", str(tmp_path)])
    assert res.exit_code == 1, res.output
    assert "winter.yaml:16:14: `holdout` must be a percentage" in res.output
    write_campaign(tmp_path)
    res = CliRunner().invoke(main, ["rules", "check", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "1 campaigns" in res.output


def test_the_shipped_example_campaign_checks() -> None:
    cs = load_campaigns(REPO / "rules")
    assert not cs.errors and not cs.warnings, cs.errors + cs.warnings
    assert cs.campaigns, "rules/campaigns/ ships an example"
    res = CliRunner().invoke(main, ["rules", "check", str(REPO / "rules")])
    assert res.exit_code == 0, res.output
