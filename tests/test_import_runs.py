"""The apply loop's bulk entry (``Ingestor._apply_run`` → ``ImportedInteraction.apply_run``): a
customer's run of import rows applied in one call gives the store the row-by-row path gives —
identities, history, facts, consents, keys, counts, results — on random files, re-imports and
overlapping files; and it is taken (fewer ``add_interactions`` calls than rows)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.customer import Customer
from shopkeeper.importer import Importer, ImportOptions, RowError
from shopkeeper.importer.records import ImportedInteraction
from shopkeeper.store import Store


def _rows(rng: random.Random, n: int, customers: int, key_space: int) -> list[dict[str, Any]]:
    out = []
    for r in range(n):
        c = rng.randrange(customers)
        ids: dict[str, str] = {"email": f"c{c}@example.org"}
        if rng.random() < 0.3:
            ids["cookie"] = f"ck{c}"
        if rng.random() < 0.05:
            ids = {"cookie": f"ck{c}"}  # a cookie alone: the same customer once the pair is known
        typ = rng.choice(["order", "page_view", "page_view", "email_open"])
        data: dict[str, Any] = ({"order_id": f"o{r}", "amount": rng.randrange(1, 500) / 4} if typ == "order"
                                else {"url": f"/p{rng.randrange(9)}"} if typ == "page_view" else {"message_id": "m"})
        row: dict[str, Any] = {"type": typ, "channel": "email" if typ == "email_open" else "web",
                               "ts": 1_700_000_000 + rng.randrange(0, 3) * 400 * 86_400 + rng.randrange(0, 5_000),
                               "identities": ids, "data": data}
        if rng.random() < 0.8:  # the rest get a key derived from the row
            k = rng.randrange(key_space)  # repeats: redeliveries (same event time) in and across files
            row["idempotency_key"] = f"k{c}-{k}"
            row["ts"] = 1_700_000_000 + (k % 3) * 400 * 86_400 + k * 7
        if rng.random() < 0.04:
            row["traits"] = {"city": rng.choice(["Berlin", "Hamburg"])}
        if rng.random() < 0.02:
            row["type"] = "no such type"  # refused on its line
        if rng.random() < 0.03:
            row["customer"] = "pinned-" + str(c)  # a pin to a customer this store does not have
        out.append(row)
    # runs: a shop's log interleaves customers, an export lists each one's rows together
    if rng.random() < 0.5:
        out.sort(key=lambda row: row["identities"].get("email", ""))
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _import(store: Store, path: str, batch: int) -> tuple[tuple[int, int, int, int], list[str]]:
    errors: list[RowError] = []
    s = Importer(store, ImportOptions(batch_size=batch), on_error=errors.append).run([path])
    return (s.applied, s.duplicates, s.rejected, s.customers_created), [str(e) for e in errors]


def _state(store: Store) -> dict[str, Any]:
    """Everything an import writes, by the customer's identities (customer ids are random)."""
    with store.read() as f:
        out: dict[Any, Any] = {}
        gone: list[str] = []  # merged away: their ids are random, compared as a sorted list
        for c in f.customers.values():
            keys = dict(c.recent_keys or {})
            one = {
                "status": c.status,
                "identities": sorted((p, tuple(link)[0]) for p, link in c.identities.items()),
                "history": [(k, it.ts, it.type, it.channel, it.touchpoint, dict(it.data), it.idempotency_key,
                             it.identities, it.origin == c.id) for k, it in c.history.items()],
                "recent": sorted(c._recent.keys()) if c._recent is not None else None,
                "hard": dict(c.hard), "type_counts": dict(c.type_counts), "last_at": dict(c.last_at or {}),
                "daily": {d: dict(b) for d, b in (c.daily or {}).items()},
                "traits": dict(c.traits), "consents": dict(c.consents),
                "recent_keys": list(keys.items()), "key_log": list(c.key_log or ()),
            }
            if c.status == "active":
                out[tuple(sorted(c.identities.keys()))] = one
            else:
                gone.append(repr(one))
        counts = {k: f.counters[k].value if hasattr(f.counters[k], "value") else f.counters[k]
                  for k in f.counters} if hasattr(f, "counters") else {}
        return {"customers": out, "gone": sorted(gone), "identities": len(f.identities), "counts": counts}


@pytest.mark.parametrize("seed", range(12))
def test_runs_applied_at_once_give_the_store_row_by_row_gives(tmp_path: Path, seed: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    first = _write(tmp_path / "a.jsonl", _rows(rng, 300, rng.choice([5, 30, 120]), 250))
    second = _write(tmp_path / "b.jsonl", _rows(rng, 150, 40, 400))  # overlapping keys and customers
    batch = rng.choice([7, 64, 1000])
    got = []
    for grouped in (False, True):
        monkeypatch.setattr(ImportedInteraction, "applies_runs", grouped)
        with Store.open("memory://") as store:
            results = [_import(store, first, batch), _import(store, first, batch), _import(store, second, batch)]
            got.append((results, _state(store)))
    (rows_a, state_a), (rows_b, state_b) = got
    assert rows_a == rows_b
    assert rows_b[1][0][0] == 0  # a re-import adds nothing
    assert state_a == state_b


def test_the_bulk_entry_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten customers with twelve rows each, listed customer by customer: each customer's first row
    goes one by one (it creates the customer), the other eleven in one call."""
    calls: list[int] = []
    real = Customer.add_interactions

    def counting(self: Customer, its: Any) -> Any:
        calls.append(len(its))
        return real(self, its)

    monkeypatch.setattr(Customer, "add_interactions", counting)
    rows = [{"type": "page_view", "channel": "web", "ts": 1_700_000_000 + r, "identities": {"email": f"c{c}@x.org"},
             "data": {"url": "/"}, "idempotency_key": f"k{c}-{r}"} for c in range(10) for r in range(12)]
    with Store.open("memory://") as store:
        (applied, dups, refused, created), errors = _import(store, _write(tmp_path / "r.jsonl", rows), 1000)
    assert (applied, dups, refused, created, errors) == (120, 0, 0, 10, [])
    assert sorted(calls) == [1] * 10 + [11] * 10
