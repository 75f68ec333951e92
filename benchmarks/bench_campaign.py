"""Campaign throughput: plan over N customers, write the intents, deliver the email.

    python benchmarks/bench_campaign.py [--customers 100000] [--audience 0.3] [--deliver 5000]
                                        [--connections 8] [--dry-run-only] [--store DIR] [--profile FILE]

The small size (the dry run's CPU per customer): ``--customers 20000 --dry-run-only``. ``--store DIR``
builds the store there once and reuses it on later runs (a 1M build takes many minutes), so the dry
run can be timed or profiled (``--profile FILE``: cProfile of the dry run) on the same store.

1. **Set-up** (not timed): N customers built straight into a FileStorage (an email identity,
   email consent, ``--audience`` of them in the segment ``target``).
2. **Dry run** — every customer judged in one read transaction (audience, channel of choice,
   holdout), from a cold cache (the store reopened): customers evaluated/s and CPU µs per
   customer (``time.process_time``); it reads the audience index (segment members, cards) and
   says how many customer records it still had to read.
3. **Run** — a hub (the engine's one writer) snapshots the audience and writes one outbox
   intent per recipient in writer operations of ``--batch``: intents/s, snapshot and writing
   timed apart.
4. **Delivery** — ``--deliver`` of those intents (the rest are cancelled first) sent by the
   email adapter in the hub's process to a local aiosmtpd (own process), rendered per customer,
   until every one is marked sent; and raw ``smtplib`` sending pre-built messages to the same
   server in the same run (``bench_email.raw_baseline``): the ratio is the issue's target
   (≥ 2k messages/s, or ≥ 0.8× raw smtplib if the server is the limit).

Figures go to docs/benchmarks.md (the lead runs this alone).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402 - benchmarks/harness.py

CAMPAIGN = """\
campaigns:
  - name: bench_sale
    audience:
      segment: target
      conditions:
        - customer.orders: {at_least: 1}
    messages:
      - {channel: sms, text: "Hi {trait.first_name|there}: 20% off"}
      - {channel: email, template: default}
    holdout: 10
