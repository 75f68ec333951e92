"""CPU of exactly-once bookkeeping alone, per event, by how many keys a customer has logged (issue 10).

    python benchmarks/probe_keys.py                 # logs of 0, 24, 200, 2,600 and 20,000 keys
    python benchmarks/probe_keys.py --logged 2600 --events 5000

For a ``Customer`` whose key logs hold ``--logged`` keys (random 128-bit hex keys, as
``workload.py`` makes them, one µs-second apart), prints the process CPU per event, the best of
``--repeat`` runs, of:

* **new event** — ``--events`` times ``has_key`` of a key it does not hold, then ``remember_key``
  (a spill every 8): what the writer pays per applied event (generation 13 adds the fingerprints'
  lookup and merge);
* **resend, same ts** — ``has_key`` of each of the last ``--resent`` events' keys, with its ts;
* **resend, other ts** — the same 7 s later, as a client that stamps at send time retries a run:
  not found before generation 13 (``found``); since, a fingerprint hit confirmed by reading the
  logs newest first.

No store, no commit: the record's other costs are ``probe_single.py``'s and ``probe_write_shape.py``'s.
The log then holds ``--logged`` + ``--events`` keys. 2,600 keys is the Zipf head's share (~13%)
of 20,000 events at 100k customers (``bench_hub.py``).
CPU time, so a shared machine slows it but does not fake it; say the load average you ran at.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

T = 1_790_000_000_000_000


def _key(i: int) -> str:
    return f"{i * 2654435761 % 2**128:032x}"


def run(logged: int, events: int, resent: int) -> tuple[float, float, float, float]:
    from shopkeeper.customer import Customer

    c = Customer("c", created_at=0)
    for i in range(logged):
        c.remember_key(_key(i), T + i * 1_000_000)
    t0 = time.process_time()
    for j in range(logged, logged + events):
        k = _key(j)
        if c.has_key(k, T + j * 1_000_000):
            raise SystemExit(f"{k} taken for a duplicate")
        c.remember_key(k, T + j * 1_000_000)
    new = (time.process_time() - t0) / events * 1e6
    run_ = range(logged + events - resent, logged + events)  # the last run of events, sent again
    out, found = [], 0
    for shift in (0, 7_000_000):
        t0 = time.process_time()
        hits = sum(c.has_key(_key(i), T + i * 1_000_000 + shift) for i in run_)
        out.append((time.process_time() - t0) / resent * 1e6)
        found = hits
    return new, out[0], out[1], found / resent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logged", default="0,24,200,2600,20000", help="comma-separated key counts")
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--resent", type=int, default=100, help="the last events resent (16 found in the record)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"load {os.getloadavg()[0]:.1f}")
    for logged in (int(x) for x in args.logged.split(",")):
        best = [min(x) for x in zip(*(run(logged, args.events, args.resent) for _ in range(args.repeat)), strict=True)]
        print(f"logged {logged:6d}: new event {best[0]:6.2f} µs   resend, same ts {best[1]:6.2f} µs   "
              f"resend, other ts {best[2]:7.2f} µs (found {best[3]:.0%})")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
