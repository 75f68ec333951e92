"""Backup, restore, copy and pack on RelStorage/PostgreSQL, with the suite's private PostgreSQL (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub.conftest import event, record, start_hub

from shopkeeper._proto.v1 import admin_pb2
from shopkeeper.store import Store

from .test_backup_restore import Busy, cli, digests

pytestmark = pytest.mark.e2e


def test_pg_dump_backup_while_the_hub_writes_restores_customer_by_customer(tmp_path: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    """The manifest is read in the snapshot pg_dump dumps: with a hub committing throughout, the
    restored database matches it exactly (a manifest read a moment later would not)."""
    uri = pg_server.create_database()
    store = Store.open(uri)
    r = start_hub(store=store)
    try:
        c = r.client("admin")
        for i in range(10):
            record(c, event(email=f"p{i % 4}@example.com", key=f"p{i}"))
        with Busy(c, "busy-pg") as busy:
            code, out = cli("backup", "--store", uri, "--to", str(tmp_path / "bk"))
        assert code == 0, out
        assert busy.sent > 0 and (tmp_path / "bk" / "shopkeeper.pgdump").exists()
        packed = c.admin.Pack(admin_pb2.PackRequest(days=0), metadata=c.md)  # pack through the writer on RelStorage
        assert packed.bytes_before > 0
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    target = pg_server.create_database()
    code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", target, "--verify")
    assert code == 0, out
    assert "verified: counts and" in out
    code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", target)
    assert code == 1 and "is not empty" in out


def test_storage_copy_between_filestorage_and_postgresql(tmp_path: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    src = f"file://{tmp_path}/src/Data.fs"
    store = Store.open(src)
    r = start_hub(store=store)
    try:
        c = r.client("admin")
        for i in range(8):
            record(c, event(email=f"q{i % 3}@example.com", key=f"q{i}"))
        pg = pg_server.create_database()
        code, out = cli("storage", "copy", src, pg, "--quiet", "--verify")  # from a store a hub serves
        assert code == 0 and "verified" in out, out
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    back = f"file://{tmp_path}/back/Data.fs"
    code, out = cli("storage", "copy", pg, back, "--quiet", "--verify")
    assert code == 0 and "verified" in out, out
    assert digests(back) == digests(src)
