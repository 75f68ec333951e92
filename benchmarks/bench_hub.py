"""Hub benchmarks (issue 4): streaming ingest and GetCustomer/Decide latency over loopback gRPC.

The hub runs as ``shopkeeper serve`` in its own process on a fresh FileStorage (fsync on);
this process is the load generator. Each figure is paired with a no-op gRPC server of the
same message shape measured in the same run, so the ratio shows what the hub itself costs.

    python benchmarks/bench_hub.py --events 100000 --customers 100000 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import customer_email, iter_events  # noqa: E402,F401

from shopkeeper._proto.v1 import (  # noqa: E402
    common_pb2,
    customers_pb2,
    interactions_pb2,
    interactions_pb2_grpc,
)
from shopkeeper.client import customer_ref, make_event  # noqa: E402

BATCH = 500


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Noop(interactions_pb2_grpc.InteractionsServicer):
    def StreamInteractions(self, it, ctx):
        for b in it:
            yield interactions_pb2.BatchAck(batch_id=b.batch_id, statuses=[
                common_pb2.EventStatus(index=i, outcome=1) for i in range(len(b.events))], applied=len(b.events))

    def Decide(self, req, ctx):
        return interactions_pb2.DecideResponse(customer_id="x")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stream(stub, batches, md) -> float:
    t0 = time.perf_counter()
    n = 0
    for ack in stub.StreamInteractions(iter(batches), metadata=md):
        n += len(ack.statuses)
    return n / (time.perf_counter() - t0)


def paced(fn, rate: float, seconds: float, threads: int = 8) -> list[float]:
    lat: list[float] = []
    lock = threading.Lock()
    per = rate / threads
    stop = time.perf_counter() + seconds

    def worker() -> None:
        nxt = time.perf_counter()
        mine = []
        while nxt < stop:
            now = time.perf_counter()
            if now < nxt:
                time.sleep(nxt - now)
            t0 = time.perf_counter()
            fn()
            mine.append(time.perf_counter() - t0)
            nxt += 1 / per
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sorted(lat)


def pct(lat: list[float], p: float) -> float:
    return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=1500)
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()

    raw = [e for e in iter_events(a.events, a.customers, seed=42) if e.get("kind") != "decide"]
    events = [make_event(e) for e in raw]
    batches = [interactions_pb2.EventBatch(batch_id=str(i), events=events[i:i + BATCH])
               for i in range(0, len(events), BATCH)]

    # no-op server, same shapes
    noop = grpc.server(futures.ThreadPoolExecutor(16))
    interactions_pb2_grpc.add_InteractionsServicer_to_server(Noop(), noop)
    nport = noop.add_insecure_port("127.0.0.1:0")
    noop.start()
    nch = grpc.insecure_channel(f"127.0.0.1:{nport}")
    nstub = interactions_pb2_grpc.InteractionsStub(nch)
    noop_eps = stream(nstub, batches, ())

    tmp = tempfile.mkdtemp(prefix="bench_hub_")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from shopkeeper.cli import main; main()", "serve",
                             "--store", f"file://{tmp}/Data.fs", "--listen", f"127.0.0.1:{port}",
                             "--log-format", "text"], stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(ch).result(timeout=30)
        time.sleep(0.5)
        stub = interactions_pb2_grpc.InteractionsStub(ch)
        from shopkeeper._proto.v1 import customers_pb2_grpc

        cstub = customers_pb2_grpc.CustomersStub(ch)
        hub_eps = stream(stub, batches, ())
        rss_after_ingest = rss_mb(proc.pid)

        ref = customer_ref(email=customer_email(0))
        seen: dict[str, None] = {}
        for e in raw:  # customers that exist: the ones the ingest created
            email = (e.get("identities") or {}).get("email")
            if email and len(seen) < 5000:
                seen[email] = None
        hot = [customer_ref(email=m) for m in seen]
        k = [0]

        def get() -> None:
            k[0] += 1
            cstub.GetCustomer(customers_pb2.GetCustomerRequest(customer=hot[k[0] % len(hot)]), timeout=5)

        def decide() -> None:
            k[0] += 1
            stub.Decide(interactions_pb2.DecideRequest(customer=hot[k[0] % len(hot)]), timeout=5)

        def noop_call() -> None:
            nstub.Decide(interactions_pb2.DecideRequest(customer=ref), timeout=5)

        for fn in (get, decide, noop_call):  # warm-up
            for _ in range(200):
                try:
                    fn()
                except grpc.RpcError:
                    pass
        res = {}
        for name, fn in (("noop", noop_call), ("GetCustomer", get), ("Decide", decide)):
            lat = paced(fn, a.rate, a.seconds)
            res[name] = (len(lat) / a.seconds, pct(lat, 0.5), pct(lat, 0.99))
        print(f"events={len(events)} customers={a.customers} batch={BATCH}")
        print(f"ingest (durable, FileStorage): {hub_eps:,.0f} events/s; no-op stream: {noop_eps:,.0f} events/s; "
              f"ratio {hub_eps / noop_eps:.2f}")
        for name, (rps, p50, p99) in res.items():
            ratio = p99 / res["noop"][2]
            print(f"{name:<12} {rps:,.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms  (p99 / no-op p99 = {ratio:.1f})")
        print(f"hub RSS: {rss_after_ingest:.0f} MB after ingest, {rss_mb(proc.pid):.0f} MB at end")
    finally:
        proc.terminate()
        proc.wait(30)
        noop.stop(0)


if __name__ == "__main__":
    main()
