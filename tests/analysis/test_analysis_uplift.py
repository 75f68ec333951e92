"""The uplift report on a synthetic data set whose effect is known: orders before the first
decision and after the window must not count; the difference, its interval and the sample
sizes must be the ones of the data."""

from __future__ import annotations

import math
import random
from pathlib import Path

from click.testing import CliRunner

from shopkeeper.analysis.export import export_parquet, report
from shopkeeper.analysis.offers import FIRST_CONTROL_DECISION
from shopkeeper.cli import main
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.store import Store

DAY = 86_400
T0 = 1_750_000_000  # a fixed moment (2025-06-15)


def _build(store: Store, n: int = 2000, seed: int = 11) -> dict[str, list[int]]:
    """Half the customers control, the others shown 'ship' or 'vip'. P(order within 30 days of the
    decision) is 0.10 in control and 0.20 when treated; everyone may also have ordered before the
    decision (p 0.5) and after the window (p 0.3), which the report must ignore."""
    rng = random.Random(seed)
    events = []
    control_since: dict[str, int] = {}
    outcome: dict[str, list[int]] = {"control": [], "treatment": [], "ship": [], "vip": []}
    for i in range(n):
        who = {"email": f"c{i}@example.org"}
        at = T0 + i * 60
        arm = "control" if i % 2 else ("ship" if i % 4 == 0 else "vip")
        if arm == "control":  # the hub notes a control customer's first decision as a soft fact
            events.append({"type": "page_view", "identities": who, "ts": at - DAY, "idempotency_key": f"v{i}",
                           "data": {"url": "/"}})
            control_since[f"c{i}@example.org"] = at * 1_000_000
        else:
            events.append({"type": "offer_shown", "identities": who, "ts": at, "idempotency_key": f"d{i}",
                           "data": {"offer": arm, "decision_id": f"d{i}"}})
        if rng.random() < 0.5:
            events.append({"type": "order", "identities": who, "ts": at - 5 * DAY, "idempotency_key": f"b{i}",
                           "data": {"order_id": f"b{i}", "amount": 50}})
        converted = rng.random() < (0.10 if arm == "control" else 0.20)
        if converted:
            events.append({"type": "order", "identities": who, "ts": at + rng.uniform(0.1, 29.9) * DAY,
                           "idempotency_key": f"o{i}", "data": {"order_id": f"o{i}", "amount": 40}})
        if rng.random() < 0.3:
            events.append({"type": "order", "identities": who, "ts": at + 45 * DAY, "idempotency_key": f"l{i}",
                           "data": {"order_id": f"l{i}", "amount": 70}})
        outcome["control" if arm == "control" else "treatment"].append(int(converted))
        if arm != "control":
            outcome[arm].append(int(converted))
    valid = [validate_event(e) for e in events]
    with Ingestor(store) as ing:
        for k in range(0, len(valid), 2000):
            assert all(r.status == "applied" for r in ing.apply(valid[k:k + 2000]))
    with store.transaction() as f:
        for email, at in control_since.items():
            f.customer_by_identity("email", email).set_soft_fact(FIRST_CONTROL_DECISION, at, "decide", at)
    return outcome


def _expected(t: list[int], c: list[int]) -> tuple[float, float, float]:
    pt, pc = sum(t) / len(t), sum(c) / len(c)
    se = math.sqrt(pt * (1 - pt) / (len(t) - 1) + pc * (1 - pc) / (len(c) - 1))
    return pt - pc, pt - pc - 1.96 * se, pt - pc + 1.96 * se


def test_uplift_counts_outcomes_after_the_first_decision_with_an_interval(store: Store, tmp_path: Path) -> None:
    truth = _build(store)
    out = tmp_path / "x"
    export_parquet(store, out, control_percent=0)
    png = tmp_path / "uplift.png"
    cols, rows = report(out, "uplift", chart=png, window_days=30)
    assert cols[:8] == ["scope", "treated", "control", "conversion_t", "conversion_c", "difference", "ci_low",
                        "ci_high"]
    by = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
    assert set(by) == {"all", "ship", "vip"}
    for scope, treated in (("all", truth["treatment"]), ("ship", truth["ship"]), ("vip", truth["vip"])):
        row = by[scope]
        assert (row["treated"], row["control"]) == (len(treated), len(truth["control"]))
        assert row["conversion_t"] == round(sum(treated) / len(treated), 4)
        assert row["conversion_c"] == round(sum(truth["control"]) / len(truth["control"]), 4)
        diff, lo, hi = _expected(treated, truth["control"])
        assert row["difference"] == round(diff, 4)
        assert abs(row["ci_low"] - lo) < 2e-4 and abs(row["ci_high"] - hi) < 2e-4
    # the known effect (+0.10) is inside the interval, and no effect is not
    assert by["all"]["ci_low"] < 0.10 < by["all"]["ci_high"] and by["all"]["ci_low"] > 0
    # spend: 40 per converted customer in the window (orders before and after it ignored)
    assert by["all"]["spend_t"] == round(40 * sum(truth["treatment"]) / len(truth["treatment"]), 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(main, ["report", "uplift", "--data", str(out), "--window-days", "30"])
    assert r.exit_code == 0 and "ci_low" in r.output and "ship" in r.output, r.output
