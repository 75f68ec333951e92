"""Durable ingest on a real FileStorage (fsync on), with the reference workload.

    python benchmarks/bench_ingest.py                       # defaults below
    python benchmarks/bench_ingest.py --single 20000 --grouped 300000
    python benchmarks/bench_ingest.py --profile grouped     # cProfile of the grouped phase

Two phases, each on its own copy of a store pre-populated with the workload's 100k
customers (email + cookie identities, one ``identify`` interaction each, built in bulk):

(a) one transaction per event — ``Ingestor.apply([ev])``, the latency-bound path;
(b) group commit — ``Ingestor.apply(batch)`` with 500 events per transaction.

Events are generated and validated *before* the timed loops (validation cost per event is
reported on its own). Since a shared 2-core machine is noisy, each phase is paired with a
**baseline measured in the same run**: a bare ZODB loop on its own FileStorage committing,
per transaction, as many persistent objects of the same average size as the phase wrote
per transaction (counted from the storage afterwards). ``ratio`` = ingest events/s divided
by what the bare loop achieves for the same number of events: the fraction of raw storage
speed Shopkeeper keeps after validation-free ingest logic, identity resolution, history,
facts, idempotency and pickling.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import transaction  # noqa: E402
from bench_store_1m import build_store, machine, rss_mb  # noqa: E402
from BTrees.LOBTree import LOBTree  # noqa: E402
from persistent import Persistent  # noqa: E402
from workload import iter_events  # noqa: E402
from ZODB import DB  # noqa: E402
from ZODB.FileStorage import FileStorage  # noqa: E402

from shopkeeper.engine.ingest import Ingestor  # noqa: E402
from shopkeeper.events import validate_event  # noqa: E402
from shopkeeper.store import Store  # noqa: E402

TARGET_SINGLE = 1_500
TARGET_GROUPED = 15_000


def copy_store(src: str, dst: str) -> None:
    for suffix in ("", ".index"):
        shutil.copyfile(src + suffix, dst + suffix)


def written(path: str, after_tid: bytes) -> tuple[int, int, int, dict[str, list[int]]]:
    """(transactions, records, data bytes, {class: [records, bytes]}) written to the FileStorage at
    ``path`` after ``after_tid``: the write shape, record by record."""
    from ZODB.utils import get_pickle_metadata

    fs = FileStorage(path, read_only=True)
    try:
        txns = recs = nbytes = 0
        by_class: dict[str, list[int]] = {}
        for txn in fs.iterator(start=after_tid):
            if txn.tid == after_tid:
                continue
            txns += 1
            for rec in txn:
                recs += 1
                size = len(rec.data or b"")
                nbytes += size
                mod, cls = get_pickle_metadata(rec.data) if rec.data else ("", "?")
                slot = by_class.setdefault(f"{mod}.{cls}", [0, 0])
                slot[0] += 1
                slot[1] += size
        return txns, recs, nbytes, by_class
    finally:
        fs.close()


def plugin_processors() -> list[Any]:
    """The processors a hub runs with its built-in plugins (rules, analysis, outbox) and the change feed,
    built the way the hub builds them, but without a hub: the writer's apply loop alone."""
    from types import SimpleNamespace

    from shopkeeper.context import PluginState
    from shopkeeper.engine import feed
    from shopkeeper.plugins import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    hub = SimpleNamespace(config=SimpleNamespace(rules_dir=str(HERE.parent / "rules")), store=None, pm=None,
                          plugin_state=PluginState())
    return [feed.interaction_processor, *(p for ps in pm.hook.shopkeeper_processors(hub=hub) for p in (ps or ()))]


