"""The rule author's commands against a real running `shopkeeper serve` (--hub), never touching its store:
show, rules explain, add/list/remove-customer-rule, outbox list, timers list, offers decide; the SDK's
Rules methods and record(trace=True); and the error that says how to reach a hub holding the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from hub.test_hub_lifecycle import wait_healthy

from shopkeeper.cli import main
from shopkeeper.client import Client
from shopkeeper.hub.config import hash_key

from .helpers import REPO

pytestmark = pytest.mark.e2e

ADMIN, READER = "sk_rules_admin", "sk_rules_reader"


class Served:
    def __init__(self, tmp: Path, port: int, proc: subprocess.Popen) -> None:
        self.tmp, self.addr, self.proc = tmp, f"127.0.0.1:{port}", proc
        self.store = f"file://{tmp}/Data.fs"

    def cli(self, *args: str, key: str = ADMIN) -> object:
        return CliRunner().invoke(main, list(args), env={"SHOPKEEPER_HUB": self.addr, "SHOPKEEPER_API_KEY": key,
                                                         "SHOPKEEPER_STORE": self.store})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from hub.conftest import free_port

    tmp = tmp_path_factory.mktemp("served")
    shutil.copytree(REPO / "rules", tmp / "rules")
    # no control group: customer ids are random, and a customer in the 10% hold-out gets no offer at
    # all, so the Decide explanations below would depend on the draw (1 run in 10 failed)
    catalogue = tmp / "rules" / "offers" / "catalogue.yaml"
    text = catalogue.read_text(encoding="utf-8")
    assert "control_percent: 10" in text
    catalogue.write_text(text.replace("control_percent: 10", "control_percent: 0"), encoding="utf-8")
    cfg = tmp / "hub.yaml"
    cfg.write_text(f"api_keys:\n  - name: analyst\n    key_sha256: {hash_key(ADMIN)}\n"
                   "    scopes: [interactions:write, admin, profiles:read, decide, rules:write]\n"
                   f"  - name: reader\n    key_sha256: {hash_key(READER)}\n    scopes: [profiles:read]\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from shopkeeper.cli import main; main()", "serve", "--store", f"file://{tmp}/Data.fs",
         "--listen", f"127.0.0.1:{port}", "--config", str(cfg), "--rules", str(tmp / "rules"), "--grace", "2"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "hub.log", "ab"),  # noqa: SIM115
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_healthy(port, proc, timeout=90).close()  # a loaded CI machine imports slowly
        s = Served(tmp, port, proc)
        with Client(s.addr, ADMIN) as c:
            c.identify({"email": "kim@example.com"})
            c.set_consent("email", True, email="kim@example.com")
            c.record({"type": "order", "identities": {"email": "kim@example.com"},
                      "data": {"order_id": "K-1", "amount": 1500}})
            c.record({"type": "checkout_started", "identities": {"email": "kim@example.com"},
                      "data": {"cart_value": 60}})
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_show_over_the_hub_and_the_locked_store_says_how_to_reach_it(served: Served) -> None:
    r = served.cli("show", "email:kim@example.com", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["hard_facts"]["orders"] == "1"
    # the same command on the store file the hub holds: the error names the way out
    r = CliRunner().invoke(main, ["show", "--store", served.store, "email:kim@example.com"],
                           env={"SHOPKEEPER_HUB": ""})
    assert r.exit_code == 1 and "--hub HOST:PORT" in r.output and "SHOPKEEPER_HUB" in r.output


def test_explain_over_the_hub_who_did_and_who_did_not(served: Served, tmp_path: Path) -> None:
    small = tmp_path / "small.json"
    small.write_text('{"type": "order", "data": {"order_id": "K-2", "amount": 20}}')
    r = served.cli("rules", "explain", "email:kim@example.com", str(small))
    assert r.exit_code == 0, r.output
    assert "NOT FIRED  big_order_alert" in r.output and "saw 20" in r.output
    assert "FIRED      engagement_points" in r.output
    r = served.cli("rules", "explain", "email:kim@example.com", "--event", "K-1", "--json")
    assert r.exit_code != 0 and "no interaction with key or idempotency key 'K-1'" in r.output
    with Client(served.addr, ADMIN) as c:
        x = json.loads(c.explain(email="kim@example.com", event={"type": "order", "data": {
            "order_id": "K-3", "amount": 5000}}).json)
    assert {r["rule"]: r["outcome"] for r in x["rules"]}["big_order_alert"] == "fired"


def test_customer_rules_over_the_hub_with_scopes(served: Served, tmp_path: Path) -> None:
    rule = tmp_path / "back_in_stock.yaml"
    rule.write_text("name: back_in_stock\nwhen:\n  event: page_view\n  conditions:\n"
                    "    - event.url: /product/42\nthen:\n  - tag: wants_42\n")
    r = served.cli("rules", "add-customer-rule", "email:kim@example.com", str(rule))
    assert r.exit_code == 0 and "added back_in_stock" in r.output, r.output
    r = served.cli("rules", "list-customer-rules", "email:kim@example.com")
    assert "back_in_stock" in r.output and "added by analyst" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nwhen: {event: page_view}\nthen:\n  - tagg: x\n")
    r = served.cli("rules", "add-customer-rule", "email:kim@example.com", str(bad))
    assert r.exit_code == 1 and "INVALID_ARGUMENT" in r.output and f"{bad}:4:5: unknown action 'tagg'" in r.output
    r = served.cli("rules", "add-customer-rule", "email:kim@example.com", str(rule), key=READER)
    assert r.exit_code == 1 and "PERMISSION_DENIED" in r.output and "rules:write" in r.output
    # the hub evaluates it: a page view tags the customer
    with Client(served.addr, ADMIN) as c:
        st = c.record({"type": "page_view", "identities": {"email": "kim@example.com"},
                       "data": {"url": "/product/42"}}, trace=True)
        from google.protobuf import json_format

        assert "customer:back_in_stock" in json.dumps(json_format.MessageToDict(st.trace))
    r = served.cli("rules", "remove-customer-rule", "email:kim@example.com", "back_in_stock")
    assert r.exit_code == 0 and "removed back_in_stock" in r.output
    r = served.cli("rules", "remove-customer-rule", "email:kim@example.com", "back_in_stock")
    assert r.exit_code == 1 and "NOT_FOUND" in r.output


def test_outbox_timers_and_decide_over_the_hub(served: Served) -> None:
    r = served.cli("outbox", "list", "email:kim@example.com", "--json")
    assert r.exit_code == 0, r.output
    items = json.loads(r.output)["items"]
    assert any(i["channel"] == "agent" and "Big order K-1" in i["payload"]["message"] for i in items), items
    r = served.cli("timers", "list", "email:kim@example.com")
    assert r.exit_code == 0 and "cart_abandonment (central, armed by checkout_started)" in r.output, r.output
    r = served.cli("offers", "decide", "email:kim@example.com", "--touchpoint", "web")
    assert r.exit_code == 0, r.output
    assert isinstance(json.loads(r.output), list)


def test_a_hub_that_is_not_there_is_a_clear_error() -> None:
    from hub.conftest import free_port

    r = CliRunner().invoke(main, ["timers", "list", "--hub", f"127.0.0.1:{free_port()}", "c1"])
    assert r.exit_code == 1 and "UNAVAILABLE" in r.output


def test_grpc_errors_are_never_unknown(served: Served) -> None:
    with Client(served.addr, ADMIN) as c, pytest.raises(grpc.RpcError) as exc:
        c.timers(email="nobody@example.com")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_import_through_the_hub_with_the_same_per_row_errors(served: Served, tmp_path: Path) -> None:
    rows = tmp_path / "orders.jsonl"
    rows.write_text(
        '{"type": "order", "identities": {"email": "lee@example.com"}, "idempotency_key": "imp-1",'
        ' "data": {"order_id": "L-1", "amount": 30}}\n'
        '{"type": "order", "identities": {"email": "lee@example.com"}, "idempotency_key": "imp-2",'
        ' "data": {"order_id": "L-2", "amount": -5}}\n'
        '{"type": "order", "identities": {"email": "lee@example.com"}, "idempotency_key": "imp-3",'
        ' "data": {"order_id": "L-3", "amount": 12}}\n')
    r = served.cli("import", str(rows), "-q")
    assert r.exit_code == 1, r.output
    assert f"{rows}:2: data.amount:" in r.output
    assert "3 rows read from 1 file(s): 2 applied, 0 duplicates, 1 rejected" in r.output
    r = served.cli("import", str(rows), "-q")  # a re-run counts what arrived once
    assert "2 duplicates" in r.output
    # the hub applied them as it applies any event: the rules ran (first_order_thanks on the first order)
    with Client(served.addr, ADMIN) as c:
        lee = c.get_customer(email="lee@example.com")
        assert lee.hard_facts.orders == 2 and "customers" in lee.segments


def test_import_customer_rows_and_strict_through_the_hub(served: Served, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("email,first_name,consent.email.marketing,scores.loyalty\n"
                      "ann@example.com,Ann,yes,7\n"
                      "bob@example.com,Bob,maybe,3\n"
                      "cy@example.com,Cy,no,1\n")
    r = served.cli("import", str(people), "--kind", "customers", "-q")
    assert r.exit_code == 1, r.output
    assert f"{people}:3: consent.email.marketing:" in r.output  # the hub's own check, with file and line
    assert "3 rows read from 1 file(s): 2 applied, 0 duplicates, 1 rejected; 2 customers created" in r.output
    with Client(served.addr, ADMIN) as c:
        ann = c.get_customer(email="ann@example.com")
        assert ann.traits["first_name"] == "Ann" and ann.scores["loyalty"].value == 7.0
        assert [(x.channel, x.granted, x.source) for x in ann.consents] == [("email", True, "import")]
        # --strict: one bad row anywhere and nothing at all is written, the row named
        strict = tmp_path / "strict.csv"
        strict.write_text("email,first_name\ndee@example.com,Dee\nnot-an-email,Eve\n")
        r = served.cli("import", str(strict), "--kind", "customers", "--strict", "-q")
        assert r.exit_code == 1 and f"{strict}:3: identities.email:" in r.output, r.output
        assert "nothing was imported" in r.output
        with pytest.raises(grpc.RpcError) as exc:
            c.get_customer(email="dee@example.com")
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        strict.write_text("email,first_name\ndee@example.com,Dee\n")
        r = served.cli("import", str(strict), "--kind", "customers", "--strict", "-q")
        assert r.exit_code == 0 and "1 applied" in r.output, r.output
        assert c.get_customer(email="dee@example.com").traits["first_name"] == "Dee"


def test_import_historical_and_pinned_rows_through_the_hub(served: Served, tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text('{"type": "order", "identities": {"email": "old@example.com"}, "ts": "1998-03-01T10:00:00Z",'
                   ' "data": {"order_id": "O-1", "amount": 5000}}\n')
    r = served.cli("import", str(old), "-q")  # a 1998 time is a unit mistake unless loading history
    assert r.exit_code == 1 and "ts:" in r.output and "--historical" in r.output, r.output
    r = served.cli("import", str(old), "--historical", "-q")
    assert r.exit_code == 0 and "1 applied" in r.output and "no rules ran" in r.output, r.output
    new = tmp_path / "new.jsonl"
    new.write_text('{"type": "order", "identities": {"email": "new@example.com"},'
                   ' "data": {"order_id": "N-1", "amount": 5000}}\n')
    r = served.cli("import", str(new), "-q")
    assert r.exit_code == 0, r.output
    with Client(served.addr, ADMIN) as c:
        assert c.get_customer(email="old@example.com").hard_facts.orders == 1
        # the big order alert: raised for the order imported live, not for the history
        assert not c.customer_outbox(email="old@example.com", status="all").items
        assert any(i.channel == "agent" for i in c.customer_outbox(email="new@example.com", status="all").items)
        old_id = c.get_customer(email="old@example.com").id
    # what an export holds, read back through the hub: a customer row whose id exists (updated, its
    # 1998 creation kept) and interactions pinned to a customer id rather than resolved by identity
    back = tmp_path / "back.jsonl"
    back.write_text(json.dumps({"id": old_id, "created_at": "1998-03-01T10:00:00Z", "traits": {"tier": "gold"},
                                "identities": [{"namespace": "email", "value": "old@example.com",
                                                "source": "crm", "at": "1998-03-01T10:00:00Z"}]}) + "\n"
                    + json.dumps({"type": "page_view", "customer": old_id, "idempotency_key": "pin-1",
                                  "ts": "1998-04-01T00:00:00Z", "data": {"url": "/catalogue"}}) + "\n"
                    + json.dumps({"type": "page_view", "customer": "c-not-here", "idempotency_key": "pin-2",
                                  "data": {"url": "/x"}}) + "\n")
    r = served.cli("import", str(back), "--historical", "-q")
    assert r.exit_code == 1 and f"{back}:3: identities: required: customer 'c-not-here' is not in this store" \
        in r.output, r.output
    assert "2 applied, 0 duplicates, 1 rejected; 0 customers created" in r.output
    with Client(served.addr, ADMIN) as c:
        old = c.get_customer(email="old@example.com")
        assert old.traits["tier"] == "gold" and old.hard_facts.interactions == 2
        assert [i.type for i in c.list_interactions(old_id)] == ["page_view", "order"]
    assert "2 duplicates" in served.cli("import", str(back), "--historical", "-q").output


def test_segments_apply_and_models_fit_over_the_hub(served: Served) -> None:
    r = served.cli("segments", "apply", "--all")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["customers"] >= 1 and report["segments"] >= 1, report
    r = served.cli("models", "fit")
    assert r.exit_code == 0, r.output
    assert "RFM model version" in r.output and "scored" in r.output
    with Client(served.addr, ADMIN) as c:  # the scores were committed by the hub's writer
        assert any(k.startswith("rfm") for k in c.get_customer(email="kim@example.com").scores)


def test_export_over_the_hub_is_the_offline_export(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    r = served.cli("export", "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    customers = [x for x in lines if "type" not in x]
    assert any(i["namespace"] == "email" and i["value"] == "kim@example.com"
               for c in customers for i in c["identities"])
    assert any(x.get("type") == "order" and x["data"].get("order_id") == "K-1" for x in lines)
    assert f"exported {len(customers)} customers and {len(lines) - len(customers)} interactions" in r.output
    # --kind customers: customer lines only, to stdout
    r = served.cli("export", "--kind", "customers", "-q")
    assert r.exit_code == 0 and r.output.count('"identities"') == len(customers)


def test_offers_decide_explain_over_the_hub_is_a_dry_run(served: Served) -> None:
    with Client(served.addr, ADMIN) as c:
        before = c.get_customer(email="kim@example.com").hard_facts.interactions
    r = served.cli("offers", "decide", "email:kim@example.com", "--explain", "--json", key=READER)
    assert r.exit_code == 0, r.output
    x = json.loads(r.output)
    why = {w["offer"]: w for w in x["offers"]}
    assert {"free_shipping", "welcome_10", "winback_20", "vip_preview"} <= why.keys(), x["offers"]
    assert why["welcome_10"]["outcome"] == "excluded"  # not eligible, or behind a follow-up of an earlier offer
    assert all(w["outcome"] in ("chosen", "excluded", "ranked_lower") and w["why"] for w in x["offers"])
    r = served.cli("offers", "decide", "email:kim@example.com", "--explain", "--touchpoint", "kiosk")
    assert r.exit_code == 0 and f"customer {x['customer_id']}  touchpoint kiosk  placement home_hero" in r.output
    assert r.output.count("not for channel kiosk") == len(why), r.output
    with Client(served.addr, ADMIN) as c:  # nothing recorded: no offer_shown, no count
        assert c.get_customer(email="kim@example.com").hard_facts.interactions == before
    r = served.cli("offers", "decide", "email:kim@example.com", "--record")
    assert r.exit_code == 2 and "--record writes to the store file" in r.output


def test_async_client_has_the_rules_methods(served: Served) -> None:
    import asyncio

    from shopkeeper.client import AsyncClient

    rule = "name: async_rule\nwhen:\n  event: page_view\nthen:\n  - tag: seen_async\n"

    async def run() -> None:
        async with AsyncClient(served.addr, ADMIN) as c:
            added = await c.add_customer_rule(rule, email="kim@example.com")
            assert added.changed == ["async_rule"]
            assert "async_rule" in [x.name for x in (await c.customer_rules(email="kim@example.com")).rules]
            st = await c.record({"type": "page_view", "identities": {"email": "kim@example.com"},
                                 "data": {"url": "/a"}}, trace=True)
            assert "customer:async_rule" in str(st.trace)
            x = json.loads((await c.explain(email="kim@example.com", event={"type": "page_view",
                                                                           "data": {"url": "/b"}})).json)
            assert any(r["rule"] == "customer:async_rule" and r["outcome"] == "fired" for r in x["rules"]), x
            assert (await c.customer_outbox(email="kim@example.com", status="all")).customer_id == added.customer_id
            assert (await c.timers(email="kim@example.com")).customer_id == added.customer_id
            assert "free_shipping" in (await c.explain_decide(email="kim@example.com")).text
            removed = await c.remove_customer_rule("async_rule", email="kim@example.com")
            assert removed.changed == ["async_rule"] and not [x for x in removed.rules if x.name == "async_rule"]

    asyncio.run(run())
