"""Build the golden generation-6 store ``gen6.fs`` and its expected dump ``gen6.json``.

**Run with the code of commit 326c13c** (the end of wave 2's third session: generation 6, and the
named steps ``audience-index``, ``analysis``, ``analysis-counters``, ``score-tables``, ``leases``
and the feed's, all registered at import), never with the current one: the point of the fixture
is a store written by that code's record formats (packed customer parts, key logs, Counters,
score tables, audience cards, packed outbox items), which ``tests/test_golden_store.py`` opens
with the current code, evolves and reads back::

    git -C /work/main worktree add --detach /tmp/gen6 326c13c
    mkdir -p /tmp/gen6-path && ln -sfn /tmp/gen6/core /tmp/gen6-path/shopkeeper
    PYTHONPATH=/tmp/gen6-path python tests/data/golden/make_gen6.py tests/data/golden

The same customers and events as ``make_wave1.py`` (one builder per past generation), plus
batch model scores written to the score tables.

It covers customers with identities, history, hard and soft facts, traits, consents, scores,
segments, a customer's own rule and rule state, outbox intents, rule timers, an automatic
(anonymous) merge, a merge that was undone, and an erased customer. Every timestamp is fixed
so the history is the same on each run (ids and creation times are not: compare against
the JSON written beside the store, not a fresh run).
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

_gen = (Path(shopkeeper.__file__).parent / "store.py").read_text() if (Path(shopkeeper.__file__).parent
                                                                       / "store.py").exists() else ""
assert "_gen6" in _gen and "register_evolve_step(\"audience-index\"" in _gen, (
    "run this with the code of commit 326c13c: see the module docstring")

from golden_dump import dump_store  # noqa: E402

from shopkeeper import outbox  # noqa: E402
from shopkeeper.analysis.models import write_scores  # noqa: E402
from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState  # noqa: E402
from shopkeeper.engine.ingest import Ingestor  # noqa: E402
from shopkeeper.events import validate_event  # noqa: E402
from shopkeeper.identity import Resolver  # noqa: E402
from shopkeeper.identity_merge import merge, unmerge  # noqa: E402
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


def ev(n: int, type_: str, ids: dict[str, str], data: dict | None = None, hours: float = 0.0, **extra) -> object:
    return validate_event({"type": type_, "identities": ids, "data": data or {}, "idempotency_key": f"golden-{n}",
                           "ts": T0 + hours * 3600, "channel": extra.pop("channel", "web"), **extra}, TYPES)


def build(path: Path) -> dict:
    store = Store.open(str(path))
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
    with store.read() as f:
        expected = dump_store(f)
    store.close()
    return expected


def main(out_dir: str) -> None:
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        fs = Path(tmp) / "gen6.fs"
        expected = build(fs)
        shutil.copy(fs, out / "gen6.fs")
    (out / "gen6.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out / 'gen6.fs'} ({(out / 'gen6.fs').stat().st_size} bytes) and gen6.json: "
          f"{len(expected['customers'])} customers, {len(expected['rule_timers'])} timers")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE))