def run_phase(path: str, events: list, batch: int, profile: str | None, plugins: bool = False,
              warm: int = 0) -> dict[str, Any]:
    """Apply ``events`` in groups of ``batch`` and count; the first ``warm`` of them are applied before
    the clocks start (and are not in the figures): the steady state of a hub that has been running a
    while, its index buckets and hot customers cached, instead of a hub just started (§49)."""
    from shopkeeper.plugins import builtin_evolve_steps

    # with the plugins, the built-in plugins' steps too: the hub keeps their indexes (audience, order
    # table) current on every write, and the write shape must count them
    store = Store.open(f"file://{path}", steps=builtin_evolve_steps() if plugins else ())
    with Ingestor(store, processors=plugin_processors() if plugins else ()) as ing:
        for i in range(0, warm, batch):
            ing.apply(events[i:min(i + batch, warm)])
        events = events[warm:]
        ing.stats = type(ing.stats)()
        start_tid = store.db.lastTransaction()
        loads0 = _loads(ing.conn)
        prof = cProfile.Profile() if profile else None
        c0 = time.process_time()
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        if batch == 1:
            for ev in events:
                ing.apply([ev])
        else:
            for i in range(0, len(events), batch):
                ing.apply(events[i:i + batch])
        if prof:
            prof.disable()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        stats = ing.stats
        loads = _loads(ing.conn) - loads0
    store.close()
    if prof:
        prof.dump_stats(profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    txns, recs, nbytes, by_class = written(path, start_tid)
    return {
        "events": len(events),
        "events_per_txn": batch,
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(events) / elapsed),
        "us_per_event": round(elapsed / len(events) * 1e6, 1),
        "cpu_us_per_event": round(cpu / len(events) * 1e6, 1),  # process CPU: what contention distorts least
        "warm": warm,
        "loads_per_event": round(loads / len(events), 3),  # records the writer's connection loaded
        "applied": stats.applied,
        "duplicates": stats.duplicates,
        "rejected": stats.rejected,
        "commit_share": round(stats.commit_seconds / elapsed, 3),
        "txns": txns,
        "records_per_txn": round(recs / max(txns, 1), 1),
        "records_per_event": round(recs / len(events), 3),
        "bytes_per_record": round(nbytes / max(recs, 1)),
        "bytes_per_event": round(nbytes / len(events)),
        # per transaction: records and bytes of each class (Customer, history bucket, index buckets…)
        "per_txn_by_class": {k: [round(n / max(txns, 1), 1), round(b / max(txns, 1))]
                             for k, (n, b) in sorted(by_class.items(), key=lambda kv: -kv[1][0])},
    }


def _loads(conn: Any) -> int:
    """Records ``conn`` has loaded so far (ZODB counts them for its activity monitor)."""
    return conn.getTransferCounts()[0]


class _Obj(Persistent):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


def baseline(tmp: Path, txns: int, objs_per_txn: int, obj_bytes: int, pool: int = 20_000) -> dict[str, Any]:
    """Bare ZODB on FileStorage: ``txns`` commits, each changing ``objs_per_txn`` objects."""
    path = tmp / "baseline.fs"
    for suffix in ("", ".index", ".lock", ".tmp"):
        if os.path.exists(str(path) + suffix):
            os.remove(str(path) + suffix)
    db = DB(FileStorage(str(path)), cache_size=100_000)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    rng = random.Random(1)
    pool = max(pool, objs_per_txn * 2)
    tm.begin()
    tree = conn.root()["objs"] = LOBTree()
    for i in range(pool):
        tree[i] = _Obj(b"x" * obj_bytes)
    tm.commit()
    objs = [tree[i] for i in range(pool)]
    k = max(1, round(objs_per_txn))
    t0 = time.perf_counter()
    for n in range(txns):
        tm.begin()
        for o in rng.sample(objs, k):
            o.payload = n.to_bytes(8, "little") + b"x" * max(0, obj_bytes - 8 - 40)  # ~40 B pickle overhead
        tm.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    db.close()
    return {"txns": txns, "objs_per_txn": k, "obj_bytes": obj_bytes, "seconds": round(elapsed, 4),
            "txn_per_s": round(txns / elapsed, 2)}


class _Rec(Persistent):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


