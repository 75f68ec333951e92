"""Shared fixtures and the suite's two loops.

Stores on every backend the product supports, including a real ZEO server; ``free_port`` and
``wait_for`` (one of each, from :mod:`shopkeeper.testing`, also as fixtures).

**Markers.** ``e2e`` marks a test that talks to a real server — the hub's gRPC port, an
adapter's HTTP port, SMTP, ZEO, Kannel, PostgreSQL —, starts a subprocess (``shopkeeper
serve``, Node, openssl) or drives a browser. ``slow`` marks one that takes more than a few
seconds on its own. The inner loop is ``pytest -m "not e2e"`` (under a minute on a quiet
machine: the store, engine, rules, analysis and importer in process); the README's test
command runs everything. The marker is kept honest two ways: a test using a server fixture
listed in :data:`E2E_FIXTURES` is marked automatically, and a test that is *not* marked but
opens a server or starts a process anyway (directly, through a fixture, or through selenium)
fails, naming what it started, so the fast loop never silently grows a server.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ZODB.FileStorage import FileStorage

from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.servers import PrivatePostgres, free_port, pg_bindir, start_zeo, stop_process
from shopkeeper.store import Store
from shopkeeper.testing import wait_for

#: Fixtures that start a real server (the hub's gRPC port, SMTP, ZEO, a browser): a test using
#: one, directly or through another fixture, is an ``e2e`` test.
E2E_FIXTURES = frozenset({"shopkeeper_hub_factory", "running", "zeo_server", "pg_server", "smtp", "chrome"})


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the project's sources to bytecode once. Where ``PYTHONDONTWRITEBYTECODE`` is set
    (this machine's shells, some CI images) every ``shopkeeper`` process a test starts would
    otherwise compile them again: ~0.5 s of CPU each, and the suite starts dozens."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for folder in ("core", "adapters"):
        compileall.compile_dir(root / folder, quiet=2, workers=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


class _Servers:
    """Records every process started and every server opened while a test runs.

    ``subprocess.Popen._execute_child`` is where ``subprocess``, asyncio and selenium start
    processes; ``socket.listen`` is where every Python server (http.server, aiosmtpd, uvicorn)
    starts listening; ``grpc.server`` makes the hub's (C-core) server.
    """

    seen: list[str] | None = None

    @classmethod
    def note(cls, what: str) -> None:
        if cls.seen is not None:
            cls.seen.append(what[:200])

    @classmethod
    def install(cls) -> None:
        import grpc

        execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]
        listen = socket.socket.listen
        make_server = grpc.server

        def _execute_child(self: subprocess.Popen, args: object, *a: object, **kw: object) -> object:
            cls.note("process: " + (args if isinstance(args, str) else " ".join(map(str, args))))  # type: ignore[arg-type]
            return execute_child(self, args, *a, **kw)

        def _listen(self: socket.socket, *a: object) -> None:
            cls.note(f"listening socket: {self.getsockname()}")
            listen(self, *a)

        def _server(*a: object, **kw: object) -> object:
            cls.note("gRPC server")
            return make_server(*a, **kw)

        subprocess.Popen._execute_child = _execute_child  # type: ignore[attr-defined]
        socket.socket.listen = _listen  # type: ignore[method-assign]
        grpc.server = _server


_Servers.install()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _Servers.seen = []
    try:
        yield
    finally:
        _Servers.seen = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    seen = _Servers.seen
    if report.when == "call" and report.passed and seen and item.get_closest_marker("e2e") is None:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} is not marked e2e but started {len(seen)} server(s) or process(es), "
                           f"first: {seen[0]}; mark it @pytest.mark.e2e so `pytest -m 'not e2e'` stays the fast loop")


@pytest.fixture(name="persistent_id_calls")
def _persistent_id_calls_fixture(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ZODB's Python ``persistent_id`` hook, which runs once per object the pickler visits
    in every record written while the test runs: a list that grows by one per call (the write
    shape's cost in pickling, docs/benchmarks.md §68, §72, §77). ``calls.clear()`` between phases."""
    from ZODB import serialize

    calls: list[int] = []
    real = serialize.ObjectWriter.persistent_id

    def counting(self: Any, obj: Any) -> Any:
        calls.append(1)
        return real(self, obj)

    monkeypatch.setattr(serialize.ObjectWriter, "persistent_id", counting)
    return calls


@pytest.fixture(name="free_port")
def _free_port_fixture() -> int:
    """A free loopback port."""
    return free_port()


@pytest.fixture(name="wait_for")
def _wait_for_fixture() -> object:
    """:func:`shopkeeper.testing.wait_for`: poll until a condition holds, fail after a timeout."""
    return wait_for


@pytest.fixture
def store() -> Iterator[Store]:
    """A fast in-memory store (MappingStorage)."""
    s = Store.open("memory://", steps=builtin_evolve_steps())
    yield s
    s.close()


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[Store]:
    """A real, fsync'ing FileStorage in a temp dir."""
    s = Store.open(f"file://{tmp_path}/Data.fs", steps=builtin_evolve_steps())
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


class StorageLoads:
    """Records a FileStorage hands out while :meth:`counting` is entered: what the generations' "lazy,
    O(1) on open" tests measure (every record a ZODB connection reads goes through ``loadBefore``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.count = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[StorageLoads]:
        load = FileStorage.loadBefore

        def counted(storage: Any, *a: Any, **k: Any) -> Any:
            self.count += 1
            return load(storage, *a, **k)

        with self._monkeypatch.context() as m:
            m.setattr(FileStorage, "loadBefore", counted)
            yield self


@pytest.fixture
def storage_loads(monkeypatch: pytest.MonkeyPatch) -> StorageLoads:
    """A :class:`StorageLoads`: ``with storage_loads.counting(): Store.open(...)``, then read ``.count``."""
    return StorageLoads(monkeypatch)
