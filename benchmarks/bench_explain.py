"""Explain benchmark (issue 13): ``rules explain --hub`` for one customer with 10,000 interactions
against 500 central rules; target ≤ 200 ms.

Measured the way a rule author meets it: ``Rules.Explain`` over gRPC on a real hub (loopback,
the SDK's ``Client.explain``; wall time per call as the client sees it, CPU of the process that
runs both ends). The same explain in-process (no transport, ``explain_customer`` on a read
transaction) is reported beside it, so the transport's share shows.

The rules mix event conditions, customer facts, scores and history aggregates (count and sum
over 7-90 days, the expensive kind: they walk the history). The customer's history is spread
over a year. Reported: wall and CPU time (``time.process_time``) per explain, median and max of
``--repeat`` runs, each a fresh read transaction (cold object cache after the first) plus the
time of one explain with a cold cache (a new store connection).

Run: ``python benchmarks/bench_explain.py [--interactions 10000] [--rules 500] [--repeat 10]``;
``--interactions 200 --rules 20 --repeat 2`` checks that it runs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shopkeeper.customer import Customer, Interaction, now_us
from shopkeeper.identity import attach
from shopkeeper.rules import RulesConfig, RulesService
from shopkeeper.rules.explain import explain_customer
from shopkeeper.store import Store

TYPES = ["page_view", "email_open", "email_click", "order", "call", "checkout_started"]
DAY = 86_400 * 1_000_000


def rules_text(n: int, rng: random.Random) -> str:
    out = ["vocabulary:\n  scores: [engagement, churn_risk]\n  facts: [tier]\nrules:"]
    for i in range(n):
        kind = i % 5
        if kind == 0:
            cond = f"- event.amount: {{above: {rng.randint(10, 2000)}}}"
            ev = "order"
        elif kind == 1:
            days, n = rng.choice([7, 30, 90]), rng.randint(1, 50)
            cond = f"- history: {{count: page_view, within: {days}d, at_least: {n}}}"
            ev = "page_view"
        elif kind == 2:
            cond = f"- history: {{sum: order.amount, within: {rng.choice([30, 90])}d, above: {rng.randint(50, 5000)}}}"
            ev = "order"
        elif kind == 3:
            cond = f"- score.engagement: {{at_least: {rng.randint(1, 100)}}}"
            ev = rng.choice(TYPES[:5])
        else:
            cond = f"- customer.orders: {{at_least: {rng.randint(1, 200)}}}"
            ev = rng.choice(TYPES[:5])
        # one tag per rule: two rules with the same when and then are refused as duplicates
        out.append(f"  - name: r{i:04d}\n    priority: {rng.randint(0, 100)}\n    when:\n      event: {ev}\n"
                   f"      conditions:\n        {cond}\n    then:\n      - tag: t{i}")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interactions", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    rng = random.Random(13)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "rules"
        d.mkdir()
        (d / "bench.yaml").write_text(rules_text(args.rules, rng))
        svc = RulesService(RulesConfig(directory=d, watch=False, log_problems=False))
        if not svc.current.ok:
            sys.exit("rules do not check: " + "; ".join(svc.last_errors[:3]))
        uri = f"file://{tmp}/Data.fs"
        store = Store.open(uri)
        t_end = now_us()
        with store.transaction() as f:
            c = Customer(f.new_customer_id(), created_at=t_end - 365 * DAY)
            f.add_customer(c)
            attach(f, c, ("email", "bench@example.com"), "bench", t_end - 365 * DAY)
            for _ in range(args.interactions):
                ts = t_end - rng.randint(0, 365 * DAY)
                t = rng.choice(TYPES)
                data = {"order_id": f"o{ts}", "amount": rng.randint(5, 500)} if t == "order" else {"url": "/"}
                c.add_interaction(Interaction(ts, ts, t, "web", "", data, f"k{ts}", (), c.id))
            c.set_score("engagement", 42.0, "bench")
            cid = c.id
        event = {"type": "order", "data": {"order_id": "X", "amount": 120}}
        walls, cpus = [], []
        for _ in range(args.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            with store.read() as f:
                x = explain_customer(svc, f, f.customer(cid), event=event)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        store.close()
        store = Store.open(uri)  # cold: a new connection, nothing cached
        w0 = time.perf_counter()
        with store.read() as f:
            explain_customer(svc, f, f.customer(cid), event=event)
        cold = time.perf_counter() - w0
        store.close()
        hub_walls, hub_cpus, hub_cold = over_the_hub(uri, d, cid, event, args.repeat, args.rules)
    outcomes: dict[str, int] = {}
    for r in x["rules"]:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    print(f"explain: {args.rules} rules, {args.interactions} interactions, {args.repeat} runs")
    print(f"  wall median {statistics.median(walls) * 1000:.1f} ms, max {max(walls) * 1000:.1f} ms; "
          f"CPU median {statistics.median(cpus) * 1000:.1f} ms; cold {cold * 1000:.1f} ms (target <= 200 ms)")
    print(f"  outcomes: {outcomes}")
    print(f"  over the hub (Rules.Explain, gRPC loopback): first call {hub_cold * 1000:.1f} ms, "
          f"wall median {statistics.median(hub_walls) * 1000:.1f} ms, max {max(hub_walls) * 1000:.1f} ms; "
          f"CPU median {statistics.median(hub_cpus) * 1000:.1f} ms (client and hub) (target <= 200 ms)")


def over_the_hub(uri: str, rules_dir: Path, cid: str, event: dict, repeat: int, rules: int) -> tuple[list, list, float]:
    """Start a hub on the store (its rules: ``rules_dir``) and time ``Client.explain`` calls."""
    from harness import BenchHub

    from shopkeeper.client import Client

    h = BenchHub({"rules_dir": str(rules_dir)}, store_uri=uri)
    try:
        with Client(h.address, h.api_key) as hub:
            w0 = time.perf_counter()
            x = hub.explain(cid, event=event)  # the first call loads the customer into the hub's cache
            first = time.perf_counter() - w0
            listed = len(json.loads(x.json)["rules"])
            if listed < rules:
                sys.exit(f"the hub's explain listed {listed} rules, not the {rules} of the benchmark")
            walls, cpus = [], []
            for _ in range(repeat):
                w0, c0 = time.perf_counter(), time.process_time()
                hub.explain(cid, event=event)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
    finally:
        h.stop()
    return walls, cpus, first


if __name__ == "__main__":
    main()
