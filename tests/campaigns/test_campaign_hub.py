"""Campaigns in a running hub: the Campaigns RPCs, the runner writing through the one writer
(the CommitGuard fixture fails the test on any other commit), responses attributed, the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from shopkeeper import outbox
from shopkeeper.campaigns import runs
from shopkeeper.cli import main
from shopkeeper.client import Client

pytestmark = pytest.mark.e2e

CAMPAIGN = """\
campaigns:
  - name: big_buyers
    audience:
      conditions:
        - customer.orders: {at_least: 1}
    messages:
      - {channel: email, template: summer_sale}
    holdout: 40
"""


@pytest.fixture
def hub(shopkeeper_hub_factory: Any, tmp_path: Path) -> Any:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "big.yaml").write_text(CAMPAIGN)
    h = shopkeeper_hub_factory({"rules_dir": str(tmp_path)})
    emails = [f"b{i}@example.com" for i in range(40)]
    res = h.send(*({"type": "order", "identities": {"email": e}, "data": {"amount": 50.0, "order_id": e}}
                   for e in emails))
    assert all(r["status"] == "applied" for r in res), res
    for e in emails[:30]:
        h.grant(("email", e))
    return h


def campaign_intents(h: Any, run_id: str | None = None) -> dict[str, Any]:
    """customer id -> the intent of run ``run_id`` (of any run when None: one per customer)."""
    with h.hub.store.read() as f:
        return {cid: it for cid, c in f.customers.items() for it in outbox.items(c)
                if it.payload.get("campaign") == "big_buyers" and run_id in (None, it.payload.get("run"))}


def test_start_run_report_through_the_hub(hub: Any) -> None:
    h = hub
    with Client(h.address, h.api_key) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.start_campaign("nope")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "known: big_buyers" in err.value.details()
        for call, code in ((lambda: c.campaign_dry_run(""), grpc.StatusCode.INVALID_ARGUMENT),
                           (lambda: c.campaign_report("r1", window_days=-1), grpc.StatusCode.INVALID_ARGUMENT),
                           (lambda: c.campaign_report("nope"), grpc.StatusCode.NOT_FOUND),
                           (lambda: c.campaign_run("nope", "resume"), grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == code, err.value
        dry = json.loads(c.campaign_dry_run("big_buyers").json)
        assert dry["audience"] == 40 and dry["excluded"]["no_consent"] == 10
        run = c.start_campaign("big_buyers")
        done = h.wait_for(lambda: c.campaign_run(run.id).status == runs.DONE and c.campaign_run(run.id),
                          what="the run to finish")
        held = done.counts["holdout"]
        got = campaign_intents(h)
        assert len(got) + held == 30 and done.counts["intents:email"] == len(got) and 0 < held < 30
        assert done.counts["no_consent"] == 10
        with pytest.raises(grpc.RpcError) as err:
            c.campaign_run(run.id, "pause")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # responses: three treated customers are sent the email, open, click, and two of them order
        with h.hub.store.read() as f:
            email_of = {cid: f.customers[cid].identities_in("email")[0] for cid in got}
            plan = dict(runs.get_run(f, run.id).plan)
        treated = sorted(got)[:3]
        for i, cid in enumerate(treated):
            e, iid = email_of[cid], got[cid].id
            h.event("message_dispatch", e, intent=iid, message_id=f"<m{i}@x>")
            h.event("email_sent", e, intent=iid, message_id=f"<m{i}@x>", campaign="big_buyers")
            h.event("email_open", e, campaign="big_buyers", message_id=f"<m{i}@x>")
            if i < 2:
                h.event("email_click", e, campaign="big_buyers", message_id=f"<m{i}@x>")
                h.event("order", e, amount=30.0, order_id=f"after-{i}")
        rep = json.loads(c.campaign_report(run.id).json)
        email = rep["funnel"]["email"]
        assert email["intents"] == len(got) and email["sent"] == 3 and email["opened"] == 3
        assert email["clicked"] == 2 and email["converted"] == 2
        u = rep["uplift"]
        assert u["treated"] == len(got) and u["control"] == held == sum(1 for v in plan.values() if v[1] == "holdout")
        assert u["ci_low"] <= u["difference"] <= u["ci_high"]
        assert "95% interval" in c.campaign_report(run.id).text

    r = CliRunner().invoke(main, ["campaign", "status", "--hub", h.address, "--api-key", h.api_key])
    assert r.exit_code == 0 and run.id in r.output and "done" in r.output, r.output
    r = CliRunner().invoke(main, ["campaign", "cancel", run.id, "--hub", h.address, "--api-key", h.api_key])
    assert r.exit_code == 1 and "FAILED_PRECONDITION" in r.output and "it cannot be cancelled" in r.output


def test_pause_resume_and_cancel_through_the_hub(hub: Any) -> None:
    import threading

    from shopkeeper.campaigns.plugin import files_for, runner_for

    h = hub
    runner_for(h.hub).stop()  # this test drives the runs itself, step by step (through the same writer)
    submit = h.hub.writer.submit_op
    runner = runs.Runner(h.hub.store, submit)  # not started: run_once() is one step of the hub's runner
    campaign = files_for(h.hub)()["big_buyers"]
    with Client(h.address, h.api_key) as c:
        for rid in ("r-pause", "r-cancel"):
            submit(runs.create_run(campaign, run_id=rid)).result()
            runs.snapshot(h.hub.store, submit, rid)
            stop = threading.Event()
            assert runs.deliver(h.hub.store, submit, rid, batch=20, stop=stop,
                                progress=lambda n, st, stop=stop: stop.set()) == runs.RUNNING
        written = list(campaign_intents(h, "r-cancel").values())
        assert written and all(it.status == outbox.PENDING for it in written)
        st = c.campaign_run("r-cancel", "cancel")
        assert st.status == runs.CANCELLED and st.counts["cancelled"] == len(written)
        mine = list(campaign_intents(h, "r-cancel").values())
        assert len(mine) == len(written) and all(it.status == outbox.CANCELLED for it in mine)
        assert c.campaign_run("r-pause", "pause").status == runs.PAUSED
        before = c.campaign_run("r-pause").delivered
        assert before == 20
        runner.run_once()  # a paused run stays where it is
        assert c.campaign_run("r-pause").delivered == before and c.campaign_run("r-pause").status == runs.PAUSED
        assert c.campaign_run("r-pause", "resume").status == runs.RUNNING
        runner.run_once()
        assert c.campaign_run("r-pause").status == runs.DONE

        runner.run_once()
        assert c.campaign_run("r-cancel").delivered == 20  # nothing more was written


def test_templates_are_checked_against_the_hubs_adapters_at_start_and_on_check(
        shopkeeper_hub_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A campaign naming a template no adapter declares is named at hub start and by
    CheckCampaigns, as rules are (the email adapter's built-in templates count)."""
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "big.yaml").write_text(CAMPAIGN.replace("template: summer_sale",
                                                                      "template: sumer_sale"))
    with caplog.at_level("WARNING", logger="shopkeeper"):
        h = shopkeeper_hub_factory({"rules_dir": str(tmp_path)})
        h.wait_for(lambda: "sumer_sale" in caplog.text, what="the start-up warning")
    assert "email template 'sumer_sale' is not in the hub config" in caplog.text
    assert "did you mean 'summer_sale'" in caplog.text.lower() or "summer_sale" in caplog.text
    with Client(h.address, h.api_key) as c:
        got = c.check_campaigns()
    assert not got.errors and any("'sumer_sale'" in w for w in got.warnings), got
    res = CliRunner().invoke(main, ["campaign", "check", "--rules", str(tmp_path)])
    assert res.exit_code == 1 and "email template 'sumer_sale'" in res.output, res.output


