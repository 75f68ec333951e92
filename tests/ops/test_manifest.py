"""The backup manifest at scale: bulk reads per chunk of customers and digests in worker
processes (issue 17: the 1M backup round trip verified customer by customer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ZODB.Connection import Connection
from ZODB.FileStorage import FileStorage

from shopkeeper.customer import Customer
from shopkeeper.ops import verify
from shopkeeper.ops.backup import _manifest_of_storage, store_manifest
from shopkeeper.store import Store


def make_store(path: Path, n: int, start: int = 0) -> str:
    uri = f"file://{path}"
    with Store.open(uri) as s, s.transaction() as f:
        for i in range(start, start + n):
            f.add_customer(Customer(f"c{i:06d}"))
    return uri


def test_the_manifest_reads_each_chunk_of_customers_and_their_identities_in_bulk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL every ghost loaded alone is a round trip (the manifest cost 1.5 ms per
    customer); each customer and its identities tree must be asked for in a bulk read first."""
    uri = make_store(tmp_path / "Data.fs", 30)
    monkeypatch.setattr(verify, "CHUNK", 8)
    asked: list[tuple[bytes, bool]] = []

    def prefetch(self: Connection, objs: list[Any]) -> None:
        asked.extend((o._p_oid, o._p_changed is None) for o in objs)

    monkeypatch.setattr(Connection, "prefetch", prefetch)
    with Store.open(uri) as s, s.read() as f:
        want = {c._p_oid for c in f.customers.values()} | {c.identities._p_oid for c in f.customers.values()}
    assert len(store_manifest(uri)["customers"]) == 30
    assert {oid for oid, _ in asked} == want
    assert all(ghost for _, ghost in asked), "prefetched after it was loaded: the bulk read came too late"


@pytest.mark.e2e  # worker processes
def test_manifest_digests_in_worker_processes_equal_one_process_as_of_the_backup_transaction(
        tmp_path: Path) -> None:
    path = tmp_path / "Data.fs"
    uri = make_store(path, 2 * verify.CHUNK + 300)  # three chunks: the workers interleave them
    fs = FileStorage(str(path), read_only=True)
    tid = fs.lastTransaction()
    fs.close()
    make_store(path, 5, start=900_000)  # committed after "the backup"
    one = store_manifest(uri, workers=1)
    two = store_manifest(uri, workers=2)
    assert two == one and len(two["customers"]) == 2 * verify.CHUNK + 305
    at_backup = _manifest_of_storage(FileStorage(str(path), read_only=True), tid, uri, workers=2)
    assert len(at_backup["customers"]) == 2 * verify.CHUNK + 300
    assert "c900000" not in at_backup["customers"]
    assert at_backup["counts"]["records.customers"] == 2 * verify.CHUNK + 300
