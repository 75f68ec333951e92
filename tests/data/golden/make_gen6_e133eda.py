"""Build the golden store ``gen6-e133eda.fs`` and its expected dump ``gen6-e133eda.json``.

**Run with the code of commit e133eda** (the end of wave 2's fourth session: generation 6 with the
named steps ``audience-split`` and ``order-table``, the last code whose persistent classes were
defined beside their logic), never with the current one: the point of the fixture is a store whose
records name every persistent class by its *old* path (``shopkeeper.identity.MergeRecord`` and
``MergeProposal``, ``shopkeeper.engine.leases.Lease``, ``shopkeeper.engine.feed.Staged`` and
``StagingHead``, ``shopkeeper.campaigns.runs.Run``, ``shopkeeper.audience.Cards``, ``OrderFacts`` and
``Members``, ``shopkeeper.ordertable.OrderRows``, ``shopkeeper.scoretable.ScoreTable`` and
``ScoreRows``), which ``tests/test_golden_store.py`` opens with the current code (the classes now
in ``shopkeeper.records``, ``shopkeeper.engine.records``, ``shopkeeper.campaigns.records``),
evolves and reads back::

    git -C /work/main worktree add --detach /tmp/gen6-e133eda e133eda
    mkdir -p /tmp/gen6-e133eda-path/shopkeeper
    for e in /tmp/gen6-e133eda/core/*; do ln -sfn $e /tmp/gen6-e133eda-path/shopkeeper/; done
    ln -sfn /tmp/gen6-e133eda/adapters /tmp/gen6-e133eda-path/shopkeeper/adapters
    PYTHONPATH=/tmp/gen6-e133eda-path python tests/data/golden/make_gen6_e133eda.py tests/data/golden

The same customers and events as ``make_gen6.py`` (one builder per past generation, each frozen to
its code), opened with the built-in plugins' named steps, plus: a merge *proposal* (identity
``merge_mode: propose``), a lease, one hub's staged feed entries (multi-hub staging), a campaign
run driven offline (its intents in the outbox), and the order table and split audience index the
keepers maintain. ``golden_dump.dump_records`` reads those records back.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))

import shopkeeper  # noqa: E402

_pkg = Path(shopkeeper.__file__).parent
assert (_pkg / "ordertable.py").exists() and not (_pkg / "records.py").exists() and "class Lease(" in (
    _pkg / "engine" / "leases.py").read_text(), "run this with the code of commit e133eda: see the module docstring"

from golden_dump import dump_records, dump_store  # noqa: E402

from shopkeeper import outbox  # noqa: E402
from shopkeeper.analysis.models import commit_op, write_scores  # noqa: E402
from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState  # noqa: E402
from shopkeeper.campaigns import runs  # noqa: E402
from shopkeeper.campaigns.model import parse_campaign  # noqa: E402
from shopkeeper.engine import feed, leases  # noqa: E402
from shopkeeper.engine.ingest import Ingestor  # noqa: E402
from shopkeeper.events import validate_event  # noqa: E402
from shopkeeper.identity import IdentityConfig, Resolver  # noqa: E402
from shopkeeper.identity_merge import merge, unmerge  # noqa: E402
from shopkeeper.plugins import builtin_evolve_steps  # noqa: E402
from shopkeeper.privacy import forget  # noqa: E402
from shopkeeper.rules import RulesConfig, RulesService  # noqa: E402
from shopkeeper.rules.customer_rules import add_customer_rule  # noqa: E402
from shopkeeper.rules.runtime import _event_types_with_rules  # noqa: E402
from shopkeeper.store import Store  # noqa: E402

T0 = 1_790_000_000  # 2026-09-21, seconds
TYPES = _event_types_with_rules()
CUSTOMER_RULE = """
name: vip_watch
when:
  event: order
  conditions:
    - event.amount: {at_least: 100}
then:
  - tag: big_spender
