"""Scale-out benchmark (issue 17): durable streaming ingest of K hub processes over one
RelStorage/PostgreSQL store, against one hub on the same PostgreSQL and one hub on FileStorage.

    python benchmarks/bench_scaleout.py                          # 1 hub on file, 1 and 2 hubs on PostgreSQL
    python benchmarks/bench_scaleout.py --hubs 1,2,4,8 --delay-ms 0.25   # the K-hub simulation
    python benchmarks/bench_scaleout.py --tiny                   # a few seconds: does it run

Each hub is a ``shopkeeper serve`` process (fsync on, no plugins' rules: an empty rules dir);
PostgreSQL is a private cluster started here (``shopkeeper.servers.PrivatePostgres``; each
configuration gets a fresh database). One client
process per hub streams its share of the WORKLOAD.md write mix (Zipf customers, redeliveries)
in batches of ``--batch``; batches go round-robin over the hubs, as a load balancer would send
them, so the same customer is written by every hub. Figures: events acknowledged (= committed)
per second from the first send to the last acknowledgement, and **conflict retries**: the
writers' ConflictErrors (``Stats.conflicts`` of every hub) per 100 events sent.

**The K-hub simulation on one machine, and what it can show.** ``--hubs 1,2,4,8`` runs K hub
processes, but on this 2-core machine they share 2 cores with PostgreSQL and the clients, so
events/s *cannot* grow with K here: K > 2 measures contention for cores, not scale-out. What
the run measures that does not depend on cores, per configuration:

* ``conflict_retries_pct`` — how often two hubs changed the same record in overlapping
  transactions (an *over*-estimate here: starved hubs hold transactions open longer);
* ``hub_cpu_us_per_event`` — CPU seconds of all hub processes ÷ events: the work per event
  including retries and PostgreSQL round trips. ``efficiency_vs_1`` = this figure at K = 1 ÷ at
  K: the fraction of a dedicated core each hub would turn into events on a machine of its own;
* ``pg_cpu_us_per_event`` — CPU of the PostgreSQL cluster ÷ events: how many events/s one
  PostgreSQL core sustains (``pg_events_per_core_s``);
* ``pg_bytes_per_customer`` (capacity I13), ``wal_bytes_per_event`` (I14) and
  ``wire_bytes_per_event`` (I15: the serialised batches ÷ events, what gRPC carries before
  HTTP/2 framing).

The model (``model_events_per_s``) is what K hubs on K machines of one free core each would do:
``K × 1e6 / hub_cpu_us_per_event(K)``, capped by PostgreSQL at ``pg_events_per_core_s × --pg-cores``.
It is printed for each K; docs/scaleout.md explains it and what would falsify it. Include 1 in
``--hubs`` (efficiency is against it) and use ≥ 100,000 events: the CPU figures include each
hub's background polling of PostgreSQL (the shared feed's follower, every 20 ms), which
dominates a short run.

What a second hub costs, by counting (docs/benchmarks.md §35): ``--probe DIR`` runs each hub
under ``hubprobe.py`` and adds to each row the events the writers applied per event sent (a
conflict re-runs the writer's whole group), object reloads per 1,000 events and conflicts by
class; ``--warm`` creates every customer of the run first (the steady state of a populated
store); ``--route customer`` keeps each customer's events on one hub. The 1.3× target is
measured with ``--route customer --warm``. Without ``--warm`` the run is **cold**: it creates its
customers (``created_per_event``, ~0.2), which inserts into the trees keyed by new customers and
identities — where two hubs still meet (the identity index; docs/benchmarks.md §110).

``--route customer`` splits events as ``shopkeeper.client.Hubs`` does (rendezvous hashing of the
customer's e-mail). Progress goes to stderr as the run goes (the JSON rows to stdout at the end);
a run with no event acknowledged for ``--stall-seconds`` ends itself with the hubs' counters and
py-spy stacks. The load clients are *spawned* (a fork after this process's own gRPC calls could
hang inside ``fork()``, §47), and the hubs and the private PostgreSQL are stopped however the run
ends: SIGTERM/SIGHUP unwind like Ctrl-C, and a reaper process stops them after a SIGKILL.

``--delay-ms D`` puts a delaying TCP relay between each hub and PostgreSQL that holds every
chunk D ms in each direction (a round trip of 2·D more), to simulate hubs on other machines
without ``tc netem`` (which needs root and would slow every process on this machine). Every
configuration checks afterwards that the store counts each distinct event exactly once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import free_port  # noqa: E402
from runguard import LIVE, die_with_parent, install_signal_handlers, pg_reaper, remember, say, stop_all  # noqa: E402
from scaleout_parts import DelayRelay, conflict_trees, model, pg_deltas, pg_figures, probe_figures  # noqa: E402
from workload import iter_events  # noqa: E402

API_KEY = "sk_bench_scaleout"
CORES = len(__import__("os").sched_getaffinity(0))
#: ``--probe DIR``: hubs run under benchmarks/hubprobe.py and leave their load counts there
PROBE: dict[str, Any] = {"dir": None, "label": "", "group": None}
#: the client processes are *spawned*: a forked child inherits this process's gRPC state (the
#: health checks and GetStats calls made before it), which gRPC does not support after fork
MP = mp.get_context("spawn")
#: ``--stall-seconds``: no event acknowledged for this long ends the run with a diagnosis
STALL = {"seconds": 120.0}


def start_hub(tmp: Path, uri: str, n: int) -> tuple[subprocess.Popen, int]:
    from shopkeeper.hub.config import hash_key

    port = free_port()
    cfg = tmp / "hub.yaml"
    cfg.write_text(f"api_keys:\n  - name: bench\n    key_sha256: {hash_key(API_KEY)}\n"
                   "    scopes: [interactions:write, admin, profiles:read]\n"
                   "contact: {quiet_hours: null}\n"
                   + (f"limits: {{group_commit_max_events: {PROBE['group']}}}\n" if PROBE.get("group") else ""))
    (tmp / "rules").mkdir(exist_ok=True)
    cli = [str(Path(sys.executable).parent / "shopkeeper")]
    if PROBE["dir"]:
        cli = [sys.executable, str(Path(__file__).with_name("hubprobe.py")),
               str(Path(PROBE["dir"]) / f"{PROBE['label']}-hub{n}")]
    proc = subprocess.Popen([*cli, "serve", "--store", uri, "--listen", f"127.0.0.1:{port}", "--config", str(cfg),
                             "--rules", str(tmp / "rules"), "--log-format", "text"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / f"hub{n}.log", "ab"))  # noqa: SIM115
    remember(proc.pid)
    LIVE.append(proc)
    return proc, port


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = Path(proc.args[proc.args.index("--config") + 1]).parent / "hub0.log"
                raise RuntimeError(f"hub exited with {proc.returncode}; its log ends: "
                                   + "".join(open(log).readlines()[-5:]) if log.exists() else "")
            try:
                if health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise RuntimeError("hub did not become healthy")


def client(port: int, batches: list[bytes], ready: Any, start: Any, out: Any, acked: Any, slot: int) -> None:
    """One load process: stream pre-serialised batches to one hub, count acknowledged events
    (in ``acked[slot]`` as they come, for the progress lines and the stall watchdog)."""
    die_with_parent()
    import grpc

    from shopkeeper._proto.v1 import interactions_pb2

    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        grpc.channel_ready_future(ch).result(timeout=60)
        call = ch.stream_stream("/shopkeeper.v1.Interactions/StreamInteractions",
                                request_serializer=lambda b: b,
                                response_deserializer=interactions_pb2.BatchAck.FromString)
        ready.put(slot)
        start.wait()
        cpu0 = time.process_time()  # every thread of this process, gRPC's C threads included
        applied = dups = rejected = 0
        for ack in call(iter(batches), metadata=(("x-api-key", API_KEY),)):
            applied, dups, rejected = applied + ack.applied, dups + ack.duplicates, rejected + ack.rejected
            acked[slot] = applied + dups + rejected
        out.put((applied, dups, rejected, time.monotonic(), time.process_time() - cpu0))


def drive(what: str, hubs: list[tuple[subprocess.Popen, int]], per_hub: list[list[bytes]],
          ) -> tuple[list[tuple], float, float]:
    """Stream ``per_hub[n]`` to hub n, one spawned client process each, all starting together;
    returns the clients' results, the start time and this process's CPU at the start. Says
    every 10 s how far each client is, and ends the run with a diagnosis (the hubs' stacks
    and counters) when no event has been acknowledged for ``--stall-seconds``."""
    total = sum(len(interactions_pb2_batch_events(b)) for bs in per_hub for b in bs)
    ready, start, out = MP.Queue(), MP.Event(), MP.Queue()
    acked = MP.Array("q", len(hubs), lock=False)
    procs = [MP.Process(target=client, args=(port, per_hub[n], ready, start, out, acked, n), daemon=True)
             for n, (_, port) in enumerate(hubs)]
    for p in procs:
        p.start()
        remember(p.pid)
        LIVE.append(p)
    for _ in procs:  # every client connected (spawned: ~1 s each to import)
        ready.get(timeout=120)
    say(f"{what}: {total:,} events over {len(hubs)} hub(s)")
    t0, bench_cpu0 = time.monotonic(), time.process_time()
    start.set()
    results: list[tuple] = []
    last, moved, shown = -1, time.monotonic(), time.monotonic()
    while len(results) < len(procs):
        with contextlib.suppress(queue.Empty):
            results.append(out.get(timeout=2))
            continue
        now, done = time.monotonic(), sum(acked)
        if done != last:
            last, moved = done, now
        dead = [n for n, p in enumerate(procs) if p.exitcode not in (None, 0)]
        if dead or now - moved > STALL["seconds"]:
            diagnose(hubs, procs, list(acked), [len(b) for b in per_hub])
            raise RuntimeError(f"{what}: client(s) {dead} failed" if dead else
                               f"{what}: no event acknowledged for {now - moved:.0f} s ({done:,}/{total:,})")
        if now - shown >= 10:
            shown = now
            say(f"{what}: {done:,}/{total:,} acknowledged ({done / (now - t0):,.0f}/s; per client "
                + ", ".join(f"{a:,}" for a in acked) + ")")
    for p in procs:
        p.join()
        LIVE.remove(p)
    return results, t0, bench_cpu0


def interactions_pb2_batch_events(b: bytes) -> Any:
    from shopkeeper._proto.v1 import interactions_pb2

    return interactions_pb2.EventBatch.FromString(b).events


def diagnose(hubs: list[tuple[subprocess.Popen, int]], procs: list[Any], acked: list[int],
             batches: list[int]) -> None:
    """What a stalled run was doing: each hub's counters (GetStats, 5 s deadline) and, when
    py-spy is installed, the Python stacks of every hub and client."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    for n, (proc, port) in enumerate(hubs):
        try:
            st = stats(port, timeout=5)
            say(f"hub {n} (pid {proc.pid}): interactions {st.interactions}, conflicts {st.conflicts}; "
                f"its client acknowledged {acked[n]:,} events of {batches[n]} batches")
        except Exception as exc:  # a stuck hub: its stacks below say where
            say(f"hub {n} (pid {proc.pid}): GetStats failed: {exc}")
    for label, pid in [(f"hub {n}", p.pid) for n, (p, _) in enumerate(hubs)] + \
            [(f"client {n}", p.pid) for n, p in enumerate(procs)]:
        if spy and pid:
            dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
            say(f"{label} stacks:\n{dump.stdout}{dump.stderr}")
    if not spy:
        say("(install py-spy for the hubs' and clients' stacks)")


