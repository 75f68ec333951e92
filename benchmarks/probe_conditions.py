"""CPU probe for reading customer values in conditions (issue 19's one accessor; issue 10's CPU per event).

Per customer, in process CPU time (``time.process_time``, which contention distorts less than
wall time): the rules' message for an ``order`` event with every field the shipped rules name
(``FactBuilder``), the shipped segments' membership evaluation (the per-event segment update),
and three FindCustomers fact tests. Customers live in memory (no store): this measures the
accessor and the compiled conditions, not ZODB.

Run it against two trees to compare (the same segment files are used for both)::

    unset PYTHONDONTWRITEBYTECODE; python -m compileall -q core
    python benchmarks/probe_conditions.py --customers 2000 --rounds 5
    PYTHONPATH=/path/to/old/tree python benchmarks/probe_conditions.py ...

Not a timed benchmark for the docs: the lead runs those alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000 * 1_000_000
DAY = 86_400_000_000


def build(n: int) -> list:
    from shopkeeper.customer import Customer, Interaction

    out = []
    for i in range(n):
        c = Customer(f"c{i}", created_at=NOW - 400 * DAY)
        for k in range(i % 6):
            ts = NOW - (k * 7 + 1) * DAY
            c.add_interaction(Interaction(ts, ts, "order", "web", "", {"amount": 20.0 + i % 50}, f"o{i}-{k}", (),
                                          c.id))
            c.add_interaction(Interaction(ts + 1, ts + 1, "page_view", "web", "", {"url": "/"}, f"p{i}-{k}", (),
                                          c.id))
        c.set_soft_fact("price_sensitivity", "high" if i % 2 else "low", "probe", NOW)
        c.set_score("clv.value", float(i % 900), "probe", NOW)
        c.set_score("churn.risk", (i % 10) / 10, "probe", NOW)
        c.set_traits({"city": "Paris"})
        c.set_consent("email", "marketing", i % 3 != 0, "probe", NOW)
        out.append(c)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--segments", default=str(REPO / "rules" / "segments"))
    args = ap.parse_args()

    from shopkeeper.analysis.conditions import Env
    from shopkeeper.analysis.segments import load_segments
    from shopkeeper.engine import operations as ops
    from shopkeeper.rules import load_directory
    from shopkeeper.rules.facts import FactBuilder
    from shopkeeper.rules.matching import DurableEngine, PythonEngine, evaluate

    rs = load_directory(REPO / "rules")
    fields = set().union(*(r.fields for r in rs.rules))
    numeric = set().union(*(r.numeric_fields for r in rs.rules))
    history = {k: v for r in rs.rules for k, v in r.history.items()}
    segs = load_segments(args.segments)
    defs = list(segs.defs.values())
    member = segs.membership(defs)
    customers = build(args.customers)
    ev = {"type": "order", "data": {"amount": 50.0, "order_id": "x"}, "ts": NOW, "channel": "web"}
    new_paths = hasattr(ops, "paths")
    tests = [("soft.price_sensitivity", "EQ", "high"), ("scores.clv.value", "GT", 100), ("orders", "GE", 2)]
    if new_paths:
        tests = [(ops.check_fact_path(p, "f"), op, v) for p, op, v in tests]

    def noop(name: str) -> None:
        pass

    # the rules' matching: durable_rules (what the hub runs) and the Python back end, on the
    # messages of the order event; and the reference evaluate (explain, campaign audiences)
    rs.compile(DurableEngine())
    prog, (p_fields, p_num, p_hist) = rs.program_for("order")
    py = load_directory(REPO / "rules").compile(PythonEngine()).program_for("order")[0]
    conds = rs.conditions_for("order")
    messages = [FactBuilder(c, ev).message(p_fields, p_num, p_hist) for c in customers]

    got = {}
    for name in ("rules_message", "segments", "find_customers", "rules_durable", "rules_python", "evaluate"):
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.process_time()
            if name == "rules_message":
                for c in customers:
                    FactBuilder(c, ev).message(fields, numeric, history)
            elif name == "segments":
                for c in customers:
                    member(Env(c, NOW), c.segments, noop, noop)
            elif name == "find_customers":
                for c in customers:
                    all(ops.fact_matches(c, p, op, v) for p, op, v in tests)
            elif name == "rules_durable":
                for m in messages:
                    prog.match(m)
            elif name == "rules_python":
                for m in messages:
                    py.match(m)
            else:
                for m in messages:
                    for cond in conds:
                        evaluate(cond, m)
            best = min(best, time.process_time() - t0)
        got[name] = round(best / len(customers) * 1e6, 2)
    print(json.dumps({"us_per_customer": got, "customers": args.customers, "fields": len(fields),
                      "segments": len(defs)}))


if __name__ == "__main__":
    main()
