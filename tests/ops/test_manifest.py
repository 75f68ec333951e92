"""The backup manifest at scale: bulk reads per chunk of customers and digests in worker
processes (issue 17: the 1M backup round trip verified customer by customer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from persistent import Persistent
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
    customer); each customer and its identities tree must be asked for in a bulk read first (identities
    kept inline since generation 10 are part of the customer's record: nothing more to ask for)."""
    uri = make_store(tmp_path / "Data.fs", 30)
    monkeypatch.setattr(verify, "CHUNK", 8)
    asked: list[tuple[bytes, bool]] = []

    def prefetch(self: Connection, objs: list[Any]) -> None:
        asked.extend((o._p_oid, o._p_changed is None) for o in objs)

    monkeypatch.setattr(Connection, "prefetch", prefetch)
    with Store.open(uri) as s, s.read() as f:
        want = {c._p_oid for c in f.customers.values()} | {
            c.identities._p_oid for c in f.customers.values() if isinstance(c.identities, Persistent)}
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


def test_the_digest_covers_what_the_export_leaves_out(tmp_path: Path) -> None:
    """A restore that lost an outbox transition, a rule's timer, a model score or a hard fact must
    fail verification: each damage below changes the customer's digest (version 1, the export
    record alone, saw none of them)."""
    from BTrees.OOBTree import OOBTree

    from shopkeeper.outbox import OutboxItem

    uri = make_store(tmp_path / "Data.fs", 6)
    with Store.open(uri) as s, s.transaction() as f:
        c = f.customers["c000001"]
        c.outbox = OOBTree({"i1": OutboxItem("i1", "email", "welcome")})
        c.rule_state = {"timers": {"t1": 123}}
        c._p_changed = True
    base = store_manifest(uri)
    assert base["digest"] == verify.DIGEST == 2

    def damage(fn: Any) -> list[str]:
        with Store.open(uri) as s, s.transaction() as f:
            fn(f.customers["c000001"])
        got = verify.compare(base, store_manifest(uri))
        with Store.open(uri) as s, s.transaction() as f:  # undo: the next damage starts from the base
            c = f.customers["c000001"]
            c.outbox = OOBTree({"i1": OutboxItem("i1", "email", "welcome")})
            c.rule_state = {"timers": {"t1": 123}}
            c.hard = dict(base_hard)
            c._p_changed = True
        assert verify.compare(base, store_manifest(uri)).ok
        return got.different

    with Store.open(uri) as s, s.read() as f:
        base_hard = dict(f.customers["c000001"].hard)

    def sent(c: Any) -> None:
        c.outbox["i1"] = c.outbox["i1"]._replace(status="sent")

    def no_timer(c: Any) -> None:
        c.rule_state = {"timers": {}}

    def hard(c: Any) -> None:
        c.hard = {**c.hard, "interactions": 99}

    for fn in (sent, no_timer, hard):
        assert damage(fn) == ["c000001"], fn.__name__


def test_a_version_1_manifest_verifies_as_version_1(tmp_path: Path) -> None:
    """Backups taken before digest 2 carry version-1 digests (and no ``digest`` key): verifying one
    computes version 1, or every customer would differ."""
    import json

    from shopkeeper.ops.backup import MANIFEST, verify_restore

    uri = make_store(tmp_path / "Data.fs", 5)
    old = store_manifest(uri, version=1)
    old.pop("digest")
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / MANIFEST).write_text(json.dumps(old))
    assert old["customers"] != store_manifest(uri)["customers"]
    cmp = verify_restore(tmp_path / "bk", uri)
    assert cmp.ok, cmp.lines()
