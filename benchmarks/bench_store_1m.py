"""A store of 1M customers with 10 interactions each: build it, then measure what a hub
process pays to open it and to serve a customer's 360° view.

    python benchmarks/bench_store_1m.py                      # 1M customers, temp dir
    python benchmarks/bench_store_1m.py --customers 100000   # scaled down
    python benchmarks/bench_store_1m.py --dir /data/bench --keep

Build: customers are created with the Customer API in big transactions (``--txn`` customers
each, then ``cacheMinimize`` so memory stays bounded), not through validation + identity
resolution; but the objects are exactly what ingest produces for the same events, which
the script checks first on a few hundred customers (``verify_against_ingest``). Customer
ids, emails, cookies and idempotency keys are random-looking but assigned in sorted order,
so the global indexes are appended to rather than rewritten bucket by bucket.

Measured: build rate and RSS growth; pack; bytes on disk per customer; then, in a *fresh
process* (so RSS and open time are those of a hub starting up): store open time (with the
``.index`` file FileStorage wrote on close), lookup by identity + ``customer_view`` p50/p99
warm (every sampled customer looked up once before timing) and cold, and RSS after.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import T0, customer_email, draw_kind, make_event, zipf_cdf  # noqa: E402

from shopkeeper.customer import Customer, IdentityLink, Interaction  # noqa: E402
from shopkeeper.importer.importer import relaxed_collector  # noqa: E402
from shopkeeper.store import Folders, Store, StoreOptions  # noqa: E402

DAY = 86_400.0
SPAN = 90 * DAY  # history spread over the 90 days before the workload's start


def rss_mb() -> float:
    """This process's resident set in MB (psutil, the bench extra; /proc where it is not installed,
    as in the test environment that runs the build at a small size)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return psutil.Process().memory_info().rss / 2**20


# -- the events a customer of the prebuilt store has had -------------------------------


def customer_raw_events(i: int, per_customer: int, rng: random.Random) -> list[dict[str, Any]]:
    """``per_customer`` raw events of customer ``i`` in time order, WORKLOAD.md mix (writes).

    Keys are 32 hex digits whose leading 9 follow (customer, event) order and the rest is
    random, so the idempotency index grows at its end during a bulk build.
    """
    times = sorted(rng.random() for _ in range(per_customer))
    out = []
    for j, frac in enumerate(times):
        seq = i * per_customer + j
        ts = round(T0 - SPAN + frac * SPAN, 3)
        ev = make_event(draw_kind(rng, writes_only=True), i, seq, ts, rng)
        ev["idempotency_key"] = f"{i:07x}{j:02x}{rng.getrandbits(92):023x}"
        out.append(ev)
    return out


def customer_ids(n: int, seed: int) -> list[str]:
    """``n`` distinct random 16-hex ids (as ``Folders.new_customer_id`` makes), sorted."""
    rng = random.Random(f"ids-{seed}")
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(f"{rng.getrandbits(64):016x}")
    return sorted(ids)


def add_customer_bulk(folders: Folders, cid: str, raws: list[dict[str, Any]], source: str = "ingest") -> Customer:
    """Record ``raws`` (already valid, identities already normalised) for a new customer
    ``cid`` the way ``Ingestor`` would: same Interaction fields, same identity links."""
    first = raws[0]
    ts0 = int(round(first["ts"] * 1_000_000))
    c = Customer(cid, created_at=ts0)
    folders.customers[cid] = c
    folders.conn.add(c)  # as ``Folders.add_customer`` does: the commit then gives it its audience card,
    # like a real store's customers (without it the first write of each customer in a benchmark
    # inserted its card: ~0.2 records per event of bench_hub's write shape were that)
    idents = c.identities
    index = folders.identities
    its = []
    for raw in raws:
        ts = int(round(raw["ts"] * 1_000_000))
        pairs = tuple(raw["identities"].items())
        for pair in pairs:
            if pair not in idents:
                idents[pair] = IdentityLink(source, ts)
                index[pair] = cid
        data = {k: v for k, v in raw["data"].items() if v is not None and v != ""}
        its.append(Interaction(ts, ts, raw["type"], raw["channel"], "", data, raw["idempotency_key"], pairs, cid))
    c.add_interactions(its)  # what add_interaction per event gives, in one call (the import's bulk entry)
    for it in its:
        c.remember_key(it.idempotency_key, it.ts)
    return c


