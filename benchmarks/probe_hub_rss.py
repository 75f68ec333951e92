"""A serving hub's RSS at 1M customers with its writer busy: streaming ingest and uniform reads at once.

Issue 10 asks for "RSS at 1M customers <= 1.5 GB". ``probe_rss.py`` measures the read pool alone
(the store opened read-only, no writer); ``bench_store_1m.py`` measures a hub just opened. This
probe runs the real thing on a *copy* of a 1M store built by ``bench_store_1m.py`` (with the hub's
evolve steps, so opening it walks nothing): a hub process (``bench_hub.py --serve-hub``, the
plugins on by default) takes ``--events`` events of the reference workload (Zipf over all the
store's customers, 2 streams of 500-event batches, as fast as it acknowledges) while one thread
reads customers drawn **uniformly** (the worst case for the caches) with ``GetCustomer`` at
``--read-rate`` per second. Every ``--every`` seconds it prints the hub's RSS, its CPU so far and
the events and reads done; at the end the peak and the last RSS, and the events/s of the run.

    nice -n 19 python benchmarks/probe_hub_rss.py --store /tmp/bench1m/Data.fs --customers 1000000
    python benchmarks/probe_hub_rss.py --uri postgresql://…/db1m --customers 1000000   # used as is: it is written to

With ``--uri`` the store (e.g. a PostgreSQL database filled by ``shopkeeper storage copy --current``
from a bench_store_1m store: issue 17's 10M method) is served as is, not copied: the run's events
are stored in it. At the end the hub reports its collector's passes (count, longest CPU ms by
generation): a serving hub runs no full collection on CPython's count rule (docs/benchmarks.md §82).

It is a probe, not a throughput benchmark: the reader and the ingest client share the machine
with the hub. RSS is read from ``/proc``. The copy needs the store's size free in ``--tmp-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_hub  # noqa: E402
import grpc  # noqa: E402
from workload import customer_email  # noqa: E402

from shopkeeper.servers import free_port  # noqa: E402


def reader(addr: str, customers: int, rate: float, stop: threading.Event, done: list[int],
           errors: dict[str, int]) -> None:
    """GetCustomer for uniformly drawn customers, ``rate`` per second, until ``stop``."""
    from shopkeeper._proto.v1 import common_pb2, customers_pb2, customers_pb2_grpc

    rng = random.Random(11)
    with grpc.insecure_channel(addr) as ch:
        call = customers_pb2_grpc.CustomersStub(ch).GetCustomer
        t0 = time.monotonic()
        n = 0
        while not stop.is_set():
            due = t0 + n / rate
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            email = customer_email(rng.randrange(customers))
            req = customers_pb2.GetCustomerRequest(
                customer=common_pb2.CustomerRef(identity=common_pb2.Identity(namespace="email", value=email)))
            try:
                call(req, timeout=30)
                done[0] += 1
            except grpc.RpcError as exc:
                errors[str(exc.code())] = errors.get(str(exc.code()), 0) + 1
            n += 1


def print_census(m: dict[str, Any]) -> None:
    """One census (memcensus.census) in a few lines."""
    z = m["zodb"]
    print(f"       zodb: {z['loaded']:,} loaded, {z['all']:,} with ghosts, per connection {z['connections']}; "
          f"relstorage {m['relstorage']}; malloc {m['malloc']}; python blocks "
          f"{m['python']['allocated_blocks']:,}, gc objects {m['python']['gc_objects']:,}", flush=True)
    print(f"       by type: {m['python']['by_type']}", flush=True)
    t = m.get("tracemalloc")
    if t:
        print(f"       traced {t['traced_mb']} MB; top: {t['top'][:6]}", flush=True)
        if "grew" in t:
            print(f"       grew: {t['grew'][:8]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="a bench_store_1m Data.fs (copied, never changed)")
    src.add_argument("--uri", help="a store URI served as is (the run's events are stored in it)")
    ap.add_argument("--customers", type=int, required=True, help="customers in that store")
    ap.add_argument("--events", type=int, default=200_000, help="events streamed (Zipf over --customers)")
    ap.add_argument("--read-rate", type=float, default=100.0, help="GetCustomer per second, uniform customers")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between RSS lines")
    ap.add_argument("--no-plugins", action="store_true", help="the hub without its plugins")
    ap.add_argument("--tmp-dir", default=None, help="where the store copy goes (needs its size free)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--seed", type=int, default=42,
                    help="the workload's seed: a --uri store served before holds seed 42's events already, so its "
                         "writer would only deduplicate them; another seed makes it write (docs/benchmarks.md §95)")
    ap.add_argument("--read-cache-objects", type=int, default=None,
                    help="the hub's limits.read_cache_objects (default: the hub's own)")
    ap.add_argument("--cache-objects", type=int, default=None,
                    help="the hub's limits.cache_objects, the writer's cache (default: the hub's own)")
    ap.add_argument("--census", action="store_true",
                    help="at each line, also what the hub's memory is made of (benchmarks/memcensus.py: ZODB caches, "
                         "RelStorage's cache, glibc's arenas, objects by type); slow: seconds per census at 10M")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                    help="with --census: the hub traces its allocations (this many frames) and each census names the "
                         "lines that grew most since the last; slows the hub ~2x")
    a = ap.parse_args()
    if a.census:
        os.environ["SHOPKEEPER_BENCH_MEMORY"] = "1"  # the hub process inherits it (bench_hub.start_server)
        if a.tracemalloc:
            os.environ["SHOPKEEPER_BENCH_TRACEMALLOC"] = str(a.tracemalloc)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the hub stopped, the copy removed

    tmp = tempfile.mkdtemp(prefix="probe-hub-rss-", dir=a.tmp_dir)
    try:
        uri = a.uri
        if uri is None:
            t0 = time.perf_counter()
            dst = os.path.join(tmp, "Data.fs")
            bench_hub.copy_store(a.store, dst)
            print(f"store copied in {time.perf_counter() - t0:.0f} s", flush=True)
            uri = f"file://{dst}"
        print("building the event batches …", flush=True)
        batches = bench_hub.make_batches(a.events, a.customers, seed=a.seed)
        addr = f"127.0.0.1:{free_port()}"
        args = ["--serve-hub", uri, addr] + ([] if a.no_plugins else ["--plugins"])
        if a.read_cache_objects:
            args.append(f"--read-cache-objects={a.read_cache_objects}")
        if a.cache_objects:
            args.append(f"--cache-objects={a.cache_objects}")
        hub = bench_hub.start_server(args)
        try:
            opened = json.loads(hub.stdout.readline())
            bench_hub.wait_ready(addr)
            rss_open = bench_hub.rss_mb(hub.pid)
            print(f"hub open in {opened['open_seconds']} s, RSS {rss_open:.0f} MB", flush=True)
            stop = threading.Event()
            reads, errors = [0], {}
            rt = threading.Thread(target=reader, args=(addr, a.customers, a.read_rate, stop, reads, errors),
                                  daemon=True)
            result: dict[str, Any] = {}
            it = threading.Thread(target=lambda: result.update(bench_hub.run_streams(addr, batches, 2)), daemon=True)
            cpu0, start = bench_hub.cpu_seconds(hub.pid), time.monotonic()
            rt.start()
            it.start()
            samples = []
            print(f"{'s':>6} {'RSS MB':>8} {'hub CPU s':>10} {'reads':>8}", flush=True)
            while it.is_alive():
                it.join(a.every)
                s = {"t": round(time.monotonic() - start, 1), "rss_mb": round(bench_hub.rss_mb(hub.pid)),
                     "cpu_s": round(bench_hub.cpu_seconds(hub.pid) - cpu0, 1), "reads": reads[0]}
                samples.append(s)
                print(f"{s['t']:>6} {s['rss_mb']:>8} {s['cpu_s']:>10} {s['reads']:>8}", flush=True)
                if a.census:
                    s["memory"] = bench_hub.ask_hub(hub)["memory"]
                    print_census(s["memory"])
            stop.set()
            rt.join(60)
            gcs = bench_hub.ask_hub(hub)
            print(f"hub gc [count, ms, longest ms, CPU ms, longest CPU ms]: {gcs['gc']}; "
                  f"garbage found by generation: {gcs['gc_collected']}", flush=True)
            out = {"store": a.store or a.uri, "customers": a.customers, "events": a.events, "read_rate": a.read_rate,
                   "seed": a.seed, "read_cache_objects": a.read_cache_objects, "cache_objects": a.cache_objects,
                   "plugins": not a.no_plugins, "open_seconds": opened["open_seconds"], "rss_open_mb": round(rss_open),
                   "hub_gc": gcs["gc"], "hub_gc_collected": gcs["gc_collected"],
                   "rss_peak_mb": max(s["rss_mb"] for s in samples), "rss_last_mb": samples[-1]["rss_mb"],
                   "ingest": result, "reads": reads[0], "read_errors": errors, "samples": samples}
            print(json.dumps({k: v for k, v in out.items() if k != "samples"}), flush=True)
            if result.get("applied") == 0 and result.get("duplicates"):
                print(f"warning: the writer applied none of the {result['duplicates']:,} events (all duplicates: the "
                      f"store already holds seed {a.seed}'s events), so this RSS is not one of a busy writer; "
                      "run again with another --seed", flush=True)
            if a.json:
                Path(a.json).write_text(json.dumps(out, indent=2))
        finally:
            bench_hub.stop_server(hub)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