def floor(tmp: Path, customers: int, raws: list[dict[str, Any]], batch: int, record_bytes: int,
          warm: int = 0, profile: str | None = None) -> dict[str, Any]:
    """Bare ZODB doing the hub's read and write shape for the same events, nothing else: per event the
    email and cookie looked up in an ``OOBTree`` index, the record found in a second ``OOBTree`` by id,
    loaded cold (a fresh process's cache, as the hub's after start) and rewritten (a new ``bytes`` of
    ``record_bytes``); an unknown email makes a new record. One commit per ``batch`` events. The writer's
    CPU per event (thread CPU, this loop alone) is the floor the ingest path's own work adds to. The
    first ``warm`` events run before the clock starts, as in :func:`run_phase`; ``profile``: a file for
    a cProfile of the measured events (call counts to set beside the ingest's, §68)."""
    from bench_store_1m import customer_ids
    from BTrees.OOBTree import OOBTree
    from workload import customer_cookie, customer_email

    path = str(tmp / "floor.fs")
    for suffix in ("", ".index", ".lock", ".tmp"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = DB(FileStorage(path), cache_size=50_000)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(transaction_manager=tm)
    tm.begin()
    ids = conn.root()["identities"] = OOBTree()
    recs = conn.root()["customers"] = OOBTree()
    cids = customer_ids(customers, 42)
    for i, cid in enumerate(cids):
        ids[("email", customer_email(i))] = cid
        ids[("cookie", customer_cookie(i))] = cid
        recs[cid] = _Rec(b"x" * (record_bytes // 2))
        if i % 10_000 == 9_999:
            tm.commit()
            tm.begin()
    tm.commit()
    conn.close()
    db.close()
    db = DB(FileStorage(path), cache_size=50_000)  # cold, as a hub just started
    conn = db.open(transaction_manager=tm)
    pad = b"x" * max(0, record_bytes - 8)
    groups = [(lo, min(lo + batch, warm)) for lo in range(0, warm, batch)]
    groups += [(lo, min(lo + batch, len(raws))) for lo in range(warm, len(raws), batch)]
    c0, loads0, prof = time.thread_time(), 0, None
    for lo, hi in groups:
        if lo == warm:
            c0 = time.thread_time()
            loads0 = _loads(conn)
            prof = cProfile.Profile() if profile else None
            if prof:
                prof.enable()
        tm.begin()
        root = conn.root()
        ids, recs = root["identities"], root["customers"]
        for n, raw in enumerate(raws[lo:hi], lo):
            cid = None
            for pair in sorted(raw["identities"].items()):
                cid = ids.get(pair) or cid
            rec = recs.get(cid) if cid is not None else None
            if rec is None:
                cid = f"{n:016x}"
                rec = recs[cid] = _Rec(b"")
                for pair in raw["identities"].items():
                    ids[pair] = cid
            rec.payload = n.to_bytes(8, "little") + pad
        tm.commit()
    cpu = time.thread_time() - c0
    if profile and prof:
        prof.disable()
        prof.dump_stats(profile)
    n = len(raws) - warm
    loads = _loads(conn) - loads0
    conn.close()
    db.close()
    return {"events": n, "warm": warm, "cpu_us_per_event": round(cpu / n * 1e6, 1), "record_bytes": record_bytes,
            "loads_per_event": round(loads / n, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=10_000, help="events for phase (a), one txn each")
    ap.add_argument("--grouped", type=int, default=200_000, help="events for phase (b)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", help="work directory (default: a temp dir, removed afterwards)")
    ap.add_argument("--profile", choices=("single", "grouped"), help="cProfile that phase, print the top")
    ap.add_argument("--only", choices=("single", "grouped"), help="run one phase only")
    ap.add_argument("--floor", action="store_true",
                    help="after the grouped phase: bare ZODB doing its read and write shape (see floor())")
    ap.add_argument("--warm", type=int, default=0,
                    help="grouped phase (and --floor): apply this many events first, outside the figures (a warm hub)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--plugins", action="store_true",
                    help="run the built-in processors (rules, analysis, outbox, change feed) as the hub's writer does")
    args = ap.parse_args()

    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="shopkeeper-ingest-"))
    tmp.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"machine": machine(), "customers": args.customers, "plugins": args.plugins}

    t = time.perf_counter()
    n_single = 0 if args.only == "grouped" else args.single
    n_grouped = 0 if args.only == "single" else args.grouped
    warm = args.warm if n_grouped else 0
    n_grouped += warm
    raws = list(iter_events(n_single + n_grouped, n_customers=args.customers, seed=args.seed))
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    types = None
    if args.plugins:
        from shopkeeper.rules.runtime import _event_types_with_rules

        types = _event_types_with_rules()
    events = [validate_event(r, types, index=i) if types else validate_event(r, index=i) for i, r in enumerate(raws)]
    val_s = time.perf_counter() - t
    out["workload"] = {"events": len(raws), "generate_us_per_event": round(gen_s / len(raws) * 1e6, 1),
                       "validate_us_per_event": round(val_s / len(raws) * 1e6, 1),
                       "redelivered": len(raws) - len({r["idempotency_key"] for r in raws})}
    print(json.dumps(out["workload"]), flush=True)
    del raws

    seed_store = str(tmp / "seed.fs")
    for suffix in ("", ".index", ".lock", ".tmp"):
        if os.path.exists(seed_store + suffix):
            os.remove(seed_store + suffix)
    t = time.perf_counter()
    build_store(seed_store, args.customers, 0, txn=10_000, log=lambda m: None)
    print(f"pre-populated {args.customers:,} customers in {time.perf_counter() - t:.1f}s", flush=True)

    phases = []
    if n_single:
        phases.append(("single", events[:n_single], 1, TARGET_SINGLE))
    if n_grouped:
        phases.append(("grouped", events[n_single:], args.batch, TARGET_GROUPED))
    for name, evs, batch, target in phases:
        path = str(tmp / f"{name}.fs")
        copy_store(seed_store, path)
        res = run_phase(path, evs, batch, str(tmp / f"{name}.prof") if args.profile == name else None,
                        plugins=args.plugins, warm=warm if name == "grouped" else 0)
        bl_txns = min(res["txns"], 5_000 if batch == 1 else 200)
        bl = baseline(tmp, bl_txns, res["records_per_txn"], res["bytes_per_record"])
        bl_events_per_s = round(bl["txns"] * batch / bl["seconds"])
        res["baseline"] = bl
        res["baseline_events_per_s"] = bl_events_per_s
        res["ratio_to_baseline"] = round(res["events_per_s"] / bl_events_per_s, 3)
        res["target_events_per_s"] = target
        res["target_met"] = res["events_per_s"] >= target
        out[name] = res
        print(f"{name}: {res['events_per_s']:,} events/s ({res['us_per_event']} us/event, "
              f"{res['cpu_us_per_event']} us CPU, {res['loads_per_event']} loads, "
              f"{res['records_per_event']} records and "
              f"{res['bytes_per_event']} B per event, {res['commit_share']:.0%} in commit), target {target:,}: "
              f"{'MET' if res['target_met'] else 'MISSED'}; bare ZODB same shape "
              f"({res['records_per_txn']} objs x {res['bytes_per_record']} B per txn): "
              f"{bl_events_per_s:,} events/s -> ratio {res['ratio_to_baseline']}", flush=True)
        print("   " + json.dumps(res), flush=True)
        if args.floor and name == "grouped":
            cust = res["per_txn_by_class"].get("shopkeeper.customer.Customer", [1, 1800])
            raws_g = list(iter_events(n_single + n_grouped, n_customers=args.customers, seed=args.seed))[n_single:]
            res["floor"] = fl = floor(tmp, args.customers, raws_g, batch, round(cust[1] / max(cust[0], 1)), warm,
                                      str(tmp / "floor.prof") if args.profile == "grouped" else None)
            print(f"floor: bare ZODB, the same events' lookups, cold loads and record rewrites "
                  f"({fl['record_bytes']} B each): {fl['cpu_us_per_event']} µs CPU and {fl['loads_per_event']} loads "
                  f"per event against the "
                  f"ingest's {res['cpu_us_per_event']}", flush=True)
    out["rss_mb"] = round(rss_mb())
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if not args.dir:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
