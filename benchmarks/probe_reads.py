"""Where the hub's CPU per read goes (issue 10 item 5): server CPU per call, closed loop.

    python benchmarks/probe_reads.py --store /tmp/bench100k/Data.fs --customers 100000
    python benchmarks/probe_reads.py --store /tmp/bench100k/Data.fs --customers 100000 --plugins --only Decide

Each server runs in a process of its own (a copy of ``--store``; the copy is removed) and one
client process sends ``--calls`` requests, ``--concurrency`` at a time (closed loop: the server
is never saturated, so its CPU per call is not inflated by a convoy of waiting threads). The
figure is the server process's CPU (``/proc``, all threads) over the measured calls, after
``--warm`` calls that are not counted:

* the no-op server of ``bench_hub.py`` served by ``grpc.server`` (threads) and by
  ``grpc.aio.server`` — what a call costs the gRPC layer alone, and whether ``grpc.aio`` is a lever;
* the hub (``bench_hub.py --serve-hub``), ``GetCustomer`` and ``Decide`` (with ``--plugins``,
  Decide records offers; ``--no-record`` is the comparison run);
* in this process, the in-process lookup + 360° view of ``bench_hub.inprocess_lookup`` (the
  baseline of the ≤ 3× target).

CPU time, not wall time: other tenants of a shared machine move it far less. Not a benchmark:
quote ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub import (  # noqa: E402
    copy_store,
    cpu_seconds,
    draw_customers,
    email_of,
    inprocess_lookup,
    start_server,
    stop_server,
    store_emails,
    wait_ready,
)

from shopkeeper._proto.v1 import (  # noqa: E402
    common_pb2,
    customers_pb2,
    customers_pb2_grpc,
    interactions_pb2,
    interactions_pb2_grpc,
)
from shopkeeper.servers import free_port  # noqa: E402


def serve_noop_aio(listen: str) -> None:
    class Aio(customers_pb2_grpc.CustomersServicer, interactions_pb2_grpc.InteractionsServicer):
        async def GetCustomer(self, req, ctx):  # noqa: N802 - the gRPC method's name
            return customers_pb2.Customer(id="0123456789abcdef")

        async def Decide(self, req, ctx):  # noqa: N802
            return interactions_pb2.DecideResponse(customer_id="0123456789abcdef")

    async def main() -> None:
        server = grpc.aio.server()
        customers_pb2_grpc.add_CustomersServicer_to_server(Aio(), server)
        interactions_pb2_grpc.add_InteractionsServicer_to_server(Aio(), server)
        server.add_insecure_port(listen)
        await server.start()
        print("{}", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


async def drive(addr: str, method: str, emails: list[str], concurrency: int) -> None:
    ch = grpc.aio.insecure_channel(addr)
    await ch.channel_ready()
    ref = lambda e: common_pb2.CustomerRef(identity=common_pb2.Identity(namespace="email", value=e))  # noqa: E731
    if method == "GetCustomer":
        call = customers_pb2_grpc.CustomersStub(ch).GetCustomer
        reqs = [customers_pb2.GetCustomerRequest(customer=ref(e)) for e in emails]
    else:
        call = interactions_pb2_grpc.InteractionsStub(ch).Decide
        reqs = [interactions_pb2.DecideRequest(customer=ref(e), touchpoint="web", placement="home") for e in emails]

    async def worker(k: int) -> None:
        for r in reqs[k::concurrency]:
            await call(r, timeout=30)

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    await ch.close()


def per_call(proc: subprocess.Popen, addr: str, method: str, emails: list[str], warm: int, concurrency: int) -> int:
    asyncio.run(drive(addr, method, emails[:warm], concurrency))
    c0 = cpu_seconds(proc.pid)
    asyncio.run(drive(addr, method, emails[warm:], concurrency))
    return round((cpu_seconds(proc.pid) - c0) / (len(emails) - warm) * 1e6)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-noop-aio":
        return serve_noop_aio(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="a FileStorage Data.fs (copied, never changed)")
    ap.add_argument("--customers", type=int, required=True, help="customers drawn from (Zipf, as bench_hub)")
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--plugins", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="Decide records nothing (the comparison run)")
    ap.add_argument("--max-concurrent-reads", type=int, default=None, help="the hub's limits.max_concurrent_reads")
    ap.add_argument("--only", choices=("GetCustomer", "Decide"), default=None)
    ap.add_argument("--tmp-dir", default=None)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe_reads_", dir=a.tmp_dir))
    try:
        copy_store(a.store, str(tmp / "Data.fs"))
        names = store_emails(str(tmp / "Data.fs"), a.customers)
        emails = [email_of(i, names) for i in draw_customers(a.customers, a.warm + a.calls, 11)]
        methods = [a.only] if a.only else ["GetCustomer", "Decide"]
        base = inprocess_lookup(str(tmp / "Data.fs"), a.customers, count=min(a.calls, 3000), names=names)
        print(f"in-process lookup + 360° view: {base['cpu_us_per_lookup']} µs CPU as drawn (Zipf), "
              f"{base['cold_cpu_us_per_lookup']} µs cold (the ratios below are to the first)", flush=True)
        hub_extra = [*(["--plugins"] if a.plugins else []), *(["--no-record"] if a.no_record else []),
                     *([f"--reads={a.max_concurrent_reads}"] if a.max_concurrent_reads else [])]
        servers = [("no-op, grpc.server", ["--serve-noop"], False),  # bench_hub's no-op server
                   ("no-op, grpc.aio", ["--serve-noop-aio"], True),  # this script's
                   ("hub", ["--serve-hub", f"file://{tmp}/Data.fs"], False)]
        for name, args, own in servers:
            addr = f"127.0.0.1:{free_port()}"
            if own:
                proc = subprocess.Popen([sys.executable, __file__, *args, addr], stdout=subprocess.PIPE, text=True)
            else:
                proc = start_server([*args, addr, *(hub_extra if args[0] == "--serve-hub" else [])])
            try:
                proc.stdout.readline()
                wait_ready(addr)
                for method in methods:
                    us = per_call(proc, addr, method, emails, a.warm, a.concurrency)
                    print(f"{name:<20} {method:<12} {us:6,} µs server CPU per call "
                          f"({us / max(base['cpu_us_per_lookup'], 1):.2f}× in-process)", flush=True)
            finally:
                stop_server(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
