"""Bare ZODB: is pointing the identities index at the customer's record worth a record-format change?

    python benchmarks/probe_identity_index.py                 # 100k records, 20k lookups, temp dir
    python benchmarks/probe_identity_index.py --records 100000 --dir /tmp/probe-idx   # store kept

Why: the ingest path finds a customer by identity in two trees — ``identities`` (namespace, value)
-> customer id, then ``customers`` id -> record — so a first touch loads a bucket of each before
the record (docs/benchmarks.md §49). One tree mapping the pair straight to the record saves the
``customers`` bucket. This measures that shape alone, without Shopkeeper: records of ~1.8 KB (a
customer record's average size in ``bench_ingest --floor``), two identities each, random ids; one
store holds both shapes. Each shape is looked up in its own fresh process (every bucket and record
cold), 20k random emails, then the same 20k again (warm). Printed: CPU µs per lookup (cold,
warm) and the loads the connection made. A probe on a shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from BTrees.OOBTree import OOBTree
from persistent import Persistent


class Rec(Persistent):
    def __init__(self, cid: str) -> None:
        self.id = cid
        self.blob = b"x" * 1800


def _pairs(i: int, n: int) -> list[tuple[str, str]]:
    return [(ns, f"{ns}-{i * 7919 % n:08d}") for ns in ("email", "cookie")]


def build(path: str, n: int) -> None:
    import transaction
    import ZODB
    import ZODB.FileStorage

    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    conn = db.open()
    root = conn.root()
    ids = {f"c{i * 2654435761 % 2**32:08x}": i for i in range(n)}
    customers, by_id, direct = OOBTree(), OOBTree(), OOBTree()
    root.update(customers=customers, ids=by_id, direct=direct)
    recs = {}
    for k, cid in enumerate(sorted(ids)):  # sorted: each tree is appended to, not rewritten
        recs[cid] = customers[cid] = Rec(cid)
        if k % 10_000 == 9_999:
            transaction.commit()
            conn.cacheMinimize()
    pairs = sorted((p, cid) for cid, i in ids.items() for p in _pairs(i, n))
    for k, (p, cid) in enumerate(pairs):
        by_id[p] = cid
        direct[p] = customers[cid]
        if k % 20_000 == 19_999:
            transaction.commit()
            conn.cacheMinimize()
    transaction.commit()
    db.close()


def lookup(path: str, shape: str, n: int, lookups: int) -> str:
    import ZODB
    import ZODB.FileStorage

    rng = random.Random(7)
    keys = [("email", f"email-{rng.randrange(n):08d}") for _ in range(lookups)]
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path, read_only=True), cache_size=4 * n)
    conn = db.open()
    root = conn.root()

    def run() -> float:
        t = time.process_time()
        if shape == "two":
            ids, cs = root["ids"], root["customers"]
            for k in keys:
                _ = cs[ids[k]].blob  # load the record
        else:
            d = root["direct"]
            for k in keys:
                _ = d[k].blob
        return (time.process_time() - t) / len(keys) * 1e6

    loads0 = conn._load_count
    cold = run()
    loads = conn._load_count - loads0
    warm = run()
    db.close()
    return f"{shape:<4} cold {cold:7.1f} µs/lookup  warm {warm:5.2f} µs/lookup  {loads / lookups:.2f} loads/lookup"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = str(Path(args.dir or tempfile.mkdtemp(prefix="probe-idx-")) / f"idx-{args.records}.fs")
    if args.one:
        print(lookup(path, args.one, args.records, args.lookups))
        return
    if not Path(path).exists():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        build(path, args.records)
        print(f"store: {args.records:,} records in {time.perf_counter() - t0:.0f} s", flush=True)
    for _ in range(args.repeat):
        for shape in ("two", "one"):
            out = subprocess.run([sys.executable, __file__, f"--one={shape}", f"--records={args.records}",
                                  f"--lookups={args.lookups}", f"--dir={Path(path).parent}"],
                                 check=True, capture_output=True, text=True).stdout
            print(" ", out.strip(), flush=True)


if __name__ == "__main__":
    main()
