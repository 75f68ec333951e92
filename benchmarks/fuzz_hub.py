"""The benchmark-sized fuzz run of issue 12: 50,000 requests over every RPC of a real hub.

    python benchmarks/fuzz_hub.py                       # 50,000 requests, seed 20261201
    python benchmarks/fuzz_hub.py --requests 2000 --seed 7

Starts ``shopkeeper serve`` on a fresh FileStorage, sends requests drawn from
:mod:`shopkeeper.fuzz` (valid-shaped, hostile-valued, raw bytes; seeded, so a run reproduces),
checks health every ``--health-every`` requests, then sends SIGTERM and reports: status codes
seen, UNKNOWN/INTERNAL count (must be 0), ERROR lines in the hub's log (must be 0), seconds
to exit after SIGTERM (must be within grace + 5), and ``shopkeeper doctor`` on the store
(every customer loads, indexes consistent). Exit status 0 only if every check holds.
Not a timing benchmark: the figure that matters is zero.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from shopkeeper.fuzz import CRASH_CODES, calls, send
from shopkeeper.hub.config import SCOPES, hash_key

KEY = "sk_fuzz_bench"
PER_EXAMPLE = 50
CLI = "from shopkeeper.cli import main; main()"
SERVING = health_pb2.HealthCheckResponse.SERVING


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--grace", type=float, default=5.0)
    ap.add_argument("--health-every", type=int, default=500)
    ap.add_argument("--dir", default=None, help="keep the store and log here (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="fuzz-hub-"))
    work.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = work / "hub.yaml"
    cfg.write_text(f"api_keys:\n  - name: fuzz\n    key_sha256: {hash_key(KEY)}\n    scopes: [{', '.join(SCOPES)}]\n")
    log_path = work / "hub.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", "--store", f"file://{work}/Data.fs", "--listen", f"127.0.0.1:{port}",
         "--config", str(cfg), "--grace", str(args.grace), "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"), env={**os.environ, "PYTHONUNBUFFERED": "1"})  # noqa: SIM115
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(ch)
    deadline = time.monotonic() + 120
    while True:
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING:
                break
        except grpc.RpcError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            print("hub did not start; see", log_path)
            return 2
        time.sleep(0.2)

    codes: Counter[str] = Counter()
    crashes: list[str] = []
    not_serving = 0
    md = (("x-api-key", KEY),)
    t0 = time.monotonic()

    @seed(args.seed)
    @settings(max_examples=max(1, args.requests // PER_EXAMPLE), deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(batch=st.lists(calls(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(batch: list) -> None:
        nonlocal not_serving
        for rpc, payloads in batch:
            code = send(ch, md, rpc, payloads)
            codes[code] += 1
            if code in CRASH_CODES and len(crashes) < 20:
                crashes.append(f"{rpc.path} -> {code}: {payloads!r}"[:300])
            n = sum(codes.values())
            if n % args.health_every == 0:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
                not_serving += status != SERVING
                print(f"{n} requests, {time.monotonic() - t0:.0f} s: {dict(codes.most_common(6))}", flush=True)

    run()
    ch.close()
    sent = sum(codes.values())
    t_term = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(args.grace + 5)
    except subprocess.TimeoutExpired:
        rc = None
        proc.kill()
        proc.wait()
    stop_seconds = time.monotonic() - t_term
    errors = [line for line in log_path.read_text().splitlines()
              if line.startswith("{") and json.loads(line).get("level") in ("error", "critical")]
    doctor = subprocess.run([sys.executable, "-c", CLI, "doctor", "--store", f"file://{work}/Data.fs"],
                            capture_output=True, text=True)
    print(f"\n{sent} requests in {t_term - t0:.0f} s (seed {args.seed}); codes: {dict(codes)}")
    print(f"UNKNOWN/INTERNAL: {sum(codes[c] for c in CRASH_CODES)}", *crashes, sep="\n  ")
    print(f"health not SERVING: {not_serving} of {sent // args.health_every} checks")
    print(f"ERROR lines in the hub log: {len(errors)}", *errors[:5], sep="\n  ")
    print(f"SIGTERM -> exit {rc} in {stop_seconds:.1f} s (grace {args.grace:g} s)")
    print(f"doctor (exit {doctor.returncode}):\n{doctor.stdout}{doctor.stderr}")
    ok = (not any(codes[c] for c in CRASH_CODES) and not not_serving and not errors and rc == 0
          and stop_seconds <= args.grace + 5 and doctor.returncode == 0 and sent >= args.requests)
    print("PASS" if ok else "FAIL", f"(store and log in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