def build_store(path: str, n_customers: int, per_customer: int, *, txn: int = 5_000, seed: int = 42,
                log=print, pack: bool = False, steps_first: bool = False) -> dict[str, Any]:
    """Create a store at ``path`` (a FileStorage file, or any store URI such as ``postgresql://…``)
    with ``n_customers`` x ``per_customer`` events.

    ``pack``: pack after the build. A bulk build leaves almost no garbage (20k customers:
    85,726,890 bytes before, 85,691,360 after, -0.04%) and the pack took about as long as the
    build itself (1M: 1,055 s after a 991 s build), so it is off unless asked for; the byte
    figures say which it was."""
    t_ids = time.perf_counter()
    ids = customer_ids(n_customers, seed)
    log(f"ids: {time.perf_counter() - t_ids:.1f}s")
    store = Store.open(store_uri(path), StoreOptions(cache_size=20_000))
    if steps_first:
        t = time.perf_counter()
        ran = store.add_steps(hub_steps())
        log(f"the hub's evolve steps on the empty store first ({len(ran)}): {time.perf_counter() - t:.1f}s")
    conn, tm = store.connect()
    rss0 = rss_mb()
    rss_samples: list[float] = []
    t0 = time.perf_counter()
    # The next chunk's events are drawn in a second process while this one commits (drawing them
    # was about a third of the build); each chunk has its own seed, so the store is the same
    # whatever the timing.
    chunks = [(start, min(n_customers, start + txn), per_customer, f"{seed}-{start}")
              for start in range(0, n_customers, txn)]
    with mp.get_context("spawn").Pool(1) as pool, relaxed_collector():  # as an import: GC's older generations rarely
        ahead = pool.apply_async(_chunk_events, (chunks[0],))
        for k, (start, stop, _n, _seed) in enumerate(chunks):
            raws = ahead.get()
            if k + 1 < len(chunks):  # one chunk ahead, not more: memory stays bounded
                ahead = pool.apply_async(_chunk_events, (chunks[k + 1],))
            _build_chunk(conn, tm, ids, start, stop, per_customer, raws)
            rss_samples.append(rss_mb())
            if (start // txn) % 20 == 0 or stop == n_customers:
                el = time.perf_counter() - t0
                log(f"  {stop:>9,} customers  {stop / el:8.0f}/s  rss {rss_samples[-1]:.0f} MB  "
                    f"size {store.storage_size() / 2**20:.0f} MB")
    build_s = time.perf_counter() - t0
    conn.close()
    return _finish(store, path, n_customers, per_customer, build_s, rss0, rss_samples, pack)


def store_uri(path: str) -> str:
    """``path`` as a store URI: a URI as is, a file path as its FileStorage."""
    return path if "://" in path else f"file://{path}"


def hub_steps() -> list[Any]:
    """The named evolve steps a hub with its plugins runs on open."""
    from shopkeeper.plugins import evolve_steps, get_plugin_manager

    return list(evolve_steps(get_plugin_manager(load_entrypoints=True)))


def run_hub_steps(path: str) -> dict[str, Any]:
    """Run on the built store the named evolve steps a hub with its plugins runs on open (the
    audience index, the order table, the score tables, ...), as a hub that had kept the store since
    its first customer would have them. Why: the bulk build writes customers only, so every bench
    hub opened on it built those indexes first (70-110 s at 100k customers) — and, until §55, kept
    the customers that walk loaded in its caches (1.5 GB at open), measuring a hub nobody runs."""
    t = time.perf_counter()
    store = Store.open(store_uri(path))
    ran = store.add_steps(hub_steps())
    store.close()
    return {"ran": ran, "seconds": round(time.perf_counter() - t, 1)}


def _chunk_events(chunk: tuple[int, int, int, str]) -> list[list[dict[str, Any]]]:
    """The raw events of customers ``start..stop`` (in the generator process)."""
    start, stop, per_customer, seed = chunk
    rng = random.Random(seed)
    return [customer_raw_events(i, per_customer, rng) if per_customer else [_identify(i)]
            for i in range(start, stop)]


def _build_chunk(conn: Any, tm: Any, ids: list[str], start: int, stop: int, per_customer: int,
                 raws: list[list[dict[str, Any]]]) -> None:
    """Customers ``start..stop`` in one transaction, then the cache emptied (memory stays bounded)."""
    tm.begin()
    f = Folders(conn)
    for i, events in zip(range(start, stop), raws, strict=True):
        add_customer_bulk(f, ids[i], events)
    f.count("customers", stop - start)
    if per_customer:
        f.count("interactions", (stop - start) * per_customer)
    tm.get().note(f"bench: bulk build customers {start}..{stop}")
    tm.commit()
    conn.cacheMinimize()


def _finish(store: Store, path: str, n_customers: int, per_customer: int, build_s: float, rss0: float,
            rss_samples: list[float], pack: bool) -> dict[str, Any]:
    size_before_pack = store.storage_size()
    t = time.perf_counter()
    if pack:
        store.pack()
    pack_s = time.perf_counter() - t
    size = store.storage_size()
    t = time.perf_counter()
    store.close()  # writes Data.fs.index
    close_s = time.perf_counter() - t
    return {
        "customers": n_customers,
        "interactions_per_customer": per_customer,
        "build_seconds": round(build_s, 1),
        "customers_per_s": round(n_customers / build_s),
        "interactions_per_s": round(n_customers * per_customer / build_s),
        "rss_start_mb": round(rss0),
        "rss_build_first_mb": round(rss_samples[0]),
        "rss_build_peak_mb": round(max(rss_samples)),
        "rss_build_last_mb": round(rss_samples[-1]),
        "rss_build_samples_mb": [round(x) for x in rss_samples[:: max(1, len(rss_samples) // 20)]],
        "bytes_before_pack": size_before_pack,
        "packed": pack,
        "pack_seconds": round(pack_s, 1) if pack else None,
        "bytes_after_pack": size if pack else None,
        "bytes_per_customer": round(size / n_customers),
        "close_seconds": round(close_s, 2),
        "index_file_bytes": os.path.getsize(path + ".index") if os.path.exists(path + ".index") else None,
    }


def _identify(i: int) -> dict[str, Any]:
    """A customer known by email and cookie, with one ``identify`` event (history 1)."""
    from workload import customer_cookie

    return {"type": "identify", "channel": "web", "ts": round(T0 - SPAN, 3),
            "identities": {"email": customer_email(i), "cookie": customer_cookie(i)}, "data": {},
            "idempotency_key": f"{i:07x}ff{i:023x}"}


# -- the bulk build makes what ingest makes ----------------------------------------------


def _shape(folders: Folders, c: Customer, id_of: dict[str, str]) -> dict[str, Any]:
    def cid(x: str) -> str:
        return id_of.get(x, x)

    return {
        "created_at": c.created_at, "status": c.status, "schema": c.schema,
        "identities": sorted((p, tuple(link)) for p, link in c.identities.items()),
        "index": sorted((p, cid(folders.identities[p])) for p in c.identities.keys()),
        "history": [(k, it._replace(origin=cid(it.origin))) for k, it in c.history.items()],
        "hard": c.hard, "type_counts": c.type_counts, "traits": c.traits, "soft": c.soft,
        "consents": c.consents, "segments": c.segments,
    }


def verify_against_ingest(n: int = 300, per_customer: int = 10, seed: int = 7) -> None:
    """Build ``n`` customers both ways (bulk, and Ingestor on validated events) and compare."""
    from shopkeeper.engine.ingest import Ingestor
    from shopkeeper.events import validate_event

    rng = random.Random(seed)
    events = {i: customer_raw_events(i, per_customer, rng) for i in range(n)}
    ids = customer_ids(n, seed)
    bulk = Store.open("memory://bulk")
    with bulk.transaction() as f:
        for i in range(n):
            add_customer_bulk(f, ids[i], events[i])
        f.count("customers", n)
        f.count("interactions", n * per_customer)
    real = Store.open("memory://real")
    with Ingestor(real) as ing:
        for i in range(n):
            res = ing.apply([validate_event(e) for e in events[i]])
            assert all(r.status == "applied" for r in res), res
    with bulk.read() as fb, real.read() as fr:
        for name in ("customers", "interactions", "duplicates"):
            assert fb.counter(name) == fr.counter(name), name
        for i in range(n):
            email = ("email", customer_email(i))
            cb, cr = fb.customer_by_identity(*email), fr.customer_by_identity(*email)
            same = {cr.id: cb.id}
            assert _shape(fb, cb, {}) == _shape(fr, cr, same), f"customer {i} differs"
            for it in cb.history.values():
                key = it.idempotency_key
                assert cb.has_key(key, it.ts) and cr.has_key(key, it.ts)
    bulk.close()
    real.close()


# -- measuring a built store, in a fresh process ----------------------------------------


def measure(path: str, n_customers: int, samples: int, seed: int) -> dict[str, Any]:
    from shopkeeper.lookup import find_customer
    from shopkeeper.view import customer_view

    rss_before = rss_mb()
    t = time.perf_counter()
    store = Store.open(store_uri(path))
    open_s = time.perf_counter() - t
    rss_open = rss_mb()
    # customers picked as the workload's decide reads pick them: Zipf over a permutation
    rng = random.Random(seed)
    cdf = zipf_cdf(n_customers)
    perm = list(range(n_customers))
    rng.shuffle(perm)
    from bisect import bisect_right

    picks = [perm[min(bisect_right(cdf, rng.random()), n_customers - 1)] for _ in range(samples)]
    uniform = [rng.randrange(n_customers) for _ in range(samples)]
    conn, tm = store.connect()
    tm.begin()
    f = Folders(conn)

    def one(i: int) -> float:
        t0 = time.perf_counter_ns()
        c = find_customer(f, f"email:{customer_email(i)}")
        v = customer_view(c)
        dt = time.perf_counter_ns() - t0
        assert len(v["recent_interactions"]) == min(10, c.hard["interactions"])
        return dt / 1e6

    cold = [one(i) for i in uniform]  # first touch of (mostly) distinct customers: loads from disk
    for i in picks:  # warm-up: every sampled customer once
        one(i)
    warm = [one(i) for i in picks]
    warm_uniform = [one(i) for i in uniform]  # uniform sample, touched once already above
    tm.abort()
    conn.close()
    gc.collect()
    rss_after = rss_mb()
    store.close()

    def pct(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3)

    return {
        "open_seconds": round(open_s, 3),
        "rss_before_open_mb": round(rss_before),
        "rss_after_open_mb": round(rss_open),
        "rss_after_lookups_mb": round(rss_after),
        "lookups": samples,
        "warm_zipf_p50_ms": pct(warm, 0.50), "warm_zipf_p99_ms": pct(warm, 0.99),
        "warm_uniform_p50_ms": pct(warm_uniform, 0.50), "warm_uniform_p99_ms": pct(warm_uniform, 0.99),
        "cold_uniform_p50_ms": pct(cold, 0.50), "cold_uniform_p99_ms": pct(cold, 0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--interactions", type=int, default=10, help="per customer")
    ap.add_argument("--txn", type=int, default=10_000, help="customers per build transaction")
    ap.add_argument("--pack", action="store_true", help="pack after the build (about doubles the time)")
    ap.add_argument("--samples", type=int, default=10_000, help="lookups to time")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", help="where to build (default: a temp dir, removed unless --keep)")
    ap.add_argument("--uri", help="build into this store URI instead of a FileStorage (e.g. an empty "
                                  "postgresql://… database: a 10M store without the 43 GB file and its copy, "
                                  "docs/capacity.md §10)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-hub-steps", action="store_true",
                    help="leave the plugins' evolve steps (audience index, order table, ...) to the first hub "
                         "that opens the store (before §55 every bench hub did, 70-110 s at 100k)")
    ap.add_argument("--steps-first", action="store_true",
                    help="run the hub's evolve steps on the empty store, so its keepers (audience index, order "
                         "table) are kept current while building, as in a hub that had the store from its first "
                         "customer: no walk over every customer afterwards (99 s per 100k on PostgreSQL, ~2.75 h "
                         "at 10M) and no second copy of each customer in a FileStorage")
    ap.add_argument("--measure-only", metavar="DATA_FS", help="only measure an existing store (fresh process; "
                                                          "a Data.fs path or a store URI)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()

    if args.measure_only:
        print(json.dumps(measure(args.measure_only, args.customers, args.samples, args.seed)))
        return

    def log(msg: str) -> None:
        print(msg, flush=True)

    t = time.perf_counter()
    verify_against_ingest()
    log(f"bulk build == ingest on 300 customers: ok ({time.perf_counter() - t:.1f}s)")
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="shopkeeper-1m-"))
    base.mkdir(parents=True, exist_ok=True)
    path = args.uri or str(base / "Data.fs")
    for suffix in ("", ".index", ".lock", ".tmp", ".old"):
        if not args.uri and os.path.exists(path + suffix):
            os.remove(path + suffix)
    log(f"building {args.customers:,} customers x {args.interactions} interactions in {path}")
    figures: dict[str, Any] = {"build": build_store(path, args.customers, args.interactions, txn=args.txn,
                                                    seed=args.seed, log=log, pack=args.pack,
                                                    steps_first=args.steps_first)}
    log(json.dumps(figures["build"]))
    if not args.no_hub_steps and not args.steps_first:
        figures["hub_steps"] = run_hub_steps(path)
        log(f"the hub's evolve steps ({', '.join(figures['hub_steps']['ran']) or 'none'}): "
            f"{figures['hub_steps']['seconds']:.0f} s")
    out = subprocess.run([sys.executable, __file__, "--measure-only", path, "--customers", str(args.customers),
                          "--samples", str(args.samples), "--seed", str(args.seed)],
                         check=True, capture_output=True, text=True)
    figures["measure"] = json.loads(out.stdout.strip().splitlines()[-1])
    # open a second time: the .index written by the previous close is what makes this fast
    out = subprocess.run([sys.executable, __file__, "--measure-only", path, "--customers", str(args.customers),
                          "--samples", "1000", "--seed", str(args.seed + 1)],
                         check=True, capture_output=True, text=True)
    figures["measure_again"] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["machine"] = machine()
    log(json.dumps(figures["measure"]))
    log(json.dumps(figures["measure_again"]))
    m, b = figures["measure"], figures["build"]
    log("")
    log(f"customers {args.customers:,} x {args.interactions}: built at {b['customers_per_s']:,}/s "
        f"({b['interactions_per_s']:,} interactions/s), RSS during build {b['rss_build_first_mb']}"
        f"..{b['rss_build_peak_mb']} MB")
    size = b["bytes_after_pack"] or b["bytes_before_pack"]
    log(f"on disk {'after pack' if b['packed'] else 'unpacked (--pack to pack)'}: {size / 2**20:.0f} MB = "
        f"{b['bytes_per_customer']:,} B/customer; build {b['build_seconds']:.0f} s, "
        f"pack {b['pack_seconds'] or 0:.0f} s")
    log(f"open {m['open_seconds']:.2f}s (target < 2 s); lookup+view warm p50 {m['warm_zipf_p50_ms']} ms "
        f"p99 {m['warm_zipf_p99_ms']} ms (target p99 <= 1 ms); cold p50 {m['cold_uniform_p50_ms']} "
        f"p99 {m['cold_uniform_p99_ms']} ms; RSS after open+lookups {m['rss_after_lookups_mb']} MB "
        f"(target <= 1536 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if not args.keep and not args.dir:
        shutil.rmtree(base)


def machine() -> dict[str, Any]:
    import psutil  # the bench extra (only the command line prints the machine)

    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": sys.version.split()[0]}


if __name__ == "__main__":
    main()
