"""``shopkeeper demo``: a small store with sample customers, for a first look."""

from __future__ import annotations

import random
import time

import click

from .engine.ingest import Ingestor
from .events import validate_event
from .view import customer_view, render_text

FIRST = ["Ann", "Bob", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo"]
PAGES = ["/", "/shoes", "/shoes/trail-42", "/bags", "/sale", "/cart", "/checkout"]


def sample_events(customers: int, seed: int = 7) -> list[dict]:
    """Realistic-looking raw events for ``customers`` people over the last 60 days."""
    rng = random.Random(seed)
    now = time.time()
    out: list[dict] = []
    for n in range(customers):
        email = f"{FIRST[n % len(FIRST)].lower()}.{n}@example.org"
        cookie = f"ck-{n:06d}"
        t = now - rng.uniform(5, 60) * 86400
        # an anonymous visit first, then a log-in that stitches it to the email
        out.append({"type": "page_view", "identities": {"cookie": cookie}, "ts": t,
                    "data": {"url": rng.choice(PAGES)}, "idempotency_key": f"demo-{n}-0"})
        out.append({"type": "identify", "identities": {"cookie": cookie, "email": email}, "ts": t + 60,
                    "traits": {"first_name": FIRST[n % len(FIRST)]}, "idempotency_key": f"demo-{n}-1"})
        for k in range(rng.randint(1, 8)):
            t += rng.uniform(0.1, 3) * 86400
            if t > now:
                break
            kind = rng.random()
            if kind < 0.6:
                ev = {"type": "page_view", "data": {"url": rng.choice(PAGES)}, "identities": {"cookie": cookie}}
            elif kind < 0.8:
                ev = {"type": "email_open", "data": {"campaign": "autumn"}, "identities": {"email": email}}
            elif kind < 0.95:
                ev = {"type": "order", "data": {"order_id": f"o{n}-{k}", "amount": round(rng.uniform(5, 300), 2),
                                                "items": rng.randint(1, 5)}, "identities": {"email": email}}
            else:
                ev = {"type": "call", "data": {"duration": rng.randint(30, 900), "agent": "a7"},
                      "identities": {"phone": f"+1415555{n:04d}", "email": email}}
            ev.update(ts=t, idempotency_key=f"demo-{n}-{k + 2}")
            out.append(ev)
    return out


@click.command()
@click.option("--store", "store_uri", default="file://./var/demo.fs", show_default=True,
              help="Where to create the demo store.")
@click.option("--customers", default=200, show_default=True, help="How many sample customers.")
def demo(store_uri: str, customers: int) -> None:
    """Fill a store with sample customers and print one customer's 360° view."""
    from .cli_common import open_store_or_exit

    store = open_store_or_exit(store_uri)
    try:
        raw = sample_events(customers)
        events = [validate_event(r) for r in raw]
        with Ingestor(store, source="demo") as ing:
            results = []
            for i in range(0, len(events), 500):
                results += ing.apply(events[i:i + 500])
        applied = sum(r.status == "applied" for r in results)
        dup = sum(r.status == "duplicate" for r in results)
        click.echo(f"{store.description}: {applied} events applied, {dup} already there (idempotent re-run)")
        with store.read() as f:
            c = f.customer_by_identity("email", "ann.0@example.org")
            assert c is not None
            click.echo(render_text(customer_view(c)))
    finally:
        store.close()