"""


def build(uri: str, n: int, audience: float) -> None:
    from shopkeeper.customer import Customer, now_us
    from shopkeeper.identity import attach
    from shopkeeper.plugins import builtin_evolve_steps
    from shopkeeper.store import Store

    store = Store.open(uri, steps=builtin_evolve_steps())  # the audience index, kept on every write as in a hub
    every = max(1, round(1 / audience)) if audience > 0 else 0
    now = now_us()
    try:
        for lo in range(0, n, 10_000):
            with store.transaction() as f:
                for i in range(lo, min(n, lo + 10_000)):
                    c = f.add_customer(Customer(f"b{i:09d}", created_at=now))
                    attach(f, c, ("email", f"b{i}@d{i % 50}.example.com"), "bench", now)
                    c.set_consent("email", "marketing", True, "bench")
                    c.hard["orders"] = 1 + i % 3
                    c.set_traits({"first_name": f"C{i}"})
                    if every and i % every == 0:
                        c.join_segment("target", now)
                conn = f.conn
            conn.cacheMinimize()
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--audience", type=float, default=0.3)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--deliver", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--dry-run-only", action="store_true", help="stop after the dry run")
    ap.add_argument("--store", type=Path, default=None,
                    help="a directory to keep the store in: built there if it has no Data.fs, else reused as it is "
                         "(--customers and --audience are then what it was built with); a run writes into it")
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of the dry run to this file")
    args = ap.parse_args()

    from bench_email import raw_baseline, start_smtp_sink
    from harness import BenchHub

    from shopkeeper import contact, outbox
    from shopkeeper.adapters.email import EmailAdapter
    from shopkeeper.campaigns import runs
    from shopkeeper.campaigns.model import load_campaigns
    from shopkeeper.campaigns.plan import dry_run
    from shopkeeper.campaigns.plugin import runner_for
    from shopkeeper.store import Store

    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}")
    tmp = args.store or Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    (tmp / "rules" / "campaigns").mkdir(parents=True, exist_ok=True)
    (tmp / "rules" / "campaigns" / "bench.yaml").write_text(CAMPAIGN)
    campaign = load_campaigns(tmp / "rules").campaigns["bench_sale"]
    uri = f"file://{tmp}/Data.fs"
    if (tmp / "Data.fs").exists():
        print(f"set-up: reusing {uri}")
    else:
        t0 = time.perf_counter()
        build(uri, args.customers, args.audience)
        print(f"set-up: {args.customers:,} customers in {time.perf_counter() - t0:.1f} s ({uri})")

    contact.configure(overrides={"quiet_hours": None})
    from shopkeeper.plugins import builtin_evolve_steps

    store = Store.open(uri, steps=builtin_evolve_steps())  # as the hub opens it: with the audience index
    prof = cProfile.Profile() if args.profile else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    if prof is not None:
        prof.enable()
    r = dry_run(store, campaign)
    if prof is not None:
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if prof is not None:
        prof.dump_stats(args.profile)
    store.close()
    print(f"dry run: {r['evaluated']:,} customers evaluated in {wall:.2f} s = {r['evaluated'] / wall:,.0f}/s "
          f"({cpu / max(r['evaluated'], 1) * 1e6:.1f} µs CPU each); audience {r['audience']:,}, "
          f"by channel {r['by_channel']}, excluded {r['excluded']}; {r['record_reads']:,} customer records read")
    if args.dry_run_only:
        return

    port, counter, sink = start_smtp_sink()
    h = BenchHub({"rules_dir": str(tmp / "rules"), "contact": {"quiet_hours": None}}, store_uri=uri)
    try:
        runner_for(h.hub).stop()  # the benchmark drives the run itself, through the same writer
        submit = h.hub.engine.writer.submit_op
        rid = submit(runs.create_run(campaign, run_id="bench")).result()
        cpu0, t0 = time.process_time(), time.perf_counter()
        planned = runs.snapshot(h.hub.store, submit, rid)
        t_snap = time.perf_counter() - t0
        t1 = time.perf_counter()
        runs.deliver(h.hub.store, submit, rid, batch=args.batch)
        t_write = time.perf_counter() - t1
        cpu = time.process_time() - cpu0
        st = runs.status(h.hub.store, rid)
        written = sum(v for k, v in st["counts"].items() if k.startswith("intents:"))
        print(f"run: snapshot of {planned:,} in {t_snap:.2f} s ({args.customers / t_snap:,.0f} customers "
              f"evaluated/s); {written:,} intents written in {t_write:.2f} s = {written / t_write:,.0f} intents/s "
              f"(batches of {args.batch}); hub process CPU {cpu / max(written, 1) * 1e6:.0f} µs/intent; "
              f"counts {st['counts']}")

        n = min(args.deliver, written)
        with h.hub.store.read() as f:
            keep = [it for it in outbox.pending(f, ("email",), limit=written + 10)][:n]
        keep_ids = {m.id for m in keep}

        def cancel_rest(folders, changes):  # noqa: ANN001, ANN202
            for m in outbox.pending(folders, ("email",), limit=written + 10):
                if m.id not in keep_ids:
                    outbox.cancel(folders, folders.customer(m.customer_id), m.id, "bench: not delivered")

        submit(cancel_rest).result()
        one, many = raw_baseline(port, n, args.connections)
        before = counter.value
        cfg = {"from_addr": "shop@example.com", "smtp_port": port, "secret": "bench",
               "connections": args.connections, "per_domain_rate": 1e6, "per_domain_burst": 10**6,
               "max_in_flight": 1024, "journal": str(tmp / "journal.log")}
        t0 = time.perf_counter()
        with h.run_adapter(EmailAdapter, cfg, "in-process") as adapter:
            while adapter.stats["sent"] < n and time.perf_counter() - t0 < 600:
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
        sent = adapter.stats["sent"]
        rate = sent / elapsed
        print(f"delivery: {sent:,} campaign emails (server received {counter.value - before:,}) in {elapsed:.2f} s "
              f"= {rate:,.0f} messages/s; raw smtplib to the same server: {one:,.0f}/s on 1 connection, "
              f"{many:,.0f}/s on {args.connections} threads -> {rate / one:.2f}x / {rate / many:.2f}x")
    finally:
        h.stop()
        sink.terminate()


if __name__ == "__main__":
    main()
