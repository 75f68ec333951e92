"""Build the golden store ``gen6-7277197.fs`` and its expected dump ``gen6-7277197.json``.

**Run with the code of commit 7277197** (the start of wave 2's ninth session: generation 6, the last
code whose spilled history buckets hold pickled ``Interaction``s), never with the current one: the
point of the fixture is customers whose histories have spilled — several buckets each, split and
rewritten — in the format before generation 7 (``history-bytes``: buckets of packed bytes), which
``tests/test_golden_store.py`` opens with the current code, evolves and reads back, and to which
``tests/test_history_bytes.py`` appends in the new format::

    git -C /work/main worktree add --detach /tmp/shape-old 7277197
    mkdir -p /tmp/shapeoldpp && ln -sfn /tmp/shape-old/core /tmp/shapeoldpp/shopkeeper
    PYTHONPATH=/tmp/shapeoldpp python tests/data/golden/make_gen6_7277197.py tests/data/golden

Customers: ann (150 events: page views, carts, orders), bob (70), and cat (40) merged into bob and
the merge undone, dan (45) erased, and an interaction filed straight into ann's spilled tree as the
outbox's delivery reports do (``History.file``). Every timestamp is fixed.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import shopkeeper  # noqa: E402

_gens = (Path(shopkeeper.__file__).parent / "store" / "generations.py").read_text()
assert "_gen6]" in _gens and "_gen7" not in _gens, "run this with the code of commit 7277197: see the docstring"

from golden_dump import dump_store  # noqa: E402

from shopkeeper.customer import Interaction  # noqa: E402
from shopkeeper.engine.ingest import Ingestor  # noqa: E402
from shopkeeper.events import validate_event  # noqa: E402
from shopkeeper.identity import Resolver  # noqa: E402
from shopkeeper.identity_merge import merge, unmerge  # noqa: E402
from shopkeeper.plugins import builtin_evolve_steps  # noqa: E402
from shopkeeper.privacy import forget  # noqa: E402
from shopkeeper.store import Store  # noqa: E402

T0 = 1_790_000_000  # 2026-09-21, seconds
KINDS = ("page_view", "cart_add", "page_view", "order", "email_open")


def ev(name: str, n: int, ids: dict[str, str], minutes: float) -> object:
    kind = KINDS[n % len(KINDS)]
    data: dict = {"url": f"/{name}/{n}"}
    if kind == "order":
        data = {"amount": round(5 + n * 1.25, 2), "order_id": f"{name}-o{n}"}
    elif kind == "cart_add":
        data = {"sku": f"sku-{n % 7}"}
    return validate_event({"type": kind, "identities": ids, "data": data, "idempotency_key": f"g7-{name}-{n}",
                           "ts": T0 + minutes * 60, "channel": "email" if kind == "email_open" else "web"})


def build(path: Path) -> dict:
    store = Store.open(str(path), steps=builtin_evolve_steps())
    people = {"ann": 150, "bob": 70, "cat": 40, "dan": 45}
    events = []
    for name, count in people.items():
        ids = {"email": f"{name}@example.com", "cookie": f"c-{name}"}
        for n in range(count):  # interleaved in time: each customer's window spills several times
            events.append((n * 7 + len(name) + ord(name[0]) % 5, ev(name, n, ids, n * 7 + ord(name[0]) % 5)))
    events.sort(key=lambda p: p[0])
    with Ingestor(store, Resolver()) as ing:
        batch = [e for _, e in events]
        for i in range(0, len(batch), 60):
            for r in ing.apply(batch[i:i + 60]):
                assert r.status == "applied", r
    with store.transaction() as f:  # a delivery report's way: straight into the spilled tree
        ann = f.customer_by_identity("email", "ann@example.com")
        ann.history.file(Interaction(0, (T0 + 300) * 10**6, "email_delivered", "email",
                                     data={"intent": "ix-g7"}))
    with store.transaction() as f:
        bob = f.customer_by_identity("email", "bob@example.com")
        cat = f.customer_by_identity("email", "cat@example.com")
        rec = merge(f, bob, cat, reason="golden: same person?", source="admin", at=(T0 + 600 * 60) * 10**6)
    with store.transaction() as f:
        unmerge(f, rec.id, at=(T0 + 610 * 60) * 10**6)
    with store.transaction() as f:
        forget(f, f.customer_by_identity("email", "dan@example.com"), reason="golden erasure",
               at=(T0 + 620 * 60) * 10**6)
    with store.read() as f:
        expected = dump_store(f)
        spilled = {c.id: len(c._tree) for c in f.customers.values() if c._tree is not None}
    store.close()
    assert sum(1 for n in spilled.values() if n >= 60) >= 2, spilled
    return expected


def main(out_dir: str) -> None:
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        fs = Path(tmp) / "gen6-7277197.fs"
        expected = build(fs)
        from ZODB.FileStorage import FileStorage
        from ZODB.serialize import referencesf

        fs_ = FileStorage(str(fs))  # only current records: a smaller fixture, the same customers
        fs_.pack(time.time() + 1, referencesf)
        fs_.close()
        shutil.copy(fs, out / "gen6-7277197.fs")
    (out / "gen6-7277197.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out / 'gen6-7277197.fs'} ({(out / 'gen6-7277197.fs').stat().st_size} bytes): "
          f"{len(expected['customers'])} customers")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE))