"""
CAMPAIGN = """\
campaigns:
  - name: golden_thanks
    description: a thank-you to the golden VIPs
    audience:
      segment: golden_vips
    messages:
      - channel: email
        template: welcome
    start: 2026-01-01
    end: 2099-12-31
"""


def ev(n: int, type_: str, ids: dict[str, str], data: dict | None = None, hours: float = 0.0, **extra) -> object:
    return validate_event({"type": type_, "identities": ids, "data": data or {}, "idempotency_key": f"golden-{n}",
                           "ts": T0 + hours * 3600, "channel": extra.pop("channel", "web"), **extra}, TYPES)


def build(path: Path) -> dict:
    store = Store.open(str(path), steps=builtin_evolve_steps())
    rules = RulesService(RulesConfig(directory=REPO / "rules", watch=False), event_types=TYPES)
    analysis = AnalysisProcessor(AnalysisState(REPO / "rules"))
    procs = [rules.processor, analysis, outbox.processor]
    events = [
        ev(1, "page_view", {"email": "ann@example.com", "cookie": "c-ann"}, {"url": "/"}, traits={"name": "Ann"}),
        ev(2, "cart_add", {"email": "ann@example.com"}, {"sku": "boots-42"}, hours=0.1),
        ev(3, "order", {"email": "ann@example.com"}, {"amount": 120.5, "order_id": "o1"}, hours=1),
        ev(4, "checkout_started", {"email": "ann@example.com"}, {"cart_value": 60}, hours=30),
        ev(8, "order", {"email": "bob@example.com"}, {"amount": 35.0, "order_id": "o2"}, hours=1.5),
        ev(5, "page_view", {"cookie": "c-anon"}, {"url": "/shoes"}, hours=2),
        ev(6, "page_view", {"cookie": "c-anon"}, {"url": "/boots"}, hours=3),
        ev(7, "identify", {"email": "bob@example.com", "cookie": "c-anon"}, {}, hours=4),  # anonymous merge
        ev(9, "page_view", {"email": "cat@example.com", "phone": "+14155550100"}, {"url": "/"}, hours=6),
        ev(10, "order", {"phone": "+14155550100"}, {"amount": 12.0, "order_id": "o3"}, hours=7),
        ev(11, "page_view", {"email": "dan@example.com"}, {"url": "/x"}, hours=8),
        ev(12, "order", {"email": "dan@example.com"}, {"amount": 99.0, "order_id": "o4"}, hours=9),
        ev(13, "email_open", {"email": "ann@example.com"}, {"campaign": "autumn"}, hours=10, channel="email"),
        ev(14, "email_click", {"email": "ann@example.com"}, {"campaign": "autumn"}, hours=10.1, channel="email"),
    ]
    with Ingestor(store, Resolver(), procs) as ing:
        first = ing.apply(events[:1])
        with store.transaction() as f:  # consent before the checkout, so send_message queues an email
            f.customer_by_identity("email", "ann@example.com").set_consent(
                "email", "marketing", True, "web-form", (T0 + 300) * 10**6)
        for r in first + ing.apply(events[1:4]) + ing.apply(events[4:]):
            assert r.status == "applied", r
    with store.transaction() as f:
        ann = f.customer_by_identity("email", "ann@example.com")
        ann.set_soft_fact("price_sensitivity", "low", "agent:zoe", (T0 + 11 * 3600) * 10**6)
        ann.set_score("clv", 812.25, "model:golden", (T0 + 11 * 3600) * 10**6)
        ann.join_segment("golden_vips", (T0 + 11 * 3600) * 10**6)
        add_customer_rule(f, ann, CUSTOMER_RULE, added_by="account-manager:zoe")
        outbox.enqueue(f, ann, channel="email", template="welcome", payload={"campaign": "golden"},
                       source="golden", intent_id="ixgolden0001", at=(T0 + 12 * 3600) * 10**6)
        cat = f.customer_by_identity("email", "cat@example.com")
        cat.set_consent("sms", "marketing", False, "call-centre", (T0 + 12 * 3600) * 10**6)
        cat.set_traits({"city": "Leeds"})
        names = ("clv.expected_purchases", "clv.p_alive", "clv.value", "churn.risk")
        write_scores(f, [(ann.id, (1.5, 0.9, 812.25, 0.1)), (cat.id, (0.2, 0.4, 14.0, 0.6))], names,
                     ("model:golden",) * 4, (T0 + 12 * 3600) * 10**6)
    # the customer's own rule fires on a later order (rule state, tag)
    with Ingestor(store, Resolver(), procs) as ing:
        r = ing.apply([ev(15, "order", {"email": "ann@example.com"}, {"amount": 150.0, "order_id": "o5"}, hours=13)])
        assert r[0].status == "applied", r
    # a merge of two strong customers, undone; and the erasure of another
    with store.transaction() as f:
        cat = f.customer_by_identity("email", "cat@example.com")
        dan = f.customer_by_identity("email", "dan@example.com")
        rec = merge(f, cat, dan, reason="golden: same household?", source="admin", at=(T0 + 14 * 3600) * 10**6)
    with Ingestor(store, Resolver(), procs) as ing:  # recorded while merged: goes back to dan by identity
        r = ing.apply([ev(16, "page_view", {"email": "dan@example.com"}, {"url": "/y"}, hours=15)])
        assert r[0].status == "applied", r
    with store.transaction() as f:
        unmerge(f, rec.id, at=(T0 + 16 * 3600) * 10**6)
    with Ingestor(store, Resolver(), procs) as ing:
        r = ing.apply([ev(17, "page_view", {"email": "eve@example.com", "cookie": "c-eve"}, {"url": "/"}, hours=17),
                       ev(18, "order", {"email": "eve@example.com"}, {"amount": 5.0, "order_id": "o6"}, hours=18)])
        assert all(x.status == "applied" for x in r), r
    with store.transaction() as f:
        forget(f, f.customer_by_identity("email", "eve@example.com"), reason="golden erasure",
               at=(T0 + 19 * 3600) * 10**6)
    # records of the parts added since generation 6's store: a merge proposal, a lease, one hub's
    # staged feed entries, a campaign run and its intents
    propose = Resolver(IdentityConfig(merge_mode="propose"))
    with Ingestor(store, propose, procs) as ing:  # ann's email with cat's phone: two strong customers
        r = ing.apply([ev(19, "page_view", {"email": "ann@example.com", "phone": "+14155550100"}, {"url": "/z"},
                          hours=20)])
        assert r[0].status == "applied", r
    with store.transaction() as f:
        assert len(f.proposals) == 1, list(f.proposals)
        leases.acquire(f, "golden-lease", "hub-golden", 3600)
        cat = f.customer_by_identity("email", "cat@example.com")
        for n in range(2):
            feed._stage(f, "hub-golden", "interaction", cat.id, "page_view", "web", (T0 + 21 * 3600 + n) * 10**6,
                        n, ("golden_vips",), "")
    campaign = parse_campaign(CAMPAIGN)
    rid = commit_op(store, None, runs.create_run(campaign, run_id="golden-run", by="golden"), "golden")
    assert runs.drive(store, None, rid) == runs.DONE
    with store.read() as f:
        expected = dump_store(f)
        expected["records"] = dump_records(f)
        assert all(expected["records"][k] for k in expected["records"]), expected["records"]
    store.close()
    return expected


def main(out_dir: str) -> None:
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        fs = Path(tmp) / "gen6-e133eda.fs"
        expected = build(fs)
        shutil.copy(fs, out / "gen6-e133eda.fs")
    (out / "gen6-e133eda.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out / 'gen6-e133eda.fs'} ({(out / 'gen6-e133eda.fs').stat().st_size} bytes) and gen6-e133eda.json: "
          f"{len(expected['customers'])} customers, {len(expected['rule_timers'])} timers")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE))
