"""An import applies each batch's rows customer by customer (``importer.records.customer_order``):
a customer named by several rows of a batch is resolved once, and nothing else changes — the same
customers, histories, facts and traits as applying the rows one by one in file order, refusals
reported on their own lines in file order, a re-run doubling nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.identity import Resolver
from shopkeeper.importer import Importer, ImportOptions, ImportSummary, RowError
from shopkeeper.privacy import forget
from shopkeeper.store import Store


def _rows(customers: int, per: int) -> list[dict[str, Any]]:
    """``per`` rows for each customer, interleaved (a, b, c, a, b, c, …) as a shop's log is; every
    second row also carries the customer's cookie, so each customer has two identity sets."""
    out = []
    for r in range(per):
        for c in range(customers):
            ids: dict[str, str] = {"email": f"c{c}@example.org"}
            if r % 2:
                ids["cookie"] = f"ck{c}"
            typ = "order" if r % 3 == 2 else "page_view"
            data = {"order_id": f"o{c}-{r}", "amount": 10 + r} if typ == "order" else {"url": f"/p{r}"}
            out.append({"type": typ, "channel": "web", "ts": 1_700_000_000 + r * 60 + c, "identities": ids,
                        "data": data, "idempotency_key": f"k{c}-{r}"})
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _import(store: Store, path: str, batch: int) -> tuple[ImportSummary, list[str]]:
    errors: list[RowError] = []
    summary = Importer(store, ImportOptions(batch_size=batch), on_error=errors.append).run([path])
    return summary, [str(e) for e in errors]


def _state(store: Store) -> dict[str, Any]:
    """Every customer by email: history (time, type, key), hard facts, traits, identities."""
    with store.read() as f:
        out = {}
        for c in f.customers.values():
            if c.status != "active":
                continue
            email = c.identities_in("email")[0]
            hard = {k: v for k, v in c.hard.items()}
            out[email] = ([(it.ts, it.type, it.idempotency_key) for it in c.interactions()], hard,
                          dict(c.traits), sorted(c.identities.keys()), dict(c.type_counts))
        return out


def test_a_customer_of_a_batch_is_resolved_once(store: Store, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = Resolver.resolve

    def counting(self: Resolver, *a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(self, *a, **kw)

    monkeypatch.setattr(Resolver, "resolve", counting)
    path = _write(tmp_path / "log.jsonl", _rows(customers=20, per=6))
    summary, errors = _import(store, path, batch=1000)
    assert errors == [] and summary.applied == 120 and summary.customers_created == 20
    assert len(calls) == 40  # once per customer and identity set; one by one it was 120


def test_grouped_batches_give_what_row_by_row_gives(tmp_path: Path) -> None:
    rows = _rows(customers=15, per=7)
    rows.insert(40, dict(rows[3]))  # a redelivery inside the batch
    rows[50]["traits"] = {"city": "Berlin"}  # traits: the last value wins, so order matters here
    rows[80]["traits"] = {"city": "Hamburg"}
    rows[80]["identities"] = {"email": rows[50]["identities"]["email"]}  # same customer, the set of an
    assert "cookie" in rows[50]["identities"]  # earlier group: it would move up before row 50
    rows[60]["data"] = {"amount": 1}  # a page view without its url, and an unknown type: refused
    rows[70]["type"] = "no such type"
    path = _write(tmp_path / "log.jsonl", rows)
    states, results = [], []
    for batch in (1, 500):
        with Store.open("memory://") as store:
            summary, errors = _import(store, path, batch)
            states.append(_state(store))
            results.append((summary.applied, summary.duplicates, summary.rejected, errors))
            again, _ = _import(store, path, batch)
            assert again.applied == 0 and again.duplicates == summary.applied + summary.duplicates
    assert results[0] == results[1]
    assert results[1][:3] == (len(rows) - 3, 1, 2)
    assert [e.split(": ")[0] for e in results[1][3]] == [f"{path}:61", f"{path}:71"]
    assert states[0] == states[1]
    assert states[1][rows[50]["identities"]["email"]][2] == {"city": "Hamburg"}


def test_refusals_while_applying_are_reported_in_file_order(store: Store, tmp_path: Path) -> None:
    """Rows refused by the store (not by their shape) come back from the apply loop in the order it
    applied them; they are reported in file order."""
    rows = _rows(customers=5, per=4)
    for i, who in ((3, "a"), (9, "b"), (17, "a")):  # applied 3, 17, 9: the rows of "a" together
        rows[i]["identities"] = {"email": f"gone-{who}@example.org"}
    seed = [dict(rows[0], identities={"email": f"gone-{who}@example.org"}, idempotency_key=who) for who in "ab"]
    assert _import(store, _write(tmp_path / "seed.jsonl", seed), 10)[0].applied == 2
    with store.transaction() as f:
        for who in "ab":
            forget(f, f.customer_by_identity("email", f"gone-{who}@example.org"))
    path = _write(tmp_path / "log.jsonl", rows)
    errors: list[RowError] = []
    Importer(store, ImportOptions(batch_size=100), on_error=errors.append).run([path])
    assert [e.line for e in errors] == [4, 10, 18]
    assert all("asked to be forgotten" in str(e) for e in errors)


def test_by_default_a_batch_is_ten_thousand_rows(tmp_path: Path) -> None:
    """Fewer, larger commits: each commit rewrites every customer (and index bucket) its rows touch,
    so 2,500 rows are one transaction by default, not three."""
    path = _write(tmp_path / "log.jsonl", _rows(customers=250, per=10))
    fs = tmp_path / "d.fs"
    progress: list[int] = []
    with Store.open(f"file://{fs}") as store:
        summary = Importer(store, ImportOptions(), on_progress=lambda n, pos, size: progress.append(n)).run([path])
    assert summary.applied == 2500
    assert fs.read_bytes().count(b"shopkeeper import: log.jsonl") == 1
    assert progress == [1000, 2000, 2500]  # the bar still moves while a batch fills
