"""The same store on every storage: FileStorage, ZEO (``shopkeeper storage serve``) and
RelStorage on a private PostgreSQL started by the suite's own fixture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.servers import free_port, stop_process, wait_for_port
from shopkeeper.store import CURRENT_GENERATION, Store

T0 = 1_750_000_000


def _events(n: int) -> list:
    return [validate_event({"type": "page_view", "identities": {"email": f"u{i % 7}@example.org"}, "ts": T0 + i,
                            "idempotency_key": f"k{i}", "data": {"url": f"/p{i}"}}) for i in range(n)]


def test_a_store_is_created_written_and_read_back_after_reopening(storage_uri: str) -> None:
    with Store.open(storage_uri) as s:
        assert s.generation == CURRENT_GENERATION
        with Ingestor(s) as ing:
            assert {r.status for r in ing.apply(_events(40))} == {"applied"}
    with Store.open(storage_uri) as s, Ingestor(s) as ing:
        assert {r.status for r in ing.apply(_events(45))} == {"duplicate", "applied"}
        with s.read() as f:
            assert f.counter("interactions") == 45 and f.counter("duplicates") == 40
            assert f.counter("customers") == 7
            assert sum(c.hard["interactions"] for c in f.customers.values()) == 45


@pytest.mark.e2e
def test_postgresql_store_is_relstorage_history_free_with_its_cache_settings(pg_store_uri: str) -> None:
    with Store.open(pg_store_uri) as s:
        opts = s.db.storage._options
        assert type(s.db.storage).__name__ == "RelStorage" and "history-free" in s.description
        assert opts.keep_history is False and opts.cache_local_mb == 256
    with Store.open(pg_store_uri + "?cache-local-mb=32&cache_local_object_max=4096&commit-lock-timeout=5") as s:
        opts = s.db.storage._options
        assert (opts.cache_local_mb, opts.cache_local_object_max, opts.commit_lock_timeout) == (32, 4096, 5)


@pytest.mark.e2e
def test_storage_serve_starts_a_zeo_server_for_a_zeo_uri(tmp_path) -> None:
    port = free_port()
    cli = str(Path(sys.executable).parent / "shopkeeper")
    proc = subprocess.Popen([cli, "storage", "serve", str(tmp_path / "Data.fs"), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc, what="shopkeeper storage serve")
        uri = f"zeo://127.0.0.1:{port}?timeout=20"
        with Store.open(uri) as s, Ingestor(s) as ing:
            ing.apply(_events(3))
        with Store.open(uri) as s, s.read() as f:
            assert f.counter("interactions") == 3
    finally:
        stop_process(proc)
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert (tmp_path / "Data.fs").stat().st_size > 0
