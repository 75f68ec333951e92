"""``shopkeeper campaign …`` on a store file no hub holds (the hub's RPCs: test_campaign_hub.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from shopkeeper.cli import main
from shopkeeper.store import Store

from .helpers import CAMPAIGN, population, write_campaign

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def test_check_and_test_the_shipped_campaign() -> None:
    r = run("campaign", "check", "--rules", str(REPO / "rules"))
    assert r.exit_code == 0, r.output
    r = run("campaign", "test", "--rules", str(REPO / "rules"))
    assert r.exit_code == 0, r.output
    assert "4 passed, 0 failed" in r.output


def test_a_failing_campaign_test_fails(tmp_path: Path) -> None:
    write_campaign(tmp_path)
    (tmp_path / "campaigns" / "w.test.yaml").write_text(
        "tests:\n  - name: wrong channel\n    campaign: winter_sale\n    customer:\n"
        "      identities: {email: a@x.com}\n      consents: {email: true}\n      segments: [repeat_buyers]\n"
        "      hard: {total_spend: 80}\n    expect: {channel: sms}\n")
    r = run("campaign", "test", "--rules", str(tmp_path))
    assert r.exit_code == 1 and "expected channel sms, got channel email" in r.output, r.output


def test_dry_run_start_status_report_offline(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    s = Store.open(uri)
    population(s, 24)
    s.close()
    write_campaign(tmp_path, CAMPAIGN.replace("holdout: 10", "holdout: 0"))
    r = run("campaign", "dry-run", "winter_sale", "--rules", str(tmp_path), "--store", uri, "--json")
    assert r.exit_code == 0, r.output
    dry = json.loads(r.output)
    assert dry["recipients"] == 12 and dry["excluded"] == {"no_consent": 4, "undeliverable": 4}
    r = run("campaign", "start", "winter_sale", "--rules", str(tmp_path), "--store", uri, "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["status"] == "done" and st["counts"]["intents:email"] + st["counts"]["intents:sms"] == 12
    r = run("campaign", "status", "--store", uri)
    assert r.exit_code == 0 and st["id"] in r.output and "done" in r.output, r.output
    r = run("campaign", "pause", st["id"], "--store", uri)
    assert r.exit_code == 1 and "it cannot be paused" in r.output, r.output
    r = run("campaign", "report", st["id"], "--store", uri, "--chart", str(tmp_path / "u.png"))
    assert r.exit_code == 0, r.output
    assert "intents" in r.output and "uplift: not measurable" in r.output and (tmp_path / "u.png").exists()
    r = run("campaign", "report", "nope", "--store", uri)
    assert r.exit_code == 1 and "no campaign run 'nope'" in r.output, r.output
