"""`shopkeeper rules check` is strict by default: every problem the issue found passing is an error or a
failing warning, printed once, and a check never logs as a reload."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from shopkeeper.cli import main

from .helpers import REPO, write_rules

WEAK = """\
rules:
  - name: weak
    cooldown: 14
    when:
      event: call
      conditions:
        - event.disposition: yes
    then:
      - alert_agent: {message: hi, priority: urgent, queue: 42}
      - set_fact: {name: answer, value: yes}
      - propose_offer: {id: free_shiping, valid_for: 14}
      - send_message: {channel: email, template: welcom}
"""


def _check(*args: str) -> object:
    return CliRunner().invoke(main, ["rules", "check", *args])


@pytest.fixture
def weak_dir(rules_dir: Path) -> Path:
    write_rules(rules_dir, "weak.yaml", WEAK)
    write_rules(rules_dir / "offers", "catalogue.yaml", "offers:\n  - {id: free_shipping}\n")
    return rules_dir


@pytest.mark.parametrize("message", [
    "weak.yaml:3:15: `cooldown`: 14 has no unit: write 14s, 14m, 14h, 14d or 14w",
    "weak.yaml:7:30: `yes` is read as true (YAML 1.1 boolean) in event.disposition",
    "weak.yaml:9:46: type error: `alert_agent.priority` must be one of low, normal, high, not 'urgent'",
    "weak.yaml:9:61: type error: `alert_agent.queue` must be text, not int 42",
    "weak.yaml:10:41: `yes` is read as true (YAML 1.1 boolean) in `set_fact.value`",
    "weak.yaml:11:54: type error: `propose_offer.valid_for` 14 has no unit",
])
def test_each_weak_spot_is_an_error(weak_dir: Path, message: str) -> None:
    r = _check(str(weak_dir))
    assert r.exit_code == 1
    assert message in r.output, r.output


def test_offer_ids_and_templates_are_cross_checked(rules_dir: Path, tmp_path: Path) -> None:
    write_rules(rules_dir, "r.yaml", """\
rules:
  - name: r
    when: {event: order}
    then:
      - propose_offer: {id: free_shiping}
      - send_message: {channel: email, template: promo_sprng}
""")
    write_rules(rules_dir / "offers", "catalogue.yaml", "offers:\n  - {id: free_shipping}\n")
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("adapters:\n  email:\n    templates:\n      promo_spring: {subject: Hi, text: Hello}\n")
    r = _check(str(rules_dir), "--config", str(cfg))
    assert r.exit_code == 1
    assert ("r.yaml:5:29: warning: offer 'free_shiping' is not in the offer catalogue (offers/); "
            "did you mean 'free_shipping'?") in r.output
    assert ("r.yaml:6:50: warning: email template 'promo_sprng' is not one the email adapter declares; "
            "did you mean 'promo_spring'? (known: cart_reminder, default, promo_spring, ") in r.output
    # warnings fail by default; --allow-warnings lets them pass, never errors
    assert _check(str(rules_dir), "--config", str(cfg), "--allow-warnings").exit_code == 0
    # an offer only rules propose is declared, then accepted
    (rules_dir / "r.yaml").write_text((rules_dir / "r.yaml").read_text().replace(
        "rules:", "vocabulary:\n  offers: [free_shiping]\nrules:", 1).replace("promo_sprng", "welcome"))
    r = _check(str(rules_dir))
    assert r.exit_code == 0, r.output


def test_each_problem_is_printed_once_and_nothing_logs_a_reload(weak_dir: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="shopkeeper"):
        r = _check(str(weak_dir))
    lines = [x for x in r.output.splitlines() if "weak.yaml:" in x]
    assert len(lines) == len(set(lines)) == 7, r.output  # the 7th: template welcom
    assert not [rec for rec in caplog.records if "reload" in rec.getMessage()]
    assert "not reloaded" not in r.output


def test_the_shipped_rules_pass_the_strict_check() -> None:
    r = _check(str(REPO / "rules"))
    assert r.exit_code == 0, r.output
    assert "0 errors, 0 warnings" in r.output
