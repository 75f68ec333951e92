"""What each processor costs the writer, in process CPU per event: every one switched off in turn.

    python benchmarks/probe_processors.py                          # 20k customers, 6,000 events, all variants
    python benchmarks/probe_processors.py --variants bare,all --repeat 3
    python benchmarks/probe_processors.py --profile all            # cProfile of one variant, top by tottime
    python benchmarks/probe_processors.py --variants calls         # calls per event inside each part
    python benchmarks/probe_processors.py --clock workload         # segments judged on the events' timeline
    python benchmarks/probe_processors.py --profile bare --warm 20000   # the same after 20,000 events of warm-up

Why: the processors (rules, segments/scores, outbox, the change feed) and the indexes kept before
every commit (the audience index, the order table) run in the writer's apply loop; the hub's figure
(docs/benchmarks.md §33: +66% over bare) sums them. Each variant here runs the writer's apply loop
in process (``bench_ingest.run_phase``: ``Ingestor`` with the hub's built-in processors, the store
opened with the built-in evolve steps) on its own copy of one seed store (``--customers`` built in
bulk with their cards) under a serving hub's garbage-collector settings (``tune_gc``), with the
WORKLOAD.md events after the first ``--skip``, in groups of
``--batch``, each variant in its own process (no warm caches carried over). Variants:

* ``bare`` — no processor, no kept index (``bench_ingest`` without ``--plugins``);
* ``all`` — everything the hub runs with its built-in plugins;
* ``-NAME`` — ``all`` without one part: ``feed``, ``rules``, ``analysis``, ``outbox`` (processors),
  ``audience``, ``ordertable`` (before-commit keepers);
* ``split`` — ``all`` with each part timed in place (thread CPU time around every call, the clock's
  own cost taken out), and the commit's pickling and storing, the record loads and the garbage
  collector timed too. Its total is inflated by the timers; its parts are what to compare.
* ``bare-split``, ``bare-calls`` — ``bare`` timed or counted the same way (its commit, loads and
  collector: what ``split`` and ``calls`` of ``all`` compare with).
* ``calls`` — ``all`` with the function calls (Python and C, counted by a ``sys.setprofile`` hook)
  made inside each part counted instead of timed: deterministic for a given seed, events and code,
  whatever else the machine runs, so before/after comparisons do not depend on the load. A load
  inside a processor is counted in both (as in ``split``). CPU figures of this variant mean nothing.

``--clock workload`` runs the analysis processor on the workload's timeline instead of the wall
clock. Since the workload's clock is live by default (``SHOPKEEPER_BENCH_T0``), the two differ by
at most the run's span; with ``SHOPKEEPER_BENCH_T0=legacy`` the events are stamped in November 2023,
so at the wall clock every customer's first page view in the run finds its last page view "years
ago" and enters ``lapsed_visitors`` (1 event in 4 here) — a change a live hub, whose events arrive at
its own time, never makes on a page view (docs/benchmarks.md §67). Every variant also prints the
collector's runs per 1,000 events by generation.

``all`` minus ``-NAME`` is what NAME costs. Figures are process CPU (``time.process_time``) per event,
the least of ``--repeat`` runs, with records and bytes per event; on a shared machine they are
indicative, the lead's quiet run gives the official ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PROCESSORS = ("feed", "rules", "analysis", "outbox")
KEEPERS = ("audience", "ordertable")
VARIANTS = ("bare", "all", *(f"-{n}" for n in PROCESSORS + KEEPERS), "split", "calls", "bare-split", "bare-calls")


def _name(proc: Any) -> str:
    mod = getattr(proc, "__module__", "") or type(proc).__module__
    for n in PROCESSORS:
        if f".{n}" in mod or (n == "feed" and mod.endswith("engine.feed")):
            return n
    return mod


def run_variant(variant: str, seed: str, work: str, args: argparse.Namespace) -> dict[str, Any]:
    """One variant in this process: copy the seed store, apply the events, count."""
    import bench_ingest
    from workload import iter_events

    from shopkeeper import audience, ordertable
    from shopkeeper.events import validate_event
    from shopkeeper.rules.runtime import _event_types_with_rules

    split = variant in ("split", "calls", "bare-split", "bare-calls")
    counting = variant in ("calls", "bare-calls")
    off = variant[1:] if variant.startswith("-") else ""
    if variant.startswith("bare"):
        off = "audience ordertable"  # the seed records its kept indexes; bare is a store without them
    plugins = not variant.startswith("bare")
    spent: dict[str, float] = {}
    calls: dict[str, int] = {}
    clock = time.thread_time
    # a read of the thread CPU clock is a system call here (~9 µs in a VM): one read per timed call
    # falls inside what it measures, so that much is taken off each call below
    t0 = clock()
    for _ in range(2000):
        clock()
    per_read = (clock() - t0) / 2001

    ticks = [0]

    def tick(frame: Any, event: str, arg: Any) -> None:  # every call and C call, for ``calls``
        if event == "call" or event == "c_call":
            ticks[0] += 1

    if counting:
        clock = lambda: ticks[0]  # noqa: E731 -- the "clock" is the number of calls made so far
        per_read = 0.0

    def timed(name: str, fn: Any) -> Any:
        """``fn`` with its thread CPU time (``calls``: its calls) added to ``spent[name]`` (``split``,
        ``calls``)."""
        if not split:
            return fn

        def call(*a: Any) -> Any:
            t = clock()
            try:
                return fn(*a)
            finally:
                spent[name] = spent.get(name, 0.0) + clock() - t
                calls[name] = calls.get(name, 0) + 1

        call.event_types = getattr(fn, "event_types", None)  # type: ignore[attr-defined]
        return call

    from ZODB.Connection import Connection

    # the commit's pickling and storing, and every record load (a load inside a processor is
    # counted in both): where the parts that are not a processor's own code go
    Connection.commit = timed("commit: pickle+store", Connection.commit)
    Connection.setstate = timed("loads", Connection.setstate)
    for name, mod in (("audience", audience), ("ordertable", ordertable)):
        mod.refresh = timed(name, (lambda conn: None) if name in off.split() else mod.refresh)
    if plugins:
        build = bench_ingest.plugin_processors

        def built() -> list[Any]:
            procs = build()
            if args.clock == "workload":  # segments judged as of the events' time, as a live hub's are
                from workload import T0, TICK

                at = int((T0 + (args.skip + args.events) * TICK) * 1_000_000)
                for p in procs:
                    state = getattr(p, "state", None)
                    if state is not None and hasattr(state, "clock"):
                        state.clock = lambda: at
            return [timed(_name(p), p) for p in procs if _name(p) != off]

        bench_ingest.plugin_processors = built
    types = _event_types_with_rules() if plugins else None
    raws = list(iter_events(args.skip + args.warm + args.events, n_customers=args.customers, seed=42))[args.skip:]
    events = [validate_event(r, types, index=i) if types else validate_event(r, index=i) for i, r in enumerate(raws)]
    bench_ingest.copy_store(seed, work)
    gc_start: list[float] = []

    def gc_clock(phase: str, info: dict[str, Any]) -> None:  # the collector's CPU, whoever triggered it
        if phase == "start":
            gc_start.append(time.thread_time())
        elif gc_start:
            spent["gc"] = spent.get("gc", 0.0) + time.thread_time() - gc_start.pop()

    from shopkeeper.hub.server import tune_gc

    tune_gc()  # as a serving hub does (shopkeeper serve, bench_hub): the writer runs under these settings
    if split and not counting:
        gc.callbacks.append(gc_clock)
    if counting:
        sys.setprofile(tick)
    collections0 = [g["collections"] for g in gc.get_stats()]
    res = bench_ingest.run_phase(work, events, args.batch, args.profile_out, plugins=plugins, warm=args.warm)
    sys.setprofile(None)
    # the collector's runs per 1,000 events, by generation: they follow the container objects
    # allocated (deterministic for a given code path), and a full one walks every live record
    gcs = [round((g["collections"] - c0) * 1000 / len(events), 1)
           for g, c0 in zip(gc.get_stats(), collections0, strict=True)]
    if counting:  # calls per event, not µs
        return {"variant": variant, "cpu_us_per_event": 0.0, "records_per_event": res["records_per_event"],
                "bytes_per_event": res["bytes_per_event"], "timer_us_per_event": 0.0,
                "split": {k: round(v / len(events), 1) for k, v in sorted(spent.items())},
                "calls_per_event": round(ticks[0] / len(events), 1), "gc_per_1000": gcs}
    return {"variant": variant, "cpu_us_per_event": res["cpu_us_per_event"],
            "records_per_event": res["records_per_event"], "bytes_per_event": res["bytes_per_event"],
            "split": {k: round((v - calls.get(k, 0) * per_read) / len(events) * 1e6, 1)
                      for k, v in sorted(spent.items())},
            "timer_us_per_event": round(sum(calls.values()) * 2 * per_read / len(events) * 1e6, 1),
            "gc_per_1000": gcs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=6_000)
    ap.add_argument("--skip", type=int, default=3_000, help="workload events left out before the measured ones")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--warm", type=int, default=0,
                    help="events applied after --skip and before the measured ones, outside the CPU figure and the "
                         "profile (a warm hub); the split and calls parts and the gc counts average over both")
    ap.add_argument("--repeat", type=int, default=2, help="runs per variant (the least CPU is printed)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--profile", metavar="VARIANT", help="cProfile this variant once and print the top")
    ap.add_argument("--clock", choices=("wall", "workload"), default="wall",
                    help="the analysis processor's clock: the wall clock (the default), or the workload's timeline "
                         "(matters with SHOPKEEPER_BENCH_T0=legacy: events stamped in 2023, so at the wall clock "
                         "every page view's customer is 'lapsed' and enters lapsed_visitors)")
    ap.add_argument("--dir", help="work directory, the seed store kept there between calls (default: a temp dir)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dir:  # kept between calls (and every --one child is given one)
        _main(args, Path(args.dir))
        return
    # a temp dir of its own (~110 MB at 20k customers), removed on exit, failure and SIGTERM
    tmp = Path(tempfile.mkdtemp(prefix="probe-processors-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        args.dir = str(tmp)
        _main(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _main(args: argparse.Namespace, tmp: Path) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    from workload import t0_tag

    seed = str(tmp / f"seed-{args.customers}{t0_tag()}.fs")  # per workload start (SHOPKEEPER_BENCH_T0)
    if args.one:
        print(json.dumps(run_variant(args.one, seed, str(tmp / "work.fs"), args)), flush=True)
        return
    if not Path(seed).exists():
        from bench_store_1m import build_store

        from shopkeeper.plugins import builtin_evolve_steps
        from shopkeeper.store import Store

        t = time.perf_counter()
        build_store(seed, args.customers, 0, txn=10_000, log=lambda m: None)
        Store.open(f"file://{seed}", steps=builtin_evolve_steps()).close()  # the kept indexes, built once
        print(f"seed store: {args.customers:,} customers in {time.perf_counter() - t:.0f} s", flush=True)

    base = [sys.executable, __file__, "--dir", str(tmp), "--customers", str(args.customers), "--events",
            str(args.events), "--skip", str(args.skip), "--batch", str(args.batch), "--clock", args.clock,
            "--warm", str(args.warm)]
    env = dict(os.environ, SHOPKEEPER_SEGMENT_TICK_SECONDS="0")
    if args.profile:
        prof = str(tmp / "probe.prof")
        subprocess.run([*base, f"--one={args.profile}", "--profile-out", prof], check=True, env=env)
        return
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for v in args.variants.split(","):
            out = subprocess.run([*base, f"--one={v}"], check=True, env=env, capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            if v not in best or res["cpu_us_per_event"] < best[v]["cpu_us_per_event"]:
                best[v] = res
    allv = best.get("all", {}).get("cpu_us_per_event")
    bare = best.get("bare", {}).get("cpu_us_per_event")
    print(f"{args.customers:,} customers, {args.events:,} events in groups of {args.batch}, least of {args.repeat}:")
    for v, r in best.items():
        cost = ""
        if v.startswith("-") and allv is not None:
            cost = f"  -> {v[1:]} costs {allv - r['cpu_us_per_event']:6.1f} µs"
        elif v == "all" and bare:
            cost = f"  -> processors +{(allv - bare) / bare:.0%} over bare"
        print(f"  {v:12} {r['cpu_us_per_event']:7.1f} µs CPU  {r['records_per_event']:6.3f} records "
              f"{r['bytes_per_event']:6,} B per event{cost}; collector runs per 1,000 events by generation "
              f"{r.get('gc_per_1000')}")
        if "calls_per_event" in r:
            print(f"      function calls per event (deterministic): {r['calls_per_event']} in all; inside each part: "
                  + ", ".join(f"{k} {t}" for k, t in r["split"].items() if t))
        elif r["split"]:
            print(f"      timed in place (the timers' own ~{r['timer_us_per_event']} µs taken out), µs CPU per event: "
                  + ", ".join(f"{k} {t}" for k, t in r["split"].items() if t))


if __name__ == "__main__":
    main()