def test_a_test_send_reaches_the_seed_list_and_no_run_counts_it(hub: Any) -> None:
    h = hub
    with Client(h.address, h.api_key) as c:
        for to, channel, code in ((["nobody"], "", grpc.StatusCode.INVALID_ARGUMENT),
                                  (["email:b0@example.com"], "sms", grpc.StatusCode.INVALID_ARGUMENT),
                                  ([], "", grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.RpcError) as err:
                c.campaign_send_test("big_buyers", to, channel)
            assert err.value.code() == code, err.value
        with pytest.raises(grpc.RpcError) as err:
            c.campaign_send_test("nope", ["email:b0@example.com"])
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        got = c.campaign_send_test("big_buyers", ["email:B0@example.com", "email:b39@example.com",
                                                  "email:stranger@example.com"])
        ok, no_consent, stranger = got.sends
        assert ok.channel == "email" and ok.intent.startswith("ct.big_buyers.") and not ok.error
        assert no_consent.error.startswith("no_consent") and not no_consent.intent  # b39 gave none
        assert "no such customer" in stranger.error
        with h.hub.store.read() as f:
            item = outbox.get(f.customers[ok.customer_id], ok.intent)
        assert item.status == outbox.PENDING and item.template == "summer_sale"
        assert item.payload["campaign_test"] == "big_buyers" and "campaign" not in item.payload  # no run's
        assert c.campaign_runs("big_buyers").runs == []
        run = c.start_campaign("big_buyers")
        h.wait_for(lambda: c.campaign_run(run.id).status == runs.DONE, what="the run to finish")
        rep = json.loads(c.campaign_report(run.id).json)
        assert rep["funnel"]["email"]["intents"] == c.campaign_run(run.id).counts["intents:email"]
    r = CliRunner().invoke(main, ["campaign", "test", "big_buyers", "--to", "email:b1@example.com",
                                  "--hub", h.address, "--api-key", h.api_key])
    assert r.exit_code == 0 and "b1@example.com: email to customer" in r.output and "intent ct." in r.output, r.output
    r = CliRunner().invoke(main, ["campaign", "test", "big_buyers"])
    assert r.exit_code == 2 and "--to" in r.output
