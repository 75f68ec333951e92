"""Shared fixtures: stores on every backend the product supports, including a real ZEO server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopkeeper.servers import PrivatePostgres, pg_bindir, start_zeo, stop_process
from shopkeeper.servers import free_port as free_port  # noqa: F401 - tests import it from here
from shopkeeper.store import Store


@pytest.fixture
def store() -> Iterator[Store]:
    """A fast in-memory store (MappingStorage)."""
    s = Store.open("memory://")
    yield s
    s.close()


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[Store]:
    """A real, fsync'ing FileStorage in a temp dir."""
    s = Store.open(f"file://{tmp_path}/Data.fs")
    yield s
    s.close()


@pytest.fixture
def zeo_server(tmp_path: Path) -> Iterator[str]:
    """A real ZEO server process on a free loopback port; yields its zeo:// URI."""
    proc, uri = start_zeo(tmp_path / "zeo" / "Data.fs")
    yield uri
    stop_process(proc)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster for the whole session (initdb in a temp dir, a free loopback
    port; as root it runs as an unprivileged user). Installed by scripts/install-test-deps.sh."""
    if pg_bindir() is None:
        pytest.fail("PostgreSQL is not installed: run scripts/install-test-deps.sh (apt-get install postgresql)")
    directory = tempfile.mkdtemp(prefix="shopkeeper-pg-")
    server = PrivatePostgres(directory).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_store_uri(pg_server: PrivatePostgres) -> str:
    """A fresh, empty database in the session's private PostgreSQL: its ``postgresql://`` URI."""
    return pg_server.create_database()


#: the storages the store, hub and ingest tests run against; the server-backed ones are e2e
STORAGES = [
    pytest.param("file", id="file"),
    pytest.param("zeo", id="zeo", marks=[pytest.mark.e2e, pytest.mark.zeo]),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.e2e),
]


@pytest.fixture(params=STORAGES)
def storage_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URI on each storage: FileStorage, a ZEO server, a private PostgreSQL."""
    if request.param == "file":
        return f"file://{tmp_path}/Data.fs"
    if request.param == "zeo":
        return request.getfixturevalue("zeo_server")
    return request.getfixturevalue("pg_store_uri")


@pytest.fixture(autouse=True)
def _one_writer(shopkeeper_commit_guard: object) -> None:
    """Every test: no thread but a running hub's writer may commit to that hub's store
    (``shopkeeper.testing.CommitGuard``), so a commit path that bypasses the writer fails
    whichever test exercises it."""
