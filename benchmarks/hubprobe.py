"""Run ``shopkeeper`` with the store's object loads counted (and, optionally, the writer thread
profiled), writing the counts as JSON when the process exits. Used by ``bench_scaleout.py
--probe DIR`` to say *which* objects a hub loads per event, and which it loads again after
another hub's commit invalidated them (docs/benchmarks.md §34):

    python benchmarks/hubprobe.py OUT_PREFIX serve --store ... --listen ...
    python benchmarks/hubprobe.py compare A.writer.pstats EVENTS_A B.writer.pstats EVENTS_B

Counts, per persistent class: ``loads`` (every ghost activation: ``Connection.setstate``),
``reloads`` (activations of an oid this process had loaded before: the object was invalidated
by a commit, or evicted from the connection's cache), ``invalidated`` (cached objects the storage
said another connection's commit changed), ``conflicts`` (ConflictErrors by class), the writer's
group ``attempts`` (retries included) and CPU per thread. With ``SHOPKEEPER_PROBE_PROFILE=1`` the
writer and feed threads run under cProfile timed by each thread's CPU clock (``time.thread_time``,
so waits on a loaded machine do not count), restarted with the counts; their stats go to
``OUT_PREFIX.<thread>.pstats``. With ``SHOPKEEPER_PROBE_PROFILE=all`` every Python thread is
profiled (gRPC's handlers and stream readers, the campaigns runner, the rule timers: where the
CPU of polling another hub's commits would show outside the writer), one ``.pstats`` per thread
name and ``OUT_PREFIX.all.pstats`` for the whole process — slow (2-3x) under load: use small runs
and ``--stall-seconds``. SIGUSR1 restarts the counts (after bench_scaleout's ``--warm``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import cProfile
import json
import os
import re
import signal
import sys
import threading
import time


def install(prefix: str) -> None:
    from ZODB.Connection import Connection

    loads: collections.Counter[str] = collections.Counter()
    reloads: collections.Counter[str] = collections.Counter()
    invalidated: collections.Counter[str] = collections.Counter()
    seen: set[bytes] = set()
    kinds: dict[bytes, str] = {}
    lock = threading.Lock()
    setstate = Connection.setstate

    def counting_setstate(self: Connection, obj: object) -> None:
        setstate(self, obj)
        oid = obj._p_oid  # type: ignore[attr-defined]
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        with lock:
            loads[name] += 1
            kinds[oid] = name
            if oid in seen:
                reloads[name] += 1
            else:
                seen.add(oid)

    def counting_new_transaction(self: Connection, transaction: object, sync: bool = True) -> None:
        # ZODB 6's Connection.newTransaction, counting the invalidated oids this connection holds
        self._readCurrent.clear()
        self._storage.sync(sync)
        oids = self._storage.poll_invalidations()
        if oids is None:
            oids = self._cache.cache_data.copy()
        with lock:
            for oid in oids:
                if self._cache.get(oid) is not None:
                    invalidated[kinds.get(oid, "?")] += 1
        self._cache.invalidate(oids)

    Connection.setstate = counting_setstate  # type: ignore[method-assign]
    Connection.newTransaction = counting_new_transaction  # type: ignore[method-assign]
    from ZODB.POSException import ConflictError

    conflicts: collections.Counter[str] = collections.Counter()  # class of the conflicting object
    conflict_init = ConflictError.__init__

    #: each conflict (up to 400): its class, oid, exception type and thread; for a RelStorage lock
    #: refusal on read-current rows (which names no object), the oids it tried to lock and their
    #: classes — bench_scaleout maps the oids to the trees that hold them (``conflict_trees``)
    details: list[dict[str, object]] = []

    def counting_conflict_init(self: ConflictError, *args: object, **kw: object) -> None:
        conflict_init(self, *args, **kw)
        oid = getattr(self, "oid", None)
        with lock:
            conflicts[str(self.class_name)] += 1
            if len(details) < 400:
                details.append({"class": str(self.class_name or kinds.get(oid, None)),
                                "oid": oid.hex() if oid else None,
                                "type": type(self).__name__, "thread": threading.current_thread().name,
                                "t": round(time.time(), 3)})

    ConflictError.__init__ = counting_conflict_init  # type: ignore[method-assign]
    with contextlib.suppress(ImportError):
        from relstorage.adapters.adapter import AbstractAdapter

        lock_current = AbstractAdapter.lock_objects_and_detect_conflicts

        def recording_lock_current(self: object, cursor: object, read_current_oids: object) -> object:
            try:
                return lock_current(self, cursor, read_current_oids)
            except ConflictError:
                oids = sorted(int(o) for o in (read_current_oids or ()))  # type: ignore[attr-defined]
                with lock:
                    if details:
                        details[-1]["read_current"] = [f"{o:016x}" for o in oids[:200]]
                        details[-1]["read_current_classes"] = [kinds.get(o.to_bytes(8, "big"), "?")
                                                               for o in oids[:200]]
                raise

        AbstractAdapter.lock_objects_and_detect_conflicts = recording_lock_current  # type: ignore[method-assign]
    attempts: list[int] = []  # events in each group attempt of the writer's Ingestor (retries included)
    from shopkeeper.engine.ingest import Ingestor

    attempt = Ingestor._attempt

    def counting_attempt(self: Ingestor, indexes: list[int], *args: object) -> object:
        attempts.append(len(indexes))
        return attempt(self, indexes, *args)

    Ingestor._attempt = counting_attempt  # type: ignore[method-assign]
    profiles: dict[str, cProfile.Profile] = {}
    every_thread = os.environ.get("SHOPKEEPER_PROBE_PROFILE") == "all"
    if os.environ.get("SHOPKEEPER_PROBE_PROFILE"):
        run = threading.Thread.run

        def profiled_run(self: threading.Thread) -> None:
            if not every_thread and self.name not in ("shopkeeper-writer", "shopkeeper-feed"):
                return run(self)
            if self.name == "probe-sampler":
                return run(self)
            # CPU time of this thread, not wall time: a loaded machine's waits would swamp the figures.
            # =all: every Python thread (gRPC's handlers, the read pool, the campaigns runner...), so
            # the whole process's Python CPU is seen, not only the writer's (what a poll of the other
            # hub's commits costs in each thread that opens a transaction)
            name = self.name
            with lock:
                while name in profiles:
                    name += "+"
                prof = profiles[name] = cProfile.Profile(time.thread_time)
            prof.enable()
            try:
                run(self)
            finally:
                prof.disable()

        threading.Thread.run = profiled_run  # type: ignore[method-assign]

    thread_cpu: dict[str, float] = {}  # thread name (numbers stripped) -> CPU seconds, sampled each second

    def sample() -> None:
        last: dict[int, tuple[str, float]] = {}
        while True:
            for t in threading.enumerate():
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(t.ident))  # type: ignore[arg-type]
                except (OSError, TypeError):
                    continue
                last[t.ident] = (t.name.rstrip("0123456789 ()").rstrip("-_ "), cpu)  # type: ignore[index]
            totals: dict[str, float] = collections.defaultdict(float)
            for name, cpu in last.values():
                totals[name] += cpu
            thread_cpu.clear()
            thread_cpu.update(totals)
            time.sleep(1.0)

    threading.Thread(target=sample, name="probe-sampler", daemon=True).start()
    base_cpu: dict[str, float] = {}

    def reset(_signum: int, _frame: object) -> None:
        """SIGUSR1 (bench_scaleout after its --warm phase): count from now on."""
        with lock:
            for counter in (loads, reloads, invalidated, conflicts):
                counter.clear()
            attempts.clear()
            details.clear()
            for prof in profiles.values():  # the measured run only (Profiler.clear)
                prof.clear()
            base_cpu.clear()
            base_cpu.update(thread_cpu)
            base_cpu["(process)"] = time.process_time()

    signal.signal(signal.SIGUSR1, reset)

    def dump() -> None:
        thread_cpu["(process)"] = time.process_time()
        for name in thread_cpu:
            thread_cpu[name] -= base_cpu.get(name, 0.0)
        merged: dict[str, list[str]] = collections.defaultdict(list)  # thread name, numbers stripped
        for name, prof in list(profiles.items()):
            with contextlib.suppress(Exception):  # a profile of a thread still running elsewhere
                prof.disable()
            if not every_thread:
                prof.dump_stats(f"{prefix}.{name}.pstats")
                continue
            path = f"{prefix}.{len(merged)}-{sum(map(len, merged.values()))}.tmp.pstats"
            prof.dump_stats(path)
            merged[name.rstrip("+").rstrip("0123456789_-")].append(path)
        if every_thread:
            import pstats

            everything = None
            for group, paths in merged.items():
                st = pstats.Stats(*paths)
                safe = re.sub(r"[^\w.-]+", "_", group).strip("_") or "thread"
                st.dump_stats(f"{prefix}.{safe}.pstats")
                if everything is None:
                    everything = pstats.Stats(*paths)
                else:
                    everything.add(*paths)
                for path in paths:
                    os.remove(path)
            if everything is not None:
                everything.dump_stats(f"{prefix}.all.pstats")
        with open(prefix + ".loads.json", "w") as f:
            json.dump({"loads": loads, "reloads": reloads, "invalidated": invalidated, "thread_cpu": thread_cpu,
                   "conflicts": conflicts, "attempts": len(attempts), "attempted_events": sum(attempts),
                   "largest_attempt": max(attempts, default=0), "conflict_details": details}, f, indent=1)

    atexit.register(dump)


def compare(a: str, events_a: int, b: str, events_b: int, top: int = 30) -> None:
    """Two writer profiles (``--probe`` with ``SHOPKEEPER_PROBE_PROFILE=1``) per event: each
    function's calls and own CPU per event, the largest growths first. Equal calls per event with
    more CPU per call is the machine (contention); more calls per event is more work."""
    import pstats

    def per_event(path: str, n: int) -> dict[tuple[str, str], tuple[float, float]]:
        out: dict[tuple[str, str], list[float]] = {}
        for (fn, _ln, name), (_cc, nc, tt, _ct, _callers) in pstats.Stats(path).stats.items():  # type: ignore[attr-defined]
            acc = out.setdefault((fn.rsplit("/", 1)[-1], name), [0.0, 0.0])
            acc[0] += nc
            acc[1] += tt
        return {k: (v[0] / n, v[1] * 1e6 / n) for k, v in out.items()}

    pa, pb = per_event(a, events_a), per_event(b, events_b)
    zero = (0.0, 0.0)
    print("own CPU µs/event A -> B (growth), calls/event A -> B, function")
    for k in sorted(set(pa) | set(pb), key=lambda k: pa.get(k, zero)[1] - pb.get(k, zero)[1])[:top]:
        x, y = pa.get(k, zero), pb.get(k, zero)
        print(f"{x[1]:8.1f} -> {y[1]:8.1f} ({y[1] - x[1]:+7.1f})   {x[0]:8.3f} -> {y[0]:8.3f}   {k[0]}:{k[1]}")
    print(f"total own CPU µs/event: {sum(v[1] for v in pa.values()):.1f} -> {sum(v[1] for v in pb.values()):.1f}")


def main() -> None:
    if sys.argv[1:2] == ["compare"]:  # hubprobe.py compare A.pstats EVENTS_A B.pstats EVENTS_B
        _, a, na, b, nb = sys.argv[1:6]
        compare(a, int(na), b, int(nb))
        return
    install(sys.argv[1])
    sys.argv = ["shopkeeper", *sys.argv[2:]]
    from shopkeeper.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
