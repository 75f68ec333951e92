"""Rules benchmarks (issue: central business rules).

1. **evaluation cost**: 100 central rules + up to 5 rules on 10% of customers; the time the
   rules processor adds per event (p50/p99), measured inside a real ingest;
2. **ingest with rules on vs off**, same run, same workload (``benchmarks/workload.py``), on a
   fsync'ing FileStorage, through the Ingestor in batches of 500;
3. **pending timers**: N customers each with a pending absence timer (default 1,000,000;
   ``--timers``), memory before/after the restart, lateness of timers falling due after it;
4. **reload of 500 rules**: validate + compile + swap.

Run: ``python benchmarks/bench_rules.py [--events 50000] [--customers 100000] [--timers 1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import iter_events  # noqa: E402

from shopkeeper.customer import Customer, now_us  # noqa: E402
from shopkeeper.engine.ingest import Ingestor  # noqa: E402
from shopkeeper.events import validate_event  # noqa: E402
from shopkeeper.rules import RulesConfig, RulesService, TimerRunner  # noqa: E402
from shopkeeper.rules.runtime import TIMER_INDEX, _event_types_with_rules  # noqa: E402
from shopkeeper.store import Store  # noqa: E402

TYPES = ["page_view", "email_open", "email_click", "order", "call"]


def central_rules(n: int) -> str:
    rng = random.Random(7)
    out = ["rules:"]
    for i in range(n):
        t = TYPES[i % len(TYPES)]
        conds = []
        if t == "order":
            conds.append(f"        - event.amount: {{above: {rng.randrange(20, 480)}}}")
        elif t == "page_view":
            conds.append(f"        - event.url: {{in: [/sale/{i}, /product/{i}]}}")
        elif t == "call":
            conds.append(f"        - event.duration: {{above: {rng.randrange(30, 600)}}}")
        else:
            conds.append(f"        - event.campaign: c{rng.randrange(0, 30)}")
        if i % 4 == 0:
            conds.append(f"        - customer.orders: {{at_least: {rng.randrange(1, 5)}}}")
        if i % 10 == 0:
            conds.append(f"        - history: {{count: {t}, within: 1h, at_least: {rng.randrange(3, 8)}}}")
        if i % 7 == 0:
            conds.append("        - consent.email: true")
        out.append(f"  - name: rule_{i:03d}\n    priority: {rng.randrange(0, 10)}\n    when:\n      event: {t}\n"
                   f"      conditions:\n" + "\n".join(conds) +
                   f"\n    then:\n      - add_score: {{name: s{i % 20}, by: 1}}\n      - tag: t{i % 30}")
    return "\n".join(out) + "\n"


def customer_rule(j: int) -> str:
    t = TYPES[j % len(TYPES)]
    cond = "event.amount: {above: 100}" if t == "order" else f"event.url: /watch/{j}" if t == "page_view" else \
        "customer.orders: {at_least: 1}"
    return (f"name: personal_{j}\nwhen:\n  event: {t}\n  conditions:\n    - {cond}\nthen:\n"
            f"  - propose_message: {{id: personal_{j}}}\n")


def ingest(uri: str, events: list, svc: RulesService | None, timing: list[float] | None) -> float:
    store = Store.open(uri)
    procs = []
    if svc is not None:
        def timed(folders, applied):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            svc.processor(folders, applied)
            timing.append(time.perf_counter() - t0)  # type: ignore[union-attr]
        procs = [timed]
    t0 = time.perf_counter()
    with Ingestor(store, processors=procs) as ing:
        for i in range(0, len(events), 500):
            ing.apply(events[i:i + 500])
    dt = time.perf_counter() - t0
    store.close()
    return dt


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_eval_and_ingest(n_events: int, n_customers: int, tmp: Path) -> dict:
    d = tmp / "rules"
    d.mkdir()
    (d / "central.yaml").write_text(central_rules(100))
    svc = RulesService(RulesConfig(directory=d, watch=False))
    assert svc.current.ok and len(svc.current.rules) == 100, svc.last_errors
    types = _event_types_with_rules()
    events = [validate_event(r, types) for r in iter_events(n_events, n_customers, seed=42)]
    # customer rules: 10% of customers get 1-5 rules from a pool of 40 templates
    from shopkeeper.rules import add_customer_rule

    def seed_customer_rules(uri: str) -> None:
        store = Store.open(uri)
        with Ingestor(store) as ing:  # create the customers first (no rules), as they would exist
            ing.apply([validate_event({"type": "identify", "identities": {"email": f"user{i}@example.com"},
                                       "idempotency_key": f"seed{i}", "ts": 1_700_000_000}, types)
                       for i in range(0, n_customers, 10)])
        rng = random.Random(3)
        with store.transaction() as f:
            for i in range(0, n_customers, 10):
                c = f.customer_by_identity("email", f"user{i}@example.com")
                if c is None:
                    continue
                for j in rng.sample(range(40), rng.randrange(1, 6)):
                    add_customer_rule(f, c, customer_rule(j), max_rules=5)
        store.close()

    off_uri = f"file://{tmp}/off.fs"
    on_uri = f"file://{tmp}/on.fs"
    seed_customer_rules(off_uri)
    seed_customer_rules(on_uri)
    gc.collect()
    t_off = ingest(off_uri, events, None, None)
    timing: list[float] = []
    t_on = ingest(on_uri, events, svc, timing)
    timing.sort()
    return {"events": len(events), "customers": n_customers,
            "eval_p50_us": statistics.median(timing) * 1e6, "eval_p99_us": timing[int(len(timing) * 0.99)] * 1e6,
            "eval_mean_us": statistics.fmean(timing) * 1e6,
            "rate_off": len(events) / t_off, "rate_on": len(events) / t_on, "ratio": t_off / t_on,
            "matched": svc.stats.matched, "actions": svc.stats.actions, "failures": svc.stats.failures}


def bench_timers(n: int, tmp: Path) -> dict:
    d = tmp / "trules"
    d.mkdir()
    (d / "cart.yaml").write_text("rules:\n  - name: abandoned\n    when:\n      event: checkout_started\n"
                                 "      absent: {event: order, within: 24h}\n    then:\n      - tag: abandoned\n")
    uri = f"file://{tmp}/timers.fs"
    store = Store.open(uri)
    start = now_us()
    soon = 2_000  # these fall due 2-4 s after the restart; the rest over the next day
    t0 = time.perf_counter()
    chunk = 50_000
    for base in range(0, n, chunk):
        with store.transaction() as f:
            idx = f.root[TIMER_INDEX]
            for i in range(base, min(n, base + chunk)):
                c = Customer(f"c{i:08d}", created_at=start)
                due = start + (4_000_000 + (i % soon) * 1000 if i < soon else 60_000_000 + i * 80_000)
                tid = f"t{i}"
                c.rule_state["timers"] = {tid: {"rule": "abandoned", "scope": "central", "version": "", "due": due,
                                                "start": due - 86_400_000_000, "cancel_on": ["order"],
                                                "event": {"type": "checkout_started", "channel": "web", "ts": start,
                                                          "touchpoint": "", "key": 0, "data": {},
                                                          "idempotency_key": ""}}}
                f.customers[c.id] = c
                idx[(due, c.id, tid)] = "abandoned"
        store.db.cacheMinimize()
    build = time.perf_counter() - t0
    store.close()
    gc.collect()
    rss_before = rss_mb()
    t_restart = time.perf_counter()
    restart_us = now_us()
    store = Store.open(uri)  # the restart: a fresh DB, nothing cached
    svc = RulesService(RulesConfig(directory=d, watch=False))
    late: list[float] = []

    def seen(traces: list) -> None:
        t = now_us()
        # lateness after the due time, or after the restart for timers that fell due while down
        late.extend((t - max(tr["timer"]["due"], restart_us)) / 1e6 for tr in traces)

    runner = TimerRunner(store, svc, on_fired=seen).start()
    deadline = time.time() + 15
    while len(late) < soon and time.time() < deadline:
        time.sleep(0.05)
    runner.stop()
    opened = time.perf_counter() - t_restart
    rss_after = rss_mb()
    store.close()
    late.sort()
    return {"customers_with_timers": n, "build_s": build, "rss_before_mb": rss_before, "rss_after_mb": rss_after,
            "fired": len(late), "late_p50_s": statistics.median(late) if late else None,
            "late_max_s": late[-1] if late else None, "restart_to_done_s": opened}


def bench_reload(tmp: Path, n: int = 500) -> dict:
    d = tmp / "r500"
    d.mkdir()
    per = 100
    for k in range(n // per):
        text = central_rules(per).replace("name: rule_", f"name: f{k}_rule_")
        (d / f"rules_{k}.yaml").write_text(text.replace("add_score: {name: s", f"add_score: {{name: f{k}s"))
    svc = RulesService(RulesConfig(directory=d, watch=False))
    assert svc.current.ok, svc.last_errors[:3]
    times = []
    for _ in range(5):
        (d / "rules_0.yaml").write_text((d / "rules_0.yaml").read_text() + "\n")
        t0 = time.perf_counter()
        rep = svc.reload()
        times.append(time.perf_counter() - t0)
        assert rep["ok"]
    return {"rules": len(svc.current.rules), "reload_p50_s": statistics.median(times), "reload_max_s": max(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--timers", type=int, default=1_000_000)
    ap.add_argument("--skip", default="", help="comma list of: ingest,timers,reload")
    a = ap.parse_args()
    skip = set(a.skip.split(",")) if a.skip else set()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if "reload" not in skip:
            print("reload:", bench_reload(tmp), flush=True)
        if "ingest" not in skip:
            print("ingest:", bench_eval_and_ingest(a.events, a.customers, tmp), flush=True)
        if "timers" not in skip:
            print("timers:", bench_timers(a.timers, tmp), flush=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
