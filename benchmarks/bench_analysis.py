"""Analysis benchmarks (issue 7): CLV fit, incremental segment+score update, full segment
re-evaluation, Decide with 200 offers, Parquet export.

    python benchmarks/bench_analysis.py                       # 100k-customer store (default)
    python benchmarks/bench_analysis.py --customers 1000000   # the issue's scale (build takes minutes)

* **CLV fit** — read + summarise + fit BG/NBD and Gamma-Gamma on the full CDNOW master file
  (23,570 customers, 39-week calibration), and on the 2,357-customer sample, whose parameters
  are checked against the published ones to 3 significant figures.
* **incremental** — the analysis processor's work per event with 50 segment definitions (a mix
  of fact, window, recency, consent and score conditions) over WORKLOAD.md events applied to
  in-memory customers: p50/p99 µs per event (segment update + re-scoring on orders + outcome learning).
* **full re-evaluation** — ``reevaluate`` of the 50 segments over every customer of a FileStorage
  store built like ``bench_store_1m.py`` (10 interactions each), with its batched commits.
* **Decide** — 200 offers, in-process (the same function the hub's ``Decide`` calls through
  ``shopkeeper_decide``), on customers loaded from that store: p50/p99 ms.
* **full re-evaluation, card path** — the segments of the 50 a card answers, once more for
  everyone, from the audience cards and by the record path (CPU per customer).
* **export** — customers + interactions to Parquet.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from shopkeeper.analysis import offers as nba  # noqa: E402
from shopkeeper.analysis.clv import cdnow_calibration_end, fit_clv, read_cdnow, summarise  # noqa: E402
from shopkeeper.analysis.conditions import Env  # noqa: E402
from shopkeeper.analysis.export import export_parquet  # noqa: E402
from shopkeeper.analysis.models import CLVModel, RFMModel, score_customer  # noqa: E402
from shopkeeper.analysis.segments import SegmentSet, reevaluate  # noqa: E402

DATA = HERE.parent / "tests" / "data"
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_clv() -> dict:
    t0 = time.perf_counter()
    rows = read_cdnow(str(DATA / "CDNOW_master.txt.gz"))
    s = summarise(rows, cdnow_calibration_end())
    t1 = time.perf_counter()
    m = fit_clv(s)
    t2 = time.perf_counter()
    sample = fit_clv(summarise(read_cdnow(str(DATA / "CDNOW_sample.txt.gz")), cdnow_calibration_end()))
    ok = all(float(f"{getattr(sample.bgnbd, k):.3g}") == float(f"{v:.3g}") for k, v in PUBLISHED.items())
    return {"master_customers": len(s), "read_summarise_s": round(t1 - t0, 3), "fit_s": round(t2 - t1, 3),
            "total_s": round(t2 - t0, 3),
            "master_params": {k: round(getattr(m.bgnbd, k), 4) for k in PUBLISHED},
            "sample_params": {k: round(getattr(sample.bgnbd, k), 4) for k in PUBLISHED},
            "sample_gg": {k: round(getattr(sample.gg, k), 3) for k in ("p", "q", "v")},
            "sample_matches_published_3sf": ok}


def fifty_segments() -> SegmentSet:
    segs = SegmentSet()
    n = 0
    for k in (1, 2, 3, 5, 8):
        segs.define(f"orders_{k}", f"hard.orders >= {k}")
        n += 1
    for amount, days in ((50, 30), (100, 90), (250, 90), (500, 365), (1000, 365)):
        segs.define(f"spend_{amount}_{days}", f"spend(days={days}) > {amount}")
    for days in (7, 14, 30, 60, 90):
        segs.define(f"no_visit_{days}", f"days_since('page_view') >= {days}")
        segs.define(f"no_order_{days}", f"hard.orders > 0 and days_since('order') >= {days}")
    for k in (1, 3, 5):
        segs.define(f"clicks_{k}_30", f"count('email_click', days=30) >= {k}")
        segs.define(f"opens_{k}_30", f"count('email_open', days=30) >= {k}")
    for v in (50, 100, 200, 500, 1000):
        segs.define(f"clv_{v}", f"score('clv.value') >= {v}")
    for r in (3, 4, 5):
        segs.define(f"rfm_r{r}", f"score('rfm.r') >= {r}")
    for k in (10, 50, 100):
        segs.define(f"active_{k}", f"hard.interactions >= {k}")
    segs.define("emailable", "consent('email')")
    segs.define("callers", "count('call') >= 1")
    segs.define("spender_not_emailable", "hard.total_spend > 200 and not consent('email')")
    segs.define("at_risk", "score('churn.risk') >= 0.5 and hard.total_spend >= 200")
    segs.define("big_basket", "hard.orders > 0 and hard.total_spend / hard.orders > 150")
    segs.define("email_only", "count('page_view') == 0 and count('email_open') > 0")
    segs.define("recent_caller", "days_since('call') < 7")
    segs.define("vip_combo", "in_segment('clv_500') or in_segment('spend_500_365')")
    for ch in ("web", "email", "phone"):
        segs.define(f"last_on_{ch}", f"hard.last_channel == '{ch}'")
    segs.define("new_customer", "days_since_first() < 14")
    segs.define("one_time_buyer", "hard.orders == 1 and days_since('order') > 60")
    assert len(segs.defs) == 50, len(segs.defs)
    return segs


def bench_incremental(n_events: int) -> dict:
    from BTrees.OOBTree import OOBTree
    from workload import iter_events

    from shopkeeper.analysis.clv import BGNBD, GammaGamma
    from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState
    from shopkeeper.customer import Customer, Interaction
    from shopkeeper.events import validate_event

    segs = fifty_segments()
    clv = CLVModel(BGNBD(0.243, 4.414, 0.793, 2.426), GammaGamma(6.25, 3.74, 15.44))
    rfm = RFMModel((7.0, 30.0, 90.0, 180.0), (1, 2, 3, 5), (50.0, 100.0, 250.0, 500.0))
    sizes = OOBTree()
    customers: dict[str, Customer] = {}
    times: list[float] = []
    state = AnalysisState()
    state.segments = segs
    state.catalogue = nba.Catalogue()
    proc = AnalysisProcessor(state)
    del proc  # the loop below inlines what the processor does, minus the store lookups
    t_now = None
    for raw in iter_events(n_events, n_customers=100_000, seed=42):
        ev = validate_event(raw)
        who = ev.identities[0][1]
        c = customers.get(who)
        if c is None:
            c = customers[who] = Customer(who, created_at=ev.ts)
        it = c.add_interaction(Interaction(ev.ts, ev.ts, ev.type, ev.channel, ev.touchpoint, ev.data,
                                           ev.idempotency_key, (), c.id))
        now = t_now = ev.ts
        t0 = time.perf_counter()
        if ev.type == "order":
            score_customer(c, clv, rfm, now)
        segs.update(c, ev.type, now, Env(c, now), sizes)
        times.append(time.perf_counter() - t0)
        del it
    del t_now
    return {"events": len(times), "segments": 50, "p50_us": round(pct(times, 0.5) * 1e6, 1),
            "p99_us": round(pct(times, 0.99) * 1e6, 1), "mean_us": round(statistics.fmean(times) * 1e6, 1)}


def two_hundred_offers() -> nba.Catalogue:
    rng = random.Random(5)
    cat = nba.Catalogue(policy={"control_percent": 10, "learn_segments": ["clv_500", "at_risk"]})
    conds = ["hard.orders >= 1", "hard.orders == 0", "spend(days=90) > 100", "days_since('page_view') < 30",
             "count('email_open', days=30) >= 1", "hard.total_spend > 200", "in_segment('orders_2')",
             "score('clv.value') >= 50 or hard.orders >= 2", None]
    for i in range(200):
        cat.add({"id": f"offer{i:03d}", "channels": rng.sample(["web", "email", "phone", "app"], 2) + ["web"],
                 "placements": ["*"] if i % 3 else ["home_hero", "agent_screen"],
                 "eligible": rng.choice(conds), "value": round(rng.uniform(1, 50), 2),
                 "weight": round(rng.uniform(0.5, 1.5), 2), "cap_per_customer": 3,
                 "valid_from": "2020-01-01", "valid_until": "2035-01-01"})
    return cat


def bench_decide_grpc(store, cat: nba.Catalogue, n: int, seed: int = 11, record: bool = True) -> dict:
    """``Decide`` over gRPC against a real hub on this store (sequential unary calls from one
    client, loopback): the analysis plugin's arbitration, the hub's read view and (``record``)
    the queued ``offer_shown`` record of every decided offer, committed by the writer meanwhile.
    ``record=False`` switches the recording off for a comparison (it writes nothing)."""
    import grpc

    from shopkeeper._proto.v1 import common_pb2, interactions_pb2, interactions_pb2_grpc
    from shopkeeper.analysis.plugin import state_for
    from shopkeeper.engine import decisions
    from shopkeeper.hub.config import HubConfig
    from shopkeeper.hub.server import Hub

    with store.read() as f:
        ids = list(f.customers.keys())
    hub = Hub(HubConfig(listen="127.0.0.1:0", log_format="text"), store=store, load_entrypoints=False)
    hub.start()
    saved_record = decisions.record
    state_for(hub).catalogue = cat  # this hub's catalogue
    if not record:
        decisions.record = lambda *a, **k: ""
    rng = random.Random(seed)
    times: list[float] = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as ch:
            stub = interactions_pb2_grpc.InteractionsStub(ch)
            for i in range(n + 200):
                req = interactions_pb2.DecideRequest(customer=common_pb2.CustomerRef(id=rng.choice(ids)),
                                                     touchpoint="web" if i % 2 else "phone",
                                                     placement="home_hero" if i % 2 else "agent_screen")
                t0 = time.perf_counter()
                stub.Decide(req, timeout=10)
                if i >= 200:  # the first calls warm the channel and the posterior cache
                    times.append(time.perf_counter() - t0)
    finally:
        decisions.record = saved_record
        hub.stop(grace=1.0)
    return {"offers": len(cat.offers), "decisions": len(times), "p50_ms": round(pct(times, 0.5) * 1e3, 3),
            "p99_ms": round(pct(times, 0.99) * 1e3, 3), "recorded_offer_shown": hub.writer.events_committed}


def bench_card_path(store, segs: SegmentSet, now: int) -> dict:
    """The segments of the 50 whose conditions the audience cards answer (order facts, consent,
    segment references), re-evaluated for everyone once more (nothing changes: a scheduler run
    of unchanged definitions) by the card path (``shopkeeper.analysis.fullscan``: cards and order
    facts in key order, no customer record) and by the record path, CPU time per customer."""
    from shopkeeper.analysis.fullscan import card_answerable

    names = [k for k, d in segs.defs.items() if card_answerable([d])]
    out: dict = {"segments": names}
    for label, cards in (("cards", True), ("records", False)):
        c0 = time.process_time()
        r = reevaluate(store, segs, names, now=now, batch=5000, cards=cards)
        cpu = time.process_time() - c0
        assert r.get("path", "records") == label, r
        out[label] = {"customers": r["customers"], "changed": r["entered"] + r["exited"], "seconds": r["seconds"],
                      "cpu_per_customer_us": round(cpu / max(1, r["customers"]) * 1e6, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=200_000, help="events for the incremental benchmark")
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    out: dict = {}
    out["clv"] = bench_clv()
    print("clv", json.dumps(out["clv"]), flush=True)
    out["incremental"] = bench_incremental(args.events)
    print("incremental", json.dumps(out["incremental"]), flush=True)

    from bench_store_1m import build_store

    from shopkeeper.analysis.state import create_analysis_folder
    from shopkeeper.store import Store

    tmp = Path(args.dir or tempfile.mkdtemp(prefix="bench-analysis-"))
    path = str(tmp / "Data.fs")
    t0 = time.perf_counter()
    build_store(path, args.customers, 10, log=lambda *a: None)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    print("built", args.customers, "customers in", out["build_s"], "s", flush=True)
    from shopkeeper.plugins import builtin_evolve_steps

    # as a hub opens it: the evolve steps build the audience index (cards, order facts, member
    # sets), which the store then keeps on every write, the re-evaluation's too
    store = Store.open(f"file://{path}", steps=builtin_evolve_steps())
    with store.transaction() as f:
        create_analysis_folder(f.root)
    segs = fifty_segments()
    from workload import T0

    # 30 days after the workload's start (the store holds the 90 days before it): T0, not the 2023
    # instant, since the workload clock went live (§72) — a 2023 "now" read every window from the history
    now = int(T0 * 1e6) + 30 * 86_400_000_000
    c0 = time.process_time()
    r = reevaluate(store, segs, now=now, batch=5000,
                   progress=lambda n, t: print(f"  reevaluate: {n:,} customers, {t:.1f} s", flush=True)
                   if n % 100_000 == 0 else None)
    cpu = time.process_time() - c0
    out["reevaluate"] = {"customers": r["customers"], "seconds": r["seconds"], "entered": r["entered"],
                         "per_customer_us": round(r["seconds"] / max(1, r["customers"]) * 1e6, 1),
                         "cpu_per_customer_us": round(cpu / max(1, r["customers"]) * 1e6, 1),
                         "extrapolated_1m_s": round(r["seconds"] / max(1, r["customers"]) * 1e6, 1)}
    print("reevaluate", json.dumps(out["reevaluate"]), flush=True)
    out["reevaluate_cards"] = bench_card_path(store, segs, now + 1)
    print("reevaluate_cards", json.dumps(out["reevaluate_cards"]), flush=True)

    cat = two_hundred_offers()
    rng = random.Random(9)
    times: list[float] = []
    with store.read() as f:
        ids = list(f.customers.keys())
        sample = [f.customers[rng.choice(ids)] for _ in range(min(args.decisions, 20_000))]
        del ids
        for c in sample[:200]:
            nba.decide(cat, c, "web", "home_hero", {}, now=now)  # warm the posterior cache
        # first pass: nearly every decision is the first touch of its customer (loaded from the
        # storage: "cold"); second pass over the same customers: in the connection cache ("warm")
        warm: list[float] = []
        for i in range(2 * args.decisions):
            c = sample[i % len(sample)]
            t0 = time.perf_counter()
            nba.decide(cat, c, "web" if i % 2 else "phone", "home_hero" if i % 2 else "agent_screen", {}, now=now)
            (times if i < args.decisions else warm).append(time.perf_counter() - t0)
    out["decide"] = {"offers": 200, "decisions": len(times), "p50_ms": round(pct(times, 0.5) * 1e3, 3),
                     "p99_ms": round(pct(times, 0.99) * 1e3, 3), "warm_p50_ms": round(pct(warm, 0.5) * 1e3, 3),
                     "warm_p99_ms": round(pct(warm, 0.99) * 1e3, 3)}
    print("decide", json.dumps(out["decide"]), flush=True)

    out["decide_grpc_no_record"] = bench_decide_grpc(store, cat, min(args.decisions, 5_000), record=False)
    print("decide_grpc_no_record", json.dumps(out["decide_grpc_no_record"]), flush=True)
    out["decide_grpc"] = bench_decide_grpc(store, cat, min(args.decisions, 5_000))
    print("decide_grpc", json.dumps(out["decide_grpc"]), flush=True)

    c0 = time.process_time()
    r = export_parquet(store, tmp / "parquet", batch=10_000, control_percent=10, control_salt="bench")
    r["cpu_per_customer_us"] = round((time.process_time() - c0) / max(1, r["customers"]) * 1e6, 1)
    r["extrapolated_1m_s"] = round(r["seconds"] / max(1, r["customers"]) * 1e6, 1)
    out["export"] = r
    print("export", json.dumps(r), flush=True)
    store.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
