"""Email adapter throughput: outbox intents -> rendered templates -> a local SMTP server, marked sent.

    python benchmarks/bench_email.py [--messages 5000] [--connections 8] [--store file|memory]

A hub (FileStorage in a temp dir by default) holds N customers with email consent and one
pending intent each; the SMTP sink (aiosmtpd) runs in its own process and counts messages.
The clock runs from the adapter's start until every intent is marked ``sent`` in the hub,
so the figure includes: reading the intent and the customer, the claim commit, rendering the
Jinja2 templates (text + HTML, with tracking links), SMTP delivery, the journal and the
``email_sent`` commit.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # noqa: E402


def smtp_sink(port: int, counter: mp.Value, ready: mp.Event) -> None:  # type: ignore[valid-type]
    import asyncio

    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    ctl = Controller(Count(), hostname="127.0.0.1", port=port)
    ctl.start()
    ready.set()
    asyncio.run(asyncio.sleep(3600))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--store", choices=("file", "memory"), default="file")
    args = ap.parse_args()

    from shopkeeper.adapters.email import EmailAdapter
    from shopkeeper.testing import free_port, start_hub

    port = free_port()
    counter, ready = mp.Value("i", 0), mp.Event()
    sink = mp.Process(target=smtp_sink, args=(port, counter, ready), daemon=True)
    sink.start()
    ready.wait(30)
    tmp = Path(tempfile.mkdtemp(prefix="bench-email-"))
    uri = f"file://{tmp}/Data.fs" if args.store == "file" else "memory://"
    h = start_hub(store_uri=uri)
    api = h.in_process("bench")
    n = args.messages
    t0 = time.perf_counter()
    for lo in range(0, n, 1000):
        batch = []
        for i in range(lo, min(n, lo + 1000)):
            email = f"c{i}@d{i % 50}.example.com"
            batch.append({"type": "identify", "identities": {"email": email}, "traits": {"first_name": f"C{i}"},
                          "idempotency_key": f"id-{i}"})
        api.record(batch)
    for i in range(n):
        api.set_consent(("email", f"c{i}@d{i % 50}.example.com"), "email", "marketing", True, "bench")
    for lo in range(0, n, 1000):
        api.record([{"type": "message_request", "identities": {"email": f"c{i}@d{i % 50}.example.com"},
                     "data": {"template": "default", "offer": f"OFFER{i % 7}", "campaign": "bench",
                              "text": "Spring is here."}, "idempotency_key": f"rq-{i}"}
                    for i in range(lo, min(n, lo + 1000))])
    setup = time.perf_counter() - t0
    print(f"setup: {n} customers with consent and one intent each in {setup:.1f} s ({uri})")

    cfg = {"from_addr": "shop@example.com", "smtp_port": port, "secret": "bench", "connections": args.connections,
           "per_domain_rate": 1e6, "per_domain_burst": 10**6, "journal": str(tmp / "journal.log"),
           "max_in_flight": 512}
    t0 = time.perf_counter()
    with h.run_adapter(EmailAdapter, cfg, "in-process") as adapter:
        while adapter.stats["sent"] < n:
            time.sleep(0.01)
            if time.perf_counter() - t0 > 600:
                break
        elapsed = time.perf_counter() - t0
    delivered = counter.value
    print(f"sent {adapter.stats['sent']} (SMTP server received {delivered}) in {elapsed:.2f} s "
          f"= {adapter.stats['sent'] / elapsed:,.0f} messages/s with {args.connections} SMTP connections; "
          f"stats {adapter.stats}")
    h.hub.stop(grace=0.5)
    sink.terminate()


if __name__ == "__main__":
    main()