def stats(port: int, timeout: float = 60) -> Any:
    import grpc

    from shopkeeper._proto.v1 import admin_pb2, admin_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return admin_pb2_grpc.AdminStub(ch).GetStats(admin_pb2.GetStatsRequest(), metadata=(("x-api-key", API_KEY),),
                                                      timeout=timeout)


def cpu_seconds(pids: list[int], with_children: bool = False) -> float:
    """User + system CPU of the processes (and, for a server's postmaster, of its live and exited
    children: PostgreSQL's backends)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            t = proc.cpu_times()
            total += t.user + t.system
            if with_children:
                total += t.children_user + t.children_system
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        ct = child.cpu_times()
                        total += ct.user + ct.system
        except psutil.Error:
            pass
    return total


def run_config(label: str, uris: list[str], events: list[bytes], tmp: Path, pg: Any = None,
               dbname: str = "", routed: list[list[bytes]] | None = None,
               warm: list[list[bytes]] | None = None) -> dict[str, Any]:
    """Start one hub per URI (all naming one store), stream ``events`` over them, return figures."""
    # the first hub alone creates RelStorage's schema in the fresh database: hubs started together
    # raced to install it and one could exit ("Procedures incorrect, will reinstall")
    PROBE["label"] = label.replace(", ", "_").replace(" ", "-").replace("(s)", "")
    hubs = [start_hub(tmp, uris[0], 0)]
    wait_healthy(hubs[0][1], hubs[0][0])
    hubs += [start_hub(tmp, uri, n) for n, uri in enumerate(uris) if n > 0]
    postmaster = [int((pg.data / "postmaster.pid").read_text().split()[0])] if pg is not None else []
    try:
        for proc, port in hubs:
            wait_healthy(port, proc)
        say(f"{label}: {len(hubs)} hub(s) healthy")
        if warm:  # --warm: every customer of the run exists before it (not measured)
            per_warm = [warm[n % len(warm)] if len(warm) == len(hubs) else warm[0][n::len(hubs)]
                        for n in range(len(hubs))]
            warmed = sum(r[0] for r in drive(f"{label}: warm-up", hubs, per_warm)[0])
            if PROBE["dir"]:  # the probe counts the measured run only
                for proc, _ in hubs:
                    proc.send_signal(signal.SIGUSR1)
        else:
            warmed = 0
        before = [stats(port) for _, port in hubs]
        conflicts0 = sum(s.conflicts for s in before)  # the warm-up's are not the run's
        customers0 = before[0].customers
        hub_cpu0, pg_cpu0 = cpu_seconds([p.pid for p, _ in hubs]), cpu_seconds(postmaster, True)
        pg0 = pg_figures(pg, dbname) if pg is not None else None
        per_hub: list[list[bytes]] = routed or [[] for _ in hubs]
        for i, b in enumerate(events if routed is None else []):  # round-robin, as a plain balancer
            per_hub[i % len(hubs)].append(b)
        results, t0, bench_cpu0 = drive(f"{label}: measured run", hubs, per_hub)
        seconds = max(r[3] for r in results) - t0
        applied, dups, rejected = (sum(r[i] for r in results) for i in range(3))
        hub_cpu = cpu_seconds([p.pid for p, _ in hubs]) - hub_cpu0
        pg_cpu = cpu_seconds(postmaster, True) - pg_cpu0
        bench_cpu = time.process_time() - bench_cpu0  # this process: the delay relay, if any
        client_cpu = sum(r[4] for r in results)
        hub_stats = [stats(port) for _, port in hubs]
        conflicts = sum(s.conflicts for s in hub_stats) - conflicts0
        sent = applied + dups + rejected
        row = {"config": label, "hubs": len(hubs), "events": sent, "applied": applied, "duplicates": dups,
               "rejected": rejected, "seconds": round(seconds, 3), "events_per_s": round(sent / seconds, 1),
               "conflicts": conflicts, "conflict_retries_pct": round(100.0 * conflicts / max(1, sent), 3),
               # customers the measured run created per event sent: ~0 with --warm, ~0.2 on a cold run
               "created_per_event": round((hub_stats[0].customers - customers0) / max(1, sent), 3),
               "stored_interactions": hub_stats[0].interactions - warmed,
               "hub_cpu_us_per_event": round(hub_cpu * 1e6 / max(1, sent), 1),
               "client_cpu_us_per_event": round(client_cpu * 1e6 / max(1, sent), 1),
               "relay_cpu_us_per_event": round(bench_cpu * 1e6 / max(1, sent), 1),
               "wire_bytes_per_event": round(sum(len(b) for b in events) / max(1, sent), 1)}
        if pg is not None and pg0 is not None:
            pg1 = pg_figures(pg, dbname)
            customers = hub_stats[0].customers
            row.update({"pg_cpu_us_per_event": round(pg_cpu * 1e6 / max(1, sent), 1),
                        "pg_events_per_core_s": round(sent / pg_cpu) if pg_cpu else None,
                        "customers": customers,
                        "pg_bytes_per_customer": round(pg1["db_bytes"] / max(1, customers)),
                        "wal_bytes_per_event": round((pg1["wal"] - pg0["wal"]) / max(1, sent)),
                        **pg_deltas(pg0, pg1, sent), "pg_counts": (pg0, pg1)})
        # The CPU accounting (docs/benchmarks.md §30): every process of the run, per event. On a
        # machine of C cores no configuration can exceed C × 1e6 / total µs per event, whatever
        # the number of hubs: that is the bound 2 hubs ≥ 1.3× one hub runs into on 2 cores.
        total = hub_cpu + pg_cpu + bench_cpu + client_cpu
        row.update({"total_cpu_us_per_event": round(total * 1e6 / max(1, sent), 1),
                    "cores_busy": round(total / seconds, 2) if seconds else None,
                    "cpu_bound_events_per_s": round(CORES * sent / total) if total else None})
        return row
    finally:
        say(f"{label}: stopping the hubs")
        stop_all()


def make_batches(n_events: int, customers: int, batch: int) -> list[bytes]:
    from shopkeeper._proto.v1 import interactions_pb2
    from shopkeeper.client import make_event

    evs = [make_event(e) for e in iter_events(n_events, n_customers=customers)]
    return [interactions_pb2.EventBatch(batch_id=str(i // batch), events=evs[i:i + batch]).SerializeToString()
            for i in range(0, len(evs), batch)]


def warm_events(n_events: int, customers: int) -> list[dict[str, Any]]:
    """``--warm``: one event per customer the run will write (its first event, under a new key), so
    the measured run finds every customer in the store, as a hub does in production — a run on an
    empty store creates a customer in ~1 of 6 events, and every creation inserts into the trees
    keyed by customer id (customers, identities, audience cards) that all hubs share. Sent over
    the hubs as the run's own events are (round-robin or routed), so each hub's cache holds what
    it will write, as after hours of service."""
    first: dict[str, Any] = {}
    for e in iter_events(n_events, n_customers=customers):
        who = str(sorted((e.get("identities") or {}).items()))
        if who not in first:
            first[who] = {**e, "idempotency_key": "warm-" + str(e.get("idempotency_key", len(first)))}
    return list(first.values())


def routed_batches(n_events: int, customers: int, batch: int, hubs: int,
                   events: list[dict[str, Any]] | None = None) -> list[list[bytes]]:
    """``--route customer``: the same events, each sent to the hub ``shopkeeper.client.Hubs``
    would send it to (rendezvous hashing of its e-mail, else its first identity, over the hub
    addresses; here hub names ``hub0``, ``hub1``, … stand for the addresses, which are not known
    yet). A customer's events then meet one hub's writer and cache: no conflicts between hubs
    and no invalidation of the other hub's cached customers — the CPU the round-robin run spends
    re-loading customers the other hub just wrote."""
    from shopkeeper._proto.v1 import interactions_pb2
    from shopkeeper.client import make_event, route_key
    from shopkeeper.client.routing import pick

    names = [f"hub{h}" for h in range(hubs)]
    per: list[list[Any]] = [[] for _ in range(hubs)]
    for e in iter_events(n_events, n_customers=customers) if events is None else events:
        ev = make_event(e)
        per[pick(route_key(ev), names)].append(ev)
    return [[interactions_pb2.EventBatch(batch_id=f"{h}-{i // batch}", events=evs[i:i + batch]).SerializeToString()
             for i in range(0, len(evs), batch)] for h, evs in enumerate(per)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--hubs", default="1,2", help="hub counts to run over PostgreSQL, e.g. 1,2,4,8")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="added one-way delay hub <-> PostgreSQL")
    ap.add_argument("--no-file", action="store_true", help="skip the 1 hub on FileStorage comparison")
    ap.add_argument("--tiny", action="store_true", help="2,000 events over 500 customers: a smoke run")
    ap.add_argument("--out", default=None, help="append JSON lines here too")
    ap.add_argument("--route", choices=["round-robin", "customer"], default="round-robin",
                    help="how batches reach the hubs: round-robin (every hub writes the hot customers) or "
                         "by a hash of the customer's e-mail (a proxy with ring-hash routing)")
    ap.add_argument("--probe", default=None, metavar="DIR",
                    help="run the hubs under hubprobe.py: object loads per class (and, with "
                         "SHOPKEEPER_PROBE_PROFILE=1, writer/feed profiles) into DIR")
    ap.add_argument("--warm", action="store_true",
                    help="before each measured run, create every customer it will write (one event each, "
                         "through the first hub, not measured): the steady state of a populated store")
    ap.add_argument("--group", type=int, default=None, metavar="N",
                    help="the hubs' limits.group_commit_max_events (default: the hub's own)")
    ap.add_argument("--pg-cores", type=int, default=8, help="PostgreSQL cores assumed by the K-hub model")
    ap.add_argument("--stall-seconds", type=float, default=120.0,
                    help="end the run, with the hubs' stacks, when no event is acknowledged for this long")
    a = ap.parse_args()
    STALL["seconds"] = a.stall_seconds
    install_signal_handlers()
    if a.tiny:
        a.events, a.customers, a.batch = 2000, 500, 200
    if a.probe:
        Path(a.probe).mkdir(parents=True, exist_ok=True)
        PROBE["dir"] = a.probe
    PROBE["group"] = a.group
    from shopkeeper.servers import PrivatePostgres

    tmp = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    pg = PrivatePostgres(tmp / "pg")
    rows = []
    reaper = None
    try:
        pg.start()
        reaper = pg_reaper(pg, tmp)
        say(f"PostgreSQL on port {pg.port} ({pg.dir}); making {a.events:,} events over {a.customers:,} customers")
        events = make_batches(a.events, a.customers, a.batch)
        warm = warm_events(a.events, a.customers) if a.warm else None
        if not a.no_file:
            rows.append(run_config("file, 1 hub", [f"file://{tmp}/file/Data.fs"], events, tmp,
                                   warm=routed_batches(0, 0, a.batch, 1, warm) if warm else None))
        for k in [int(x) for x in a.hubs.split(",") if x]:
            uri = pg.create_database(f"bench_{k}_{len(rows)}")
            uris = [uri] * k
            if a.delay_ms > 0:
                from urllib.parse import urlparse

                p = urlparse(uri)
                relays = [DelayRelay((p.hostname, p.port), a.delay_ms / 1000) for _ in range(k)]
                uris = [uri.replace(f":{p.port}/", f":{r.port}/") for r in relays]
            routed = routed_batches(a.events, a.customers, a.batch, k) if a.route == "customer" and k > 1 else None
            # warm-up batches: per hub when routed, else one list dealt round-robin over the hubs
            warm_k = routed_batches(0, 0, a.batch, k if routed else 1, warm) if warm else None
            rows.append(run_config(f"postgresql, {k} hub(s)" + (f", +{a.delay_ms} ms" if a.delay_ms else "")
                                   + (", routed by customer" if routed else ""),
                                   uris, events, tmp, pg, f"bench_{k}_{len(rows)}", routed, warm_k))
            if PROBE["dir"]:
                probe_figures(rows[-1], PROBE["dir"], PROBE["label"])
                conflict_trees(uri, rows[-1], PROBE["dir"], PROBE["label"])
                if rows[-1].get("writer_commits") and "pg_counts" in rows[-1]:
                    rows[-1].update(pg_deltas(*rows[-1]["pg_counts"], rows[-1]["events"], rows[-1]["writer_commits"]))
            rows[-1].pop("pg_counts", None)
            say(f"{rows[-1]['config']}: {rows[-1]['events_per_s']:,} events/s, "
                f"{rows[-1]['total_cpu_us_per_event']} µs CPU/event (every process)")
        model(rows, a.pg_cores)
        for r in rows:
            ok = r["stored_interactions"] == r["applied"]
            r["exactly_once"] = ok
            line = json.dumps(r)
            print(line, flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(line + "\n")
        base = {r["hubs"]: r["events_per_s"] for r in rows if r["config"].startswith("postgresql")}
        if 1 in base and 2 in base:
            print(f"2 hubs / 1 hub on PostgreSQL: {base[2] / base[1]:.2f}x", flush=True)
        pgrows = {r["hubs"]: r for r in rows if r["config"].startswith("postgresql")}
        if 1 in pgrows and 2 in pgrows and pgrows[2]["cpu_bound_events_per_s"]:
            bound = pgrows[2]["cpu_bound_events_per_s"]
            print(f"CPU bound on {CORES} cores: 2 hubs at most {bound} events/s "
                  f"({pgrows[2]['total_cpu_us_per_event']} µs of CPU per event, every process) = "
                  f"{bound / pgrows[1]['events_per_s']:.2f}x one hub's measured rate (target 1.3x)", flush=True)
        if rows and rows[0]["config"].startswith("file") and 2 in base:
            print(f"2 hubs on PostgreSQL / 1 hub on FileStorage: {base[2] / rows[0]['events_per_s']:.2f}x", flush=True)
    finally:
        stop_all()
        say("stopping PostgreSQL")
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if reaper is not None:  # its pg_ctl finds the cluster stopped; it removes nothing left
            reaper.stdin.close()
            reaper.wait(60)


if __name__ == "__main__":
    main()
